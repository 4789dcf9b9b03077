//! A realm's records in etcd (`spec/realms.md` §3.2, §4 step 2): several nodes of one realm
//! share one count per user, as the vault's nodes do ([`crate::store::EtcdStore`]). Every
//! change is a compare-and-swap on the user key's `mod_revision`, retried when another node
//! changed it first.
//!
//! Keys, under the store's prefix: `realm/user/<tenant hex>/<user hex>` (the user's record,
//! JSON, kept as a tombstone once destroyed or deleted) and `realm/fake_seed`.
//!
//! A commit whose answer is lost (a member died between committing and answering) may or
//! may not have happened. So that it is never applied twice, each attempt writes its own
//! operation id into the record, which keeps the last [`RECENT_OPS`] of them: a retry that
//! finds its id knows that attempt committed, and returns what that attempt decided.

use super::public::REG_ID_LEN;
use super::store::{RealmGuess, RealmRecord, RealmStore};
use crate::store::{EtcdStore, RecordState, StoreError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// How many operation ids a record keeps: more than the writes another node can make to one
/// user's record while this node retries one lost answer (one deadline).
const RECENT_OPS: usize = 32;

/// A realm's records in an etcd cluster.
pub struct EtcdRealmStore {
    etcd: EtcdStore,
}

/// A record as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    tenant: String,
    user: String,
    reg_id: String,
    public: String,
    index: u8,
    sealed: Option<String>,
    guesses: u32,
    limit: u32,
    state: RecordState,
    /// The ids of the last operations that wrote this record.
    ops: Vec<String>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Database(format!("etcd realm record: bad {what}"))
}

impl Stored {
    fn of(r: &RealmRecord, ops: Vec<String>) -> Self {
        Stored {
            tenant: r.tenant.clone(),
            user: r.user.clone(),
            reg_id: hex::encode(r.reg_id),
            public: B64.encode(&r.public),
            index: r.index,
            sealed: r.sealed.as_ref().map(|s| B64.encode(s)),
            guesses: r.guesses,
            limit: r.limit,
            state: r.state,
            ops,
        }
    }

    fn record(&self) -> Result<RealmRecord, StoreError> {
        let reg_id: [u8; REG_ID_LEN] = hex::decode(&self.reg_id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| corrupt("reg_id"))?;
        let sealed = match &self.sealed {
            Some(s) => Some(B64.decode(s).map_err(|_| corrupt("sealed"))?),
            None => None,
        };
        Ok(RealmRecord {
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            reg_id,
            public: B64.decode(&self.public).map_err(|_| corrupt("public"))?,
            index: self.index,
            sealed,
            guesses: self.guesses,
            limit: self.limit,
            state: self.state,
        })
    }
}

/// What an update decided, given the current record.
enum Change<T> {
    /// Nothing to write.
    Done(T),
    /// Write this record, then return `T`.
    Write(RealmRecord, T),
}

fn user_key(tenant: &str, user: &str) -> String {
    format!("realm/user/{}/{}", hex::encode(tenant), hex::encode(user))
}

fn op_id() -> Result<String, StoreError> {
    let mut unique = [0u8; 12];
    getrandom::fill(&mut unique).map_err(|e| StoreError::Database(e.to_string()))?;
    Ok(hex::encode(unique))
}

impl EtcdRealmStore {
    /// A realm store on `etcd` (its prefix should be the realm's own).
    pub fn new(etcd: EtcdStore) -> Self {
        EtcdRealmStore { etcd }
    }

    /// The underlying connection (tests lose answers through it).
    pub fn etcd(&self) -> &EtcdStore {
        &self.etcd
    }

    fn read(
        &self,
        key: &str,
        until: std::time::Instant,
    ) -> Result<(Option<Stored>, i64), StoreError> {
        match self.etcd.value_at(key, until)? {
            None => Ok((None, 0)),
            Some((value, revision)) => {
                let stored: Stored = serde_json::from_slice(&value).map_err(|_| corrupt("JSON"))?;
                Ok((Some(stored), revision))
            }
        }
    }

