//! The two wrappings of K (`spec/vault.md` §3):
//! - the **envelope**: the client seals K under a key derived from the OPAQUE export_key,
//!   bound to the record id and version; the vault stores it and cannot open it;
//! - the **transport**: after KE3 verifies, the vault sends the envelope encrypted under a
//!   key derived from the session key, bound to the session id.

use super::randomness::VaultRng;
use super::VaultError;
use crate::ids::{RecordId, SessionId};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use hkdf::Hkdf;
use sha2::Sha512;
use zeroize::Zeroizing;

const INFO_ENVELOPE: &[u8] = b"coffer/v1 vault envelope key";
const INFO_TRANSPORT: &[u8] = b"coffer/v1 vault transport key";
const AAD_ENVELOPE: &[u8] = b"coffer/v1 envelope";
const AAD_TRANSPORT: &[u8] = b"coffer/v1 transport";

/// Envelope length: nonce, 32-byte K, tag.
pub const ENVELOPE_LEN: usize = NONCE_LEN + 32 + 16;

fn key(secret: &[u8], info: &[u8]) -> Result<LessSafeKey, VaultError> {
    let mut k = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha512>::new(None, secret)
        .expand(info, &mut k[..])
        .map_err(|e| VaultError::Internal(e.to_string()))?;
    let unbound = UnboundKey::new(&AES_256_GCM, &k[..])
        .map_err(|_| VaultError::Internal("AES key".into()))?;
    Ok(LessSafeKey::new(unbound))
}

fn seal(
    key: &LessSafeKey,
    aad: &[u8],
    plain: &[u8],
    rng: &mut dyn VaultRng,
) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.try_fill_bytes(&mut nonce)
        .map_err(|e| VaultError::Internal(format!("random generator: {e}")))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(plain);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| VaultError::Internal("seal".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let mut buf = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
    let n = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?
        .len();
    buf.truncate(n);
    Some(buf)
}

fn envelope_aad(record_id: &RecordId, version: u32) -> Vec<u8> {
    [
        AAD_ENVELOPE,
        record_id.as_bytes().as_slice(),
        &version.to_be_bytes(),
    ]
    .concat()
}

/// Seals K for the vault to store, with a nonce from `rng`.
pub fn seal_envelope(
    export_key: &[u8],
    record_id: &RecordId,
    version: u32,
    root: &[u8; 32],
    rng: &mut dyn VaultRng,
) -> Result<Vec<u8>, VaultError> {
    seal(
        &key(export_key, INFO_ENVELOPE)?,
        &envelope_aad(record_id, version),
        root,
        rng,
    )
}

/// Opens an envelope with the export key of a successful login.
pub fn open_envelope(
    export_key: &[u8],
    record_id: &RecordId,
    version: u32,
    envelope: &[u8],
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let plain = open(
        &key(export_key, INFO_ENVELOPE)?,
        &envelope_aad(record_id, version),
        envelope,
    )
    .ok_or_else(|| {
        VaultError::ServerAuth("the envelope does not open under this login's export key".into())
    })?;
    let mut k = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return Err(VaultError::ServerAuth(
            "the envelope holds no 32-byte key".into(),
        ));
    }
    k.copy_from_slice(&plain);
    Ok(k)
}

/// The vault wraps `record_id ‖ version ‖ envelope` for the client of session `session_id`.
pub fn seal_transport(
    session_key: &[u8],
    session_id: &SessionId,
    payload: &[u8],
    rng: &mut dyn VaultRng,
) -> Result<Vec<u8>, VaultError> {
    seal(
        &key(session_key, INFO_TRANSPORT)?,
        &[AAD_TRANSPORT, session_id.as_bytes().as_slice()].concat(),
        payload,
        rng,
    )
}

/// The client unwraps what [`seal_transport`] made.
pub fn open_transport(
    session_key: &[u8],
    session_id: &SessionId,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    open(
        &key(session_key, INFO_TRANSPORT)?,
        &[AAD_TRANSPORT, session_id.as_bytes().as_slice()].concat(),
        sealed,
    )
    .ok_or_else(|| {
        VaultError::ServerAuth(
            "the released envelope does not authenticate under the session key".into(),
        )
    })
}
