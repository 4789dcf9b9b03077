//! Group commit (`spec/vault.md` §6.1): the guesses and KE3 outcomes for one shard that
//! arrive together are committed in one etcd transaction. Each shard has a queue; a caller
//! joins its shard's queue and waits for the shard's turn, and whoever takes the turn
//! commits every change queued by then (at most [`MOST_IN_A_BATCH`]) and hands each caller
//! its own outcome. No outcome leaves before the transaction that carries it committed, so a
//! guess is still counted before its KE2 is sent.
//!
//! One transaction compares every record it read and the shard's head, and writes each
//! changed record once (its final value), the head once, and every change's audit events in
//! order: the batch is one step of the shard's chain, as if its changes had been made one
//! after the other. Changes in one shard took turns before (each compared the head); now the
//! ones that arrive during a commit wait for the next instead of racing it and retrying.
//!
//! The holder of a shard's turn also keeps what it last read or committed there
//! ([`Known`]), so a batch of known records costs one round trip, the commit; a failed
//! compare's answer carries the current values, so a retry costs one more.

use super::{db, now, parse_ranges_with_head, EtcdStore, Read, Stored, StoredHead, RETRY_PAUSE};
use crate::ids::RecordId;
use crate::store::etcd_rpc::{Compare, RequestOp, TxnRequest};
use crate::store::integrity::{EventFields, Head, Mark, RowSeal, ETCD_SHARDS};
use crate::store::transitions::{self, Change};
use crate::store::{bound, GuessOutcome, Record, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// The most changes one transaction carries: etcd refuses a transaction of more than 128
/// operations in a branch (`--max-txn-ops`), and a change writes its record and up to two
/// events (32 × 3 + the head = 97 puts; 34 compares; 33 ranges on failure).
pub(super) const MOST_IN_A_BATCH: usize = 32;

/// A change that can join a batch: those of the guess path.
#[derive(Debug, Clone)]
pub(super) enum Job {
    /// One guess (`transitions::count_guess`).
    Guess,
    /// A verified KE3 of `id` at `version` (`transitions::recovered`).
    Recovered { id: RecordId, version: u32 },
    /// A failed KE3 of `id` (`transitions::failed_at_limit`).
    FailedAtLimit { id: RecordId },
}

/// A job's answer.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Guess(GuessOutcome),
    Applied(bool),
}

impl Job {
    fn decide(&self, current: Option<&Record>) -> Change<Outcome> {
        match self {
            Job::Guess => transitions::count_guess(current).map(Outcome::Guess),
            Job::Recovered { id, version } => {
                transitions::recovered(current, id, *version).map(Outcome::Applied)
            }
            Job::FailedAtLimit { id } => {
                transitions::failed_at_limit(current, id).map(Outcome::Applied)
            }
        }
    }
}

/// One caller's change, waiting in its shard's queue, and its outcome once committed.
struct Waiting {
    key: String,
    job: Job,
    /// When the caller's own deadline runs out.
    until: Instant,
    outcome: Mutex<Option<Result<Outcome, StoreError>>>,
    /// Signalled when `outcome` is set, or when the turn is free and this is next.
    ready: Condvar,
}

impl Waiting {
    fn answer(&self, outcome: Result<Outcome, StoreError>) -> Result<(), StoreError> {
        *lock(&self.outcome)? = Some(outcome);
        self.ready.notify_one();
        Ok(())
    }
}

/// How long a waiting caller sleeps before it looks at the turn again, should a wake-up
/// not come (it always should: this only bounds the cost of a missed one).
const LOOK_AGAIN: Duration = Duration::from_millis(20);

/// One shard's queue, and its turn, which guards what the node knows of the shard.
#[derive(Default)]
struct Queue {
    waiting: Mutex<Vec<Arc<Waiting>>>,
    turn: Mutex<Known>,
}

/// The most records a node keeps per shard between group commits; past it, it forgets
/// them all and reads again.
const MOST_KNOWN: usize = 4096;

/// What this node last read or committed in a shard: the head and records, each with the
/// revision a compare must find. A batch whose records are all known decides from them
/// and commits in one round trip, without a read; if another node (or another kind of
/// change on this one) wrote since, the compares fail and the failed transaction's own
/// answer carries the current values. So it is a guess at the state that etcd checks,
/// never a source of truth.
#[derive(Default)]
struct Known {
    head: Option<(Head, i64)>,
    rows: HashMap<String, Read>,
}

