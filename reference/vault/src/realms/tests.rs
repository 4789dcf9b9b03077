//! The realms end to end in process: three realms, each with its own SQLite file and its own
//! master key, 2-of-3.

use super::*;
use crate::hsm::SoftHsm;
use crate::key::RootKey;
use crate::store::RecordState;
use crate::vault::KsfParams;
use rand_core::OsRng;
use std::path::Path;

type TestRealm = Realm<SqliteRealmStore, SoftHsm>;

fn realm(dir: &Path, id: &str) -> TestRealm {
    let store = SqliteRealmStore::open(&dir.join(format!("{id}.db"))).unwrap();
    let hsm = SoftHsm::open_or_create(&dir.join(format!("{id}.key"))).unwrap();
    let config = RealmConfig {
        ksf: KsfParams::TEST,
        ..RealmConfig::new(id)
    };
    Realm::open(store, hsm, config).unwrap()
}

fn realms(dir: &Path) -> Vec<TestRealm> {
    ["r1", "r2", "r3"].iter().map(|id| realm(dir, id)).collect()
}

fn set(realms: &[TestRealm], t: u8, limit: u32) -> RealmSet {
    RealmSet {
        realm_ids: realms.iter().map(|r| r.realm_id().to_owned()).collect(),
        threshold: t,
        limit,
        ksf: KsfParams::TEST,
    }
}

fn register_all(realms: &[TestRealm], user: &str, password: &[u8], t: u8, limit: u32) -> RootKey {
    let root = RootKey::generate().unwrap();
    let shares = register(user, password, &root, &set(realms, t, limit), &mut OsRng).unwrap();
    for (realm, share) in realms.iter().zip(&shares) {
        realm.register("t", user, share, None).unwrap();
    }
    root
}

/// How each realm behaves in a recovery.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Honest,
    Down,
    WrongEvaluation,
    WrongRelease,
    /// Answers for a registration it made up, with its own key and a valid proof.
    Forged,
    /// Forwards the next realm's answer as its own (with that realm's index).
    Forwards,
}

/// A whole recovery against `realms`, each behaving as told.
fn recover_with(
    realms: &[TestRealm],
    user: &str,
    password: &[u8],
    behaviour: &[Behaviour],
) -> Result<(RootKey, Vec<(String, String)>), RealmError> {
    let (recovery, m) = Recovery::start(user, password, &set(realms, 2, 10), &mut OsRng)?;
    let answers = realms
        .iter()
        .zip(behaviour)
        .map(|(realm, b)| {
            let answer = match b {
                Behaviour::Down => Err("connection refused".to_owned()),
                Behaviour::Forged => Ok(forged_answer(realm, user, &m)),
                Behaviour::Forwards => {
                    let next = realms
                        .iter()
                        .position(|r| r.realm_id() == realm.realm_id())
                        .map(|i| &realms[(i + 1) % realms.len()])
                        .unwrap();
                    next.evaluate("t", user, &m).map_err(|e| e.to_string())
                }
                _ => realm.evaluate("t", user, &m).map_err(|e| e.to_string()),
            };
            let answer = answer.map(|mut a| {
                if *b == Behaviour::WrongEvaluation {
                    a.evaluation = (curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT
                        * curve25519_dalek::scalar::Scalar::from(7u64))
                    .compress()
                    .to_bytes();
                }
                a
            });
            (realm.realm_id().to_owned(), answer)
        })
        .collect();
    let unlocking = recovery.combine(answers).map_err(|f| f.error)?;
    let releases = unlocking
        .requests()
        .iter()
        .map(|request| {
            let realm = realms
                .iter()
                .position(|r| r.realm_id() == request.realm)
                .unwrap();
            let release = realms[realm]
                .unlock("t", &request.session, &request.proof)
                .map(|mut release| {
                    if behaviour[realm] == Behaviour::WrongRelease {
                        let last = release.len() - 1;
                        release[last] ^= 1;
                    }
                    release
                })
                .map_err(|e| e.to_string());
            (request.realm.clone(), release)
        })
        .collect();
    unlocking.finish(releases).map_err(|f| f.error)
}

