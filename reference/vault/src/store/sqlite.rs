//! The embedded store: SQLite (bundled), WAL, `synchronous=FULL`, one writer connection.
//! Each operation is an `IMMEDIATE` transaction, so concurrent guesses on one record are
//! serialised and the count never passes the limit.

use super::{AuditEvent, GuessOutcome, Record, RecordState, Store, StoreError};
use crate::ids::RecordId;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS server (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sealed_setup BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    record_id BLOB PRIMARY KEY,
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'destroyed', 'deleted')),
    guesses INTEGER NOT NULL,
    guess_limit INTEGER NOT NULL,
    ksf TEXT NOT NULL,
    sealed BLOB,
    updated INTEGER NOT NULL,
    CHECK ((state = 'active') = (sealed IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_record ON records (tenant, user_id) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS records_by_user ON records (tenant, user_id, updated);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    record_id BLOB,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// The SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Guesses waiting for the next group commit.
    queue: Mutex<Vec<Arc<GuessJob>>>,
}

/// One guess waiting to be committed, and its outcome once it is.
struct GuessJob {
    tenant: String,
    user: String,
    outcome: Mutex<Option<Result<GuessOutcome, StoreError>>>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

const COLUMNS: &str =
    "record_id, tenant, user_id, version, state, guesses, guess_limit, ksf, sealed";

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let id: Vec<u8> = row.get(0)?;
    let mut record_id = [0u8; 16];
    if id.len() == 16 {
        record_id.copy_from_slice(&id);
    }
    let state: String = row.get(4)?;
    Ok(Record {
        record_id: RecordId::from_bytes(record_id),
        tenant: row.get(1)?,
        user: row.get(2)?,
        version: row.get(3)?,
        state: RecordState::parse(&state).unwrap_or(RecordState::Deleted),
        guesses: row.get(5)?,
        limit: row.get(6)?,
        ksf: row.get(7)?,
        sealed: row.get(8)?,
    })
}

fn audit(
    tx: &rusqlite::Transaction<'_>,
    r: &Record,
    event: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO audit (at, tenant, user_id, record_id, event, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now(), r.tenant, r.user, r.record_id.as_bytes().as_slice(), event, detail],
    )?;
    Ok(())
}

/// Opens (creating if needed) the database at `path` for durable commits: WAL,
/// `synchronous = FULL`, `secure_delete` (freed content is overwritten with zeros), a 10 s
/// busy timeout, and `schema` applied. A new file is created 0600.
pub(crate) fn open_durable(path: &Path, schema: &str) -> Result<Connection, StoreError> {
    create_private(path)?;
    let conn = Connection::open(path).map_err(db)?;
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db)?;
    conn.execute_batch(schema).map_err(db)?;
    Ok(conn)
}

/// Creates `path` empty with mode 0600 if it does not exist, so that SQLite (which keeps an
/// existing file's mode for its -wal and -shm files) never makes it readable by others.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database(format!("{}: {e}", path.display()))),
    }
}

/// Erases what a committed destruction, deletion or replacement left behind
/// (`spec/vault.md` §4.3): `secure_delete` zeroed the freed space in the pages it rewrote,
/// and a truncating checkpoint copies those pages into the database file and empties the
/// write-ahead log, which still held the earlier versions of the pages.
pub(crate) fn erase_freed(conn: &Connection) -> Result<(), StoreError> {
    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(db)?;
    if busy != 0 {
        return Err(StoreError::Database(
            "the write-ahead log could not be emptied (a reader held it)".into(),
        ));
    }
    Ok(())
}

/// Runs `f` in one immediate transaction, commits it, and then, if `erase` says the result
/// ended or replaced secrets, erases what the commit left behind.
pub(crate) fn in_tx_erasing<T>(
    conn: &Mutex<Connection>,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    erase: impl FnOnce(&T) -> bool,
) -> Result<T, StoreError> {
    let mut conn = conn
        .lock()
        .map_err(|_| StoreError::Database("store lock poisoned".into()))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let out = f(&tx).map_err(db)?;
    tx.commit().map_err(db)?;
    if erase(&out) {
        erase_after_commit(&conn);
    }
    Ok(out)
}

/// [`erase_freed`] after a change that is already committed: a failure cannot undo the
/// change, so it is logged for the operator, and the next erasure catches up.
pub(crate) fn erase_after_commit(conn: &Connection) {
    if let Err(e) = erase_freed(conn) {
        tracing::error!(error = %e, "erasing freed secrets failed; the next erasure retries");
    }
}