    /// Reads, decides and swaps until a swap commits, within one deadline; an attempt whose
    /// answer was lost is recognised by its id in the record, and never applied twice.
    fn update<T: Clone>(
        &self,
        tenant: &str,
        user: &str,
        decide: impl Fn(Option<RealmRecord>) -> Result<Change<T>, StoreError>,
    ) -> Result<T, StoreError> {
        let key = user_key(tenant, user);
        let until = self.etcd.deadline_from_now();
        let op = op_id()?;
        let mut attempts: Vec<T> = Vec::new();
        loop {
            let (stored, revision) = self.read(&key, until)?;
            let ops = stored.as_ref().map(|s| s.ops.clone()).unwrap_or_default();
            if let Some(out) = attempts
                .iter()
                .enumerate()
                .find(|(n, _)| ops.contains(&format!("{op}-{n}")))
                .map(|(_, out)| out.clone())
            {
                // A write whose answer was lost committed: compact, in case it dropped
                // secrets (this path is rare).
                self.etcd.erase_history();
                return Ok(out);
            }
            let current = stored.as_ref().map(Stored::record).transpose()?;
            let held = current.as_ref().and_then(|r| r.sealed.clone());
            match decide(current)? {
                Change::Done(out) => return Ok(out),
                Change::Write(record, out) => {
                    // Shares this write drops (destroyed, deleted, replaced) stay in the
                    // key's history until it is compacted.
                    let drops = held.is_some() && held != record.sealed;
                    let mut ops = ops;
                    ops.push(format!("{op}-{}", attempts.len()));
                    let excess = ops.len().saturating_sub(RECENT_OPS);
                    ops.drain(..excess);
                    let value = serde_json::to_vec(&Stored::of(&record, ops))
                        .map_err(|e| StoreError::Database(e.to_string()))?;
                    attempts.push(out.clone());
                    match self.etcd.swap_value(&key, revision, value, until)? {
                        Some(true) => {
                            if drops {
                                self.etcd.erase_history();
                            }
                            return Ok(out);
                        }
                        Some(false) => {}
                        None => self.etcd.pause_before_retry(),
                    }
                }
            }
            if std::time::Instant::now() > until {
                return Err(StoreError::Database(
                    "no commit within the deadline (contention or no quorum)".into(),
                ));
            }
        }
    }
}

fn ended(r: RealmRecord, state: RecordState) -> RealmRecord {
    RealmRecord {
        state,
        sealed: None,
        ..r
    }
}

impl RealmStore for EtcdRealmStore {
    fn put(&self, record: &RealmRecord) -> Result<(), StoreError> {
        self.update(&record.tenant, &record.user, |_| {
            Ok(Change::Write(record.clone(), ()))
        })
    }

    fn get(&self, tenant: &str, user: &str) -> Result<Option<RealmRecord>, StoreError> {
        let (stored, _) = self.read(&user_key(tenant, user), self.etcd.deadline_from_now())?;
        stored.as_ref().map(Stored::record).transpose()
    }

    fn count_guess(&self, tenant: &str, user: &str) -> Result<RealmGuess, StoreError> {
        self.update(tenant, user, |current| {
            Ok(match current {
                Some(r) if r.state == RecordState::Active => {
                    if r.guesses >= r.limit {
                        Change::Write(ended(r, RecordState::Destroyed), RealmGuess::Destroyed)
                    } else {
                        let counted = RealmRecord {
                            guesses: r.guesses + 1,
                            ..r
                        };
                        Change::Write(counted.clone(), RealmGuess::Counted(counted))
                    }
                }
                _ => Change::Done(RealmGuess::Absent),
            })
        })
    }

    fn reset(
        &self,
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<bool, StoreError> {
        self.update(tenant, user, |current| {
            Ok(match current {
                Some(r) if r.state == RecordState::Active && r.reg_id == *reg_id => {
                    Change::Write(RealmRecord { guesses: 0, ..r }, true)
                }
                _ => Change::Done(false),
            })
        })
    }

    fn destroy_if_spent(
        &self,
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<bool, StoreError> {
        self.update(tenant, user, |current| {
            Ok(match current {
                Some(r)
                    if r.state == RecordState::Active
                        && r.reg_id == *reg_id
                        && r.guesses >= r.limit =>
                {
                    Change::Write(ended(r, RecordState::Destroyed), true)
                }
                _ => Change::Done(false),
            })
        })
    }

    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        self.update(tenant, user, |current| {
            Ok(match current {
                Some(r) if r.state == RecordState::Active => {
                    Change::Write(ended(r, RecordState::Deleted), true)
                }
                _ => Change::Done(false),
            })
        })
    }

    fn init_fake_seed(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        const KEY: &str = "realm/fake_seed";
        let until = self.etcd.deadline_from_now();
        loop {
            if let Some((value, _)) = self.etcd.value_at(KEY, until)? {
                return Ok(value);
            }
            // Created only if still absent: a lost answer or another node's seed is read
            // back on the next turn, so every node ends with the same seed.
            match self.etcd.swap_value(KEY, 0, sealed.to_vec(), until)? {
                Some(true) => return Ok(sealed.to_vec()),
                Some(false) => {}
                None => self.etcd.pause_before_retry(),
            }
            if std::time::Instant::now() > until {
                return Err(StoreError::Database(
                    "no commit within the deadline (contention or no quorum)".into(),
                ));
            }
        }
    }
}
