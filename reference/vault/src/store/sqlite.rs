//! The embedded store: SQLite (bundled), WAL, `synchronous=FULL`, one writer connection.
//! Each operation is an `IMMEDIATE` transaction, so concurrent guesses on one record are
//! serialised and the count never passes the limit. Every row read is checked and every
//! row written is tagged under the bound [`Integrity`]; the head is written in the same
//! transaction (`spec/vault.md` §6.2).

use super::integrity::{EventFields, Head, Integrity, Mark, RowSeal, StoreSummary};
use super::transitions::{self, Change};
use super::{
    bound, AuditEvent, GroupCommitObserver, GroupCommitReports, GuessOutcome, Record, RecordState,
    Store, StoreError,
};
use crate::ids::RecordId;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS server (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sealed_setup BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL,
    records_sum BLOB NOT NULL,
    audit_hash BLOB NOT NULL,
    tag BLOB NOT NULL
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
    epoch INTEGER NOT NULL,
    tag BLOB NOT NULL,
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
    detail TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    previous BLOB NOT NULL,
    hash BLOB NOT NULL
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
    integrity: OnceLock<Arc<Integrity>>,
    reports: GroupCommitReports,
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

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        db(e)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

const COLUMNS: &str =
    "record_id, tenant, user_id, version, state, guesses, guess_limit, ksf, sealed, epoch, tag";

fn blob32(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let bytes: Vec<u8> = row.get(i)?;
    bytes.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            "not 32 bytes".into(),
        )
    })
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Record, RowSeal)> {
    let id: Vec<u8> = row.get(0)?;
    let mut record_id = [0u8; 16];
    if id.len() == 16 {
        record_id.copy_from_slice(&id);
    }
    let state: String = row.get(4)?;
    let record = Record {
        record_id: RecordId::from_bytes(record_id),
        tenant: row.get(1)?,
        user: row.get(2)?,
        version: row.get(3)?,
        state: RecordState::parse(&state).unwrap_or(RecordState::Deleted),
        guesses: row.get(5)?,
        limit: row.get(6)?,
        ksf: row.get(7)?,
        sealed: row.get(8)?,
    };
    let seal = RowSeal {
        epoch: row.get::<_, i64>(9)? as u64,
        tag: blob32(row, 10)?,
    };
    Ok((record, seal))
}

/// A transaction's view of the store under its integrity: the head it read (checked), the
/// rows it wrote, and the head it will write.
struct Guarded<'t> {
    tx: &'t rusqlite::Transaction<'t>,
    integrity: &'t Integrity,
    mark: Mark,
    head: Head,
    written: Vec<(RecordId, u64)>,
}

impl<'t> Guarded<'t> {
    fn begin(
        tx: &'t rusqlite::Transaction<'t>,
        integrity: &'t Integrity,
    ) -> Result<Self, StoreError> {
        // The transaction holds the write lock: every commit of this process came before it.
        let mark = integrity.mark()?;
        let head = read_head(tx)?
            .ok_or_else(|| StoreError::Tampered("the store has no head (it was removed)".into()))?;
        integrity.check_head(&head, mark)?;
        Ok(Guarded {
            tx,
            integrity,
            mark,
            head,
            written: Vec::new(),
        })
    }

