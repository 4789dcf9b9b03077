//! The `Store` contract (spec/vault.md §4, §6), run on both stores: the embedded SQLite and
//! etcd (a real single-member etcd on loopback; opt out with COFFER_SKIP_ETCD=1). Both must
//! give the same answers to the same calls. On etcd, a commit whose answer is lost (as when
//! a member dies between committing and answering) must count once, not twice. Both refuse
//! a record changed or rolled back behind the vault's back as corrupt (§6.2).

use coffer::Classify;
use coffer_testkit::etcd;

use coffer::store::integrity::Integrity;
use coffer::store::{
    EtcdConfig, EtcdStore, GroupCommitObserver, GuessOutcome, Record, RecordState, SqliteStore,
    Store, StoreError,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The state key every store in these tests is bound with.
fn integrity() -> Arc<Integrity> {
    Arc::new(Integrity::new([42; 32]))
}
use coffer::vault::RecordId;

fn record(id: u8, user: &str, limit: u32) -> Record {
    Record {
        record_id: RecordId::from_bytes([id; 16]),
        tenant: "t".into(),
        user: user.into(),
        version: 1,
        state: RecordState::Active,
        guesses: 0,
        limit,
        ksf: "argon2id:m=256,t=1,p=1".into(),
        sealed: Some(vec![id; 8]),
    }
}

fn counted(outcome: GuessOutcome) -> u32 {
    match outcome {
        GuessOutcome::Counted(r) => r.guesses,
        other => panic!("not counted: {other:?}"),
    }
}

/// Every operation of the trait, with the answers spec/vault.md §4 gives.
fn contract(store: &dyn Store) {
    // Unbound, a store answers nothing but its server setup.
    let unbound = store.latest("t", "ann").map(drop).unwrap_err();
    assert_eq!(unbound.class(), coffer::ErrorClass::Io, "{unbound}");
    store.bind(integrity()).unwrap();
    // Server setup: written once, the first one stays.
    assert_eq!(store.server_setup().unwrap(), None);
    assert_eq!(store.init_server_setup(b"one").unwrap(), b"one");
    assert_eq!(store.init_server_setup(b"two").unwrap(), b"one");
    // Register; a second active record for the user is refused.
    store.insert(&record(1, "ann", 3)).unwrap();
    assert!(matches!(
        store.insert(&record(2, "ann", 3)),
        Err(StoreError::Exists)
    ));
    // Guesses count up to the limit; a recovery resets; the limit-th is given out, the next
    // destroys.
    assert_eq!(counted(store.count_guess("t", "ann").unwrap()), 1);
    assert_eq!(counted(store.count_guess("t", "ann").unwrap()), 2);
    assert!(store
        .recovered("t", "ann", &RecordId::from_bytes([1; 16]), 1)
        .unwrap());
    assert!(
        !store
            .recovered("t", "ann", &RecordId::from_bytes([1; 16]), 2)
            .unwrap(),
        "another version"
    );
    assert_eq!(store.latest("t", "ann").unwrap().unwrap().guesses, 0);
    for n in 1..=3 {
        assert_eq!(counted(store.count_guess("t", "ann").unwrap()), n);
    }
    assert_eq!(
        store.count_guess("t", "ann").unwrap(),
        GuessOutcome::Destroyed
    );
    let gone = store.latest("t", "ann").unwrap().unwrap();
    assert_eq!((gone.state, gone.sealed), (RecordState::Destroyed, None));
    assert_eq!(store.count_guess("t", "ann").unwrap(), GuessOutcome::Absent);
    assert!(!store
        .recovered("t", "ann", &RecordId::from_bytes([1; 16]), 1)
        .unwrap());
    // A destroyed user may register again, with a new record.
    store.insert(&record(3, "ann", 5)).unwrap();
    assert!(
        !store
            .recovered("t", "ann", &RecordId::from_bytes([1; 16]), 1)
            .unwrap(),
        "the old id is gone"
    );
    // A failed KE3 destroys only at the limit.
    store.insert(&record(4, "bob", 2)).unwrap();
    store.count_guess("t", "bob").unwrap();
    assert!(!store
        .failed_at_limit("t", "bob", &RecordId::from_bytes([4; 16]))
        .unwrap());
    store.count_guess("t", "bob").unwrap();
    assert!(store
        .failed_at_limit("t", "bob", &RecordId::from_bytes([4; 16]))
        .unwrap());
    assert_eq!(
        store.latest("t", "bob").unwrap().unwrap().state,
        RecordState::Destroyed
    );
    // A password change: version + 1, new secrets, guesses back to 0; only from the version.
    store.insert(&record(5, "cy", 10)).unwrap();
    store.count_guess("t", "cy").unwrap();
    assert!(!store
        .replace(&RecordId::from_bytes([5; 16]), 2, b"new")
        .unwrap());
    assert!(store
        .replace(&RecordId::from_bytes([5; 16]), 1, b"new")
        .unwrap());
    let changed = store.latest("t", "cy").unwrap().unwrap();
    assert_eq!(
        (changed.version, changed.guesses, changed.sealed),
        (2, 0, Some(b"new".to_vec()))
    );
    // Delete: secrets gone; a second delete finds nothing.
    assert!(store.delete("t", "cy").unwrap());
    assert!(!store.delete("t", "cy").unwrap());
    assert_eq!(store.latest("t", "cy").unwrap().unwrap().sealed, None);
    // A registration never takes over a record id (spec/vault.md §3.1 step 4): not an active
    // record's (ann's 3), not a destroyed one's (bob's 4), not a deleted one's (cy's 5), not
    // for another user or another tenant; and nothing changes.
    for (id, owner) in [(3, "ann"), (4, "bob"), (5, "cy")] {
        let before = store.latest("t", owner).unwrap();
        for tenant in ["t", "another tenant"] {
            let taker = Record {
                tenant: tenant.into(),
                ..record(id, "dee", 100)
            };
            assert!(
                matches!(store.insert(&taker), Err(StoreError::IdTaken)),
                "record {id} taken over in tenant {tenant}"
            );
            assert_eq!(store.latest(tenant, "dee").unwrap(), None);
        }
        assert_eq!(
            store.latest("t", owner).unwrap(),
            before,
            "{owner}'s record changed"
        );
    }
    // The audit log: in order, paged without gaps, every kind of event.
    let all = store.audit(0, 1000).unwrap();
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit(after, 3).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().seq;
        paged.extend(page);
    }
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        paged.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let events: Vec<&str> = all.iter().map(|e| e.event.as_str()).collect();
    for kind in [
        "registered",
        "guess",
        "locked",
        "recovered",
        "destroyed",
        "password_changed",
        "deleted",
    ] {
        assert!(events.contains(&kind), "no {kind} in {events:?}");
    }
    assert_eq!(
        all.iter()
            .filter(|e| e.user == "ann" && e.event == "guess")
            .count(),
        5
    );
}

