//! The `RealmStore` contract (spec/realms.md §3.2, §4 step 2, §6.2, §7), run on both stores: the
//! embedded SQLite and etcd (a real single-member etcd on loopback; opt out with
//! COFFER_SKIP_ETCD=1). Both must give the same answers to the same calls. On etcd, a commit
//! whose answer is lost must apply once, and two nodes of one realm share one count.

use coffer_testkit::etcd;

use coffer::realms::{EtcdRealmStore, RealmGuess, RealmRecord, RealmStore, SqliteRealmStore};
use coffer::store::{EtcdConfig, EtcdStore, RecordState};

fn record(reg: u8, user: &str, limit: u32) -> RealmRecord {
    RealmRecord {
        tenant: "t".into(),
        user: user.into(),
        reg_id: [reg; 16],
        public: vec![reg; 40],
        index: 2,
        sealed: Some(vec![reg; 8]),
        guesses: 0,
        limit,
        state: RecordState::Active,
    }
}

fn counted(outcome: RealmGuess) -> u32 {
    match outcome {
        RealmGuess::Counted(r) => r.guesses,
        other => panic!("not counted: {other:?}"),
    }
}

/// Every operation of the trait, with the answers the spec gives.
fn contract(store: &dyn RealmStore) {
    // The fake seed: written once, the first one stays.
    assert_eq!(store.init_fake_seed(b"one").unwrap(), b"one");
    assert_eq!(store.init_fake_seed(b"two").unwrap(), b"one");
    assert_eq!(store.get("t", "ann").unwrap(), None);
    assert_eq!(store.count_guess("t", "ann").unwrap(), RealmGuess::Absent);
    store.put(&record(1, "ann", 3)).unwrap();
    assert_eq!(store.get("t", "ann").unwrap(), Some(record(1, "ann", 3)));
    assert_eq!(store.get("other-tenant", "ann").unwrap(), None);
    // Counted up to the limit; an unlock of this registration resets, of another does not.
    assert_eq!(counted(store.count_guess("t", "ann").unwrap()), 1);
    assert_eq!(counted(store.count_guess("t", "ann").unwrap()), 2);
    assert!(!store.reset("t", "ann", &[9; 16]).unwrap());
    assert_eq!(store.get("t", "ann").unwrap().unwrap().guesses, 2);
    assert!(store.reset("t", "ann", &[1; 16]).unwrap());
    for n in 1..=3 {
        assert_eq!(counted(store.count_guess("t", "ann").unwrap()), n);
    }
    // A failed unlock destroys only at the limit, and only this registration.
    assert!(!store.destroy_if_spent("t", "ann", &[9; 16]).unwrap());
    assert!(store.destroy_if_spent("t", "ann", &[1; 16]).unwrap());
    let gone = store.get("t", "ann").unwrap().unwrap();
    assert_eq!((gone.state, gone.sealed), (RecordState::Destroyed, None));
    assert_eq!(store.count_guess("t", "ann").unwrap(), RealmGuess::Absent);
    assert!(!store.reset("t", "ann", &[1; 16]).unwrap());
    // Past the limit, the next evaluation destroys.
    store.put(&record(2, "bob", 1)).unwrap();
    assert_eq!(counted(store.count_guess("t", "bob").unwrap()), 1);
    assert!(!store.destroy_if_spent("t", "bob", &[3; 16]).unwrap());
    assert_eq!(
        store.count_guess("t", "bob").unwrap(),
        RealmGuess::Destroyed
    );
    assert_eq!(
        store.get("t", "bob").unwrap().unwrap().state,
        RecordState::Destroyed
    );
    // A new registration replaces the old, whatever its state.
    store.put(&record(4, "bob", 5)).unwrap();
    assert_eq!(store.get("t", "bob").unwrap(), Some(record(4, "bob", 5)));
    // Deletion erases the sealed shares and happens once.
    assert!(store.delete("t", "bob").unwrap());
    let deleted = store.get("t", "bob").unwrap().unwrap();
    assert_eq!(
        (deleted.state, deleted.sealed),
        (RecordState::Deleted, None)
    );
    assert!(!store.delete("t", "bob").unwrap());
    assert!(!store.delete("t", "nobody").unwrap());
    assert_eq!(store.count_guess("t", "bob").unwrap(), RealmGuess::Absent);
}

#[test]
fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&SqliteRealmStore::open(&dir.path().join("realm.db")).unwrap());
}

fn etcd_store(prefix: &str) -> EtcdRealmStore {
    let url = format!(
        "etcd://{}/realm-contract-{prefix}-{}",
        etcd::shared().members[0].client,
        std::process::id()
    );
    EtcdRealmStore::new(EtcdStore::connect(&EtcdConfig::parse(&url).unwrap()).unwrap())
}

#[test]
fn etcd_keeps_the_contract() {
    if etcd::skipped() {
        return;
    }
    contract(&etcd_store("contract"));
}

/// A commit whose answer was lost is recognised by its operation id in the record: a guess
/// counts once, a reset or deletion reports done, the fake seed stays the first one.
#[test]
fn etcd_never_applies_an_operation_twice_when_its_answer_is_lost() {
    if etcd::skipped() {
        return;
    }
    let store = etcd_store("lost");
    store.etcd().lose_next_answers(1);
    assert_eq!(store.init_fake_seed(b"seed").unwrap(), b"seed");
    store.etcd().lose_next_answers(1);
    store.put(&record(7, "dee", 10)).unwrap();
    for n in 1..=3 {
        store.etcd().lose_next_answers(1);
        assert_eq!(counted(store.count_guess("t", "dee").unwrap()), n);
    }
    assert_eq!(store.get("t", "dee").unwrap().unwrap().guesses, 3);
    store.etcd().lose_next_answers(1);
    assert!(store.reset("t", "dee", &[7; 16]).unwrap());
    assert_eq!(store.get("t", "dee").unwrap().unwrap().guesses, 0);
    store.etcd().lose_next_answers(1);
    assert!(store.delete("t", "dee").unwrap());
    assert_eq!(
        store.get("t", "dee").unwrap().unwrap().state,
        RecordState::Deleted
    );
}

/// Two nodes of one realm (two connections, one prefix) guessing at once share one count:
/// every evaluation is counted exactly once and no more than the limit are answered.
#[test]
fn two_etcd_nodes_of_one_realm_share_one_count() {
    if etcd::skipped() {
        return;
    }
    let (a, b) = (etcd_store("shared"), etcd_store("shared"));
    a.put(&record(5, "eve", 30)).unwrap();
    let answered = std::thread::scope(|scope| {
        let handles: Vec<_> = [&a, &b, &a, &b]
            .into_iter()
            .map(|node| {
                scope.spawn(move || {
                    (0..10)
                        .filter(|_| {
                            matches!(
                                node.count_guess("t", "eve").unwrap(),
                                RealmGuess::Counted(_)
                            )
                        })
                        .count()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(answered, 30, "the limit, exactly");
    let eve = b.get("t", "eve").unwrap().unwrap();
    assert_eq!((eve.guesses, eve.state), (30, RecordState::Destroyed));
}