    /// The one row `sql` (a `WHERE` clause) selects, checked.
    fn row(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Option<(Record, RowSeal)>, StoreError> {
        let found = self
            .tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM records {sql}"))?
            .query_row(args, row_to_record)
            .optional()?;
        if let Some((r, seal)) = &found {
            self.integrity.check_row(&self.head, r, seal, self.mark)?;
        }
        Ok(found)
    }

    fn active(&self, tenant: &str, user: &str) -> Result<Option<(Record, RowSeal)>, StoreError> {
        self.row(
            "WHERE tenant = ?1 AND user_id = ?2 AND state = 'active'",
            params![tenant, user],
        )
    }

    fn by_id(&self, id: &RecordId) -> Result<Option<(Record, RowSeal)>, StoreError> {
        self.row("WHERE record_id = ?1", params![id.as_bytes().as_slice()])
    }

    /// Applies `change` to the row `read`: writes the record, its seal and its events.
    fn apply<T>(
        &mut self,
        read: Option<&(Record, RowSeal)>,
        change: Change<T>,
    ) -> Result<T, StoreError> {
        let (record, events, out) = match change {
            Change::Done(out) => return Ok(out),
            Change::Write {
                record,
                events,
                out,
            } => (record, events, out),
        };
        let at = now();
        let record_hex = record.record_id.to_hex();
        let fields = EventFields::of_write(&record, &record_hex, at as u64, &events);
        let old = read
            .filter(|(r, _)| r.record_id == record.record_id)
            .map(|(_, s)| s);
        let (seal, chained) = self.integrity.write(&mut self.head, old, &record, &fields);
        self.tx.prepare_cached(
            "INSERT INTO records (record_id, tenant, user_id, version, state, guesses, guess_limit, ksf, sealed, updated, epoch, tag)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (record_id) DO UPDATE SET version = excluded.version, state = excluded.state,
               guesses = excluded.guesses, guess_limit = excluded.guess_limit, ksf = excluded.ksf,
               sealed = excluded.sealed, updated = excluded.updated, epoch = excluded.epoch, tag = excluded.tag",
        )?.execute(
            params![
                record.record_id.as_bytes().as_slice(), record.tenant, record.user, record.version,
                record.state.as_str(), record.guesses, record.limit, record.ksf, record.sealed, at,
                seal.epoch as i64, seal.tag.as_slice()
            ],
        )?;
        for (e, c) in fields.iter().zip(&chained) {
            self.tx.prepare_cached(
                "INSERT INTO audit (at, tenant, user_id, record_id, event, detail, epoch, previous, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?.execute(
                params![at, e.tenant, e.user, record.record_id.as_bytes().as_slice(), e.event, e.detail, c.epoch as i64, c.previous.as_slice(), c.hash.as_slice()],
            )?;
        }
        self.written.push((record.record_id, seal.epoch));
        Ok(out)
    }

    /// Writes the head; returns what [`Integrity::committed`] needs after the commit.
    fn finish(self) -> Result<(Head, Vec<(RecordId, u64)>), StoreError> {
        if !self.written.is_empty() {
            write_head(self.tx, &self.head)?;
        }
        Ok((self.head, self.written))
    }
}

fn read_head(tx: &rusqlite::Transaction<'_>) -> Result<Option<Head>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT epoch, records_sum, audit_hash, tag FROM head WHERE id = 1")?
        .query_row([], |r| {
            Ok(Head {
                shard: 0,
                epoch: r.get::<_, i64>(0)? as u64,
                records_sum: blob32(r, 1)?,
                audit_hash: blob32(r, 2)?,
                tag: blob32(r, 3)?,
            })
        })
        .optional()?)
}

fn write_head(tx: &rusqlite::Transaction<'_>, head: &Head) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO head (id, epoch, records_sum, audit_hash, tag) VALUES (1, ?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, records_sum = excluded.records_sum,
           audit_hash = excluded.audit_hash, tag = excluded.tag",
    )?
    .execute(params![
        head.epoch as i64,
        head.records_sum.as_slice(),
        head.audit_hash.as_slice(),
        head.tag.as_slice()
    ])?;
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
pub(crate) fn in_tx_erasing<T, E: Into<StoreError>>(
    conn: &Mutex<Connection>,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
    erase: impl FnOnce(&T) -> bool,
) -> Result<T, StoreError> {
    let mut conn = conn
        .lock()
        .map_err(|_| StoreError::Database("store lock poisoned".into()))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let out = f(&tx).map_err(Into::into)?;
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
pub(crate) fn in_tx<T, E: Into<StoreError>>(
    conn: &Mutex<Connection>,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
) -> Result<T, StoreError> {
    in_tx_erasing(conn, f, |_| false)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. A store written before vault
    /// spec 0.4 (no integrity tags) is refused: it cannot be checked.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_durable(path, SCHEMA)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        if conn.prepare("SELECT tag FROM records LIMIT 0").is_err()
            || conn.prepare("SELECT previous FROM audit LIMIT 0").is_err()
        {
            return Err(StoreError::Database(format!(
                "{} was written before vault spec 0.4 and has no integrity tags \
                 (spec/vault.md §6.2); Coffer does not upgrade a store in place",
                path.display()
            )));
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            queue: Mutex::new(Vec::new()),
            integrity: OnceLock::new(),
            reports: GroupCommitReports::default(),
        })
    }

    /// Runs `f` on a checked view of the store in one transaction; after the commit the
    /// epochs it wrote become the least this process accepts. `erase` as in [`in_tx_erasing`].
    fn guarded<T>(
        &self,
        f: impl FnOnce(&mut Guarded<'_>) -> Result<T, StoreError>,
        erase: impl FnOnce(&T) -> bool,
    ) -> Result<T, StoreError> {
        let integrity = bound(&self.integrity)?;
        let (out, head, written) = in_tx_erasing(
            &self.conn,
            |tx| {
                let mut g = Guarded::begin(tx, integrity)?;
                let out = f(&mut g)?;
                let (head, written) = g.finish()?;
                Ok::<_, StoreError>((out, head, written))
            },
            |(out, _, _)| erase(out),
        )?;
        integrity.committed(&head, &written);
        Ok(out)
    }

    /// Erases freed secrets after a change that ended or replaced them.
    fn ends_secrets(changed: &bool) -> bool {
        *changed
    }
}

