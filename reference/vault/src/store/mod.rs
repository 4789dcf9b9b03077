//! Vault storage (`spec/vault.md` §6): records, guess counters, the sealed server setup and
//! the append-only audit log. Every method is one durable transaction: when it returns, its
//! effect (and its audit event) is on disk. Every row, the log and the store's head are
//! tamper-evident under the vault's state key ([`integrity`], §6.2).

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_rpc;
pub mod integrity;
pub(crate) mod sqlite;
mod transitions;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdStore};
pub use sqlite::SqliteStore;

use crate::error::{Classify, ErrorClass};
use crate::ids::RecordId;
use integrity::{Integrity, StoreSummary};
use std::sync::Arc;

/// Errors of a store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed (I/O, corruption, lock timeout).
    #[error("store: {0}")]
    Database(String),
    /// An active record already exists for this user.
    #[error("an active record already exists for this user")]
    Exists,
    /// A registration names a record id that an existing record (any user's) has.
    #[error("the record id names an existing record")]
    IdTaken,
    /// The store was changed outside the vault, or rolled back (`spec/vault.md` §6.2).
    #[error("the store was tampered with: {0}")]
    Tampered(String),
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Database(_) => ErrorClass::Io,
            StoreError::Exists | StoreError::IdTaken => ErrorClass::Unauthorized,
            StoreError::Tampered(_) => ErrorClass::Corrupt,
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
    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
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
///
/// Until [`Store::bind`] has checked the store under a vault's state key, every method but
/// the server setup's fails: an unchecked store is never used.
pub trait Store: Send + Sync {
    /// Checks the whole store under `integrity` (every row, the sum of their tags, the audit
    /// chain; a store with no records and no head gets its first head) and from then on
    /// checks every row read and tags every row written with it.
    fn bind(&self, integrity: Arc<Integrity>) -> Result<StoreSummary, StoreError>;
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
    /// A verified recovery: guesses back to 0 (only if the user's active record is still
    /// this record id at this version). Returns whether it applied. The caller names the
    /// user it read at KE1, so a store finds the record without looking up its id.
    fn recovered(
        &self,
        tenant: &str,
        user: &str,
        record_id: &RecordId,
        version: u32,
    ) -> Result<bool, StoreError>;
    /// A failed KE3: destroys the user's active record if it is still `record_id` and has
    /// used all its guesses. Returns whether it did.
    fn failed_at_limit(
        &self,
        tenant: &str,
        user: &str,
        record_id: &RecordId,
    ) -> Result<bool, StoreError>;
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
    /// How many calls beyond the vault's CPU workers this store serves well at once. A
    /// store whose calls wait on the network (etcd) gains from many in flight: their waits
    /// overlap, and its group commits grow. An embedded store (SQLite) gains nothing: 0.
    fn calls_waiting_on_network(&self) -> usize;
    /// From now on, tells `observer` of every group commit (`spec/vault.md` §6.1). A store
    /// that replaces an earlier observer keeps the first.
    fn observe_group_commits(&self, observer: Arc<dyn GroupCommitObserver>);
}

/// Told of every group commit (`spec/vault.md` §6.1), for the operator's metrics (§9.2).
pub trait GroupCommitObserver: Send + Sync {
    /// One group commit answered `changes` queued changes, after `retries` attempts that
    /// did not commit (another node changed the shard first, or an answer was lost).
    fn group_committed(&self, changes: usize, retries: usize);
}

/// A store's observer of its group commits, once one is set.
#[derive(Default)]
pub(crate) struct GroupCommitReports(std::sync::OnceLock<Arc<dyn GroupCommitObserver>>);

impl GroupCommitReports {
    pub(crate) fn set(&self, observer: Arc<dyn GroupCommitObserver>) {
        let _ = self.0.set(observer);
    }

    pub(crate) fn report(&self, changes: usize, retries: usize) {
        if let Some(observer) = self.0.get() {
            observer.group_committed(changes, retries);
        }
    }
}

/// One audit log entry, as the store keeps it and `GET /v1/audit` shows it. It never holds
/// a secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// The audit chain (the store head's shard) it belongs to (`spec/vault.md` §6.2).
    pub chain: u32,
    /// The store epoch of the write that logged it (`spec/vault.md` §6.2).
    pub epoch: u64,
    /// Hex of the hash of the event before it in the whole log (zeros before the first).
    pub previous: String,
    /// Hex of `SHA-256(domain ‖ previous ‖ this event)`: the chain.
    pub hash: String,
}

