//! The OPAQUE ciphersuite and its key-stretching parameters (`spec/vault.md` §2).

use super::VaultError;
use argon2::{Algorithm, Argon2, Params, Version};
use opaque_ke::{CipherSuite, Ristretto255, TripleDh};

/// OPRF ristretto255-SHA512, 3DH over ristretto255 with SHA-512, KSF Argon2id.
pub struct Suite;

impl CipherSuite for Suite {
    type OprfCs = Ristretto255;
    type KeyExchange = TripleDh<Ristretto255, sha2::Sha512>;
    type Ksf = Argon2<'static>;
}

/// The context string bound into every login (RFC 9807 §6.1).
pub const CONTEXT: &[u8] = b"coffer-vault-v1";

/// Argon2id parameters, named in every record as `argon2id:m=KIB,t=PASSES,p=LANES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KsfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KsfParams {
    /// The default: 64 MiB, 3 passes, 1 lane (RFC 9106 §4, second recommendation, one lane).
    pub const DEFAULT: KsfParams = KsfParams {
        m_kib: 65536,
        t: 3,
        p: 1,
    };
    /// Cheap parameters for tests only (never accepted by a server unless configured).
    pub const TEST: KsfParams = KsfParams {
        m_kib: 256,
        t: 1,
        p: 1,
    };

    /// The textual form stored with records and sent to clients.
    pub fn name(&self) -> String {
        format!("argon2id:m={},t={},p={}", self.m_kib, self.t, self.p)
    }

    /// Parses [`KsfParams::name`]; refuses values outside sane bounds.
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let bad = || VaultError::Unsupported(format!("KSF {text:?}"));
        let rest = text.strip_prefix("argon2id:").ok_or_else(bad)?;
        let mut values = [None; 3];
        for part in rest.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(bad)?;
            let v: u32 = v.parse().map_err(|_| bad())?;
            let slot = match k {
                "m" => 0,
                "t" => 1,
                "p" => 2,
                _ => return Err(bad()),
            };
            values[slot] = Some(v);
        }
        let [Some(m_kib), Some(t), Some(p)] = values else {
            return Err(bad());
        };
        let params = KsfParams { m_kib, t, p };
        // Bounds: at most 4 GiB, 100 passes, 16 lanes; at least what argon2 accepts.
        if !(8 * p..=4 * 1024 * 1024).contains(&m_kib)
            || !(1..=100).contains(&t)
            || !(1..=16).contains(&p)
        {
            return Err(bad());
        }
        Ok(params)
    }

    /// The Argon2id instance (64-byte output, as OPAQUE asks).
    pub fn argon2(&self) -> Result<Argon2<'static>, VaultError> {
        let params = Params::new(self.m_kib, self.t, self.p, None)
            .map_err(|e| VaultError::Unsupported(format!("Argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// The OPAQUE credential identifier of a user: `tenant ‖ 00 ‖ user`.
pub fn credential_id(tenant: &str, user: &str) -> Vec<u8> {
    let mut id = Vec::with_capacity(tenant.len() + 1 + user.len());
    id.extend_from_slice(tenant.as_bytes());
    id.push(0);
    id.extend_from_slice(user.as_bytes());
    id
}