/// A hostile realm's phase-1 answer: a whole registration of its own making (its own key and
/// K, the same realm ids), with a proof that verifies against it.
fn forged_answer(realm: &TestRealm, user: &str, blinded: &[u8; 32]) -> EvalAnswer {
    let dir = tempfile::tempdir().unwrap();
    let accomplice = self::realm(dir.path(), realm.realm_id());
    let ids = ["r1", "r2", "r3"];
    let set = RealmSet {
        realm_ids: ids.iter().map(|s| s.to_string()).collect(),
        threshold: 2,
        limit: 10,
        ksf: KsfParams::TEST,
    };
    let fake_root = RootKey::from_bytes([0xee; 32]);
    let shares = register(user, b"whatever", &fake_root, &set, &mut OsRng).unwrap();
    let mine = shares
        .iter()
        .find(|s| s.realm_id == realm.realm_id())
        .unwrap();
    accomplice.register("t", user, mine, None).unwrap();
    accomplice.evaluate("t", user, blinded).unwrap()
}

fn recover(realms: &[TestRealm], user: &str, password: &[u8]) -> Result<RootKey, RealmError> {
    recover_with(realms, user, password, &[Behaviour::Honest; 3]).map(|(k, _)| k)
}

fn guesses(realm: &TestRealm, user: &str) -> (u32, RecordState) {
    let r = realm.store().get("t", user).unwrap().unwrap();
    (r.guesses, r.state)
}

#[test]
fn two_of_three_register_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    let root = register_all(&realms, "alice", b"correct horse", 2, 10);
    assert_eq!(recover(&realms, "alice", b"correct horse").unwrap(), root);
    // Every realm that answered was unlocked: its count is back to 0.
    for realm in &realms {
        assert_eq!(guesses(realm, "alice"), (0, RecordState::Active));
    }
}

#[test]
fn recovery_survives_one_realm_down_or_lying_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    let root = register_all(&realms, "bob", b"pw", 2, 10);
    use Behaviour::*;
    for (behaviour, culprit, says) in [
        ([Down, Honest, Honest], "r1", "connection refused"),
        ([Honest, WrongEvaluation, Honest], "r2", "wrong evaluation"),
        ([Honest, Honest, WrongRelease], "r3", "wrong release"),
    ] {
        let (k, problems) =
            recover_with(&realms, "bob", b"pw", &behaviour).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k, root);
        assert!(
            problems
                .iter()
                .any(|(r, what)| r == culprit && what.contains(says)),
            "{problems:?}"
        );
    }
    // A realm that answers for a registration of its own making is outvoted: its group has
    // one member, fewer than t; the client outputs the registered K, never the forged one.
    let (k, _) = recover_with(&realms, "bob", b"pw", &[Forged, Honest, Honest]).unwrap();
    assert_eq!(k, root);
    // A realm that forwards another realm's answer as its own is refused by index, named,
    // and the realm it copied still counts as honest.
    let (k, problems) = recover_with(&realms, "bob", b"pw", &[Forwards, Honest, Honest]).unwrap();
    assert_eq!(k, root);
    assert!(
        problems
            .iter()
            .any(|(r, what)| r == "r1" && what.contains("index")),
        "{problems:?}"
    );
    // Two realms wrong: locked, naming both.
    let err = recover_with(&realms, "bob", b"pw", &[Down, WrongEvaluation, Honest])
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, RealmError::Locked(_)), "{err}");
    assert!(text.contains("r1") && text.contains("r2"), "{text}");
    // All down: unavailable.
    let err = recover_with(&realms, "bob", b"pw", &[Down; 3])
        .err()
        .unwrap();
    assert!(matches!(err, RealmError::Unavailable(_)), "{err}");
}

#[test]
fn a_wrong_password_is_counted_at_every_realm_before_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    register_all(&realms, "carol", b"right", 2, 10);
    assert!(matches!(
        recover(&realms, "carol", b"wrong"),
        Err(RealmError::WrongPassword)
    ));
    for realm in &realms {
        assert_eq!(guesses(realm, "carol"), (1, RecordState::Active));
    }
}

#[test]
fn the_limit_destroys_and_k_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    register_all(&realms, "dave", b"right", 2, 3);
    for _ in 0..3 {
        assert!(matches!(
            recover(&realms, "dave", b"wrong"),
            Err(RealmError::WrongPassword)
        ));
    }
    // The next evaluation at each realm destroys it; the right password now meets fakes.
    let err = recover(&realms, "dave", b"right").err().unwrap();
    assert!(matches!(err, RealmError::NoRecord), "{err}");
    for realm in &realms {
        let r = realm.store().get("t", "dave").unwrap().unwrap();
        assert_eq!((r.state, r.sealed), (RecordState::Destroyed, None));
    }
}