impl Store for SqliteStore {
    fn bind(&self, integrity: Arc<Integrity>) -> Result<StoreSummary, StoreError> {
        let summary = in_tx(&self.conn, |tx| {
            let head = match read_head(tx)? {
                Some(head) => head,
                None => {
                    let (records, events): (i64, i64) = tx.query_row(
                        "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM audit)",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    if records + events > 0 {
                        return Err(StoreError::Tampered(
                            "the store holds records but no head (it was removed)".into(),
                        ));
                    }
                    let genesis = integrity.genesis(0);
                    write_head(tx, &genesis)?;
                    genesis
                }
            };
            let mut check = integrity.check_store(&head, integrity.mark()?)?;
            let mut rows = tx.prepare(&format!("SELECT {COLUMNS} FROM records"))?;
            for row in rows.query_map([], row_to_record)? {
                let (r, seal) = row?;
                check.row(&r, &seal)?;
            }
            let mut events = tx.prepare(
                "SELECT at, tenant, user_id, record_id, event, detail, epoch, hash FROM audit ORDER BY seq",
            )?;
            let mut rows = events.query([])?;
            while let Some(row) = rows.next()? {
                let id: Option<Vec<u8>> = row.get(3)?;
                let (tenant, user, event, detail): (String, String, String, String) =
                    (row.get(1)?, row.get(2)?, row.get(4)?, row.get(5)?);
                let record = id.map(hex::encode).unwrap_or_default();
                let fields = EventFields {
                    at: row.get::<_, i64>(0)? as u64,
                    tenant: &tenant,
                    user: &user,
                    record: &record,
                    event: &event,
                    detail: &detail,
                };
                check.event(row.get::<_, i64>(6)? as u64, &fields, &blob32(row, 7)?)?;
            }
            check.finish()
        })?;
        self.integrity
            .set(integrity)
            .map_err(|_| StoreError::Database("the store is bound already".into()))?;
        Ok(summary)
    }

    fn server_setup(&self) -> Result<Option<Vec<u8>>, StoreError> {
        in_tx(&self.conn, |tx| {
            tx.query_row("SELECT sealed_setup FROM server WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    fn init_server_setup(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        in_tx(&self.conn, |tx| {
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
        self.guarded(
            |g| {
                if g.by_id(&record.record_id)?.is_some() {
                    return Err(StoreError::IdTaken);
                }
                let read = g.active(&record.tenant, &record.user)?;
                let change = transitions::insert(read.as_ref().map(|(r, _)| r), record)?;
                g.apply(read.as_ref(), change)
            },
            |_| false,
        )
    }

    fn latest(&self, tenant: &str, user: &str) -> Result<Option<Record>, StoreError> {
        self.guarded(
            |g| {
                if let Some((r, _)) = g.active(tenant, user)? {
                    return Ok(Some(r));
                }
                Ok(g.row(
                    "WHERE tenant = ?1 AND user_id = ?2 ORDER BY updated DESC, rowid DESC LIMIT 1",
                    params![tenant, user],
                )?
                .map(|(r, _)| r))
            },
            |_| false,
        )
    }

    /// Group commit: the guess joins a queue; whoever next holds the connection commits every
    /// queued guess in one transaction (one fsync) and hands each its outcome. No outcome is
    /// visible before that commit, so "counted before KE2" holds for each of them. A record
    /// that fails its check fails its own guess only.
    fn count_guess(&self, tenant: &str, user: &str) -> Result<GuessOutcome, StoreError> {
        let integrity = bound(&self.integrity)?;
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
        type Outcomes = Vec<Result<GuessOutcome, StoreError>>;
        type Committed = (Outcomes, Head, Vec<(RecordId, u64)>);
        let result = (|| -> Result<Committed, StoreError> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (outcomes, head, written) = {
                let mut g = Guarded::begin(&tx, integrity)?;
                let mut outcomes = Vec::with_capacity(batch.len());
                for j in &batch {
                    let one = g.active(&j.tenant, &j.user).and_then(|read| {
                        let change = transitions::count_guess(read.as_ref().map(|(r, _)| r));
                        g.apply(read.as_ref(), change)
                    });
                    match one {
                        Err(StoreError::Database(e)) => return Err(StoreError::Database(e)),
                        other => outcomes.push(other),
                    }
                }
                let (head, written) = g.finish()?;
                (outcomes, head, written)
            };
            tx.commit()?;
            Ok((outcomes, head, written))
        })();
        if let Ok((_, head, written)) = &result {
            integrity.committed(head, written);
            // SQLite's lock serialises writers: a batch never has to try again.
            self.reports.report(batch.len(), 0);
        }
        let destroyed = matches!(&result, Ok((outcomes, _, _))
            if outcomes.iter().any(|o| matches!(o, Ok(GuessOutcome::Destroyed))));
        if destroyed {
            erase_after_commit(&conn);
        }
        match result {
            Ok((outcomes, _, _)) => {
                for (j, outcome) in batch.iter().zip(outcomes) {
                    if let Ok(mut slot) = j.outcome.lock() {
                        *slot = Some(outcome);
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                for j in &batch {
                    if let Ok(mut slot) = j.outcome.lock() {
                        *slot = Some(Err(match &e {
                            StoreError::Tampered(m) => StoreError::Tampered(m.clone()),
                            _ => StoreError::Database(message.clone()),
                        }));
                    }
                }
            }
        }
        drop(conn);
        let outcome = job.outcome.lock().ok().and_then(|mut o| o.take());
        outcome.unwrap_or_else(|| Err(StoreError::Database("a queued guess was lost".into())))
    }

    fn recovered(
        &self,
        tenant: &str,
        user: &str,
        record_id: &RecordId,
        version: u32,
    ) -> Result<bool, StoreError> {
        self.guarded(
            |g| {
                let read = g.active(tenant, user)?;
                let change =
                    transitions::recovered(read.as_ref().map(|(r, _)| r), record_id, version);
                g.apply(read.as_ref(), change)
            },
            |_| false,
        )
    }

    fn failed_at_limit(
        &self,
        tenant: &str,
        user: &str,
        record_id: &RecordId,
    ) -> Result<bool, StoreError> {
        self.guarded(
            |g| {
                let read = g.active(tenant, user)?;
                let change = transitions::failed_at_limit(read.as_ref().map(|(r, _)| r), record_id);
                g.apply(read.as_ref(), change)
            },
            Self::ends_secrets,
        )
    }

    fn replace(
        &self,
        record_id: &RecordId,
        version: u32,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        self.guarded(
            |g| {
                let read = g.by_id(record_id)?;
                let change =
                    transitions::replace(read.as_ref().map(|(r, _)| r), record_id, version, sealed);
                g.apply(read.as_ref(), change)
            },
            Self::ends_secrets,
        )
    }

    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        self.guarded(
            |g| {
                let read = g.active(tenant, user)?;
                let change = transitions::delete(read.as_ref().map(|(r, _)| r));
                g.apply(read.as_ref(), change)
            },
            Self::ends_secrets,
        )
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        in_tx(&self.conn, |tx| {
            let mut stmt = tx.prepare(
                "SELECT seq, at, tenant, user_id, record_id, event, detail, epoch, previous, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
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
                    chain: 0,
                    epoch: r.get::<_, i64>(7)? as u64,
                    previous: hex::encode(blob32(r, 8)?),
                    hash: hex::encode(blob32(r, 9)?),
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    /// Its calls wait on a local disk, which more of them would not make faster.
    fn calls_waiting_on_network(&self) -> usize {
        0
    }

    fn observe_group_commits(&self, observer: Arc<dyn GroupCommitObserver>) {
        self.reports.set(observer);
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
            let store = bound_store(&path);
            store.insert(&record).unwrap();
            store.count_guess("t", "u").unwrap();
            store.count_guess("t", "u").unwrap();
        }
        let store = bound_store(&path);
        assert_eq!(store.latest("t", "u").unwrap().unwrap().guesses, 2);
    }

    fn bound_store(path: &Path) -> SqliteStore {
        let store = SqliteStore::open(path).unwrap();
        store.bind(Arc::new(Integrity::new([5; 32]))).unwrap();
        store
    }

    fn alice(byte: u8) -> Record {
        Record {
            record_id: RecordId::from_bytes([byte; 16]),
            tenant: "t".into(),
            user: format!("alice{byte}"),
            version: 1,
            state: RecordState::Active,
            guesses: 0,
            limit: 3,
            ksf: "argon2id:m=256,t=1,p=1".into(),
            sealed: Some(vec![byte; 40]),
        }
    }

    /// What the attacker who can write the file does, with the sqlite3 library.
    fn edit(path: &Path, sql: &str) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    fn refused(result: Result<impl std::fmt::Debug, StoreError>, says: &str) {
        match result {
            Err(StoreError::Tampered(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("expected Tampered ({says}), got {other:?}"),
        }
    }

    #[test]
    fn a_guess_count_set_back_in_the_file_is_refused_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let store = bound_store(&path);
        store.insert(&alice(1)).unwrap();
        store.count_guess("t", "alice1").unwrap();
        store.count_guess("t", "alice1").unwrap();
        edit(&path, "UPDATE records SET guesses = 0");
        refused(store.count_guess("t", "alice1"), "tag does not verify");
        refused(store.latest("t", "alice1"), "tag does not verify");
        assert_eq!(
            crate::error::Classify::class(&store.latest("t", "alice1").unwrap_err()),
            crate::error::ErrorClass::Corrupt
        );
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        refused(
            reopened.bind(Arc::new(Integrity::new([5; 32]))),
            "tag does not verify",
        );
    }

    #[test]
    fn a_destroyed_row_restored_from_an_older_copy_is_refused_running_or_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let copy = dir.path().join("copy.db");
        let store = bound_store(&path);
        store.insert(&alice(2)).unwrap();
        store.insert(&alice(3)).unwrap();
        // The attacker keeps a copy of the row while it still holds its secrets.
        edit(
            &path,
            &format!(
                "ATTACH '{}' AS old; CREATE TABLE old.saved AS SELECT * FROM records;",
                copy.display()
            ),
        );
        for _ in 0..4 {
            store.count_guess("t", "alice2").unwrap();
        }
        let gone = store.latest("t", "alice2").unwrap().unwrap();
        assert_eq!(gone.state, RecordState::Destroyed);
        let restore = format!(
            "ATTACH '{}' AS old; DELETE FROM records WHERE user_id = 'alice2';
             INSERT INTO records SELECT * FROM old.saved WHERE user_id = 'alice2';",
            copy.display()
        );
        edit(&path, &restore);
        refused(store.count_guess("t", "alice2"), "went back");
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        refused(reopened.bind(Arc::new(Integrity::new([5; 32]))), "add up");
    }

    #[test]
    fn audit_events_removed_or_the_whole_store_rolled_back_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let store = bound_store(&path);
        store.insert(&alice(4)).unwrap();
        store.count_guess("t", "alice4").unwrap();
        store.count_guess("t", "alice4").unwrap();
        drop(store);

        edit(
            &path,
            "DROP TRIGGER audit_append_only_delete;
             DELETE FROM audit WHERE event = 'guess' AND detail = 'guesses=1/3';",
        );
        let reopened = SqliteStore::open(&path).unwrap();
        refused(
            reopened.bind(Arc::new(Integrity::new([5; 32]))),
            "does not chain",
        );

        // The whole store put back under a running vault: its head went back.
        let path = dir.path().join("live.db");
        let store = bound_store(&path);
        store.insert(&alice(5)).unwrap();
        edit(
            &path,
            &format!("ATTACH '{}' AS old; CREATE TABLE old.h AS SELECT * FROM head; CREATE TABLE old.r AS SELECT * FROM records;", dir.path().join("h.db").display()),
        );
        store.count_guess("t", "alice5").unwrap();
        edit(
            &path,
            &format!(
                "ATTACH '{}' AS old; DELETE FROM head; INSERT INTO head SELECT * FROM old.h;
                 DELETE FROM records; INSERT INTO records SELECT * FROM old.r;",
                dir.path().join("h.db").display()
            ),
        );
        refused(store.latest("t", "alice5"), "rollback");
    }

    #[test]
    fn a_store_without_its_head_or_under_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        bound_store(&path).insert(&alice(6)).unwrap();
        let other = SqliteStore::open(&path).unwrap();
        refused(other.bind(Arc::new(Integrity::new([6; 32]))), "head's tag");
        edit(&path, "DELETE FROM head");
        let headless = SqliteStore::open(&path).unwrap();
        refused(headless.bind(Arc::new(Integrity::new([5; 32]))), "no head");
        let unbound = SqliteStore::open(&path).unwrap();
        assert!(matches!(
            unbound.latest("t", "alice6"),
            Err(StoreError::Database(m)) if m.contains("not bound")
        ));
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
