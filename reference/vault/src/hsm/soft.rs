//! The embedded software backend: the master key is a 32-byte file created with mode 0600.
//! It protects the store against a copy of the data directory that lacks the key file, and
//! nothing more (spec/vault.md §7).

use super::{Hsm, HsmError};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Format byte of sealed blobs: `01 ‖ nonce(12) ‖ ciphertext ‖ tag(16)`, AES-256-GCM.
const SEALED_V1: u8 = 1;

/// Software HSM: AES-256-GCM under a key kept in a file.
pub struct SoftHsm {
    key: LessSafeKey,
    path: PathBuf,
}

impl SoftHsm {
    /// Opens the key file, creating it (mode 0600, 32 random bytes) if it does not exist.
    pub fn open_or_create(path: &Path) -> Result<Self, HsmError> {
        let key = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut fresh = Zeroizing::new(vec![0u8; 32]);
                getrandom::fill(&mut fresh)
                    .map_err(|e| HsmError::Backend(format!("OS random: {e}")))?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode_0600()
                    .open(path)
                    .map_err(|e| {
                        HsmError::Backend(format!("cannot create {}: {e}", path.display()))
                    })?;
                file.write_all(&fresh)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| {
                        HsmError::Backend(format!("cannot write {}: {e}", path.display()))
                    })?;
                fresh
            }
            Err(e) => {
                return Err(HsmError::Backend(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        if key.len() != 32 {
            return Err(HsmError::Backend(format!(
                "{} must hold 32 bytes, not {}",
                path.display(),
                key.len()
            )));
        }
        Self::from_key(&key, path)
    }

    /// A backend over given key bytes (tests).
    pub fn from_key(key: &[u8], path: &Path) -> Result<Self, HsmError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| HsmError::Backend("AES-256-GCM key setup".into()))?;
        Ok(SoftHsm {
            key: LessSafeKey::new(unbound),
            path: path.to_owned(),
        })
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

impl Hsm for SoftHsm {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| HsmError::Backend(format!("OS random: {e}")))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + 16);
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[start..],
            )
            .map_err(|_| HsmError::Backend("seal failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != SEALED_V1 {
            return Err(HsmError::Malformed(format!(
                "{} bytes, not a sealed blob",
                sealed.len()
            )));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..1 + NONCE_LEN]);
        let mut buf = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| HsmError::Unseal)?
            .len();
        buf.truncate(plain);
        Ok(buf)
    }

    fn describe(&self) -> String {
        format!("soft (key file {})", self.path.display())
    }
}
