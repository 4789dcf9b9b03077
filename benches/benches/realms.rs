//! Realms (spec/realms.md) against a single vault, in the same run: whole in-process
//! recoveries per second, 2-of-3 realms (each with its own SQLite file and master key, all
//! three asked and unlocked) as a ratio to one vault, and the client's own time per
//! recovery. Both use the test KSF, so that the protocol and the servers are measured, not
//! Argon2id (which costs both the same, about 140 ms at the default parameters).

use coffer::hsm::SoftHsm;
use coffer::key::RootKey;
use coffer::realms::{register, Realm, RealmConfig, RealmSet, Recovery, SqliteRealmStore};
use coffer::store::SqliteStore;
use coffer::vault::{KsfParams, ServerConfig, VaultServer};
use coffer_testkit::flows;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

type TestRealm = Realm<SqliteRealmStore, SoftHsm>;

fn realms(dir: &Path) -> (Vec<TestRealm>, RealmSet) {
    let realms: Vec<TestRealm> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| {
            let store = SqliteRealmStore::open(&dir.join(format!("{id}.db"))).unwrap();
            let hsm = SoftHsm::open_or_create(&dir.join(format!("{id}.key"))).unwrap();
            let config = RealmConfig {
                ksf: KsfParams::TEST,
                ..RealmConfig::new(id)
            };
            Realm::open(store, hsm, config).unwrap()
        })
        .collect();
    let set = RealmSet {
        realm_ids: realms.iter().map(|r| r.realm_id().to_owned()).collect(),
        threshold: 2,
        limit: 100,
        ksf: KsfParams::TEST,
    };
    let root = RootKey::from_bytes([7; 32]);
    let shares = register("bench", b"pw", &root, &set, &mut rand_core::OsRng).unwrap();
    for (realm, share) in realms.iter().zip(&shares) {
        realm.register("t", "bench", share, None).unwrap();
    }
    (realms, set)
}

/// One whole 2-of-3 recovery; returns the time the client spent (the realms' excluded).
fn recover(realms: &[TestRealm], set: &RealmSet) -> Duration {
    let mut client = Duration::ZERO;
    let t = Instant::now();
    let (recovery, m) = Recovery::start("bench", b"pw", set, &mut rand_core::OsRng).unwrap();
    client += t.elapsed();
    let answers = realms
        .iter()
        .map(|r| {
            (
                r.realm_id().to_owned(),
                Ok(r.evaluate("t", "bench", &m).unwrap()),
            )
        })
        .collect();
    let t = Instant::now();
    let unlocking = recovery.combine(answers).unwrap();
    client += t.elapsed();
    let releases = unlocking
        .requests()
        .iter()
        .zip(realms)
        .map(|(q, r)| {
            (
                q.realm.clone(),
                Ok(r.unlock("t", &q.session, &q.proof).unwrap()),
            )
        })
        .collect();
    let t = Instant::now();
    black_box(unlocking.finish(releases).unwrap());
    client + t.elapsed()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("realms");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(if coffer_bench::quick() {
            1
        } else {
            5
        }));

    let config = ServerConfig {
        ksf: KsfParams::TEST,
        default_limit: 100,
        ..ServerConfig::default()
    };
    let store = SqliteStore::open(&dir.path().join("vault.db")).unwrap();
    let hsm = SoftHsm::open_or_create(&dir.path().join("vault.key")).unwrap();
    let vault = VaultServer::open(store, hsm, config).unwrap();
    flows::register(
        &vault,
        "t",
        "bench",
        b"pw",
        &RootKey::from_bytes([7; 32]),
        None,
    )
    .unwrap();
    let mut single = Duration::ZERO;
    let mut single_n = 0u64;
    group.bench_function("single_vault_recovery", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(flows::recover(&vault, "t", "bench", b"pw").unwrap());
            }
            let spent = t.elapsed();
            single += spent;
            single_n += iters;
            spent
        })
    });

    let (realms, set) = realms(dir.path());
    let mut threshold = Duration::ZERO;
    let mut threshold_n = 0u64;
    let mut client = Duration::ZERO;
    group.bench_function("realms_2_of_3_recovery", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                client += recover(&realms, &set);
            }
            let spent = t.elapsed();
            threshold += spent;
            threshold_n += iters;
            spent
        })
    });
    group.finish();

    let per = |d: Duration, n: u64| d.as_secs_f64() / n.max(1) as f64;
    let (one, three) = (per(single, single_n), per(threshold, threshold_n));
    println!(
        "realms: 2-of-3 recovery {:.2} ms, single vault {:.2} ms: {:.2} of the single-vault rate \
         (floor 0.3); client time per 2-of-3 recovery {:.2} ms",
        three * 1e3,
        one * 1e3,
        one / three,
        per(client, threshold_n) * 1e3
    );
    if !coffer_bench::quick() {
        assert!(
            one / three >= 0.3,
            "2-of-3 recoveries below 0.3 of the single-vault rate"
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
