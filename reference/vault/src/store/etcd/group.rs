//! Group commit (`spec/vault.md` §6.1): the guesses and KE3 outcomes that arrive together
//! on one node, whatever their shards, are committed in one etcd transaction. A caller
//! joins the node's queue and waits for the turn, and whoever takes the turn commits every
//! change queued by then (at most [`MOST_IN_A_BATCH`]) and hands each caller its own
//! outcome. No outcome leaves before the transaction that carries it committed, so a guess
//! is still counted before its KE2 is sent.
//!
//! One transaction compares every record it read and the head of every shard it writes,
//! and writes each changed record once (its final value), each such head once, and every
//! change's audit events in order: for each shard, the batch is one step of its chain, as if
//! its changes had been made one after the other. Changes that arrive during a commit wait
//! for the next instead of racing it and retrying. One queue for all shards, not one each:
//! with a queue per shard, requests spread over the shards rarely met, and each paid a read
//! and a commit of its own (`benches/README.md`, "Group commit across shards").

use super::{db, drops_secrets, EtcdStore, Stored, StoredHead, RETRY_PAUSE};
use crate::ids::RecordId;
use crate::store::etcd_rpc::{Compare, RequestOp, TxnRequest};
use crate::store::integrity::{Head, RowSeal};
use crate::store::transitions::{self, Change};
use crate::store::{bound, GroupCommitReports, GuessOutcome, Record, StoreError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The most changes one transaction carries: etcd refuses a transaction of more than 128
/// operations in a branch (`--max-txn-ops`), and a change writes its record and up to two
/// events (32 × 3 + at most 16 heads = 112 puts; 1 + 16 + 32 = 49 compares).
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

/// One caller's change, waiting in the node's queue, and its outcome once committed.
struct Waiting {
    shard: u32,
    key: String,
    job: Job,
    /// When the caller's own deadline runs out.
    until: Instant,
    outcome: Mutex<Option<Result<Outcome, StoreError>>>,
}

/// The node's queue of changes and its turn to commit.
#[derive(Default)]
pub(super) struct Groups {
    waiting: Mutex<Vec<Arc<Waiting>>>,
    turn: Mutex<()>,
    /// Told of every batch answered.
    pub(super) reports: GroupCommitReports,
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    m.lock()
        .map_err(|_| StoreError::Database("a group commit lock was poisoned".into()))
}

/// A record's row in a batch: as read, then as the batch's changes left it.
struct Row<'k> {
    key: &'k str,
    /// Its shard's place in the batch's heads.
    head: usize,
    /// The revision a compare must find.
    revision: i64,
    /// Its check failed: every change to it fails with this.
    refused: Option<StoreError>,
    current: Option<Record>,
    seal: Option<RowSeal>,
    changed: bool,
}

impl EtcdStore {
    /// Applies `job` to the record at `key` (in `shard`) in the node's next group commit,
    /// and returns its outcome once that commit is durable.
    pub(super) fn submit(&self, shard: u32, key: String, job: Job) -> Result<Outcome, StoreError> {
        let queue = &self.groups;
        let me = Arc::new(Waiting {
            shard,
            key,
            job,
            until: self.until(),
            outcome: Mutex::new(None),
        });
        lock(&queue.waiting)?.push(Arc::clone(&me));
        let _turn = lock(&queue.turn)?;
        loop {
            if let Some(done) = lock(&me.outcome)?.take() {
                return done;
            }
            let batch: Vec<Arc<Waiting>> = {
                let mut waiting = lock(&queue.waiting)?;
                let n = waiting.len().min(MOST_IN_A_BATCH);
                waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                return Err(StoreError::Database("a queued change was lost".into()));
            }
            let outcomes = match self.commit_batch(&batch) {
                Ok(outcomes) => outcomes,
                Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
            };
            for (waiting, outcome) in batch.iter().zip(outcomes) {
                *lock(&waiting.outcome)? = Some(outcome);
            }
        }
    }