#[test]
fn unknown_users_get_consistent_fakes_and_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    let err = recover(&realms, "nobody", b"pw").err().unwrap();
    assert!(matches!(err, RealmError::NoRecord), "{err}");
    // The same fake registration every time, shaped like a real answer.
    let (_, m) = Recovery::start("nobody", b"pw", &set(&realms[..], 2, 10), &mut OsRng).unwrap();
    let a = realms[0].evaluate("t", "nobody", &m).unwrap();
    let b = realms[0].evaluate("t", "nobody", &m).unwrap();
    assert_eq!(a.public, b.public);
    assert_eq!(a.evaluation, b.evaluation);
    assert!(PublicPart::decode(&a.public).is_ok());
    assert!(
        realms[0].store().get("t", "nobody").unwrap().is_none(),
        "nothing stored"
    );
}

#[test]
fn a_session_unlocks_once_and_a_captured_proof_does_not_replay() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    register_all(&realms, "erin", b"pw", 2, 10);
    let (recovery, m) =
        Recovery::start("erin", b"pw", &set(&realms[..], 2, 10), &mut OsRng).unwrap();
    let answers = realms
        .iter()
        .map(|r| {
            (
                r.realm_id().to_owned(),
                Ok(r.evaluate("t", "erin", &m).unwrap()),
            )
        })
        .collect();
    let unlocking = recovery.combine(answers).unwrap();
    let request = unlocking.requests()[0].clone();
    realms[0]
        .unlock("t", &request.session, &request.proof)
        .unwrap();
    assert!(matches!(
        realms[0].unlock("t", &request.session, &request.proof),
        Err(RealmError::WrongPassword)
    ));
    // The proof for one session is worthless for another.
    let (_, m) = Recovery::start("erin", b"wrong", &set(&realms[..], 2, 10), &mut OsRng).unwrap();
    let fresh = realms[0].evaluate("t", "erin", &m).unwrap();
    assert!(matches!(
        realms[0].unlock("t", &fresh.session, &request.proof),
        Err(RealmError::WrongPassword)
    ));
    assert_eq!(guesses(&realms[0], "erin").0, 1, "the replay reset nothing");
}

#[test]
fn a_share_for_another_realm_or_with_false_commitments_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    let root = RootKey::generate().unwrap();
    let shares = register("frank", b"pw", &root, &set(&realms, 2, 10), &mut OsRng).unwrap();
    assert!(matches!(
        realms[0].register("t", "frank", &shares[1], None),
        Err(RealmError::Malformed(_))
    ));
    let mut forged = RealmShare {
        realm_id: shares[0].realm_id.clone(),
        index: 1,
        public: shares[0].public.clone(),
        key_share: shares[1].key_share.clone(),
        secret_share: shares[0].secret_share.clone(),
        tag: shares[0].tag.clone(),
    };
    assert!(matches!(
        realms[0].register("t", "frank", &forged, None),
        Err(RealmError::Malformed(_))
    ));
    forged.key_share = shares[0].key_share.clone();
    forged.public.limit = 1000;
    assert!(matches!(
        realms[0].register("t", "frank", &forged, None),
        Err(RealmError::Unsupported(_))
    ));
}

#[test]
fn a_half_finished_password_change_still_recovers_from_either_side() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    let old = register_all(&realms, "gina", b"old", 2, 10);
    let new = RootKey::generate().unwrap();
    let shares = register("gina", b"new", &new, &set(&realms, 2, 10), &mut OsRng).unwrap();
    // Without the old password nothing is replaced: a tenant token cannot overwrite.
    assert!(matches!(
        realms[0].register("t", "gina", &shares[0], None),
        Err(RealmError::Unauthorized(_))
    ));
    // A recovery with the old password unlocks a session at each realm; the new
    // registration, sent with those grants, reached realms 1 and 2 only.
    let (recovery, m) = Recovery::start("gina", b"old", &set(&realms, 2, 10), &mut OsRng).unwrap();
    let answers = realms
        .iter()
        .map(|r| {
            (
                r.realm_id().to_owned(),
                Ok(r.evaluate("t", "gina", &m).unwrap()),
            )
        })
        .collect();
    let unlocking = recovery.combine(answers).unwrap();
    for (i, request) in unlocking.requests().iter().take(2).enumerate() {
        realms[i]
            .unlock("t", &request.session, &request.proof)
            .unwrap();
        realms[i]
            .register("t", "gina", &shares[i], Some(&request.grant))
            .unwrap();
    }
    assert_eq!(recover(&realms, "gina", b"new").unwrap(), new);
    // The old password meets one old realm only, fewer than t; the new registration's two
    // realms verify, and the old password fails its check.
    assert!(matches!(
        recover(&realms, "gina", b"old"),
        Err(RealmError::WrongPassword)
    ));
    let _ = old;
}

