//! The multi-site store (`spec/vault.md` §6.1): records, guess counters, the sealed server
//! setup and the audit log in etcd, whose Raft log makes every write linearizable. Several
//! vault nodes share one store, so a record has one guess count whichever node a guess
//! reaches. Every change is a compare-and-swap on the record key's `mod_revision`: a
//! transaction that only commits if nobody changed the record since it was read, retried
//! otherwise; a read-modify-write without the compare could lose a guess.
//!
//! Keys, under a prefix (default `/coffer/v1/`): `setup`; `user/<tenant hex>/<user hex>`
//! (the user's latest record, JSON); `id/<record id hex>` (the user key of a record);
//! `audit/<unique>` (one event, JSON; its position in the log is the key's create revision);
//! `head/<shard>` (the store's [`ETCD_SHARDS`] heads, `spec/vault.md` §6.2). Every change
//! compares and writes its user's shard head as well as the record, so writes in one shard
//! take turns (the head orders them, and that shard's audit chain follows the order) while
//! writes in different shards do not wait for each other.
//!
//! The gRPC client is Coffer's own (`etcd_rpc`: three calls, no build-time `protoc`) on
//! tonic's channel, with TCP_NODELAY set (Nagle's algorithm would add 40 ms to every call).
//!
//! The trait is synchronous (the vault calls it from blocking threads); this store runs its
//! gRPC client on a small runtime of its own, and every call has a deadline: a node cut off
//! from the etcd quorum fails with `io` instead of answering from stale state.

mod group;

use super::etcd_rpc::{
    CompactionRequest, Compare, Connection, EtcdClient, RangeRequest, RequestOp, Response,
    TxnRequest,
};
use super::integrity::{
    shard_of, EventFields, Head, Integrity, RowSeal, StoreCheck, StoreSummary, ETCD_SHARDS,
};
use super::transitions::{self, Change};
use super::{
    bound, AuditEvent, GroupCommitObserver, GuessOutcome, Record, RecordState, Store, StoreError,
};
use crate::ids::RecordId;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How to reach the etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `host:port` of each member (any subset; the client fails over).
    pub endpoints: Vec<String>,
    /// Key prefix, e.g. `/coffer/v1/`.
    pub prefix: String,
    /// etcd user and password (etcd's own auth), if enabled.
    pub user: Option<(String, String)>,
    /// TLS: the CA certificate (PEM) that signs the members' certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// TLS client certificate and key (PEM), when the members require them.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Longest any one store call may take (connection, quorum, retries).
    pub deadline: Duration,
}

impl EtcdConfig {
    /// Parses `etcd://host:port,host:port[/prefix]` (`etcds://` for TLS, which then needs
    /// `ca_pem`).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Database(format!("--store {url}: {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("etcds://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("etcd://") {
            (false, r)
        } else {
            return Err(bad("expected etcd://host:port,... or etcds://..."));
        };
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let scheme = if tls { "https" } else { "http" };
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(bad("no member given"));
        }
        let prefix = if path.is_empty() {
            "/coffer/v1/".to_owned()
        } else {
            format!("/{}/", path.trim_matches('/'))
        };
        Ok(EtcdConfig {
            endpoints,
            prefix,
            user: None,
            ca_pem: None,
            client_pem: None,
            deadline: Duration::from_secs(5),
        })
    }
}

/// A record as stored in etcd.
#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    tenant: String,
    user: String,
    version: u32,
    state: RecordState,
    guesses: u32,
    limit: u32,
    ksf: String,
    sealed: Option<String>,
    /// The row's seal (`spec/vault.md` §6.2): epoch and hex tag.
    epoch: u64,
    tag: String,
}

/// A 32-byte field of a stored value. Only the vault writes these values, so one that does
/// not decode was written by someone else: tampering (`corrupt`, spec/vault.md §6.2).
fn hex32(s: &str, what: &str) -> Result<[u8; 32], StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| StoreError::Tampered(format!("etcd value: bad {what}")))?;
    Ok(out)
}

/// The store head as stored (`spec/vault.md` §6.2).
#[derive(Serialize, Deserialize)]
struct StoredHead {
    shard: u32,
    epoch: u64,
    records_sum: String,
    audit_hash: String,
    tag: String,
}

impl StoredHead {
    fn of(h: &Head) -> Self {
        StoredHead {
            shard: h.shard,
            epoch: h.epoch,
            records_sum: hex::encode(h.records_sum),
            audit_hash: hex::encode(h.audit_hash),
            tag: hex::encode(h.tag),
        }
    }

    fn head(self) -> Result<Head, StoreError> {
        Ok(Head {
            shard: self.shard,
            epoch: self.epoch,
            records_sum: hex32(&self.records_sum, "head sum")?,
            audit_hash: hex32(&self.audit_hash, "head audit hash")?,
            tag: hex32(&self.tag, "head tag")?,
        })
    }
}

impl Stored {
    fn of(r: &Record, seal: &RowSeal) -> Self {
        Stored {
            id: r.record_id.to_hex(),
            tenant: r.tenant.clone(),
            user: r.user.clone(),
            version: r.version,
            state: r.state,
            guesses: r.guesses,
            limit: r.limit,
            ksf: r.ksf.clone(),
            sealed: r.sealed.as_ref().map(|s| B64.encode(s)),
            epoch: seal.epoch,
            tag: hex::encode(seal.tag),
        }
    }