    /// Reads every record `batch` names and the heads of their shards, applies the changes
    /// in order and commits them in one transaction, retried like [`EtcdStore::update`] (the
    /// batch is one operation: its marker is its first audit event).
    fn commit_batch(
        &self,
        batch: &[Arc<Waiting>],
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
        let mut shards: Vec<u32> = Vec::new();
        // Each key's shard, as a place in `shards`.
        let mut key_heads: Vec<usize> = Vec::new();
        for w in batch {
            if keys.contains(&w.key.as_str()) {
                continue;
            }
            keys.push(&w.key);
            let at = match shards.iter().position(|s| *s == w.shard) {
                Some(at) => at,
                None => {
                    shards.push(w.shard);
                    shards.len() - 1
                }
            };
            key_heads.push(at);
        }
        let mut attempts: Vec<Vec<Result<Outcome, StoreError>>> = Vec::new();
        // Whether an attempt's answer was lost: only then may an attempt have committed
        // unseen (an answer that says "compare failed" is definite).
        let mut lost = false;
        loop {
            if Instant::now() > until {
                return Err(StoreError::Database(
                    "etcd: no commit within the deadline (contention or no quorum)".into(),
                ));
            }
            if lost {
                if let Some(attempt) = self.committed_attempt(&op, until)? {
                    self.erase_history();
                    self.groups.reports.report(batch.len(), attempt);
                    return attempts.get(attempt).cloned().ok_or_else(|| {
                        StoreError::Database("a committed attempt this node never made".into())
                    });
                }
            }
            let mark = integrity.mark()?;
            let (reads, heads) = self.read_many_with_heads(&keys, &shards, until)?;
            // A shard whose head fails its check fails its own changes only, as a record
            // does: the batch's other shards are not held hostage to it.
            let head_refused: Vec<Option<StoreError>> = heads
                .iter()
                .map(|(head, _)| integrity.check_head(head, mark).err())
                .collect();
            let mut rows: Vec<Row<'_>> = keys
                .iter()
                .zip(&key_heads)
                .zip(reads)
                .map(|((key, &at), read)| {
                    let refused = match (&head_refused[at], &read.record, &read.seal) {
                        (Some(refused), _, _) => Some(refused.clone()),
                        (None, Some(r), Some(seal)) => {
                            integrity.check_row(&heads[at].0, r, seal, mark).err()
                        }
                        _ => None,
                    };
                    Row {
                        key,
                        head: at,
                        revision: read.revision,
                        current: read.record,
                        seal: read.seal,
                        refused,
                        changed: false,
                    }
                })
                .collect();

            let mut new_heads: Vec<Head> = heads.iter().map(|(h, _)| h.clone()).collect();
            let mut events = Vec::new();
            // Per shard of the batch: the rows written, with their epochs.
            let mut written: Vec<Vec<(RecordId, u64)>> = vec![Vec::new(); shards.len()];
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
                        let (seal, ops) = self.logged_write(
                            integrity,
                            &mut new_heads[row.head],
                            row.seal.as_ref(),
                            &record,
                            &logged,
                            (&op, events.len(), attempts.len()),
                        )?;
                        events.extend(ops);
                        drops |= drops_secrets(row.current.as_ref(), &record);
                        written[row.head].push((record.record_id, seal.epoch));
                        row.current = Some(record);
                        row.seal = Some(seal);
                        row.changed = true;
                        outcomes.push(Ok(out));
                    }
                }
            }
            let retries = attempts.len();
            if events.is_empty() {
                // Nothing to write: every outcome stands on the linearizable read.
                self.groups.reports.report(batch.len(), retries);
                return Ok(outcomes);
            }

            // The heads of the shards this batch writes: each takes one step of its chain.
            let mut compare = vec![Compare::created_at(&marker, 0)];
            let mut success = Vec::new();
            for (at, shard) in shards.iter().enumerate() {
                if written[at].is_empty() {
                    continue;
                }
                compare.push(Compare::modified_at(&self.head_key(*shard), heads[at].1));
                let value = serde_json::to_vec(&StoredHead::of(&new_heads[at])).map_err(db)?;
                success.push(RequestOp::put(self.head_key(*shard), value));
            }
            for row in &rows {
                if row.refused.is_some() {
                    continue;
                }
                compare.push(Compare::modified_at(row.key, row.revision));
                if let (true, Some(record), Some(seal)) = (row.changed, &row.current, &row.seal) {
                    let value = serde_json::to_vec(&Stored::of(record, seal)).map_err(db)?;
                    success.push(RequestOp::put(row.key, value));
                }
            }
            success.extend(events);
            attempts.push(outcomes.clone());
            let txn = TxnRequest {
                compare,
                success,
                failure: vec![],
            };
            match self.commit(txn, until)? {
                Some(true) => {
                    for (head, rows) in new_heads.iter().zip(&written) {
                        if !rows.is_empty() {
                            integrity.committed(head, rows);
                        }
                    }
                    self.groups.reports.report(batch.len(), retries);
                    if drops {
                        self.erase_history();
                    }
                    return Ok(outcomes);
                }
                // Changed by another node, or by this batch's own late commit (the marker
                // check above finds it): read again at once.
                Some(false) => {}
                None => {
                    lost = true;
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }
}
