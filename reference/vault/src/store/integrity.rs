//! Tamper evidence for a vault store (`spec/vault.md` §6.2). Whoever can write the store but
//! does not hold the vault's state key (derived from the HSM-sealed server setup) cannot
//! change a record, restore one row from an older copy, or remove audit events without the
//! vault refusing the store as `corrupt`:
//!
//! - every record row carries the store **epoch** of its last write and a **tag**, an
//!   HMAC-SHA256 under the state key over all its fields and that epoch;
//! - one **head** per shard of the store (SQLite: one shard; etcd: [`ETCD_SHARDS`], a
//!   user's shard fixed by [`shard_of`]) holds the shard's epoch (its number of writes so
//!   far), the sum of its rows' tags (so that a row replaced by an older one, removed or
//!   added changes the sum) and the head of its **audit chain** (each event hashes the one
//!   before); the head is tagged too, and written in the same transaction as every change;
//! - the vault remembers the highest epoch it has seen, of the head and of each record, and
//!   refuses anything older: while it runs, even a rollback of the whole store is caught;
//! - when a vault binds a store it checks every row, the sum and the whole chain.
//!
//! What stays possible (the spec says so): a consistent copy of the whole store, restored
//! while no vault runs, is a valid earlier store.

use super::{Record, StoreError};
use crate::ids::RecordId;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use std::collections::HashMap;
use std::sync::Mutex;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

const INFO_STATE_KEY: &[u8] = b"coffer/v1 store state key";
const DOMAIN_ROW: &[u8] = b"coffer/v1 record state";
const DOMAIN_HEAD: &[u8] = b"coffer/v1 store head";
const DOMAIN_AUDIT: &[u8] = b"coffer/v1 audit event";

/// A head of the store: how many writes its shard has seen, the sum of its rows' tags and
/// the head of its audit chain, tagged. A store has one head per shard (SQLite: one; etcd:
/// [`ETCD_SHARDS`], so that writes to different users do not all take turns on one key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Which shard (rows and audit events belong to one by their user, [`shard_of`]).
    pub shard: u32,
    /// Writes committed so far; each write's rows and events carry its epoch.
    pub epoch: u64,
    /// The sum of every row's tag, as 256-bit little-endian integers, mod 2^256.
    pub records_sum: [u8; 32],
    /// The hash of the last audit event (zeros before the first).
    pub audit_hash: [u8; 32],
    /// HMAC over the four fields above.
    pub tag: [u8; 32],
}

/// A row's epoch and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSeal {
    /// The epoch of the write that last changed the row.
    pub epoch: u64,
    /// HMAC over the row's fields and its epoch.
    pub tag: [u8; 32],
}

/// An audit event's place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chained {
    /// The epoch of the write that logged it.
    pub epoch: u64,
    /// The hash of the event before it (zeros before the first).
    pub previous: [u8; 32],
    /// `SHA-256(domain ‖ previous ‖ event)`.
    pub hash: [u8; 32],
}

/// The fields of an audit event that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    /// Unix seconds.
    pub at: u64,
    /// Tenant.
    pub tenant: &'a str,
    /// User id.
    pub user: &'a str,
    /// Record id, hex.
    pub record: &'a str,
    /// Event name.
    pub event: &'a str,
    /// Detail.
    pub detail: &'a str,
}

impl<'a> EventFields<'a> {
    /// The events one write of `record` logs at `at` (`record_hex`: its id in hex).
    pub(crate) fn of_write(
        record: &'a Record,
        record_hex: &'a str,
        at: u64,
        events: &'a [(&'static str, String)],
    ) -> Vec<Self> {
        events
            .iter()
            .map(|(event, detail)| EventFields {
                at,
                tenant: &record.tenant,
                user: &record.user,
                record: record_hex,
                event,
                detail,
            })
            .collect()
    }
}

/// How many heads the etcd store keeps (`spec/vault.md` §6.2).
pub const ETCD_SHARDS: u32 = 16;

/// The shard of a user among `shards`: the first four bytes of `SHA-256(lp(tenant) ‖
/// lp(user))`, big-endian, mod `shards`.
pub fn shard_of(tenant: &str, user: &str, shards: u32) -> u32 {
    let mut h = Sha256::new();
    for field in [tenant, user] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % shards.max(1)
}