impl Known {
    /// The head and the records at `keys`, if all are known.
    fn all(&self, keys: &[&str]) -> Option<(Vec<Read>, Head, i64)> {
        let (head, revision) = self.head.clone()?;
        let reads = keys
            .iter()
            .map(|key| self.rows.get(*key).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some((reads, head, revision))
    }

    fn forget(&mut self) {
        self.head = None;
        self.rows.clear();
    }

    fn learn(&mut self, key: &str, read: Read) {
        if self.rows.len() >= MOST_KNOWN && !self.rows.contains_key(key) {
            self.rows.clear();
        }
        self.rows.insert(key.to_owned(), read);
    }
}

/// The queues of every shard.
pub(super) struct Groups {
    queues: Vec<Queue>,
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            queues: (0..ETCD_SHARDS).map(|_| Queue::default()).collect(),
        }
    }
}

const POISONED: &str = "a group commit lock was poisoned";

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    m.lock().map_err(|_| StoreError::Database(POISONED.into()))
}

/// A record's row in a batch: as read, then as the batch's changes left it.
struct Row<'k> {
    key: &'k str,
    read: Read,
    /// Its check failed: every change to it fails with this.
    refused: Option<StoreError>,
    current: Option<Record>,
    seal: Option<RowSeal>,
    changed: bool,
}

impl EtcdStore {
    /// Applies `job` to the record at `key` (in `shard`) in the next group commit of that
    /// shard, and returns its outcome once that commit is durable.
    pub(super) fn submit(&self, shard: u32, key: String, job: Job) -> Result<Outcome, StoreError> {
        let queue = self
            .groups
            .queues
            .get(shard as usize)
            .ok_or_else(|| StoreError::Database(format!("no shard {shard}")))?;
        let me = Arc::new(Waiting {
            key,
            job,
            until: self.until(),
            outcome: Mutex::new(None),
            ready: Condvar::new(),
        });
        lock(&queue.waiting)?.push(Arc::clone(&me));
        loop {
            let outcome = lock(&me.outcome)?;
            if outcome.is_some() {
                let mut outcome = outcome;
                return outcome
                    .take()
                    .unwrap_or_else(|| Err(StoreError::Database("an outcome vanished".into())));
            }
            // Waiting for the turn itself would keep a caller whose change is committed
            // waiting behind the next batch: it waits for its own outcome instead, and takes
            // the turn only when the turn is free.
            match queue.turn.try_lock() {
                Ok(mut known) => {
                    drop(outcome);
                    self.lead(shard, queue, &me, &mut known)?;
                    drop(known);
                    // The next caller in the queue takes the turn now.
                    let next = lock(&queue.waiting)?.first().cloned();
                    if let Some(next) = next {
                        let _held = lock(&next.outcome)?;
                        next.ready.notify_one();
                    }
                }
                Err(TryLockError::WouldBlock) => {
                    let _ = me
                        .ready
                        .wait_timeout(outcome, LOOK_AGAIN)
                        .map_err(|_| StoreError::Database(POISONED.into()))?;
                }
                Err(TryLockError::Poisoned(_)) => {
                    return Err(StoreError::Database(POISONED.into()))
                }
            }
        }
    }

