//! ristretto255 for the realms (`spec/realms.md` §1, §5): hashing to the group and to
//! scalars (RFC 9380 `expand_message_xmd` with SHA-512), strict decoding, and the
//! Chaum–Pedersen DLEQ proof that makes each realm's evaluation verifiable.

use super::RealmError;
use crate::vault::VaultRng;
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use sha2::{Digest, Sha512};

const DST_GROUP: &[u8] = b"coffer-realms-v1 HashToGroup";
const DST_SCALAR: &[u8] = b"coffer-realms-v1 HashToScalar";
const DLEQ_LABEL: &[u8] = b"coffer-realms-v1 DLEQ";

/// Length of an encoded element or scalar.
pub(crate) const LEN: usize = 32;
/// Length of a DLEQ proof: `c ‖ σ`.
pub(crate) const PROOF_LEN: usize = 64;

/// RFC 9380 §5.3.1 with SHA-512 (b = 64, r = 128), for `len ≤ 255 · 64`.
pub(crate) fn expand_message_xmd(msg: &[u8], dst: &[u8], len: usize) -> Vec<u8> {
    debug_assert!(dst.len() <= 255 && len <= 255 * 64 && len <= u16::MAX as usize);
    let ell = len.div_ceil(64);
    let dst_prime = [dst, &[dst.len() as u8]].concat();
    let b0 = Sha512::new()
        .chain_update([0u8; 128])
        .chain_update(msg)
        .chain_update((len as u16).to_be_bytes())
        .chain_update([0u8])
        .chain_update(&dst_prime)
        .finalize();
    let mut out = Vec::with_capacity(ell * 64);
    let mut previous = Sha512::new()
        .chain_update(b0)
        .chain_update([1u8])
        .chain_update(&dst_prime)
        .finalize();
    out.extend_from_slice(&previous);
    for i in 2..=ell {
        let mixed: Vec<u8> = b0.iter().zip(previous.iter()).map(|(a, b)| a ^ b).collect();
        previous = Sha512::new()
            .chain_update(mixed)
            .chain_update([i as u8])
            .chain_update(&dst_prime)
            .finalize();
        out.extend_from_slice(&previous);
    }
    out.truncate(len);
    out
}

fn wide(bytes: &[u8]) -> [u8; 64] {
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&bytes[..64]);
    wide
}

/// HashToGroup: an element of unknown discrete log.
pub(crate) fn hash_to_group(input: &[u8]) -> RistrettoPoint {
    RistrettoPoint::from_uniform_bytes(&wide(&expand_message_xmd(input, DST_GROUP, 64)))
}

/// HashToScalar.
pub(crate) fn hash_to_scalar(input: &[u8]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&wide(&expand_message_xmd(input, DST_SCALAR, 64)))
}

/// A uniformly random non-zero scalar (64 bytes drawn and reduced).
pub(crate) fn random_scalar(rng: &mut dyn VaultRng) -> Scalar {
    loop {
        let mut bytes = [0u8; 64];
        rng.fill_bytes(&mut bytes);
        let s = Scalar::from_bytes_mod_order_wide(&bytes);
        if s != Scalar::ZERO {
            return s;
        }
    }
}

/// The generator.
pub(crate) fn base() -> RistrettoPoint {
    RISTRETTO_BASEPOINT_POINT
}

/// A received element: canonical, and not the identity.
pub(crate) fn decode_point(bytes: &[u8], what: &str) -> Result<RistrettoPoint, RealmError> {
    let bytes: [u8; LEN] = bytes
        .try_into()
        .map_err(|_| RealmError::Malformed(format!("{what}: not 32 bytes")))?;
    let point = CompressedRistretto(bytes)
        .decompress()
        .ok_or_else(|| RealmError::Malformed(format!("{what}: not a ristretto255 element")))?;
    if point == RistrettoPoint::identity() {
        return Err(RealmError::Malformed(format!(
            "{what}: the identity element"
        )));
    }
    Ok(point)
}

/// A received scalar: canonical (below the group order).
pub(crate) fn decode_scalar(bytes: &[u8], what: &str) -> Result<Scalar, RealmError> {
    let bytes: [u8; LEN] = bytes
        .try_into()
        .map_err(|_| RealmError::Malformed(format!("{what}: not 32 bytes")))?;
    Option::from(Scalar::from_canonical_bytes(bytes))
        .ok_or_else(|| RealmError::Malformed(format!("{what}: not a canonical scalar")))
}