/// The hash of an audit event chained after `previous` in chain `shard`
/// (`spec/vault.md` §6.2). Public: an auditor checks the chains of `GET /v1/audit` with it,
/// without any key.
pub fn audit_hash(previous: &[u8; 32], shard: u32, epoch: u64, e: &EventFields<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN_AUDIT);
    h.update(previous);
    h.update(shard.to_be_bytes());
    h.update(epoch.to_be_bytes());
    h.update(e.at.to_be_bytes());
    for field in [e.tenant, e.user, e.record, e.event, e.detail] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().into()
}

/// The highest epochs this process has seen, each with the tick at which it learnt it:
/// a read that began after that tick and returns something older found a rollback.
#[derive(Default)]
struct Seen {
    tick: u64,
    heads: HashMap<u32, Known>,
    records: HashMap<RecordId, Known>,
}

/// An epoch, and the tick at which this process learnt it.
#[derive(Default, Clone, Copy)]
struct Known {
    epoch: u64,
    tick: u64,
}

/// When a read began, on this process's clock of what it has learnt ([`Integrity::mark`]).
/// A read is checked only against what was known before it began: a concurrent write of
/// this same process may commit, and raise the floor, while the read is on its way.
#[derive(Debug, Clone, Copy)]
pub struct Mark(u64);

impl Seen {
    /// Learns `epoch` for one entry; returns the epoch known before, if it was learnt before
    /// `mark` and is newer than `epoch` (a rollback).
    fn learn(tick: &mut u64, known: &mut Known, epoch: u64, mark: Option<Mark>) -> Option<u64> {
        if let Some(Mark(began)) = mark {
            if known.epoch > epoch && known.tick <= began {
                return Some(known.epoch);
            }
        }
        if epoch > known.epoch {
            *tick += 1;
            *known = Known { epoch, tick: *tick };
        }
        None
    }
}

/// The state key and the epochs seen, shared by a vault and its store.
pub struct Integrity {
    key: Zeroizing<[u8; 32]>,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Integrity { key: <secret> }")
    }
}

fn tampered(what: impl Into<String>) -> StoreError {
    StoreError::Tampered(what.into())
}

fn lock(seen: &Mutex<Seen>) -> Result<std::sync::MutexGuard<'_, Seen>, StoreError> {
    seen.lock()
        .map_err(|_| StoreError::Database("integrity lock poisoned".into()))
}

