//! Where a realm keeps its records and counts (`spec/realms.md` §3.2, §4 step 2): each call
//! one durable transaction, so that a guess is counted on disk before the realm answers.

use super::public::REG_ID_LEN;
use crate::store::sqlite::{in_tx, in_tx_erasing, open_durable};
use crate::store::{RecordState, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// One user's registration at this realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmRecord {
    /// Tenant name.
    pub tenant: String,
    /// User id.
    pub user: String,
    /// The registration this record belongs to.
    pub reg_id: [u8; REG_ID_LEN],
    /// The public part, encoded.
    pub public: Vec<u8>,
    /// This realm's index in the registration.
    pub index: u8,
    /// `k_i ‖ s_i ‖ tag_i`, sealed by the realm's HSM; `None` once destroyed or deleted.
    pub sealed: Option<Vec<u8>>,
    /// Evaluations served since the last unlock.
    pub guesses: u32,
    /// Evaluations allowed.
    pub limit: u32,
    /// Lifecycle state.
    pub state: RecordState,
}

/// What counting an evaluation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealmGuess {
    /// Counted; the record after the increment.
    Counted(RealmRecord),
    /// The limit was used up: the record is destroyed now.
    Destroyed,
    /// No active record.
    Absent,
}

/// A realm's storage.
pub trait RealmStore: Send + Sync {
    /// Saves `record`, replacing the user's previous one (a new registration supersedes it).
    fn put(&self, record: &RealmRecord) -> Result<(), StoreError>;
    /// The user's record, whatever its state.
    fn get(&self, tenant: &str, user: &str) -> Result<Option<RealmRecord>, StoreError>;
    /// Counts one evaluation against the active record, or destroys it at the limit.
    fn count_guess(&self, tenant: &str, user: &str) -> Result<RealmGuess, StoreError>;
    /// An unlock: guesses back to 0, if the active record is still registration `reg_id`.
    fn reset(
        &self,
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<bool, StoreError>;
    /// A failed unlock: destroys registration `reg_id` if its guesses are used up.
    fn destroy_if_spent(
        &self,
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<bool, StoreError>;
    /// Deletes the active record. Returns whether there was one.
    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError>;
    /// The sealed fake seed, saving `sealed` if none is stored; returns the stored one.
    fn init_fake_seed(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// A store chosen at run time (`vault serve --realm-id` on SQLite or etcd).
impl<S: RealmStore + ?Sized> RealmStore for Box<S> {
    fn put(&self, record: &RealmRecord) -> Result<(), StoreError> {
        (**self).put(record)
    }
    fn get(&self, tenant: &str, user: &str) -> Result<Option<RealmRecord>, StoreError> {
        (**self).get(tenant, user)
    }
    fn count_guess(&self, tenant: &str, user: &str) -> Result<RealmGuess, StoreError> {
        (**self).count_guess(tenant, user)
    }
    fn reset(
        &self,
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<bool, StoreError> {
        (**self).reset(tenant, user, reg_id)
    }
    fn destroy_if_spent(
        &self,
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<bool, StoreError> {
        (**self).destroy_if_spent(tenant, user, reg_id)
    }
    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        (**self).delete(tenant, user)
    }
    fn init_fake_seed(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        (**self).init_fake_seed(sealed)
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS realm_records (
    tenant  TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reg_id  BLOB NOT NULL,
    public  BLOB NOT NULL,
    idx     INTEGER NOT NULL,
    sealed  BLOB,
    guesses INTEGER NOT NULL,
    lim     INTEGER NOT NULL,
    state   TEXT NOT NULL,
    PRIMARY KEY (tenant, user_id)
);
CREATE TABLE IF NOT EXISTS realm_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
";

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A realm's records in SQLite on disk: WAL, `synchronous = FULL`, and `secure_delete` so
/// that erased shares do not linger in free pages.
pub struct SqliteRealmStore {
    conn: Mutex<Connection>,
}

fn state_name(state: RecordState) -> &'static str {
    match state {
        RecordState::Active => "active",
        RecordState::Destroyed => "destroyed",
        RecordState::Deleted => "deleted",
    }
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RealmRecord> {
    let reg_id: Vec<u8> = row.get(2)?;
    let state: String = row.get(8)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            format!("realm record: bad {what}").into(),
        )
    };
    Ok(RealmRecord {
        tenant: row.get(0)?,
        user: row.get(1)?,
        reg_id: reg_id.try_into().map_err(|_| bad("reg_id"))?,
        public: row.get(3)?,
        index: row.get(4)?,
        sealed: row.get(5)?,
        guesses: row.get(6)?,
        limit: row.get(7)?,
        state: match state.as_str() {
            "active" => RecordState::Active,
            "destroyed" => RecordState::Destroyed,
            "deleted" => RecordState::Deleted,
            _ => return Err(bad("state")),
        },
    })
}

const SELECT: &str =
    "SELECT tenant, user_id, reg_id, public, idx, sealed, guesses, lim, state FROM realm_records";

impl SqliteRealmStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_durable(path, SCHEMA)?;
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(db)?;
        Ok(SqliteRealmStore {
            conn: Mutex::new(conn),
        })
    }

    fn with_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        in_tx(&self.conn, f)
    }
}

fn get(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    user: &str,
) -> rusqlite::Result<Option<RealmRecord>> {
    tx.query_row(
        &format!("{SELECT} WHERE tenant = ?1 AND user_id = ?2"),
        params![tenant, user],
        row_to_record,
    )
    .optional()
}

fn end(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    user: &str,
    state: RecordState,
) -> rusqlite::Result<usize> {
    tx.execute(
        "UPDATE realm_records SET sealed = NULL, state = ?3 WHERE tenant = ?1 AND user_id = ?2 AND state = 'active'",
        params![tenant, user, state_name(state)],
    )
}

impl RealmStore for SqliteRealmStore {
    fn put(&self, r: &RealmRecord) -> Result<(), StoreError> {
        // A registration replaces the user's earlier record, whose shares are then erased.
        in_tx_erasing(
            &self.conn,
            |tx| {
                tx.execute(
                "INSERT OR REPLACE INTO realm_records (tenant, user_id, reg_id, public, idx, sealed, guesses, lim, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.tenant,
                    r.user,
                    r.reg_id.as_slice(),
                    r.public,
                    r.index,
                    r.sealed,
                    r.guesses,
                    r.limit,
                    state_name(r.state)
                ],
            )
            .map(drop)
            },
            |()| true,
        )
    }

    fn get(&self, tenant: &str, user: &str) -> Result<Option<RealmRecord>, StoreError> {
        self.with_tx(|tx| get(tx, tenant, user))
    }

    fn count_guess(&self, tenant: &str, user: &str) -> Result<RealmGuess, StoreError> {
        let destroyed = |g: &RealmGuess| matches!(g, RealmGuess::Destroyed);
        in_tx_erasing(
            &self.conn,
            |tx| -> rusqlite::Result<RealmGuess> {
                let Some(mut r) = get(tx, tenant, user)? else {
                    return Ok(RealmGuess::Absent);
                };
                if r.state != RecordState::Active {
                    return Ok(RealmGuess::Absent);
                }
                if r.guesses >= r.limit {
                    end(tx, tenant, user, RecordState::Destroyed)?;
                    return Ok(RealmGuess::Destroyed);
                }
                r.guesses += 1;
                tx.execute(
                    "UPDATE realm_records SET guesses = ?3 WHERE tenant = ?1 AND user_id = ?2",
                    params![tenant, user, r.guesses],
                )?;
                Ok(RealmGuess::Counted(r))
            },
            destroyed,
        )
    }

    fn reset(
        &self,
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<bool, StoreError> {
        self.with_tx(|tx| {
            tx.execute(
                "UPDATE realm_records SET guesses = 0 WHERE tenant = ?1 AND user_id = ?2 AND reg_id = ?3 AND state = 'active'",
                params![tenant, user, reg_id.as_slice()],
            )
            .map(|n| n == 1)
        })
    }

    fn destroy_if_spent(
        &self,
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<bool, StoreError> {
        in_tx_erasing(
            &self.conn,
            |tx| {
                tx.execute(
                "UPDATE realm_records SET sealed = NULL, state = 'destroyed'
                 WHERE tenant = ?1 AND user_id = ?2 AND reg_id = ?3 AND state = 'active' AND guesses >= lim",
                params![tenant, user, reg_id.as_slice()],
            )
            .map(|n| n == 1)
            },
            |destroyed| *destroyed,
        )
    }

    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        in_tx_erasing(
            &self.conn,
            |tx| end(tx, tenant, user, RecordState::Deleted).map(|n| n == 1),
            |deleted| *deleted,
        )
    }

    fn init_fake_seed(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.with_tx(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO realm_meta (name, value) VALUES ('fake_seed', ?1)",
                params![sealed],
            )?;
            tx.query_row(
                "SELECT value FROM realm_meta WHERE name = 'fake_seed'",
                [],
                |row| row.get(0),
            )
        })
    }
}