/// The insider of `spec/realms.md` §9: the full state of t − 1 = 1 realm (its database and
/// its master key), and a 4-digit password space. Against a single OPAQUE vault's state the
/// same attacker finds the password (crate::vault tests); here nothing it can compute
/// matches the stored check for any candidate, the right one included.
#[test]
fn one_realm_with_all_its_state_cannot_test_a_single_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    register_all(&realms, "hank", b"4711", 2, 10);
    // Everything realm 1 holds, unsealed with its own master key.
    let record = realms[0].store().get("t", "hank").unwrap().unwrap();
    let secrets = realms[0].unseal(&record).unwrap();
    let public = PublicPart::decode(&record.public).unwrap();
    let insider = client::Insider::new(&public, record.index, &secrets.key_share);
    let hits: Vec<u32> = (0..10_000u32)
        .filter(|pin| insider.matches("hank", format!("{pin:04}").as_bytes(), &KsfParams::TEST))
        .collect();
    assert!(
        hits.is_empty(),
        "one realm tested candidates offline: {hits:?}"
    );
    // The same computation with two realms' shares (t of them) finds the PIN: the check is
    // sound, the insider only lacks the second share.
    let record2 = realms[1].store().get("t", "hank").unwrap().unwrap();
    let secrets2 = realms[1].unseal(&record2).unwrap();
    let two = client::Insider::with_two(&public, (1, &secrets.key_share), (2, &secrets2.key_share));
    assert!(two.matches("hank", b"4711", &KsfParams::TEST));
}

/// How many candidates an attacker tests: each needs `t` real evaluations (answers that carry
/// the registration's commitment) from distinct realms; it always asks the realms with the
/// most guesses left, and `before_each` runs before every candidate (an insider's meddling).
fn candidates_tested(realms: &[TestRealm], user: &str, before_each: &dyn Fn()) -> usize {
    let real = realms[0].store().get("t", user).unwrap().unwrap().public;
    let mut tested = 0;
    for candidate in 0..100u32 {
        before_each();
        let mut order: Vec<usize> = (0..realms.len()).collect();
        order.sort_by_key(|&i| {
            let r = realms[i].store().get("t", user).unwrap().unwrap();
            (r.state != RecordState::Active, r.guesses)
        });
        let password = format!("guess {candidate}");
        let (_, m) =
            Recovery::start(user, password.as_bytes(), &set(realms, 2, 3), &mut OsRng).unwrap();
        let real_answers = order
            .iter()
            .take(2)
            .filter(|&&i| realms[i].evaluate("t", user, &m).unwrap().public == real)
            .count();
        if real_answers < 2 {
            return tested;
        }
        tested += 1;
    }
    tested
}

#[test]
fn spread_guesses_never_exceed_the_bound_and_the_bound_is_reached() {
    // spec/realms.md §8 with c = 0: ⌊n · L / t⌋ = ⌊3 · 3 / 2⌋ = 4.
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    register_all(&realms, "ivy", b"right", 2, 3);
    assert_eq!(candidates_tested(&realms, "ivy", &|| {}), 4);
}

#[test]
fn resetting_one_realms_counter_on_disk_gives_no_more_than_the_bound() {
    // One realm's store is writable by the attacker (its shares stay sealed): c = 1 for
    // counting, ⌊(n − c) · L / (t − c)⌋ = ⌊2 · 3 / 1⌋ = 6.
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    register_all(&realms, "jack", b"right", 2, 3);
    let db = dir.path().join("r1.db");
    let reset = || {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("UPDATE realm_records SET guesses = 0", [])
            .unwrap();
    };
    assert_eq!(candidates_tested(&realms, "jack", &reset), 6);
}

