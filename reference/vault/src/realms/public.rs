//! The public part of a registration (`spec/realms.md` §3.1 step 8): the same bytes at every
//! realm, and the commitment recovery groups answers by.

use super::group::{decode_point, LEN};
use super::RealmError;
use curve25519_dalek::ristretto::RistrettoPoint;
use sha2::{Digest, Sha256};

/// Length of the registration id.
pub const REG_ID_LEN: usize = 16;
/// Length of `wrapped`: nonce, K, tag.
pub(crate) const WRAPPED_LEN: usize = 12 + 32 + 16;

/// What every realm of a registration stores in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicPart {
    /// This registration.
    pub reg_id: [u8; REG_ID_LEN],
    /// Threshold.
    pub t: u8,
    /// Number of realms.
    pub n: u8,
    /// Argon2id parameters, as text (`spec/vault.md` §2).
    pub ksf: String,
    /// Guesses each realm allows.
    pub limit: u32,
    /// `P_i = k_i · B`, for i = 1..n.
    pub(crate) key_shares: Vec<RistrettoPoint>,
    /// `S_i = s_i · B`, for i = 1..n.
    pub(crate) secret_shares: Vec<RistrettoPoint>,
    /// `HMAC(unlock_key, "coffer-realms-v1 check")`.
    pub(crate) check: [u8; 32],
    /// K under `wrap_key`.
    pub(crate) wrapped: Vec<u8>,
}

impl PublicPart {
    /// The wire and storage form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.reg_id);
        out.push(self.t);
        out.push(self.n);
        out.extend_from_slice(&(self.ksf.len() as u16).to_be_bytes());
        out.extend_from_slice(self.ksf.as_bytes());
        out.extend_from_slice(&self.limit.to_be_bytes());
        for p in self.key_shares.iter().chain(&self.secret_shares) {
            out.extend_from_slice(p.compress().as_bytes());
        }
        out.extend_from_slice(&self.check);
        out.extend_from_slice(&self.wrapped);
        out
    }

    /// Parses and checks the structure (`malformed` on any deviation).
    pub fn decode(bytes: &[u8]) -> Result<Self, RealmError> {
        let bad = |why: &str| RealmError::Malformed(format!("public part: {why}"));
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], RealmError> {
            if rest.len() < n {
                return Err(bad("too short"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let reg_id: [u8; REG_ID_LEN] = take(REG_ID_LEN)?.try_into().map_err(|_| bad("id"))?;
        let t = take(1)?[0];
        let n = take(1)?[0];
        if t == 0 || n == 0 || t > n {
            return Err(bad("needs 1 ≤ t ≤ n"));
        }
        let ksf_len = u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad("ksf"))?);
        let ksf = std::str::from_utf8(take(ksf_len as usize)?)
            .map_err(|_| bad("ksf is not UTF-8"))?
            .to_owned();
        let limit = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad("limit"))?);
        let mut points = Vec::with_capacity(2 * n as usize);
        for j in 0..2 * n as usize {
            points.push(decode_point(take(LEN)?, &format!("public share {j}"))?);
        }
        let secret_shares = points.split_off(n as usize);
        let check: [u8; 32] = take(32)?.try_into().map_err(|_| bad("check"))?;
        let wrapped = take(WRAPPED_LEN)?.to_vec();
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(PublicPart {
            reg_id,
            t,
            n,
            ksf,
            limit,
            key_shares: points,
            secret_shares,
            check,
            wrapped,
        })
    }

    /// `SHA-256("coffer-realms-v1 commitment" ‖ public)`.
    pub fn commitment(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(b"coffer-realms-v1 commitment")
            .chain_update(self.encode())
            .finalize()
            .into()
    }
}