    /// Holding the shard's turn: commits batches from the head of the queue until `me`'s
    /// change is among the committed, and answers every caller of each batch.
    fn lead(
        &self,
        shard: u32,
        queue: &Queue,
        me: &Waiting,
        known: &mut Known,
    ) -> Result<(), StoreError> {
        while lock(&me.outcome)?.is_none() {
            let batch: Vec<Arc<Waiting>> = {
                let mut waiting = lock(&queue.waiting)?;
                let n = waiting.len().min(MOST_IN_A_BATCH);
                waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                return Err(StoreError::Database("a queued change was lost".into()));
            }
            let outcomes = match self.commit_batch(shard, &batch, known) {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    known.forget();
                    batch.iter().map(|_| Err(e.clone())).collect()
                }
            };
            for (waiting, outcome) in batch.iter().zip(outcomes) {
                waiting.answer(outcome)?;
            }
        }
        Ok(())
    }

    /// Takes every record `batch` names and the shard's head (from `known`, else from a
    /// read), applies the changes in order and commits them in one transaction, retried
    /// like [`EtcdStore::update`] (the batch is one operation: its marker is its first
    /// audit event). A failed compare's answer holds the current values (the transaction's
    /// failure branch reads them), so a retry needs no read of its own.
    fn commit_batch(
        &self,
        shard: u32,
        batch: &[Arc<Waiting>],
        known: &mut Known,
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        let integrity = bound(&self.integrity)?;
        let until = batch
            .iter()
            .map(|w| w.until)
            .min()
            .unwrap_or_else(|| self.until());
        let op = Self::op_id()?;
        let marker = self.audit_key(&op, 0);
        let mut keys: Vec<&str> = Vec::new();
        for w in batch {
            if !keys.contains(&w.key.as_str()) {
                keys.push(&w.key);
            }
        }
        let mut attempts: Vec<Vec<Result<Outcome, StoreError>>> = Vec::new();
        // Whether an attempt's answer was lost: only then may an attempt have committed
        // unseen (an answer that says "compare failed" is definite).
        let mut lost = false;
        // The current values a failed compare answered with, read at `mark`.
        let mut answered: Option<((Vec<Read>, Head, i64), Mark)> = None;
        loop {
            if Instant::now() > until {
                return Err(StoreError::Database(
                    "etcd: no commit within the deadline (contention or no quorum)".into(),
                ));
            }
            if lost {
                known.forget();
                if let Some(attempt) = self.committed_attempt(&op, until)? {
                    self.erase_history();
                    return attempts.get(attempt).cloned().ok_or_else(|| {
                        StoreError::Database("a committed attempt this node never made".into())
                    });
                }
            }
            // What is known was checked when it was read, or written by this node; it is not
            // checked again (it may be older than a head this node has seen since: then the
            // compares fail, and the answer is checked).
            let (state, checked) = match answered.take() {
                Some((state, mark)) => (state, Some(mark)),
                None => match known.all(&keys) {
                    Some(state) => (state, None),
                    None => {
                        let mark = integrity.mark()?;
                        (self.read_many_with_head(&keys, shard, until)?, Some(mark))
                    }
                },
            };
            let (reads, head, head_revision) = state;
            if let Some(mark) = checked {
                integrity.check_head(&head, mark)?;
            }
            let mut rows: Vec<Row<'_>> = keys
                .iter()
                .zip(reads)
                .map(|(key, read)| {
                    let refused = match (&read.record, &read.seal, checked) {
                        (Some(r), Some(seal), Some(mark)) => {
                            integrity.check_row(&head, r, seal, mark).err()
                        }
                        _ => None,
                    };
                    Row {
                        key,
                        current: read.record.clone(),
                        seal: read.seal,
                        read,
                        refused,
                        changed: false,
                    }
                })
                .collect();

            let attempt = attempts.len();
            let at = now();
            let mut new_head = head.clone();
            let mut events = Vec::new();
            let mut written: Vec<(RecordId, u64)> = Vec::new();
            let mut drops = false;
            let mut outcomes = Vec::with_capacity(batch.len());
            for w in batch {
                let Some(row) = rows.iter_mut().find(|r| r.key == w.key) else {
                    outcomes.push(Err(StoreError::Database("a change without its row".into())));
                    continue;
                };
                if let Some(refused) = &row.refused {
                    outcomes.push(Err(refused.clone()));
                    continue;
                }
                match w.job.decide(row.current.as_ref()) {
                    Change::Done(out) => outcomes.push(Ok(out)),
                    Change::Write {
                        record,
                        events: logged,
                        out,
                    } => {
                        if row.current.as_ref().map(|r| r.record_id) != Some(record.record_id) {
                            // The batched changes never make a new record.
                            outcomes.push(Err(StoreError::Database(
                                "a batched change made a new record".into(),
                            )));
                            continue;
                        }
                        let record_hex = record.record_id.to_hex();
                        let fields = EventFields::of_write(&record, &record_hex, at, &logged);
                        let (seal, chained) =
                            integrity.write(&mut new_head, row.seal.as_ref(), &record, &fields);
                        for (e, c) in fields.iter().zip(&chained) {
                            let key = self.audit_key(&op, events.len());
                            events.push(self.audit_op(key, e, (shard, c), attempt)?);
                        }
                        drops |= row
                            .current
                            .as_ref()
                            .is_some_and(|r| r.sealed.is_some() && r.sealed != record.sealed);
                        written.push((record.record_id, seal.epoch));
                        row.current = Some(record);
                        row.seal = Some(seal);
                        row.changed = true;
                        outcomes.push(Ok(out));
                    }
                }
            }
            let writes = !events.is_empty();
            if !writes && checked.is_some() {
                // Nothing to write: every outcome stands on the linearizable read.
                remember(known, &rows, (head, head_revision));
                return Ok(outcomes);
            }
            // Nothing to write, but decided from what was known: the transaction below, with
            // only its compares, confirms that it is still current.
            let mut compare = vec![Compare::modified_at(&self.head_key(shard), head_revision)];
            if writes {
                compare.push(Compare::created_at(&marker, 0));
            }
            let mut success = Vec::new();
            for row in &rows {
                if row.refused.is_some() {
                    continue;
                }
                compare.push(Compare::modified_at(row.key, row.read.revision));
                if let (true, Some(record), Some(seal)) = (row.changed, &row.current, &row.seal) {
                    let value = serde_json::to_vec(&Stored::of(record, seal)).map_err(db)?;
                    success.push(RequestOp::put(row.key, value));
                }
            }
            if writes {
                let head_value = serde_json::to_vec(&StoredHead::of(&new_head)).map_err(db)?;
                success.push(RequestOp::put(self.head_key(shard), head_value));
                success.extend(events);
            }
            attempts.push(outcomes.clone());
            let txn = TxnRequest {
                compare,
                success,
                failure: self.ranges_with_head(&keys, shard),
            };
            let mark = integrity.mark()?;
            match self.commit_answer(txn, until)? {
                Some(answer) if answer.succeeded && !writes => {
                    remember(known, &rows, (head, head_revision));
                    return Ok(outcomes);
                }
                Some(answer) if answer.succeeded => {
                    let revision = answer
                        .header
                        .map(|h| h.revision)
                        .ok_or_else(|| db("a transaction answer without a header"))?;
                    integrity.committed(&new_head, &written);
                    for row in rows.iter_mut().filter(|row| row.changed) {
                        row.read = Read {
                            record: row.current.clone(),
                            seal: row.seal,
                            revision,
                        };
                    }
                    remember(known, &rows, (new_head, revision));
                    if drops {
                        self.erase_history();
                    }
                    return Ok(outcomes);
                }
                // Changed by another node, or by this batch's own late commit (the marker
                // check above finds it): decide again from the values the answer holds.
                Some(answer) => {
                    known.forget();
                    answered = Some((
                        parse_ranges_with_head(answer.responses, keys.len(), shard)?,
                        mark,
                    ));
                }
                None => {
                    lost = true;
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }
}

/// After a batch: the head it left and its rows (those whose check failed are forgotten,
/// so the next change to them reads and checks them again).
fn remember(known: &mut Known, rows: &[Row<'_>], head: (Head, i64)) {
    known.head = Some(head);
    for row in rows {
        if row.refused.is_some() {
            known.rows.remove(row.key);
        } else {
            known.learn(row.key, row.read.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn absent() -> Read {
        Read {
            record: None,
            seal: None,
            revision: 0,
        }
    }

    #[test]
    fn what_a_node_knows_is_bounded_and_needs_every_key() {
        let mut known = Known::default();
        known.learn("a", absent());
        assert!(known.all(&["a"]).is_none(), "no head known yet");
        let head = Head {
            shard: 3,
            epoch: 1,
            records_sum: [0; 32],
            audit_hash: [0; 32],
            tag: [0; 32],
        };
        known.head = Some((head, 7));
        assert!(known.all(&["a"]).is_some());
        assert!(known.all(&["a", "b"]).is_none(), "b was never read");
        for n in 0..MOST_KNOWN {
            known.learn(&format!("k{n}"), absent());
        }
        assert!(known.rows.len() <= MOST_KNOWN, "{}", known.rows.len());
        known.forget();
        assert!(known.all(&[]).is_none() && known.rows.is_empty());
    }
}
