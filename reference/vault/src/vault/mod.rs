//! The key vault (`spec/vault.md`): OPAQUE (RFC 9807, `opaque-ke` 4.0.1) registration and
//! recovery of a root key K behind a password, with a durable guess limit. Transport-free:
//! the clients ([`RegistrationClient`], [`RecoveryClient`]) and the [`VaultServer`] exchange byte
//! messages; the HTTP layer carries them.

mod client;
pub(crate) mod envelope;
mod hsm_watch;
pub(crate) mod randomness;
pub(crate) mod server;
pub(crate) mod suite;

pub use crate::ids::{RecordId, SessionId};
pub use client::{
    LoginDone, Parties, RecoveryClient, RegistrationClient, MAX_CLIENT_KSF_KIB, SERVER_KEY_LEN,
};
pub use randomness::VaultRng;
pub use server::{
    RecoverStart, RegisterStart, ServerConfig, Status, VaultServer, PASSWORD_FILE_LEN,
};
pub use suite::{credential_id, KsfFloor, KsfParams, Suite, CONTEXT};

use crate::error::{Classify, ErrorClass};

/// Errors of the vault, client or server side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The password is wrong (or, indistinguishably, there is no such record).
    #[error("wrong password, or no such record")]
    WrongPassword,
    /// No record (never registered, deleted, or destroyed).
    #[error("no record for this user")]
    NoRecord,
    /// The record was destroyed during this recovery (its last guess was used).
    #[error("the record is locked: its guesses are used up")]
    Locked,
    /// The server's response does not authenticate (wrong server, tampered or replayed).
    #[error("the vault server failed to authenticate: {0}")]
    ServerAuth(String),
    /// Not allowed (unknown session, change without recovery, record exists).
    #[error("not allowed: {0}")]
    Unauthorized(String),
    /// A message is not of the expected form.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A parameter this implementation does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The HSM failed.
    #[error(transparent)]
    Hsm(#[from] crate::hsm::HsmError),
    /// An error the vault server answered with (client side).
    #[error("{message}")]
    Remote {
        /// The class the server named.
        class: ErrorClass,
        /// Its message.
        message: String,
    },
    /// The open sessions are at their cap, for the tenant or for the server: nothing was
    /// counted; retry in `retry_after` seconds.
    #[error("rate limited: {message}")]
    Busy {
        /// What is full.
        message: String,
        /// Seconds until a session expires.
        retry_after: u64,
    },
    /// Randomness or a primitive failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl Classify for VaultError {
    fn class(&self) -> ErrorClass {
        match self {
            VaultError::WrongPassword => ErrorClass::WrongPassword,
            VaultError::NoRecord => ErrorClass::NoRecord,
            VaultError::Locked => ErrorClass::Locked,
            VaultError::ServerAuth(_) => ErrorClass::ServerAuthFailed,
            VaultError::Unauthorized(_) => ErrorClass::Unauthorized,
            VaultError::Malformed(_) => ErrorClass::Malformed,
            VaultError::Unsupported(_) => ErrorClass::Unsupported,
            VaultError::Store(e) => e.class(),
            VaultError::Hsm(e) => e.class(),
            VaultError::Internal(_) => ErrorClass::Io,
            VaultError::Busy { .. } => ErrorClass::RateLimited,
            VaultError::Remote { class, .. } => *class,
        }
    }
}

impl From<opaque_ke::errors::ProtocolError> for VaultError {
    fn from(e: opaque_ke::errors::ProtocolError) -> Self {
        use opaque_ke::errors::ProtocolError as P;
        match e {
            P::InvalidLoginError => VaultError::WrongPassword,
            P::SerializationError | P::SizeError { .. } => VaultError::Malformed(e.to_string()),
            P::ReflectedValueError => {
                VaultError::ServerAuth("the server reflected the blinded element".into())
            }
            other => VaultError::Internal(other.to_string()),
        }
    }
}