impl AuditEvent {
    /// The fields its chain hash covers.
    pub fn fields(&self) -> integrity::EventFields<'_> {
        integrity::EventFields {
            at: self.at,
            tenant: &self.tenant,
            user: &self.user,
            record: &self.record,
            event: &self.event,
            detail: &self.detail,
        }
    }

    /// Whether `hash` is this event's hash chained after `previous` (`spec/vault.md`
    /// §6.2): a check that needs no key.
    pub fn chains(&self) -> bool {
        let mut previous = [0u8; 32];
        if hex::decode_to_slice(&self.previous, &mut previous).is_err() {
            return false;
        }
        let hash = integrity::audit_hash(&previous, self.chain, self.epoch, &self.fields());
        hex::encode(hash) == self.hash
    }
}

/// The integrity a store was bound with, or the error every unbound store gives.
pub(crate) fn bound(cell: &std::sync::OnceLock<Arc<Integrity>>) -> Result<&Integrity, StoreError> {
    cell.get().map(|i| &**i).ok_or_else(|| {
        StoreError::Database("the store is not bound to a vault's state key yet".into())
    })
}

/// The behaviour every [`Store`] owes the vault (`spec/vault.md` §4, §6), checked on a fresh
/// store by each backend's unit tests.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    fn record(user: &str, byte: u8, limit: u32) -> Record {
        Record {
            record_id: RecordId::from_bytes([byte; 16]),
            tenant: "t".into(),
            user: user.into(),
            version: 1,
            state: RecordState::Active,
            guesses: 0,
            limit,
            ksf: "argon2id:m=256,t=1,p=1".into(),
            sealed: Some(vec![byte; 40]),
        }
    }

    /// Runs every check on `store`, which must be empty.
    pub(crate) fn check(store: &dyn Store) {
        store
            .bind(Arc::new(Integrity::new([7; 32])))
            .expect("an empty store binds");
        setup_is_saved_once(store);
        one_active_record_per_user(store);
        a_record_id_is_never_taken_over(store);
        guesses_count_to_the_limit_then_destroy(store);
        a_recovery_resets_only_its_own_version(store);
        replace_and_delete(store);
        the_audit_log_names_every_step_and_no_secret(store);
    }

    fn setup_is_saved_once(store: &dyn Store) {
        assert_eq!(store.server_setup().unwrap(), None);
        assert_eq!(store.init_server_setup(b"first").unwrap(), b"first");
        assert_eq!(store.init_server_setup(b"second").unwrap(), b"first");
        assert_eq!(
            store.server_setup().unwrap().as_deref(),
            Some(&b"first"[..])
        );
    }

    /// A registration whose record id another record has (the client sends the id back at
    /// register/finish, so it chooses it) is refused and changes nothing: not the other
    /// record, whatever its user, tenant or state, and not the registering user.
    fn a_record_id_is_never_taken_over(store: &dyn Store) {
        store.insert(&record("owner", 0x61, 5)).unwrap();
        let mut taker = record("taker", 0x61, 100);
        taker.tenant = "other tenant".into();
        assert!(matches!(store.insert(&taker), Err(StoreError::IdTaken)));
        taker.tenant = "t".into();
        assert!(matches!(store.insert(&taker), Err(StoreError::IdTaken)));
        assert_eq!(
            store.latest("t", "owner").unwrap(),
            Some(record("owner", 0x61, 5))
        );
        assert_eq!(store.latest("t", "taker").unwrap(), None);
        assert_eq!(store.latest("other tenant", "taker").unwrap(), None);
        // Ended records keep their ids too.
        assert!(store.delete("t", "owner").unwrap());
        assert!(matches!(store.insert(&taker), Err(StoreError::IdTaken)));
    }

    fn one_active_record_per_user(store: &dyn Store) {
        store.insert(&record("alice", 1, 3)).unwrap();
        assert!(matches!(
            store.insert(&record("alice", 2, 3)),
            Err(StoreError::Exists)
        ));
        assert_eq!(
            store.latest("t", "alice").unwrap(),
            Some(record("alice", 1, 3))
        );
        assert_eq!(store.latest("t", "nobody").unwrap(), None);
        assert_eq!(store.latest("other-tenant", "alice").unwrap(), None);
    }

    fn guesses_count_to_the_limit_then_destroy(store: &dyn Store) {
        store.insert(&record("bob", 3, 2)).unwrap();
        for expected in 1..=2 {
            match store.count_guess("t", "bob").unwrap() {
                GuessOutcome::Counted(r) => assert_eq!(r.guesses, expected),
                other => panic!("guess {expected}: {other:?}"),
            }
        }
        // The limit is used up; a KE3 that fails now destroys the record.
        let id = RecordId::from_bytes([3; 16]);
        assert!(store.failed_at_limit("t", "bob", &id).unwrap());
        let gone = store.latest("t", "bob").unwrap().unwrap();
        assert_eq!(gone.state, RecordState::Destroyed);
        assert_eq!(gone.sealed, None, "destroyed records keep no secrets");
        assert_eq!(store.count_guess("t", "bob").unwrap(), GuessOutcome::Absent);
        assert!(
            !store.recovered("t", "bob", &id, 1).unwrap(),
            "nothing revives a destroyed record"
        );

        // Counting past the limit destroys without a KE3.
        store.insert(&record("bob2", 4, 1)).unwrap();
        assert!(matches!(
            store.count_guess("t", "bob2").unwrap(),
            GuessOutcome::Counted(_)
        ));
        assert_eq!(
            store.count_guess("t", "bob2").unwrap(),
            GuessOutcome::Destroyed
        );
        assert_eq!(
            store.count_guess("t", "nobody").unwrap(),
            GuessOutcome::Absent
        );
    }

    fn a_recovery_resets_only_its_own_version(store: &dyn Store) {
        store.insert(&record("carol", 5, 5)).unwrap();
        store.count_guess("t", "carol").unwrap();
        store.count_guess("t", "carol").unwrap();
        let id = RecordId::from_bytes([5; 16]);
        assert!(
            !store.recovered("t", "carol", &id, 2).unwrap(),
            "a stale version resets nothing"
        );
        assert_eq!(store.latest("t", "carol").unwrap().unwrap().guesses, 2);
        assert!(
            !store.recovered("t", "bob", &id, 1).unwrap(),
            "another user's record is not reset"
        );
        assert!(store.recovered("t", "carol", &id, 1).unwrap());
        assert_eq!(store.latest("t", "carol").unwrap().unwrap().guesses, 0);
        assert!(
            !store.failed_at_limit("t", "carol", &id).unwrap(),
            "below the limit nothing is destroyed"
        );
    }

    fn replace_and_delete(store: &dyn Store) {
        store.insert(&record("dave", 6, 5)).unwrap();
        let id = RecordId::from_bytes([6; 16]);
        assert!(
            !store.replace(&id, 2, b"new").unwrap(),
            "the version must match"
        );
        assert!(store.replace(&id, 1, b"new").unwrap());
        let now = store.latest("t", "dave").unwrap().unwrap();
        assert_eq!((now.version, now.sealed.as_deref()), (2, Some(&b"new"[..])));
        assert!(
            !store.replace(&id, 1, b"again").unwrap(),
            "a replaced version is stale"
        );
        assert!(store.delete("t", "dave").unwrap());
        assert!(!store.delete("t", "dave").unwrap());
        let deleted = store.latest("t", "dave").unwrap().unwrap();
        assert_eq!(
            (deleted.state, deleted.sealed),
            (RecordState::Deleted, None)
        );
        // A deleted user may register again.
        store.insert(&record("dave", 7, 5)).unwrap();
    }

    fn the_audit_log_names_every_step_and_no_secret(store: &dyn Store) {
        let events = store.audit(0, 1000).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        for kind in [
            "registered",
            "guess",
            "destroyed",
            "recovered",
            "password_changed",
            "deleted",
        ] {
            assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
        }
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "seq grows");
        // Each chain (a shard of the store) grows in epoch and links each event to the one
        // before it, which anyone can check with no key.
        let mut previous: std::collections::HashMap<u32, ([u8; 32], u64)> = Default::default();
        for e in &events {
            let (hash, epoch) = previous.entry(e.chain).or_insert(([0u8; 32], 0));
            assert!(*epoch <= e.epoch, "epochs grow in chain {}", e.chain);
            assert_eq!(hex::encode(*hash), e.previous);
            *hash = integrity::audit_hash(hash, e.chain, e.epoch, &e.fields());
            *epoch = e.epoch;
            assert_eq!(hex::encode(*hash), e.hash, "the chain, checked with no key");
        }
        let later = store.audit(events[2].seq, 1000).unwrap();
        assert_eq!(later.len(), events.len() - 3);
        for event in &events {
            let text = format!("{event:?}");
            for byte in 1..=7u8 {
                assert!(
                    !text.contains(&hex::encode([byte; 40])),
                    "a sealed blob in the audit log: {text}"
                );
            }
        }
    }
}