impl Integrity {
    /// With the state key `key` (tests, and stores checked outside a vault).
    pub fn new(key: [u8; 32]) -> Self {
        Integrity {
            key: Zeroizing::new(key),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The state key of a vault: HKDF-SHA512 of its unsealed server setup, so it exists only
    /// where the HSM opened the setup.
    pub(crate) fn from_setup(setup: &[u8]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha512>::new(None, setup)
            .expand(INFO_STATE_KEY, &mut key[..])
            .expect("32 bytes is a valid HKDF-SHA512 length");
        Integrity::new(*key)
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.key[..]).expect("HMAC takes any key length")
    }

    fn row_tag(&self, r: &Record, epoch: u64) -> [u8; 32] {
        let mut m = self.mac();
        m.update(DOMAIN_ROW);
        m.update(r.record_id.as_bytes());
        for field in [r.tenant.as_str(), r.user.as_str(), r.state.as_str(), &r.ksf] {
            m.update(&(field.len() as u64).to_be_bytes());
            m.update(field.as_bytes());
        }
        m.update(&r.version.to_be_bytes());
        m.update(&r.guesses.to_be_bytes());
        m.update(&r.limit.to_be_bytes());
        match &r.sealed {
            Some(s) => {
                m.update(&[1]);
                m.update(&Sha256::digest(s));
            }
            None => m.update(&[0]),
        }
        m.update(&epoch.to_be_bytes());
        m.finalize().into_bytes().into()
    }

    fn head_tag(
        &self,
        shard: u32,
        epoch: u64,
        records_sum: &[u8; 32],
        audit_hash: &[u8; 32],
    ) -> [u8; 32] {
        let mut m = self.mac();
        m.update(DOMAIN_HEAD);
        m.update(&shard.to_be_bytes());
        m.update(&epoch.to_be_bytes());
        m.update(records_sum);
        m.update(audit_hash);
        m.finalize().into_bytes().into()
    }

    /// Shard `shard`'s head in an empty store.
    pub fn genesis(&self, shard: u32) -> Head {
        let (sum, audit) = ([0u8; 32], [0u8; 32]);
        Head {
            shard,
            epoch: 0,
            records_sum: sum,
            audit_hash: audit,
            tag: self.head_tag(shard, 0, &sum, &audit),
        }
    }

    /// Marks the start of a read: call before reading what [`Integrity::check_head`] and
    /// [`Integrity::check_row`] will check.
    pub fn mark(&self) -> Result<Mark, StoreError> {
        Ok(Mark(lock(&self.seen)?.tick))
    }

    /// Checks the head's tag, and that it is not older than one this process knew when the
    /// read began (`mark`).
    pub fn check_head(&self, head: &Head, mark: Mark) -> Result<(), StoreError> {
        let want = self.head_tag(head.shard, head.epoch, &head.records_sum, &head.audit_hash);
        if !bool::from(want.ct_eq(&head.tag)) {
            return Err(tampered("the store head's tag does not verify"));
        }
        let seen = &mut *lock(&self.seen)?;
        let known = seen.heads.entry(head.shard).or_default();
        if let Some(known) = Seen::learn(&mut seen.tick, known, head.epoch, Some(mark)) {
            return Err(tampered(format!(
                "the store went back from epoch {known} to {}: a rollback",
                head.epoch
            )));
        }
        Ok(())
    }

    /// Checks a row read under `head`: its tag, and that it is neither newer than the head
    /// nor older than this process knew it when the read began (`mark`).
    pub fn check_row(
        &self,
        head: &Head,
        r: &Record,
        seal: &RowSeal,
        mark: Mark,
    ) -> Result<(), StoreError> {
        let want = self.row_tag(r, seal.epoch);
        if !bool::from(want.ct_eq(&seal.tag)) {
            return Err(tampered(format!(
                "record {} has been changed outside the vault (its tag does not verify)",
                r.record_id
            )));
        }
        if seal.epoch > head.epoch {
            return Err(tampered(format!(
                "record {} is newer than the store head: the head was rolled back",
                r.record_id
            )));
        }
        let seen = &mut *lock(&self.seen)?;
        let known = seen.records.entry(r.record_id).or_default();
        if let Some(known) = Seen::learn(&mut seen.tick, known, seal.epoch, Some(mark)) {
            return Err(tampered(format!(
                "record {} went back from epoch {known} to {}: a rollback",
                r.record_id, seal.epoch
            )));
        }
        Ok(())
    }

    /// One write: `new` replaces `old` (absent for a new record) and `events` are logged.
    /// Advances `head` and returns the new row's seal and the events' chain entries.
    pub fn write(
        &self,
        head: &mut Head,
        old: Option<&RowSeal>,
        new: &Record,
        events: &[EventFields<'_>],
    ) -> (RowSeal, Vec<Chained>) {
        let epoch = head.epoch + 1;
        let seal = RowSeal {
            epoch,
            tag: self.row_tag(new, epoch),
        };
        let mut sum = head.records_sum;
        if let Some(old) = old {
            sum = sub(&sum, &old.tag);
        }
        sum = add(&sum, &seal.tag);
        let mut hash = head.audit_hash;
        let chained = events
            .iter()
            .map(|e| {
                let previous = hash;
                hash = audit_hash(&previous, head.shard, epoch, e);
                Chained {
                    epoch,
                    previous,
                    hash,
                }
            })
            .collect();
        *head = Head {
            shard: head.shard,
            epoch,
            records_sum: sum,
            audit_hash: hash,
            tag: self.head_tag(head.shard, epoch, &sum, &hash),
        };
        (seal, chained)
    }

    /// After a commit: the epochs it wrote are the least this process accepts from now on.
    pub fn committed(&self, head: &Head, rows: &[(RecordId, u64)]) {
        if let Ok(mut guard) = self.seen.lock() {
            let seen = &mut *guard;
            let known = seen.heads.entry(head.shard).or_default();
            Seen::learn(&mut seen.tick, known, head.epoch, None);
            for (id, epoch) in rows {
                let known = seen.records.entry(*id).or_default();
                Seen::learn(&mut seen.tick, known, *epoch, None);
            }
        }
    }

    /// Starts checking a whole store as a vault binds it: feed it every row and then every
    /// audit event in order, and finish; memory stays constant whatever the store's size.
    pub fn check_store(&self, head: &Head, mark: Mark) -> Result<StoreCheck<'_>, StoreError> {
        self.check_head(head, mark)?;
        Ok(StoreCheck {
            integrity: self,
            mark,
            head: head.clone(),
            sum: [0u8; 32],
            hash: [0u8; 32],
            last_epoch: 0,
            summary: StoreSummary {
                epoch: head.epoch,
                records: 0,
                events: 0,
            },
        })
    }
}

/// A whole-store check under way (see [`Integrity::check_store`]).
pub struct StoreCheck<'a> {
    integrity: &'a Integrity,
    mark: Mark,
    head: Head,
    sum: [u8; 32],
    hash: [u8; 32],
    last_epoch: u64,
    summary: StoreSummary,
}