#[test]
fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&SqliteStore::open(&dir.path().join("vault.db")).unwrap());
    // What the contract left (re-registration over a deleted record included) checks whole.
    let again = SqliteStore::open(&dir.path().join("vault.db")).unwrap();
    let summary = again.bind(integrity()).unwrap();
    assert!(summary.records >= 3 && summary.events >= 10, "{summary:?}");
}

/// The shared etcd member's client address.
fn shared_member() -> &'static str {
    &etcd::shared().members[0].client
}

fn etcd_store(prefix: &str) -> EtcdStore {
    etcd_store_on(shared_member(), prefix)
}

/// Where the stores named `name` keep their keys in etcd.
fn key_prefix(name: &str) -> String {
    format!("/contract-{name}-{}/", std::process::id())
}

fn etcd_store_on(member: &str, name: &str) -> EtcdStore {
    let url = format!("etcd://{member}{}", key_prefix(name).trim_end_matches('/'));
    EtcdStore::connect(&EtcdConfig::parse(&url).unwrap()).unwrap()
}

fn bound_etcd_store(prefix: &str) -> EtcdStore {
    let store = etcd_store(prefix);
    store.bind(integrity()).unwrap();
    store
}

/// `etcdctl ARGS` against `member`: (whether it succeeded, what it printed).
fn etcdctl(member: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("etcdctl")
        .arg(format!("--endpoints=http://{member}"))
        .args(args)
        .output()
        .expect("etcdctl (Debian etcd-client)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn etcd_keeps_the_contract() {
    if etcd::skipped() {
        return;
    }
    contract(&etcd_store("contract"));
    // What the contract left (re-registration over a deleted record included) checks whole.
    let summary = etcd_store("contract").bind(integrity()).unwrap();
    assert!(summary.records >= 3 && summary.events >= 10, "{summary:?}");
}

fn etcdctl_put(key: &str, value: &str) {
    let (ok, text) = etcdctl(shared_member(), &["put", key, value]);
    assert!(ok, "{text}");
}

fn tampered(result: Result<impl std::fmt::Debug, StoreError>, says: &str) {
    match result {
        Err(StoreError::Tampered(m)) => assert!(m.contains(says), "{m}"),
        other => panic!("expected Tampered ({says}), got {other:?}"),
    }
}

/// spec/vault.md §6.2 on etcd: a count set back with etcdctl is refused; a destroyed
/// record's earlier value put back is refused by the running vault and by one that binds
/// the store afresh; a second vault binds while the first goes on writing.
#[test]
fn etcd_refuses_a_record_changed_or_rolled_back_behind_the_vault() {
    if etcd::skipped() {
        return;
    }
    let store = bound_etcd_store("tamper");
    let prefix = key_prefix("tamper");
    let key = format!("{prefix}user/{}/{}", hex::encode("t"), hex::encode("gil"));
    store.insert(&record(10, "gil", 2)).unwrap();
    let (_, fresh) = etcdctl_get(shared_member(), &key, None, false);
    let fresh = fresh.lines().nth(1).unwrap().to_owned();
    counted(store.count_guess("t", "gil").unwrap());
    let (_, counted_once) = etcdctl_get(shared_member(), &key, None, false);
    let counted_once = counted_once.lines().nth(1).unwrap().to_owned();
    assert!(counted_once.contains("\"guesses\":1"), "{counted_once}");

    etcdctl_put(
        &key,
        &counted_once.replace("\"guesses\":1", "\"guesses\":0"),
    );
    tampered(store.count_guess("t", "gil"), "tag does not verify");
    etcdctl_put(&key, &counted_once);
    assert_eq!(counted(store.count_guess("t", "gil").unwrap()), 2);
    assert_eq!(
        store.count_guess("t", "gil").unwrap(),
        GuessOutcome::Destroyed
    );
    // A second vault binds the store while the first goes on writing.
    let second = etcd_store("tamper");
    let writer = std::thread::spawn(move || {
        for n in 0..20u8 {
            store.insert(&record(100 + n, &format!("u{n}"), 3)).unwrap();
        }
        store
    });
    let summary = second.bind(integrity()).unwrap();
    assert!(summary.records >= 1, "{summary:?}");
    let store = writer.join().unwrap();

    etcdctl_put(&key, &fresh);
    tampered(store.latest("t", "gil"), "went back");
    tampered(second.count_guess("t", "gil"), "went back");
    tampered(etcd_store("tamper").bind(integrity()), "add up");

    // One of the sixteen shard heads removed: no vault binds the store.
    let (ok, text) = etcdctl(shared_member(), &["del", &format!("{prefix}head/03")]);
    assert!(ok, "{text}");
    tampered(etcd_store("tamper").bind(integrity()), "no head 3");
}

/// A shard whose head was changed behind the vault fails its own users' guesses, and only
/// theirs: guesses of another shard that share its group commits are still counted, each
/// exactly once (spec/vault.md §6.1, §6.2).
#[test]
fn etcd_a_tampered_head_fails_only_its_own_shard() {
    use coffer::store::integrity::{shard_of, ETCD_SHARDS};
    if etcd::skipped() {
        return;
    }
    let store = bound_etcd_store("tampered-head");
    let prefix = key_prefix("tampered-head");
    let users = users_of_twelve_shards();
    let (bad, good) = (&users[0], &users[1]);
    store.insert(&record(20, bad, 100)).unwrap();
    store.insert(&record(21, good, 100)).unwrap();
    let head = format!("{prefix}head/{:02}", shard_of("t", bad, ETCD_SHARDS));
    let (_, text) = etcdctl_get(shared_member(), &head, None, false);
    let value = text.lines().nth(1).unwrap().to_owned();
    let at = value.find("\"tag\":\"").unwrap() + 7;
    let flipped = if &value[at..=at] == "0" { "1" } else { "0" };
    etcdctl_put(
        &head,
        &format!("{}{flipped}{}", &value[..at], &value[at + 1..]),
    );

    const EACH: usize = 8;
    let start = std::sync::Barrier::new(2 * EACH);
    let outcomes: Vec<(bool, Result<GuessOutcome, StoreError>)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2 * EACH)
            .map(|n| {
                let (store, start, user) = (&store, &start, if n % 2 == 0 { bad } else { good });
                s.spawn(move || {
                    start.wait();
                    (user == good, store.count_guess("t", user))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut counts = Vec::new();
    for (is_good, outcome) in outcomes {
        if is_good {
            counts.push(counted(outcome.unwrap()));
        } else {
            tampered(outcome, "head's tag does not verify");
        }
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=EACH as u32).collect::<Vec<_>>());
}

/// Commits whose answers are lost are found again by their operation's marker: a guess is
/// counted once, a registration is not refused as existing, a password change reports done.
#[test]
fn etcd_never_applies_an_operation_twice_when_its_answer_is_lost() {
    if etcd::skipped() {
        return;
    }
    let store = bound_etcd_store("lost");
    store.lose_next_answers(1);
    store.insert(&record(7, "dee", 10)).unwrap();
    for n in 1..=3 {
        store.lose_next_answers(1);
        assert_eq!(counted(store.count_guess("t", "dee").unwrap()), n);
    }
    assert_eq!(store.latest("t", "dee").unwrap().unwrap().guesses, 3);
    store.lose_next_answers(1);
    assert!(store
        .replace(&RecordId::from_bytes([7; 16]), 1, b"new")
        .unwrap());
    assert_eq!(store.latest("t", "dee").unwrap().unwrap().version, 2);
    store.lose_next_answers(1);
    assert!(store
        .recovered("t", "dee", &RecordId::from_bytes([7; 16]), 2)
        .unwrap());
    let events = store.audit(0, 1000).unwrap();
    assert_eq!(events.iter().filter(|e| e.event == "guess").count(), 3);
    assert_eq!(events.iter().filter(|e| e.event == "registered").count(), 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event == "password_changed")
            .count(),
        1
    );
}

/// `etcdctl get --prefix PREFIX` on `member`, at `revision` if given.
fn etcdctl_get(member: &str, prefix: &str, revision: Option<i64>, json: bool) -> (bool, String) {
    let revision = revision.map(|r| format!("--rev={r}"));
    let mut args = vec!["get", "--prefix", prefix];
    args.extend(revision.as_deref());
    if json {
        args.extend(["-w", "json"]);
    }
    etcdctl(member, &args)
}

/// spec/vault.md §4.3 and §6.1: once a record is destroyed or deleted, no revision etcd
/// still serves holds its secrets; the revisions that held them are compacted away.
#[test]
fn etcd_serves_no_revision_that_held_erased_secrets() {
    if etcd::skipped() {
        return;
    }
    use base64::Engine;
    // A member of its own: the other tests here compact the shared member's whole history
    // whenever they erase, which would cut this test's control read short.
    let dir = tempfile::tempdir().unwrap();
    let own = etcd::Cluster::start(dir.path(), 1);
    let member = own.members[0].client.as_str();
    let store = etcd_store_on(member, "erasure");
    store.bind(integrity()).unwrap();
    let prefix = key_prefix("erasure");
    for (user, id, end) in [("eve", 8u8, "destroy"), ("fay", 9u8, "delete")] {
        let secret = format!("secret of {user}: only in the sealed field").into_bytes();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&secret);
        let mut r = record(id, user, 1);
        r.sealed = Some(secret);
        store.insert(&r).unwrap();
        let (ok, now) = etcdctl_get(member, &prefix, None, true);
        assert!(ok, "{now}");
        let held_at: i64 = serde_json::from_str::<serde_json::Value>(&now).unwrap()["header"]
            ["revision"]
            .as_i64()
            .unwrap();
        let (ok, then) = etcdctl_get(member, &prefix, Some(held_at), false);
        assert!(ok && then.contains(&encoded), "the control: {then}");
        match end {
            "destroy" => {
                counted(store.count_guess("t", user).unwrap());
                assert_eq!(
                    store.count_guess("t", user).unwrap(),
                    GuessOutcome::Destroyed
                );
            }
            _ => assert!(store.delete("t", user).unwrap()),
        }
        let (ok, now) = etcdctl_get(member, &prefix, None, false);
        assert!(
            ok && !now.contains(&encoded),
            "{end}: the current value: {now}"
        );
        let (ok, then) = etcdctl_get(member, &prefix, Some(held_at), false);
        assert!(
            !ok && then.contains("compacted"),
            "{end}: revision {held_at} is still served: {then}"
        );
    }
}

/// Users of one etcd shard, `n` of them (the shard whose changes take turns on one head).
fn users_of_one_shard(n: usize) -> Vec<String> {
    use coffer::store::integrity::{shard_of, ETCD_SHARDS};
    (0..)
        .map(|i| format!("u{i}"))
        .filter(|u| shard_of("t", u, ETCD_SHARDS) == 3)
        .take(n)
        .collect()
}

/// Twelve users in shards 0 to 11 (etcd's shards; SQLite has one).
fn users_of_twelve_shards() -> Vec<String> {
    use coffer::store::integrity::{shard_of, ETCD_SHARDS};
    (0..12)
        .map(|shard| {
            (0..)
                .map(|i| format!("s{shard}u{i}"))
                .find(|u| shard_of("t", u, ETCD_SHARDS) == shard)
                .unwrap()
        })
        .collect()
}

/// What the stores told of their group commits.
#[derive(Default)]
struct Tally {
    batches: AtomicUsize,
    changes: AtomicUsize,
    retries: AtomicUsize,
}

impl GroupCommitObserver for Tally {
    fn group_committed(&self, changes: usize, retries: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(changes, Ordering::Relaxed);
        self.retries.fetch_add(retries, Ordering::Relaxed);
    }
}

/// Eight guesses at once on each of twelve `users` (limit 5), half through each of `nodes`:
/// every user's guesses are counted 1 to 5 exactly once each, the sixth destroys the record,
/// the rest find nothing, and the audit log says the same. Returns what the stores reported
/// of their group commits: every guess was answered by one of them.
fn concurrent_guesses_keep_the_limit(nodes: [&dyn Store; 2], users: &[String]) -> Arc<Tally> {
    const LIMIT: u32 = 5;
    const GUESSES: usize = 8;
    let tally = Arc::new(Tally::default());
    for node in nodes {
        node.observe_group_commits(tally.clone());
    }
    for (i, user) in users.iter().enumerate() {
        nodes[0]
            .insert(&record(100 + i as u8, user, LIMIT))
            .unwrap();
    }
    let start = std::sync::Barrier::new(users.len() * GUESSES);
    let outcomes: Vec<(String, GuessOutcome)> = std::thread::scope(|s| {
        let threads: Vec<_> = users
            .iter()
            .flat_map(|user| (0..GUESSES).map(move |n| (user, n)))
            .map(|(user, n)| {
                let (node, start) = (nodes[n % 2], &start);
                s.spawn(move || {
                    start.wait();
                    (user.clone(), node.count_guess("t", user).unwrap())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let events = nodes[1].audit(0, 10_000).unwrap();
    for user in users {
        let mut counted: Vec<u32> = Vec::new();
        let (mut destroyed, mut absent) = (0, 0);
        for (_, outcome) in outcomes.iter().filter(|(u, _)| u == user) {
            match outcome {
                GuessOutcome::Counted(r) => counted.push(r.guesses),
                GuessOutcome::Destroyed => destroyed += 1,
                GuessOutcome::Absent => absent += 1,
            }
        }
        counted.sort_unstable();
        assert_eq!(counted, (1..=LIMIT).collect::<Vec<_>>(), "{user}");
        assert_eq!((destroyed, absent), (1, GUESSES - 6), "{user}");
        let logged = |kind: &str| {
            events
                .iter()
                .filter(|e| e.user == *user && e.event == kind)
                .count()
        };
        assert_eq!(
            (logged("guess"), logged("locked"), logged("destroyed")),
            (LIMIT as usize, 1, 1),
            "{user}"
        );
        let gone = nodes[0].latest("t", user).unwrap().unwrap();
        assert_eq!((gone.state, gone.sealed), (RecordState::Destroyed, None));
    }
    let (batches, changes) = (
        tally.batches.load(Ordering::Relaxed),
        tally.changes.load(Ordering::Relaxed),
    );
    assert_eq!(changes, users.len() * GUESSES);
    assert!((1..=changes).contains(&batches), "{batches} batches");
    tally
}

#[test]
fn sqlite_keeps_the_limit_under_concurrent_guesses() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("vault.db")).unwrap();
    store.bind(integrity()).unwrap();
    let tally = concurrent_guesses_keep_the_limit([&store, &store], &users_of_one_shard(12));
    assert_eq!(tally.retries.load(Ordering::Relaxed), 0);
    // The whole store still checks under its key.
    let again = SqliteStore::open(&dir.path().join("vault.db")).unwrap();
    again.bind(integrity()).unwrap();
}

/// Group commit on etcd (spec/vault.md §6.1): guesses that arrive together on one node
/// share a transaction, those of one shard and those of different shards alike; two nodes
/// racing on the shards' heads still count every guess once; and the store the batches left
/// checks whole (record sums, audit chains).
#[test]
fn etcd_group_commits_keep_the_limit_across_two_nodes() {
    if etcd::skipped() {
        return;
    }
    for (prefix, users) in [
        ("group-one-shard", users_of_one_shard(12)),
        ("group-twelve-shards", users_of_twelve_shards()),
    ] {
        let (one, two) = (bound_etcd_store(prefix), bound_etcd_store(prefix));
        let tally = concurrent_guesses_keep_the_limit([&one, &two], &users);
        // Fewer commits than guesses (the metrics say so too, spec/vault.md §9.2).
        let batches = tally.batches.load(Ordering::Relaxed);
        assert!(batches < 96, "{prefix}: {batches} commits for 96 guesses");
        let summary = etcd_store(prefix).bind(integrity()).unwrap();
        assert_eq!(summary.records, 12, "{prefix}: {summary:?}");
        // Events of one commit share its revision (seq / 256): some commit carried the
        // guesses of more than one user (with twelve shards: of more than one shard).
        let events = one.audit(0, 10_000).unwrap();
        let mut users_per_commit: std::collections::HashMap<u64, std::collections::HashSet<&str>> =
            Default::default();
        for e in events.iter().filter(|e| e.event == "guess") {
            users_per_commit
                .entry(e.seq / 256)
                .or_default()
                .insert(e.user.as_str());
        }
        let largest = users_per_commit.values().map(|u| u.len()).max().unwrap();
        assert!(
            largest > 1,
            "{prefix}: no commit carried two users' guesses: {users_per_commit:?}"
        );
    }
}
