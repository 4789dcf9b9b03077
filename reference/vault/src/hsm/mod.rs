//! The HSM abstraction the vault seals its secrets with (`spec/vault.md` §7; the
//! PKCS#11 profile is `spec/hsm.md`). A backend holds one AES-256 master key
//! it never reveals and offers authenticated sealing with associated data. The PKCS#11
//! backend, its conformance checks and the key ceremony need the `pkcs11` feature.

#[cfg(feature = "pkcs11")]
pub mod ceremony;
#[cfg(feature = "pkcs11")]
pub mod check;
#[cfg(feature = "pkcs11")]
mod mechanisms;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod soft;
pub mod uri;

#[cfg(feature = "pkcs11")]
pub use mechanisms::Offered;
#[cfg(feature = "pkcs11")]
pub use pkcs11::{softhsm2_module, Export, KeyPolicy, Pkcs11Hsm, Token};
pub use soft::SoftHsm;
pub use uri::Pkcs11Config;

use crate::error::{Classify, ErrorClass};

/// Errors of an HSM backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// A sealed blob does not open under this key with this associated data.
    #[error("sealed data does not authenticate (wrong master key, wrong binding, or damaged)")]
    Unseal,
    /// The sealed blob is not of the sealed form at all.
    #[error("sealed data is malformed: {0}")]
    Malformed(String),
    /// The token or a key does not meet the profile, or the token refused an operation the
    /// profile forbids (e.g. wrapping the master key under an untrusted key).
    #[error("HSM policy: {0}")]
    Policy(String),
    /// The key material could not be created, read or used.
    #[error("HSM backend: {0}")]
    Backend(String),
}

impl Classify for HsmError {
    fn class(&self) -> ErrorClass {
        match self {
            HsmError::Unseal => ErrorClass::Corrupt,
            HsmError::Malformed(_) => ErrorClass::Malformed,
            HsmError::Policy(_) => ErrorClass::Unsupported,
            HsmError::Backend(_) => ErrorClass::Io,
        }
    }
}

/// Sealing under a master key that stays in the backend.
pub trait Hsm: Send + Sync {
    /// Encrypts and authenticates `plaintext`, binding `aad`. The result is self-contained.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// Opens what [`Hsm::seal`] made with the same `aad`.
    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, HsmError>;
    /// A short description for logs (backend and key reference, never key material).
    fn describe(&self) -> String;
}