/// Runs `f` in one immediate (write-locked) transaction and commits it.
pub(crate) fn in_tx<T>(
    conn: &Mutex<Connection>,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    in_tx_erasing(conn, f, |_| false)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_durable(path, SCHEMA)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            queue: Mutex::new(Vec::new()),
        })
    }

    fn with_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        in_tx(&self.conn, f)
    }

    /// [`Self::with_tx`], erasing freed secrets after the commit when the result is true.
    fn with_tx_erasing(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<bool>,
    ) -> Result<bool, StoreError> {
        in_tx_erasing(&self.conn, f, |ended| *ended)
    }

    fn active(
        tx: &rusqlite::Transaction<'_>,
        tenant: &str,
        user: &str,
    ) -> rusqlite::Result<Option<Record>> {
        tx.query_row(
            &format!("SELECT {COLUMNS} FROM records WHERE tenant = ?1 AND user_id = ?2 AND state = 'active'"),
            params![tenant, user],
            row_to_record,
        )
        .optional()
    }

    fn by_id(tx: &rusqlite::Transaction<'_>, id: &RecordId) -> rusqlite::Result<Option<Record>> {
        tx.query_row(
            &format!("SELECT {COLUMNS} FROM records WHERE record_id = ?1"),
            params![id.as_bytes().as_slice()],
            row_to_record,
        )
        .optional()
    }

    /// One guess inside a transaction (`spec/vault.md` §4.2).
    fn count_one(
        tx: &rusqlite::Transaction<'_>,
        tenant: &str,
        user: &str,
    ) -> rusqlite::Result<GuessOutcome> {
        let Some(mut r) = Self::active(tx, tenant, user)? else {
            return Ok(GuessOutcome::Absent);
        };
        if r.guesses >= r.limit {
            Self::end(tx, &r, RecordState::Destroyed)?;
            audit(
                tx,
                &r,
                "destroyed",
                &format!("guesses={}/{} used up", r.guesses, r.limit),
            )?;
            return Ok(GuessOutcome::Destroyed);
        }
        r.guesses += 1;
        tx.execute(
            "UPDATE records SET guesses = ?2, updated = ?3 WHERE record_id = ?1",
            params![r.record_id.as_bytes().as_slice(), r.guesses, now()],
        )?;
        audit(
            tx,
            &r,
            "guess",
            &format!("guesses={}/{}", r.guesses, r.limit),
        )?;
        if r.guesses == r.limit {
            audit(
                tx,
                &r,
                "locked",
                "last guess given out: a failure destroys the record",
            )?;
        }
        Ok(GuessOutcome::Counted(r))
    }

    fn end(tx: &rusqlite::Transaction<'_>, r: &Record, state: RecordState) -> rusqlite::Result<()> {
        tx.execute(
            "UPDATE records SET state = ?2, sealed = NULL, updated = ?3 WHERE record_id = ?1",
            params![r.record_id.as_bytes().as_slice(), state.as_str(), now()],
        )?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn server_setup(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_tx(|tx| {
            tx.query_row("SELECT sealed_setup FROM server WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    fn init_server_setup(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.with_tx(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO server (id, sealed_setup) VALUES (1, ?1)",
                params![sealed],
            )?;
            tx.query_row("SELECT sealed_setup FROM server WHERE id = 1", [], |r| {
                r.get(0)
            })
        })
    }

    fn insert(&self, record: &Record) -> Result<(), StoreError> {
        let result = self.with_tx(|tx| {
            if Self::active(tx, &record.tenant, &record.user)?.is_some() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO records (record_id, tenant, user_id, version, state, guesses, guess_limit, ksf, sealed, updated)
                 VALUES (?1, ?2, ?3, ?4, 'active', 0, ?5, ?6, ?7, ?8)",
                params![record.record_id.as_bytes().as_slice(), record.tenant, record.user, record.version, record.limit, record.ksf, record.sealed, now()],
            )?;
            audit(tx, record, "registered", &format!("limit={} ksf={}", record.limit, record.ksf))?;
            Ok(true)
        })?;
        if result {
            Ok(())
        } else {
            Err(StoreError::Exists)
        }
    }

    fn latest(&self, tenant: &str, user: &str) -> Result<Option<Record>, StoreError> {
        self.with_tx(|tx| {
            if let Some(r) = Self::active(tx, tenant, user)? {
                return Ok(Some(r));
            }
            tx.query_row(
                &format!("SELECT {COLUMNS} FROM records WHERE tenant = ?1 AND user_id = ?2 ORDER BY updated DESC, rowid DESC LIMIT 1"),
                params![tenant, user],
                row_to_record,
            )
            .optional()
        })
    }

    /// Group commit: the guess joins a queue; whoever next holds the connection commits every
    /// queued guess in one transaction (one fsync) and hands each its outcome. No outcome is
    /// visible before that commit, so "counted before KE2" holds for each of them.
    fn count_guess(&self, tenant: &str, user: &str) -> Result<GuessOutcome, StoreError> {
        let job = Arc::new(GuessJob {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            outcome: Mutex::new(None),
        });
        self.queue
            .lock()
            .map_err(|_| StoreError::Database("queue lock poisoned".into()))?
            .push(Arc::clone(&job));
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::Database("store lock poisoned".into()))?;
        if let Some(done) = job.outcome.lock().ok().and_then(|mut o| o.take()) {
            return done;
        }
        let batch: Vec<Arc<GuessJob>> = std::mem::take(
            &mut *self
                .queue
                .lock()
                .map_err(|_| StoreError::Database("queue lock poisoned".into()))?,
        );
        let result = (|| -> rusqlite::Result<Vec<GuessOutcome>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcomes = batch
                .iter()
                .map(|j| Self::count_one(&tx, &j.tenant, &j.user))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(outcomes)
        })();
        let destroyed = matches!(&result, Ok(outcomes)
            if outcomes.iter().any(|o| matches!(o, GuessOutcome::Destroyed)));
        if destroyed {
            erase_after_commit(&conn);
        }
        match result {
            Ok(outcomes) => {
                for (j, outcome) in batch.iter().zip(outcomes) {
                    if let Ok(mut slot) = j.outcome.lock() {
                        *slot = Some(Ok(outcome));
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                for j in &batch {
                    if let Ok(mut slot) = j.outcome.lock() {
                        *slot = Some(Err(StoreError::Database(message.clone())));
                    }
                }
            }
        }
        drop(conn);
        let outcome = job.outcome.lock().ok().and_then(|mut o| o.take());
        outcome.unwrap_or_else(|| Err(StoreError::Database("a queued guess was lost".into())))
    }

    fn recovered(&self, record_id: &RecordId, version: u32) -> Result<bool, StoreError> {
        self.with_tx(|tx| {
            let Some(r) = Self::by_id(tx, record_id)? else {
                return Ok(false);
            };
            if r.state != RecordState::Active || r.version != version {
                return Ok(false);
            }
            tx.execute(
                "UPDATE records SET guesses = 0, updated = ?2 WHERE record_id = ?1",
                params![record_id.as_bytes().as_slice(), now()],
            )?;
            audit(
                tx,
                &r,
                "recovered",
                &format!("after guesses={}/{}", r.guesses, r.limit),
            )?;
            Ok(true)
        })
    }

    fn failed_at_limit(&self, record_id: &RecordId) -> Result<bool, StoreError> {
        self.with_tx_erasing(|tx| {
            let Some(r) = Self::by_id(tx, record_id)? else {
                return Ok(false);
            };
            if r.state != RecordState::Active || r.guesses < r.limit {
                return Ok(false);
            }
            Self::end(tx, &r, RecordState::Destroyed)?;
            audit(
                tx,
                &r,
                "destroyed",
                &format!("last guess failed at {}/{}", r.guesses, r.limit),
            )?;
            Ok(true)
        })
    }

    fn replace(
        &self,
        record_id: &RecordId,
        version: u32,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        self.with_tx_erasing(|tx| {
            let Some(r) = Self::by_id(tx, record_id)? else { return Ok(false) };
            if r.state != RecordState::Active || r.version != version {
                return Ok(false);
            }
            tx.execute(
                "UPDATE records SET sealed = ?2, version = ?3, guesses = 0, updated = ?4 WHERE record_id = ?1",
                params![record_id.as_bytes().as_slice(), sealed, version + 1, now()],
            )?;
            audit(tx, &r, "password_changed", &format!("version={}", version + 1))?;
            Ok(true)
        })
    }

    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        self.with_tx_erasing(|tx| {
            let Some(r) = Self::active(tx, tenant, user)? else {
                return Ok(false);
            };
            Self::end(tx, &r, RecordState::Deleted)?;
            audit(tx, &r, "deleted", "by the account holder")?;
            Ok(true)
        })
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.with_tx(|tx| {
            let mut stmt = tx.prepare(
                "SELECT seq, at, tenant, user_id, record_id, event, detail FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
                let id: Option<Vec<u8>> = r.get(4)?;
                Ok(AuditEvent {
                    seq: r.get::<_, i64>(0)? as u64,
                    at: r.get::<_, i64>(1)? as u64,
                    tenant: r.get(2)?,
                    user: r.get(3)?,
                    record: id.map(hex::encode).unwrap_or_default(),
                    event: r.get(5)?,
                    detail: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meets_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("vault.db")).unwrap();
        crate::store::contract::check(&store);
    }

    #[test]
    fn counts_are_durable_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let record = Record {
            record_id: RecordId::from_bytes([9; 16]),
            tenant: "t".into(),
            user: "u".into(),
            version: 1,
            state: RecordState::Active,
            guesses: 0,
            limit: 10,
            ksf: "argon2id:m=256,t=1,p=1".into(),
            sealed: Some(vec![1; 8]),
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            store.insert(&record).unwrap();
            store.count_guess("t", "u").unwrap();
            store.count_guess("t", "u").unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.latest("t", "u").unwrap().unwrap().guesses, 2);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        std::fs::write(&path, b"not sqlite at all, just text that is long enough").unwrap();
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Database(_))
        ));
    }
}
