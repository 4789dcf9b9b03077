//! Threshold recovery of K across independent realms (`spec/realms.md`): a `t`-of-`n`
//! OPRF over ristretto255 with verifiable evaluations, so that no single vault, its host
//! or its operator can test a password guess offline.
//!
//! - [`register`]: the client splits a registration over a [`RealmSet`], one
//!   [`RealmShare`] per realm.
//! - [`Recovery`]: the client's two phases (evaluate, unlock), naming every realm that
//!   answers wrongly.
//! - [`Realm`]: one realm's side over a [`RealmStore`], counting every evaluation before it
//!   answers.
//!
//! Transport-free, like [`crate::vault`]: the messages are byte structures the HTTP layer
//! carries.

mod client;
#[cfg(feature = "etcd")]
mod etcd_store;
mod group;
mod public;
mod realm;
mod shamir;
mod store;

pub use client::{
    register, EvalAnswer, RealmSet, RealmShare, Recovery, UnlockRequest, Unlocking, MAX_REALMS,
};
pub use public::{PublicPart, REG_ID_LEN};
pub use realm::{Realm, RealmConfig, RealmStatus};

#[cfg(feature = "etcd")]
pub use etcd_store::EtcdRealmStore;
pub use store::{RealmGuess, RealmRecord, RealmStore, SqliteRealmStore};

use crate::error::{Classify, ErrorClass};

/// The hash functions of `spec/realms.md` §1, encoded, for the vectors; and a release as a
/// realm seals it, for the conformance runner's hostile realms.
pub(crate) mod hashes {
    /// `HashToGroup(input)`, encoded.
    pub fn to_group(input: &[u8]) -> [u8; 32] {
        super::group::hash_to_group(input).compress().to_bytes()
    }

    /// `HashToScalar(input)`, encoded.
    pub fn to_scalar(input: &[u8]) -> [u8; 32] {
        super::group::hash_to_scalar(input).to_bytes()
    }

    /// A phase-2 release of `share` for `session`, sealed to `tag` as an honest realm seals
    /// it (§6.2): what a hostile realm in the conformance runner sends with a wrong share.
    pub fn release(tag: &[u8; 32], session: &[u8; 16], share: &[u8; 32]) -> Vec<u8> {
        let key = super::client::release_key(tag, session);
        super::client::seal(
            &key,
            &super::client::release_aad(session),
            share,
            &mut rand_core::OsRng,
        )
        .expect("AES-256-GCM sealing with a 32-byte key")
    }
}

/// Errors of the realm protocol, each with its class (`spec/realms.md` §11).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RealmError {
    /// A malformed message, element, scalar or public part.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Parameters out of bounds.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The password is wrong (the realms have counted the guess).
    #[error("wrong password")]
    WrongPassword,
    /// No registration: every realm answered for an unknown user.
    #[error("no registration for this user on these realms")]
    NoRecord,
    /// Not enough realms hold a usable registration (destroyed, replaced, or answering
    /// wrongly); the message names them.
    #[error("locked: {0}")]
    Locked(String),
    /// The caller may not do this (a deletion without a valid grant).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The realm's tables of open sessions or grants are full for this tenant (or for the
    /// realm): nothing was counted; retry in `retry_after` seconds.
    #[error("rate limited: {message}")]
    Busy {
        /// What is full.
        message: String,
        /// Seconds until an entry expires.
        retry_after: u64,
    },
    /// Fewer than `t` realms answered at all; the message names the silent ones.
    #[error("not enough realms answered: {0}")]
    Unavailable(String),
    /// The realm's store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The realm's HSM failed.
    #[error(transparent)]
    Hsm(#[from] crate::hsm::HsmError),
    /// A bug or an environment failure (random generator, key derivation).
    #[error("internal error: {0}")]
    Internal(String),
}

/// A failed registration or recovery, with every realm that failed on the way, named with
/// what went wrong there (`spec/realms.md` §2 goal 5: a realm that answers wrongly is named).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RealmsFailure {
    /// Why it failed, with its class.
    pub error: RealmError,
    /// The realms that did not answer or answered wrongly, with why (may be empty).
    pub realms: Vec<(String, String)>,
}

impl RealmsFailure {
    /// `error`, naming `realms`.
    pub fn naming(error: RealmError, realms: Vec<(String, String)>) -> Self {
        RealmsFailure { error, realms }
    }
}

impl From<RealmError> for RealmsFailure {
    fn from(error: RealmError) -> Self {
        RealmsFailure {
            error,
            realms: Vec::new(),
        }
    }
}

impl Classify for RealmsFailure {
    fn class(&self) -> ErrorClass {
        self.error.class()
    }
}

impl Classify for RealmError {
    fn class(&self) -> ErrorClass {
        match self {
            RealmError::Malformed(_) => ErrorClass::Malformed,
            RealmError::Unsupported(_) => ErrorClass::Unsupported,
            RealmError::WrongPassword => ErrorClass::WrongPassword,
            RealmError::NoRecord => ErrorClass::NoRecord,
            RealmError::Locked(_) => ErrorClass::Locked,
            RealmError::Unauthorized(_) => ErrorClass::Unauthorized,
            RealmError::Busy { .. } => ErrorClass::RateLimited,
            RealmError::Unavailable(_) | RealmError::Internal(_) => ErrorClass::Io,
            RealmError::Store(e) => e.class(),
            RealmError::Hsm(e) => e.class(),
        }
    }
}
#[cfg(test)]
mod tests;
