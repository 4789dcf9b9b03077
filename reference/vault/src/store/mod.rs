//! Vault storage (`spec/vault.md` §6): records, guess counters, the sealed server setup and
//! the append-only audit log. Every method is one durable transaction: when it returns, its
//! effect (and its audit event) is on disk.

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_rpc;
mod sqlite;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdStore};
pub use sqlite::SqliteStore;

use crate::error::{Classify, ErrorClass};
use crate::ids::RecordId;

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed (I/O, corruption, lock timeout).
    #[error("store: {0}")]
    Database(String),
    /// An active record already exists for this user.
    #[error("an active record already exists for this user")]
    Exists,
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Database(_) => ErrorClass::Io,
            StoreError::Exists => ErrorClass::Unauthorized,
        }
    }
}

/// Lifecycle state of a record (`spec/vault.md` §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Registered and usable.
    Active,
    /// Destroyed at the guess limit; its secrets are gone.
    Destroyed,
    /// Deleted by its holder; its secrets are gone.
    Deleted,
}

impl RecordState {
    fn as_str(self) -> &'static str {
        match self {
            RecordState::Active => "active",
            RecordState::Destroyed => "destroyed",
            RecordState::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(RecordState::Active),
            "destroyed" => Some(RecordState::Destroyed),
            "deleted" => Some(RecordState::Deleted),
            _ => None,
        }
    }
}

/// One record as stored. `sealed` holds the OPAQUE password file and the client's envelope,
/// sealed by the HSM; it is `None` once the record is destroyed or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Random record id.
    pub record_id: RecordId,
    /// Tenant name.
    pub tenant: String,
    /// User id within the tenant.
    pub user: String,
    /// Starts at 1; a password change increments it.
    pub version: u32,
    /// Lifecycle state.
    pub state: RecordState,
    /// Guesses counted since the last successful recovery.
    pub guesses: u32,
    /// Guesses allowed before destruction.
    pub limit: u32,
    /// The KSF parameters the record was registered with, e.g. `argon2id:m=65536,t=3,p=1`.
    pub ksf: String,
    /// Sealed secrets.
    pub sealed: Option<Vec<u8>>,
}

/// What counting a guess did (`spec/vault.md` §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuessOutcome {
    /// Counted; the record after the increment.
    Counted(Record),
    /// The record had used all its guesses and is now destroyed.
    Destroyed,
    /// No active record for this user.
    Absent,
}

/// Storage for the vault. Implementations must make each call atomic and durable, and must
/// serialise concurrent guesses on one record so that the limit holds.
pub trait Store: Send + Sync {
    /// The sealed `ServerSetup`, if one was saved.
    fn server_setup(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Saves the sealed `ServerSetup` unless one exists; returns the one that is stored.
    fn init_server_setup(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Adds an active record (fails with `Exists` if the user has one).
    fn insert(&self, record: &Record) -> Result<(), StoreError>;
    /// The user's active record, or else the most recent one.
    fn latest(&self, tenant: &str, user: &str) -> Result<Option<Record>, StoreError>;
    /// Counts one guess against the user's active record, or destroys it at the limit.
    fn count_guess(&self, tenant: &str, user: &str) -> Result<GuessOutcome, StoreError>;
    /// A verified recovery: guesses back to 0 (only for this record id and version, if still
    /// active). Returns whether it applied.
    fn recovered(&self, record_id: &RecordId, version: u32) -> Result<bool, StoreError>;
    /// A failed KE3: destroys the record if it has used all its guesses. Returns whether it did.
    fn failed_at_limit(&self, record_id: &RecordId) -> Result<bool, StoreError>;
    /// Replaces the sealed secrets after a password change (version must match; becomes +1).
    fn replace(
        &self,
        record_id: &RecordId,
        version: u32,
        sealed: &[u8],
    ) -> Result<bool, StoreError>;
    /// Deletes the user's active record. Returns whether there was one.
    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError>;
    /// The audit log from `after` (exclusive), oldest first.
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;
}

/// One audit log entry. It never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEvent {
    /// Position in the log.
    pub seq: u64,
    /// Unix seconds.
    pub at: u64,
    /// Tenant.
    pub tenant: String,
    /// User id.
    pub user: String,
    /// Record id, hex.
    pub record: String,
    /// `registered`, `guess`, `recovered`, `locked`, `destroyed`, `deleted`, `password_changed`.
    pub event: String,
    /// Non-secret detail (e.g. `guesses=3/10`).
    pub detail: String,
}