impl StoreCheck<'_> {
    /// One row: its tag must verify; the sum of all of them must match the head.
    pub fn row(&mut self, r: &Record, seal: &RowSeal) -> Result<(), StoreError> {
        self.integrity.check_row(&self.head, r, seal, self.mark)?;
        self.sum = add(&self.sum, &seal.tag);
        self.summary.records += 1;
        Ok(())
    }

    /// The next audit event, in log order: it must chain onto the one before.
    pub fn event(
        &mut self,
        epoch: u64,
        fields: &EventFields<'_>,
        stored: &[u8; 32],
    ) -> Result<(), StoreError> {
        if epoch < self.last_epoch || epoch > self.head.epoch {
            return Err(tampered("the audit log is out of order"));
        }
        self.hash = audit_hash(&self.hash, self.head.shard, epoch, fields);
        if !bool::from(self.hash.ct_eq(stored)) {
            return Err(tampered(format!(
                "audit event {} does not chain onto the one before it",
                self.summary.events + 1
            )));
        }
        self.last_epoch = epoch;
        self.summary.events += 1;
        Ok(())
    }

    /// Every row and event seen: they must add up to the head.
    pub fn finish(self) -> Result<StoreSummary, StoreError> {
        if !bool::from(self.sum.ct_eq(&self.head.records_sum)) {
            return Err(tampered(
                "the records do not add up to the store head: a row was restored from an \
                 older copy, removed or added outside the vault",
            ));
        }
        if !bool::from(self.hash.ct_eq(&self.head.audit_hash)) {
            return Err(tampered(
                "the audit log does not end at the store head: events were removed or added",
            ));
        }
        Ok(self.summary)
    }
}

/// What a whole-store check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSummary {
    /// The heads' epochs, added up: the writes the store has seen.
    pub epoch: u64,
    /// Rows checked.
    pub records: u64,
    /// Audit events checked.
    pub events: u64,
}

fn add(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    out
}