    fn record(self) -> Result<(Record, RowSeal), StoreError> {
        let seal = RowSeal {
            epoch: self.epoch,
            tag: hex32(&self.tag, "record tag")?,
        };
        let corrupt = |what: &str| StoreError::Tampered(format!("etcd record: bad {what}"));
        let id = RecordId::from_hex(&self.id).ok_or_else(|| corrupt("id"))?;
        let sealed = match self.sealed {
            Some(s) => Some(B64.decode(s).map_err(|_| corrupt("sealed"))?),
            None => None,
        };
        let record = Record {
            record_id: id,
            tenant: self.tenant,
            user: self.user,
            version: self.version,
            state: self.state,
            guesses: self.guesses,
            limit: self.limit,
            ksf: self.ksf,
            sealed,
        };
        Ok((record, seal))
    }
}

/// One audit event as stored.
#[derive(Serialize, Deserialize)]
struct StoredEvent {
    at: u64,
    tenant: String,
    user: String,
    record: String,
    event: String,
    detail: String,
    /// Which attempt of its operation wrote it (see `EtcdStore::update`).
    #[serde(default)]
    attempt: usize,
    /// Its chain (its user's shard), the epoch of the write that logged it, and the chain's
    /// hashes (hex) before and after it.
    chain: u32,
    epoch: u64,
    previous: String,
    hash: String,
}

/// The etcd store.
pub struct EtcdStore {
    client: EtcdClient,
    prefix: String,
    deadline: Duration,
    /// Dropped with `shutdown_background`: the store may be dropped inside the server's
    /// async runtime, where dropping a runtime the ordinary way panics.
    runtime: Option<tokio::runtime::Runtime>,
    #[cfg(debug_assertions)]
    lose_answers: std::sync::atomic::AtomicUsize,
    integrity: OnceLock<Arc<Integrity>>,
    /// The node's queue of guesses and KE3 outcomes waiting for a group commit.
    groups: group::Groups,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("etcd: {e}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A record read with its seal and the revision a compare-and-swap must find unchanged
/// (0: absent).
struct Read {
    record: Option<Record>,
    seal: Option<RowSeal>,
    revision: i64,
}

impl EtcdStore {
    /// Connects to the cluster (within the deadline).
    pub fn connect(config: &EtcdConfig) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd-store")
            .enable_all()
            .build()
            .map_err(db)?;
        // Each request gets a quarter of the deadline, so a member that stopped answering
        // leaves time to retry on another; keep-alives notice a dead connection in about a
        // second; a member without a leader refuses at once; expired auth tokens are renewed.
        let connection = Connection {
            endpoints: &config.endpoints,
            ca_pem: config.ca_pem.as_deref(),
            client_pem: config
                .client_pem
                .as_ref()
                .map(|(cert, key)| (&cert[..], &key[..])),
            attempt: (config.deadline / 4).max(Duration::from_millis(250)),
        };
        let user = config
            .user
            .as_ref()
            .map(|(name, password)| (name.as_str(), password.as_str()));
        let deadline = config.deadline;
        let client = runtime.block_on(async {
            tokio::time::timeout(deadline, EtcdClient::connect(&connection, user))
                .await
                .map_err(|_| db("no etcd member answered in time"))?
                .map_err(db)
        })?;
        let store = EtcdStore {
            client,
            prefix: config.prefix.clone(),
            deadline: config.deadline,
            runtime: Some(runtime),
            #[cfg(debug_assertions)]
            lose_answers: std::sync::atomic::AtomicUsize::new(0),
            integrity: OnceLock::new(),
            groups: group::Groups::default(),
        };
        // A linearizable read: proves a quorum is reachable before the vault starts.
        store.get(&store.key("setup"), store.until())?;
        Ok(store)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn user_key(&self, tenant: &str, user: &str) -> String {
        self.key(&format!(
            "user/{}/{}",
            hex::encode(tenant),
            hex::encode(user)
        ))
    }

    fn id_key(&self, id: &RecordId) -> String {
        self.key(&format!("id/{id}"))
    }

    /// The moment a store call started now must be done by.
    fn until(&self) -> Instant {
        Instant::now() + self.deadline
    }

    /// Runs `f` on the store's runtime, by `until` at the latest.
    fn run<T, F: Future<Output = Result<T, StoreError>>>(
        &self,
        until: Instant,
        f: F,
    ) -> Result<T, StoreError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| db("the store is shut down"))?;
        let left = until.saturating_duration_since(Instant::now());
        let deadline = self.deadline;
        runtime.block_on(async move {
            tokio::time::timeout(left, f).await.map_err(|_| {
                db(format!(
                    "no answer within {deadline:?} (is a quorum of members reachable?)"
                ))
            })?
        })
    }