#[test]
fn deletion_needs_the_password_or_the_registrations_own_grant() {
    let dir = tempfile::tempdir().unwrap();
    let realms = realms(dir.path());
    let root = RootKey::generate().unwrap();
    let shares = register("kim", b"pw", &root, &set(&realms, 2, 10), &mut OsRng).unwrap();
    let grant = realms[0].register("t", "kim", &shares[0], None).unwrap();
    realms[1].register("t", "kim", &shares[1], None).unwrap();
    realms[2].register("t", "kim", &shares[2], None).unwrap();
    // A tenant token alone (any made-up grant) deletes nothing.
    assert!(matches!(
        realms[1].delete("t", "kim", &[0; 16]),
        Err(RealmError::Unauthorized(_))
    ));
    // A user's grant does not apply to another user.
    assert!(matches!(
        realms[0].delete("t", "other", &grant),
        Err(RealmError::Unauthorized(_))
    ));
    // A session unlocked with the password deletes, once.
    let (recovery, m) = Recovery::start("kim", b"pw", &set(&realms, 2, 10), &mut OsRng).unwrap();
    let answers = realms
        .iter()
        .map(|r| {
            (
                r.realm_id().to_owned(),
                Ok(r.evaluate("t", "kim", &m).unwrap()),
            )
        })
        .collect();
    let unlocking = recovery.combine(answers).unwrap();
    let request = unlocking.requests()[1].clone();
    assert_eq!(request.realm, "r2");
    // Not unlocked yet: the phase-1 session is no grant.
    assert!(matches!(
        realms[1].delete("t", "kim", &request.session),
        Err(RealmError::Unauthorized(_))
    ));
    realms[1]
        .unlock("t", &request.session, &request.proof)
        .unwrap();
    // Unlocked, the session id alone is still no grant: it travels in a URL path.
    assert!(matches!(
        realms[1].delete("t", "kim", &request.session),
        Err(RealmError::Unauthorized(_))
    ));
    assert!(realms[1].delete("t", "kim", &request.grant).unwrap());
    assert!(matches!(
        realms[1].delete("t", "kim", &request.grant),
        Err(RealmError::Unauthorized(_))
    ));
    assert_eq!(guesses(&realms[1], "kim").1, RecordState::Deleted);
    assert_eq!(guesses(&realms[0], "kim").1, RecordState::Active);
    // A registration's own grant deletes it (a half-finished registration taken back).
    let again = realms[2].register("t", "kim", &shares[2], None).unwrap();
    assert!(realms[2].delete("t", "kim", &again).unwrap());
    assert_eq!(guesses(&realms[2], "kim").1, RecordState::Deleted);
}

#[test]
fn a_tenant_at_its_session_cap_is_refused_before_counting_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteRealmStore::open(&dir.path().join("r1.db")).unwrap();
    let hsm = SoftHsm::open_or_create(&dir.path().join("r1.key")).unwrap();
    let config = RealmConfig {
        ksf: KsfParams::TEST,
        sessions_per_tenant: 2,
        ..RealmConfig::new("r1")
    };
    let realm = Realm::open(store, hsm, config).unwrap();
    let set = set(std::slice::from_ref(&realm), 1, 10);
    let root = RootKey::generate().unwrap();
    let shares = register("lee", b"pw", &root, &set, &mut OsRng).unwrap();
    realm.register("t", "lee", &shares[0], None).unwrap();
    realm.register("u", "lee", &shares[0], None).unwrap();
    let (_, m) = Recovery::start("lee", b"pw", &set, &mut OsRng).unwrap();
    let first = realm.evaluate("t", "lee", &m).unwrap();
    realm.evaluate("t", "lee", &m).unwrap();
    // Tenant t holds its two sessions: refused with a time to retry, and no guess counted.
    match realm.evaluate("t", "lee", &m) {
        Err(e @ RealmError::Busy { retry_after, .. }) => {
            assert_eq!(e.class(), ErrorClass::RateLimited);
            assert!((299..=300).contains(&retry_after), "{retry_after}");
        }
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
    assert_eq!(guesses(&realm, "lee"), (2, RecordState::Active));
    // Another tenant of the realm is not held up.
    realm.evaluate("u", "lee", &m).unwrap();
    // A session taken in phase 2 (even by a wrong proof) gives its room back.
    assert!(matches!(
        realm.unlock("t", &first.session, &[0u8; 32]),
        Err(RealmError::WrongPassword)
    ));
    realm.evaluate("t", "lee", &m).unwrap();
    assert_eq!(guesses(&realm, "lee"), (3, RecordState::Active));
}