fn sub(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in 0..32 {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Classify;
    use crate::store::RecordState;

    fn record(guesses: u32) -> Record {
        Record {
            record_id: RecordId::from_bytes([4; 16]),
            tenant: "t".into(),
            user: "u".into(),
            version: 1,
            state: RecordState::Active,
            guesses,
            limit: 10,
            ksf: "argon2id:m=256,t=1,p=1".into(),
            sealed: Some(vec![9; 40]),
        }
    }

    fn event<'a>(name: &'a str) -> EventFields<'a> {
        EventFields {
            at: 1,
            tenant: "t",
            user: "u",
            record: "04",
            event: name,
            detail: "",
        }
    }

    #[test]
    fn a_user_has_one_shard_in_range() {
        let shards: std::collections::HashSet<u32> = (0..200)
            .map(|n| shard_of("t", &format!("user{n}"), ETCD_SHARDS))
            .collect();
        assert!(shards.iter().all(|s| *s < ETCD_SHARDS));
        assert_eq!(
            shards.len(),
            ETCD_SHARDS as usize,
            "users spread over every shard"
        );
        assert_eq!(shard_of("t", "u", 16), shard_of("t", "u", 16));
        assert_eq!(shard_of("t", "u", 1), 0);
    }

    #[test]
    fn sums_add_and_subtract_mod_2_256() {
        let a = [0xff; 32];
        let b = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        assert_eq!(add(&a, &b), [0; 32], "wraps around");
        assert_eq!(sub(&[0; 32], &b), a, "borrows around");
        assert_eq!(sub(&add(&a, &[7; 32]), &[7; 32]), a);
    }

    #[test]
    fn a_changed_field_an_older_row_and_an_older_head_are_refused() {
        let key = Integrity::new([1; 32]);
        let mut head = key.genesis(0);
        let (first, _) = key.write(&mut head, None, &record(0), &[event("registered")]);
        let old_head = head.clone();
        let (second, _) = key.write(&mut head, Some(&first), &record(1), &[event("guess")]);
        // A read that began before this process committed may return the older row.
        let before = key.mark().unwrap();
        key.committed(&head, &[(record(1).record_id, second.epoch)]);
        key.check_row(&head, &record(0), &first, before).unwrap();
        key.check_head(&old_head, before).unwrap();
        // One that began after may not.
        let mark = key.mark().unwrap();
        key.check_head(&head, mark).unwrap();
        key.check_row(&head, &record(1), &second, mark).unwrap();

        let edited = key.check_row(&head, &record(0), &second, mark).unwrap_err();
        assert!(
            edited.to_string().contains("tag does not verify"),
            "{edited}"
        );
        let older = key.check_row(&head, &record(0), &first, mark).unwrap_err();
        assert!(older.to_string().contains("went back"), "{older}");
        let rolled = key.check_head(&old_head, mark).unwrap_err();
        assert!(rolled.to_string().contains("rollback"), "{rolled}");
        let mut forged = head.clone();
        forged.epoch += 1;
        let tampered = |result: Result<(), StoreError>| result.unwrap_err().class();
        assert_eq!(
            tampered(key.check_head(&forged, mark)),
            crate::error::ErrorClass::Corrupt
        );
        let mut moved = head.clone();
        moved.shard = 1;
        assert_eq!(
            tampered(key.check_head(&moved, mark)),
            crate::error::ErrorClass::Corrupt,
            "a head is bound to its shard"
        );
        let other_key = Integrity::new([2; 32]);
        let other_mark = other_key.mark().unwrap();
        assert_eq!(
            tampered(other_key.check_head(&head, other_mark)),
            crate::error::ErrorClass::Corrupt,
            "another vault's key"
        );
    }

    #[test]
    fn a_whole_store_check_finds_a_restored_row_and_a_cut_log() {
        let key = Integrity::new([1; 32]);
        let mut head = key.genesis(0);
        let (e1, e2) = (event("registered"), event("guess"));
        let (first, c1) = key.write(&mut head, None, &record(0), &[e1]);
        let (second, c2) = key.write(&mut head, Some(&first), &record(1), &[e2]);
        let log = [(c1[0], e1), (c2[0], e2)];
        let check = |row: (Record, RowSeal), log: &[(Chained, EventFields<'_>)]| {
            let fresh = Integrity::new([1; 32]);
            let mut check = fresh.check_store(&head, fresh.mark()?)?;
            check.row(&row.0, &row.1)?;
            for (c, e) in log {
                check.event(c.epoch, e, &c.hash)?;
            }
            check.finish()
        };

        let summary = check((record(1), second), &log).unwrap();
        assert_eq!((summary.epoch, summary.records, summary.events), (2, 1, 2));
        let restored = check((record(0), first), &log).unwrap_err();
        assert!(restored.to_string().contains("add up"), "{restored}");
        let cut = check((record(1), second), &log[..1]).unwrap_err();
        assert!(cut.to_string().contains("does not end"), "{cut}");
        let mut edited = log;
        edited[0].1.detail = "nothing to see";
        let edited = check((record(1), second), &edited).unwrap_err();
        assert!(edited.to_string().contains("does not chain"), "{edited}");
    }
}