    /// A linearizable read, retried (a member that just died refuses connections until the
    /// client stops choosing it) until the deadline.
    fn get(&self, key: &str, until: Instant) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        let client = self.client.clone();
        let key = key.to_owned();
        self.run(until, async move {
            loop {
                match client.range(RangeRequest::key(&key)).await {
                    Ok(response) => {
                        return Ok(response
                            .kvs
                            .into_iter()
                            .next()
                            .map(|kv| (kv.value, kv.mod_revision)))
                    }
                    Err(e) if e.transient() => tokio::time::sleep(RETRY_PAUSE).await,
                    Err(e) => return Err(db(e)),
                }
            }
        })
    }

    fn read(&self, key: &str, until: Instant) -> Result<Read, StoreError> {
        parse_read(self.get(key, until)?)
    }

    /// The records at `keys` and shard `shard`'s head with its revision, all at one store
    /// revision, in one round trip (see [`EtcdStore::read_many_with_heads`]).
    fn read_many_with_head(
        &self,
        keys: &[&str],
        shard: u32,
        until: Instant,
    ) -> Result<(Vec<Read>, Head, i64), StoreError> {
        let (reads, mut heads) = self.read_many_with_heads(keys, &[shard], until)?;
        let (head, revision) = heads.pop().ok_or_else(|| db("a read without its head"))?;
        Ok((reads, head, revision))
    }

    /// The records at `keys` and the heads of `shards`, all at one
    /// store revision, in one round trip: a read-only transaction of ranges, which etcd
    /// serves as a linearizable read.
    fn read_many_with_heads(
        &self,
        keys: &[&str],
        shards: &[u32],
        until: Instant,
    ) -> Result<(Vec<Read>, Vec<HeadAt>), StoreError> {
        let mut success: Vec<RequestOp> = keys.iter().map(|key| RequestOp::range(key)).collect();
        success.extend(shards.iter().map(|s| RequestOp::range(&self.head_key(*s))));
        let txn = TxnRequest {
            compare: vec![],
            success,
            failure: vec![],
        };
        let client = self.client.clone();
        let answers = self.run(until, async move {
            loop {
                match client.txn(txn.clone()).await {
                    Ok(response) => return Ok(response.responses),
                    Err(e) if e.transient() => tokio::time::sleep(RETRY_PAUSE).await,
                    Err(e) => return Err(db(e)),
                }
            }
        })?;
        let asked = keys.len() + shards.len();
        if answers.len() != asked {
            return Err(db(format!(
                "a read transaction of {asked} ranges answered {}",
                answers.len()
            )));
        }
        let mut found = answers.into_iter().map(|answer| match answer.response {
            Some(Response::Range(r)) => Ok(r
                .kvs
                .into_iter()
                .next()
                .map(|kv| (kv.value, kv.mod_revision))),
            None => Err(db("a read transaction answered without a range")),
        });
        let mut reads = Vec::with_capacity(keys.len());
        for _ in keys {
            reads.push(parse_read(found.next().transpose()?.flatten())?);
        }
        let mut heads = Vec::with_capacity(shards.len());
        for shard in shards {
            let (value, revision) = found.next().transpose()?.flatten().ok_or_else(|| {
                StoreError::Tampered(format!("the store has no head {shard} (it was removed)"))
            })?;
            heads.push((parse_head(&value, *shard)?, revision));
        }
        Ok((reads, heads))
    }

    /// The shard of the record a user key names (the key holds the tenant and user in hex),
    /// or `None` for a key of another form.
    fn shard_of_key(&self, key: &str) -> Option<u32> {
        let rest = key.strip_prefix(&self.key("user/"))?;
        let (tenant, user) = rest.split_once('/')?;
        let text = |h: &str| String::from_utf8(hex::decode(h).ok()?).ok();
        Some(shard_of(&text(tenant)?, &text(user)?, ETCD_SHARDS))
    }
}

/// A shard's head and the revision it was read at.
type HeadAt = (Head, i64);

/// Whether writing `new` over `old` drops secrets (destroyed, deleted, replaced): they stay
/// in the key's history until it is compacted.
fn drops_secrets(old: Option<&Record>, new: &Record) -> bool {
    old.is_some_and(|r| r.sealed.is_some() && r.sealed != new.sealed)
}

/// A record as stored, or absent.
fn parse_read(stored: Option<(Vec<u8>, i64)>) -> Result<Read, StoreError> {
    match stored {
        None => Ok(Read {
            record: None,
            seal: None,
            revision: 0,
        }),
        Some((value, revision)) => {
            let stored: Stored = serde_json::from_slice(&value).map_err(|e| {
                db(format!(
                    "a record that does not parse (written before vault spec 0.4, or \
                         changed outside the vault): {e}"
                ))
            })?;
            let (record, seal) = stored.record()?;
            Ok(Read {
                record: Some(record),
                seal: Some(seal),
                revision,
            })
        }
    }
}

impl EtcdStore {
    /// The audit key of event `n` of operation `op` (unique: a time and random bytes).
    fn audit_key(&self, op: &str, n: usize) -> String {
        self.key(&format!("audit/{op}-{n}"))
    }

    /// A fresh operation id: nanoseconds since the epoch and 8 random bytes.
    fn op_id() -> Result<String, StoreError> {
        let mut unique = [0u8; 8];
        getrandom::fill(&mut unique).map_err(db)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(format!("{nanos:032}-{}", hex::encode(unique)))
    }

    fn audit_op(
        &self,
        key: String,
        e: &EventFields<'_>,
        (shard, chained): (u32, &super::integrity::Chained),
        attempt: usize,
    ) -> Result<RequestOp, StoreError> {
        let value = serde_json::to_vec(&StoredEvent {
            at: e.at,
            tenant: e.tenant.to_owned(),
            user: e.user.to_owned(),
            record: e.record.to_owned(),
            event: e.event.to_owned(),
            detail: e.detail.to_owned(),
            attempt,
            chain: shard,
            epoch: chained.epoch,
            previous: hex::encode(chained.previous),
            hash: hex::encode(chained.hash),
        })
        .map_err(db)?;
        Ok(RequestOp::put(key, value))
    }