fn challenge(
    p: &RistrettoPoint,
    m: &RistrettoPoint,
    z: &RistrettoPoint,
    a1: &RistrettoPoint,
    a2: &RistrettoPoint,
) -> Scalar {
    let mut input = DLEQ_LABEL.to_vec();
    for point in [&base(), p, m, z, a1, a2] {
        input.extend_from_slice(point.compress().as_bytes());
    }
    hash_to_scalar(&input)
}

/// Proves `log_B(P) = log_M(Z)` for `P = k·B`, `Z = k·M`.
pub(crate) fn dleq_prove(
    k: &Scalar,
    p: &RistrettoPoint,
    m: &RistrettoPoint,
    z: &RistrettoPoint,
    rng: &mut dyn VaultRng,
) -> [u8; PROOF_LEN] {
    let rho = random_scalar(rng);
    let a1 = rho * base();
    let a2 = rho * m;
    let c = challenge(p, m, z, &a1, &a2);
    let sigma = rho - c * k;
    let mut proof = [0u8; PROOF_LEN];
    proof[..32].copy_from_slice(c.as_bytes());
    proof[32..].copy_from_slice(sigma.as_bytes());
    proof
}

/// Checks a proof from [`dleq_prove`].
pub(crate) fn dleq_verify(
    p: &RistrettoPoint,
    m: &RistrettoPoint,
    z: &RistrettoPoint,
    proof: &[u8],
) -> bool {
    if proof.len() != PROOF_LEN {
        return false;
    }
    let (Ok(c), Ok(sigma)) = (
        decode_scalar(&proof[..32], "proof"),
        decode_scalar(&proof[32..], "proof"),
    ) else {
        return false;
    };
    let a1 = sigma * base() + c * p;
    let a2 = sigma * m + c * z;
    challenge(p, m, z, &a1, &a2) == c
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn expand_message_xmd_matches_rfc_9380() {
        // RFC 9380 K.3, expand_message_xmd(SHA-512), DST "QUUX-V01-CS02-with-expander-SHA512-256".
        let dst = b"QUUX-V01-CS02-with-expander-SHA512-256";
        assert_eq!(
            hex::encode(expand_message_xmd(b"", dst, 0x20)),
            "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"
        );
        assert_eq!(
            hex::encode(expand_message_xmd(b"abc", dst, 0x20)),
            "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"
        );
        let long = expand_message_xmd(b"", dst, 0x80);
        assert_eq!(hex::encode(&long[..16]), "41b037d1734a5f8df225dd8c7de38f85");
    }

    #[test]
    fn honest_proofs_verify_and_every_lie_is_caught() {
        let mut rng = OsRng;
        let k = random_scalar(&mut rng);
        let p = k * base();
        let m = hash_to_group(b"access") * random_scalar(&mut rng);
        let z = k * m;
        let proof = dleq_prove(&k, &p, &m, &z, &mut rng);
        assert!(dleq_verify(&p, &m, &z, &proof));
        // Another key's evaluation, another element, a flipped proof byte, a short proof.
        let other = random_scalar(&mut rng) * m;
        assert!(!dleq_verify(&p, &m, &other, &proof));
        assert!(!dleq_verify(&p, &(m + base()), &z, &proof));
        for i in [0, 31, 32, 63] {
            let mut bad = proof;
            bad[i] ^= 1;
            assert!(!dleq_verify(&p, &m, &z, &bad), "byte {i}");
        }
        assert!(!dleq_verify(&p, &m, &z, &proof[..63]));
        // A proof made with the wrong key for a wrong evaluation.
        let k2 = random_scalar(&mut rng);
        let forged = dleq_prove(&k2, &p, &m, &(k2 * m), &mut rng);
        assert!(!dleq_verify(&p, &m, &(k2 * m), &forged));
    }

    #[test]
    fn decoding_refuses_identity_non_canonical_and_short() {
        assert!(decode_point(&[0u8; 32], "x").is_err(), "identity");
        assert!(decode_point(&[0xffu8; 32], "x").is_err());
        assert!(decode_point(&[1u8; 31], "x").is_err());
        assert!(
            decode_scalar(&[0xffu8; 32], "x").is_err(),
            "above the order"
        );
        let g = base().compress();
        assert_eq!(decode_point(g.as_bytes(), "x").unwrap(), base());
    }
}