    /// One record's write in a transaction of operation `op`: seals `record` in place of
    /// `old` (advancing `head`) and returns its seal and the puts of its audit events,
    /// numbered from `first`, each marked with the operation's `attempt`.
    fn logged_write(
        &self,
        integrity: &Integrity,
        head: &mut Head,
        old: Option<&RowSeal>,
        record: &Record,
        events: &[(&'static str, String)],
        (op, first, attempt): (&str, usize, usize),
    ) -> Result<(RowSeal, Vec<RequestOp>), StoreError> {
        let record_hex = record.record_id.to_hex();
        let fields = EventFields::of_write(record, &record_hex, now(), events);
        let (seal, chained) = integrity.write(head, old, record, &fields);
        let shard = head.shard;
        let ops = fields
            .iter()
            .zip(&chained)
            .enumerate()
            .map(|(n, (e, c))| self.audit_op(self.audit_key(op, first + n), e, (shard, c), attempt))
            .collect::<Result<_, _>>()?;
        Ok((seal, ops))
    }

    /// The key of shard `shard`'s head.
    fn head_key(&self, shard: u32) -> String {
        self.key(&format!("head/{shard:02}"))
    }

    /// Shard `shard`'s head and its revision (absent only in a store no vault bound).
    fn read_head(&self, shard: u32, until: Instant) -> Result<(Head, i64), StoreError> {
        let (value, revision) = self.get(&self.head_key(shard), until)?.ok_or_else(|| {
            StoreError::Tampered(format!("the store has no head {shard} (it was removed)"))
        })?;
        Ok((parse_head(&value, shard)?, revision))
    }

    /// One page of a range, at store revision `at` (0: the latest), retried until `until`.
    fn range_at(
        &self,
        mut request: RangeRequest,
        at: i64,
        until: Instant,
    ) -> Result<super::etcd_rpc::RangeResponse, StoreError> {
        request.revision = at;
        let client = self.client.clone();
        self.run(until, async move {
            loop {
                match client.range(request.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(e) if e.transient() => tokio::time::sleep(RETRY_PAUSE).await,
                    Err(e) => return Err(db(e)),
                }
            }
        })
    }

    /// Writes `record` at `key` with `ops` if the key is still at `revision` and `marker`
    /// does not exist yet. Returns whether it committed, or `None` when the answer was lost
    /// (it may have committed).
    fn swap(
        &self,
        (key, revision): (&str, i64),
        (head, head_revision): (&Head, i64),
        marker: &str,
        (record, seal): (&Record, &RowSeal),
        (extra, absent): (Vec<RequestOp>, Option<String>),
        until: Instant,
    ) -> Result<Option<bool>, StoreError> {
        let value = serde_json::to_vec(&Stored::of(record, seal)).map_err(db)?;
        let head_key = self.head_key(head.shard);
        let head_value = serde_json::to_vec(&StoredHead::of(head)).map_err(db)?;
        let mut success = vec![
            RequestOp::put(key, value),
            RequestOp::put(head_key.clone(), head_value),
        ];
        success.extend(extra);
        let mut compare = vec![
            Compare::modified_at(key, revision),
            Compare::modified_at(&head_key, head_revision),
            Compare::created_at(marker, 0),
        ];
        compare.extend(absent.as_deref().map(|key| Compare::created_at(key, 0)));
        let txn = TxnRequest {
            compare,
            success,
            failure: vec![],
        };
        self.commit(txn, until)
    }

    /// Sends `txn`. Returns whether its compares held (and it committed), or `None` when the
    /// answer was lost (it may have committed).
    fn commit(&self, txn: TxnRequest, until: Instant) -> Result<Option<bool>, StoreError> {
        let client = self.client.clone();
        #[cfg(debug_assertions)]
        let lose = self
            .lose_answers
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        #[cfg(not(debug_assertions))]
        let lose = false;
        self.run(until, async move {
            match client.txn(txn).await {
                // Test builds only: the commit happened, its answer is dropped.
                Ok(_) if lose => Ok(None),
                Ok(r) => Ok(Some(r.succeeded)),
                Err(e) if e.transient() => Ok(None),
                Err(e) => Err(db(e)),
            }
        })
    }

    /// Test builds only: the next `n` commits succeed but report their answer as lost, as
    /// when a member dies between committing and answering.
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub fn lose_next_answers(&self, n: usize) {
        self.lose_answers
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Which attempt of operation `op` committed, if one did: its first audit event is the
    /// operation's marker, written only by the attempt that committed.
    fn committed_attempt(&self, op: &str, until: Instant) -> Result<Option<usize>, StoreError> {
        match self.get(&self.audit_key(op, 0), until)? {
            None => Ok(None),
            Some((value, _)) => {
                let event: StoredEvent = serde_json::from_slice(&value).map_err(db)?;
                Ok(Some(event.attempt))
            }
        }
    }

    /// Reads, decides and swaps until the swap commits, within one deadline. Every attempt
    /// of the operation writes the same audit keys and requires that the first does not
    /// exist yet, so at most one attempt ever commits. When an answer is lost, or a compare
    /// fails (possibly because of this operation's own late commit), the first audit key
    /// says whether (and which) attempt committed: then that attempt's result is returned,
    /// and nothing is applied twice.
    fn update<T: Clone>(
        &self,
        key: &str,
        shard: u32,
        mut decide: impl FnMut(&Read) -> Result<Change<T>, StoreError>,
    ) -> Result<T, StoreError> {
        let integrity = bound(&self.integrity)?;
        let until = self.until();
        let op = Self::op_id()?;
        let marker = self.audit_key(&op, 0);
        let mut outs: Vec<T> = Vec::new();
        loop {
            if !outs.is_empty() {
                if let Some(attempt) = self.committed_attempt(&op, until)? {
                    // Which write committed is known; whether it dropped secrets is not
                    // worth a second read: compact anyway (this path follows a lost answer).
                    self.erase_history();
                    return outs
                        .get(attempt)
                        .cloned()
                        .ok_or_else(|| db("a committed attempt this node never made"));
                }
            }
            // The record and the head at one revision, in one round trip.
            let mark = integrity.mark()?;
            let (mut reads, head, head_revision) =
                self.read_many_with_head(&[key], shard, until)?;
            let read = reads.pop().ok_or_else(|| db("a read without its record"))?;
            integrity.check_head(&head, mark)?;
            if let (Some(r), Some(seal)) = (&read.record, &read.seal) {
                integrity.check_row(&head, r, seal, mark)?;
            }
            let decided = match decide(&read) {
                // This operation's own earlier attempt may have committed after the check
                // above (its answer was lost): then "exists" is its own write, not a refusal.
                Err(refusal @ (StoreError::Exists | StoreError::IdTaken)) if !outs.is_empty() => {
                    match self.committed_attempt(&op, until)? {
                        Some(attempt) => {
                            return outs
                                .get(attempt)
                                .cloned()
                                .ok_or_else(|| db("a committed attempt this node never made"))
                        }
                        None => return Err(refusal),
                    }
                }
                other => other?,
            };
            match decided {
                Change::Done(out) => return Ok(out),
                Change::Write {
                    record,
                    events,
                    out,
                } => {
                    // The user key's value is the row: a new registration replaces the
                    // ended record it held, so that record's tag leaves the sum too.
                    let mut new_head = head.clone();
                    let (seal, mut ops) = self.logged_write(
                        integrity,
                        &mut new_head,
                        read.seal.as_ref(),
                        &record,
                        &events,
                        (&op, 0, outs.len()),
                    )?;
                    // A new record (registration) is also found by its id, which no other
                    // record may have had: the id key must not exist when it commits.
                    let mut absent = None;
                    if read.record.as_ref().map(|r| r.record_id) != Some(record.record_id) {
                        let id_key = self.id_key(&record.record_id);
                        ops.push(RequestOp::put(id_key.clone(), key.as_bytes().to_vec()));
                        absent = Some(id_key);
                    }
                    outs.push(out.clone());
                    let drops = drops_secrets(read.record.as_ref(), &record);
                    let swapped = self.swap(
                        (key, read.revision),
                        (&new_head, head_revision),
                        &marker,
                        (&record, &seal),
                        (ops, absent),
                        until,
                    )?;
                    match swapped {
                        Some(true) => {
                            integrity.committed(&new_head, &[(record.record_id, seal.epoch)]);
                            if drops {
                                self.erase_history();
                            }
                            return Ok(out);
                        }
                        // Changed by another node (or by this operation's own late commit:
                        // the marker check above finds it): look again at once.
                        Some(false) => {}
                        None => std::thread::sleep(RETRY_PAUSE),
                    }
                }
            }
            if Instant::now() > until {
                return Err(db(
                    "no commit within the deadline (contention or no quorum)",
                ));
            }
        }
    }
}

impl EtcdStore {
    /// An update of the record `id` (found through its id key) by `change`: the id key
    /// names the user key, which names the shard, so the record is read only once, with
    /// its head (three round trips: the id key, the record and head, the swap). `change`
    /// sees whatever record the key holds and leaves any other than `id` alone.
    fn update_by_id(
        &self,
        id: &RecordId,
        change: impl Fn(Option<&Record>) -> Change<bool>,
    ) -> Result<bool, StoreError> {
        let Some((key, _)) = self.get(&self.id_key(id), self.until())? else {
            return Ok(false);
        };
        let key = String::from_utf8(key).map_err(db)?;
        let Some(shard) = self.shard_of_key(&key) else {
            return Err(StoreError::Tampered(format!(
                "the id key of record {id} names {key:?}, not a user key"
            )));
        };
        self.update(&key, shard, |read| Ok(change(read.record.as_ref())))
    }

    /// `job` (a KE3 outcome) on the user's record in its shard's next group commit.
    fn submit_applied(
        &self,
        tenant: &str,
        user: &str,
        job: group::Job,
    ) -> Result<bool, StoreError> {
        let shard = shard_of(tenant, user, ETCD_SHARDS);
        match self.submit(shard, self.user_key(tenant, user), job)? {
            group::Outcome::Applied(applied) => Ok(applied),
            group::Outcome::Guess(_) => Err(db("a KE3 outcome answered as a guess")),
        }
    }

    /// Checks the whole store at one revision (`spec/vault.md` §6.2): every record, the sum
    /// of their tags and the audit chains, each against its shard's head.
    fn check_at(
        &self,
        integrity: &Integrity,
        at: i64,
        heads: &[Head],
    ) -> Result<StoreSummary, StoreError> {
        const PAGE: i64 = 500;
        let until = self.until();
        let mark = integrity.mark()?;
        let mut checks: Vec<StoreCheck<'_>> = heads
            .iter()
            .map(|head| integrity.check_store(head, mark))
            .collect::<Result<_, _>>()?;
        let mut from = 0;
        loop {
            let page = self.range_at(
                RangeRequest::prefix_by_creation(&self.key("user/"), from, PAGE),
                at,
                until,
            )?;
            for kv in &page.kvs {
                let stored: Stored = serde_json::from_slice(&kv.value).map_err(|e| {
                    StoreError::Tampered(format!("a record that does not parse: {e}"))
                })?;
                let (r, seal) = stored.record()?;
                let shard = shard_of(&r.tenant, &r.user, ETCD_SHARDS) as usize;
                checks[shard].row(&r, &seal)?;
                from = kv.create_revision + 1;
            }
            if page.kvs.len() < PAGE as usize {
                break;
            }
        }
        let mut after = 0;
        loop {
            let events = self.audit_at(after, PAGE as usize, at)?;
            for e in &events {
                let check = checks.get_mut(e.chain as usize).ok_or_else(|| {
                    StoreError::Tampered(format!("an audit event of chain {}", e.chain))
                })?;
                check.event(e.epoch, &e.fields(), &hex32(&e.hash, "audit hash")?)?;
                after = e.seq;
            }
            if events.len() < PAGE as usize {
                break;
            }
        }
        let mut total = StoreSummary {
            epoch: 0,
            records: 0,
            events: 0,
        };
        for check in checks {
            let one = check.finish()?;
            total.epoch += one.epoch;
            total.records += one.records;
            total.events += one.events;
        }
        Ok(total)
    }

    /// Every shard's head at store revision `at` (0: the latest), and that revision.
    fn heads_at(&self, at: i64) -> Result<(Vec<Head>, i64), StoreError> {
        let response = self.range_at(
            RangeRequest::prefix_by_creation(&self.key("head/"), 0, i64::from(ETCD_SHARDS) + 1),
            at,
            self.until(),
        )?;
        let revision = response
            .header
            .map(|h| h.revision)
            .ok_or_else(|| db("a Range answer without a header"))?;
        let mut heads: Vec<Option<Head>> = vec![None; ETCD_SHARDS as usize];
        for kv in response.kvs {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let shard = (0..ETCD_SHARDS)
                .find(|s| self.head_key(*s) == key)
                .ok_or_else(|| StoreError::Tampered(format!("an unknown head key {key}")))?;
            heads[shard as usize] = Some(parse_head(&kv.value, shard)?);
        }
        let heads = heads
            .into_iter()
            .enumerate()
            .map(|(shard, head)| {
                head.ok_or_else(|| {
                    StoreError::Tampered(format!("the store has no head {shard} (it was removed)"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((heads, revision))
    }

    /// The heads, making the first ones if the store is empty.
    fn heads_or_genesis(&self, integrity: &Integrity) -> Result<(), StoreError> {
        let until = self.until();
        for what in ["head/", "user/", "audit/"] {
            let any = self.range_at(
                RangeRequest::prefix_by_creation(&self.key(what), 0, 1),
                0,
                until,
            )?;
            match (what, any.kvs.is_empty()) {
                ("head/", false) => return Ok(()),
                ("head/", true) => {}
                (_, false) => {
                    return Err(StoreError::Tampered(
                        "the store holds records but no head (they were removed, or the \
                         records were written before vault spec 0.4)"
                            .into(),
                    ))
                }
                (_, true) => {}
            }
        }
        let mut compare = Vec::new();
        let mut success = Vec::new();
        for shard in 0..ETCD_SHARDS {
            let key = self.head_key(shard);
            compare.push(Compare::created_at(&key, 0));
            let value =
                serde_json::to_vec(&StoredHead::of(&integrity.genesis(shard))).map_err(db)?;
            success.push(RequestOp::put(key, value));
        }
        let txn = TxnRequest {
            compare,
            success,
            failure: vec![],
        };
        // Another node may have made them first: either way they are there now.
        self.commit(txn, until)?;
        Ok(())
    }
}

/// A head as stored, which must be shard `shard`'s.
fn parse_head(value: &[u8], shard: u32) -> Result<Head, StoreError> {
    let head = serde_json::from_slice::<StoredHead>(value)
        .map_err(|_| StoreError::Tampered(format!("head {shard} does not parse")))?
        .head()?;
    if head.shard != shard {
        return Err(StoreError::Tampered(format!(
            "head {shard} says it is head {}",
            head.shard
        )));
    }
    Ok(head)
}

/// Plain keys for other kinds of record (a realm's, `crate::realms`), under the same prefix,
/// with the same deadline, retries and test hooks as the vault's records.
impl EtcdStore {
    /// The moment a call started now must be done by.
    pub(crate) fn deadline_from_now(&self) -> Instant {
        self.until()
    }

    /// A linearizable read of `rest` (under the prefix): its value and `mod_revision`.
    pub(crate) fn value_at(
        &self,
        rest: &str,
        until: Instant,
    ) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        self.get(&self.key(rest), until)
    }

    /// Writes `value` at `rest` if the key is still at `revision` (0: absent). Returns
    /// whether it committed, or `None` when the answer was lost (it may have committed).
    pub(crate) fn swap_value(
        &self,
        rest: &str,
        revision: i64,
        value: Vec<u8>,
        until: Instant,
    ) -> Result<Option<bool>, StoreError> {
        let key = self.key(rest);
        let txn = TxnRequest {
            compare: vec![Compare::modified_at(&key, revision)],
            success: vec![RequestOp::put(key.clone(), value)],
            failure: vec![],
        };
        self.commit(txn, until)
    }

    /// Erases the history of every key up to now (`spec/vault.md` §4.3, §6.1): etcd keeps
    /// each earlier value of a key, a destroyed record's secrets included, until it is
    /// compacted. Called after a committed change that dropped secrets; a failure cannot
    /// undo that change, so it is logged, and the next compaction catches up.
    pub(crate) fn erase_history(&self) {
        let client = self.client.clone();
        let result = self.run(self.until(), async move {
            let now = client
                .range(RangeRequest::key("\0"))
                .await
                .map_err(db)?
                .header
                .map(|h| h.revision)
                .ok_or_else(|| db("a Range answer without a header"))?;
            match client
                .compact(CompactionRequest {
                    revision: now,
                    physical: true,
                })
                .await
            {
                Ok(_) => Ok(()),
                // Another node compacted as far or further.
                Err(e) if e.to_string().contains("compacted") => Ok(()),
                Err(e) => Err(db(e)),
            }
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "compacting etcd's history failed; the next erasure retries");
        }
    }

    /// Pauses before the next attempt after a lost answer.
    pub(crate) fn pause_before_retry(&self) {
        std::thread::sleep(RETRY_PAUSE);
    }
}

/// Pause between attempts after an unreachable member or a lost answer.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

impl Store for EtcdStore {
    /// Checks the store at one revision, so that other nodes may go on writing meanwhile;
    /// a compaction under way makes it try again at a later one.
    fn bind(&self, integrity: Arc<Integrity>) -> Result<StoreSummary, StoreError> {
        self.heads_or_genesis(&integrity)?;
        let mut attempts = 0;
        let summary = loop {
            let (heads, at) = self.heads_at(0)?;
            match self.check_at(&integrity, at, &heads) {
                Err(StoreError::Database(e)) if e.contains("compacted") && attempts < 5 => {
                    attempts += 1;
                }
                other => break other?,
            }
        };
        self.integrity
            .set(integrity)
            .map_err(|_| db("the store is bound already"))?;
        Ok(summary)
    }

    fn server_setup(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(&self.key("setup"), self.until())?.map(|(v, _)| v))
    }

    fn init_server_setup(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let key = self.key("setup");
        let client = self.client.clone();
        let (k, value) = (key.clone(), sealed.to_vec());
        let until = self.until();
        // Put only if absent: retrying it is harmless.
        self.run(until, async move {
            loop {
                let txn = TxnRequest {
                    compare: vec![Compare::created_at(&k, 0)],
                    success: vec![RequestOp::put(k.clone(), value.clone())],
                    failure: vec![],
                };
                match client.txn(txn).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.transient() => tokio::time::sleep(RETRY_PAUSE).await,
                    Err(e) => return Err(db(e)),
                }
            }
        })?;
        self.get(&key, until)?
            .map(|(v, _)| v)
            .ok_or_else(|| db("the server setup vanished"))
    }

    fn insert(&self, record: &Record) -> Result<(), StoreError> {
        let key = self.user_key(&record.tenant, &record.user);
        let shard = shard_of(&record.tenant, &record.user, ETCD_SHARDS);
        let id_key = self.id_key(&record.record_id);
        let until = self.until();
        self.update(&key, shard, |read| {
            // Looked up again on every attempt; the commit's compare closes the race.
            if self.get(&id_key, until)?.is_some() {
                return Err(StoreError::IdTaken);
            }
            transitions::insert(read.record.as_ref(), record)
        })
    }

    fn latest(&self, tenant: &str, user: &str) -> Result<Option<Record>, StoreError> {
        let integrity = bound(&self.integrity)?;
        let until = self.until();
        let mark = integrity.mark()?;
        let read = self.read(&self.user_key(tenant, user), until)?;
        let (head, _) = self.read_head(shard_of(tenant, user, ETCD_SHARDS), until)?;
        integrity.check_head(&head, mark)?;
        if let (Some(r), Some(seal)) = (&read.record, &read.seal) {
            integrity.check_row(&head, r, seal, mark)?;
        }
        Ok(read.record)
    }

    /// Committed with the other guesses and KE3 outcomes of its shard that arrive with it
    /// (group commit, `store/etcd/group.rs`).
    fn count_guess(&self, tenant: &str, user: &str) -> Result<GuessOutcome, StoreError> {
        let shard = shard_of(tenant, user, ETCD_SHARDS);
        match self.submit(shard, self.user_key(tenant, user), group::Job::Guess)? {
            group::Outcome::Guess(outcome) => Ok(outcome),
            group::Outcome::Applied(_) => Err(db("a guess answered as a KE3")),
        }
    }

    /// Group-committed, as a guess is; the user key comes from the user, so no id lookup.
    fn recovered(
        &self,
        tenant: &str,
        user: &str,
        record_id: &RecordId,
        version: u32,
    ) -> Result<bool, StoreError> {
        let job = group::Job::Recovered {
            id: *record_id,
            version,
        };
        self.submit_applied(tenant, user, job)
    }

    /// Group-committed, as a guess is.
    fn failed_at_limit(
        &self,
        tenant: &str,
        user: &str,
        record_id: &RecordId,
    ) -> Result<bool, StoreError> {
        self.submit_applied(tenant, user, group::Job::FailedAtLimit { id: *record_id })
    }

    fn replace(
        &self,
        record_id: &RecordId,
        version: u32,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        self.update_by_id(record_id, |r| {
            transitions::replace(r, record_id, version, sealed)
        })
    }

    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        let shard = shard_of(tenant, user, ETCD_SHARDS);
        self.update(&self.user_key(tenant, user), shard, |read| {
            Ok(transitions::delete(read.record.as_ref()))
        })
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.audit_at(after, limit, 0)
    }

    /// Enough for a batch of every shard to be filling while another commits.
    fn calls_waiting_on_network(&self) -> usize {
        CALLS_IN_FLIGHT
    }

    fn observe_group_commits(&self, observer: Arc<dyn GroupCommitObserver>) {
        self.groups.reports.set(observer);
    }
}

/// How many calls a vault node has in flight on this store at most, beyond its CPU workers
/// (`Store::calls_waiting_on_network`).
const CALLS_IN_FLIGHT: usize = 64;

impl EtcdStore {
    /// Positions are `create revision × 256 + n` (an operation's events share its commit's
    /// revision; `n` is the event's index in it), so paging with `after` never skips one.
    fn audit_at(&self, after: u64, limit: usize, at: i64) -> Result<Vec<AuditEvent>, StoreError> {
        let from = i64::try_from(after / 256).unwrap_or(i64::MAX);
        let mut request = RangeRequest::prefix_by_creation(
            &self.key("audit/"),
            from,
            i64::try_from(limit.saturating_add(8)).unwrap_or(i64::MAX),
        );
        request.revision = at;
        let client = self.client.clone();
        let kvs = self.run(self.until(), async move {
            loop {
                match client.range(request.clone()).await {
                    Ok(response) => {
                        return Ok(response
                            .kvs
                            .into_iter()
                            .map(|kv| {
                                let n = std::str::from_utf8(&kv.key)
                                    .ok()
                                    .and_then(|k| k.rsplit('-').next())
                                    .and_then(|n| n.parse::<u64>().ok())
                                    .unwrap_or(0);
                                let revision = u64::try_from(kv.create_revision).unwrap_or(0);
                                (revision * 256 + n.min(255), kv.value)
                            })
                            .collect::<Vec<_>>())
                    }
                    Err(e) if e.transient() => tokio::time::sleep(RETRY_PAUSE).await,
                    Err(e) => return Err(db(e)),
                }
            }
        })?;
        let mut kvs: Vec<(u64, Vec<u8>)> =
            kvs.into_iter().filter(|(seq, _)| *seq > after).collect();
        kvs.sort_by_key(|(seq, _)| *seq);
        kvs.truncate(limit);
        kvs.into_iter()
            .map(|(seq, value)| {
                let e: StoredEvent = serde_json::from_slice(&value).map_err(db)?;
                Ok(AuditEvent {
                    seq,
                    at: e.at,
                    tenant: e.tenant,
                    user: e.user,
                    record: e.record,
                    event: e.event,
                    detail: e.detail,
                    chain: e.chain,
                    epoch: e.epoch,
                    previous: e.previous,
                    hash: e.hash,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Classify;

    #[test]
    fn urls_name_members_prefix_and_tls() {
        let plain = EtcdConfig::parse("etcd://a:2379,b:2379").unwrap();
        assert_eq!(plain.endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(plain.prefix, "/coffer/v1/");
        let tls = EtcdConfig::parse("etcds://a:2379/site//one/").unwrap();
        assert_eq!(tls.endpoints, ["https://a:2379"]);
        assert_eq!(tls.prefix, "/site//one/");
        for bad in ["http://a:2379", "etcd://", "etcd:///prefix", "etcd://,,"] {
            assert!(
                matches!(EtcdConfig::parse(bad), Err(StoreError::Database(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn records_survive_their_json_form_and_bad_ones_are_refused() {
        let record = Record {
            record_id: RecordId::from_bytes([7; 16]),
            tenant: "t".into(),
            user: "ü".into(),
            version: 3,
            state: RecordState::Destroyed,
            guesses: 4,
            limit: 10,
            ksf: "argon2id:m=256,t=1,p=1".into(),
            sealed: Some(vec![0, 1, 2, 255]),
        };
        let seal = RowSeal {
            epoch: 12,
            tag: [3; 32],
        };
        let json = serde_json::to_vec(&Stored::of(&record, &seal)).unwrap();
        let back: Stored = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.record().unwrap(), (record.clone(), seal));

        let mut bad_id = Stored::of(&record, &seal);
        bad_id.id = "zz".into();
        let malformed = |stored: Stored| stored.record().map(drop).unwrap_err().class();
        assert_eq!(malformed(bad_id), crate::error::ErrorClass::Corrupt);
        let mut bad_sealed = Stored::of(&record, &seal);
        bad_sealed.sealed = Some("not base64!".into());
        assert_eq!(malformed(bad_sealed), crate::error::ErrorClass::Corrupt);
        let mut bad_tag = Stored::of(&record, &seal);
        bad_tag.tag = "00".into();
        assert_eq!(malformed(bad_tag), crate::error::ErrorClass::Corrupt);
    }
}
