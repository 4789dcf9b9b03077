//! The unwrap hot path. Client side (group `vault_client`): from the password to K, with the
//! spec's Argon2id parameters and with cheap ones, and the KSF alone as its ceiling, so the
//! KSF's share of a recovery is reported. Server side (group `vault_server`): the cost of one
//! vault recovery: KE1 handling (guess committed to SQLite on disk,
//! unseal, `ServerLogin::start`) plus KE3 handling (`ServerLogin::finish`, count reset
//! committed, release sealed), timed without the client's work, per HSM backend (soft,
//! SoftHSM2 and kryoptic when present); and in the same run its ceilings: opaque-ke `ServerLogin::start` alone, the soft HSM's unseal alone, and one
//! durable SQLite commit.

use coffer::hsm::{Hsm, HsmError, SoftHsm};
use coffer::key::RootKey;
use coffer::store::SqliteStore;
use coffer::vault::Parties;
use coffer::vault::{KsfParams, RecoveryClient, ServerConfig, VaultServer};
use coffer_bench::tokens::{kryoptic, softhsm};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A vault on `hsm` with one registered record, and the parties to recover it.
fn registered<H: Hsm>(db: &Path, hsm: H) -> (VaultServer<SqliteStore, H>, Parties) {
    registered_with(db, hsm, KsfParams::TEST)
}

/// [`registered`] with the record's KSF parameters.
fn registered_with<H: Hsm>(
    db: &Path,
    hsm: H,
    ksf: KsfParams,
) -> (VaultServer<SqliteStore, H>, Parties) {
    let config = ServerConfig {
        ksf,
        ..ServerConfig::default()
    };
    let store = SqliteStore::open(db).unwrap();
    let server = VaultServer::open(store, hsm, config.clone()).unwrap();
    coffer_testkit::flows::register(
        &server,
        "t",
        "bench",
        b"pw",
        &RootKey::from_bytes([1; 32]),
        None,
    )
    .unwrap();
    let parties = coffer_testkit::flows::parties(&server, "bench");
    (server, parties)
}

/// An HSM that adds the time spent in it to a shared counter (nanoseconds).
struct TimedHsm<H> {
    inner: H,
    spent: Arc<AtomicU64>,
}

impl<H: Hsm> TimedHsm<H> {
    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.spent
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }
}

impl<H: Hsm> Hsm for TimedHsm<H> {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.time(|| self.inner.seal(aad, plaintext))
    }
    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.time(|| self.inner.unseal(aad, sealed))
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// One recovery's server time (KE1 plus KE3 handling), the client's work excluded; prints
/// the share of that time spent inside the HSM, measured in the same iterations (the
/// client's work never touches the HSM).
fn bench_recovery<H: Hsm>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, db: &Path, hsm: H) {
    let spent = Arc::new(AtomicU64::new(0));
    let timed = TimedHsm {
        inner: hsm,
        spent: spent.clone(),
    };
    let (server, parties) = registered(db, timed);
    let total = AtomicU64::new(0);
    let recoveries = AtomicU64::new(0);
    spent.store(0, Ordering::Relaxed);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut server_time = Duration::ZERO;
            for _ in 0..iters {
                let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
                let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
                let t = Instant::now();
                let ke2 = server.recover_start("t", "bench", &ke1).unwrap();
                server_time += t.elapsed();
                let done = client.finish(&parties, &ke2.ke2, &ke2.ksf).unwrap();
                let t = Instant::now();
                black_box(
                    server
                        .recover_finish("t", &ke2.session_id, &done.ke3)
                        .unwrap(),
                );
                server_time += t.elapsed();
            }
            total.fetch_add(server_time.as_nanos() as u64, Ordering::Relaxed);
            recoveries.fetch_add(iters, Ordering::Relaxed);
            server_time
        })
    });
    let (spent, total, n) = (
        spent.load(Ordering::Relaxed) as f64,
        total.load(Ordering::Relaxed) as f64,
        recoveries.load(Ordering::Relaxed).max(1) as f64,
    );
    let line = format!(
        "| {name} | {:.1} µs | {:.1} µs | {:.1}% | {n} |",
        spent / n / 1000.0,
        total / n / 1000.0,
        100.0 * spent / total.max(1.0),
    );
    println!("{line}");
    SHARE_ROWS.lock().unwrap().push(line);
}

/// Rows of the HSM-share table, written to target/criterion/hsm-share.md for report.py.
static SHARE_ROWS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn write_share_table() {
    // Quick mode runs each bench once: its figures are not a measurement.
    if coffer_bench::quick() {
        return;
    }
    let rows = SHARE_ROWS.lock().unwrap();
    let table = format!(
        "| bench | in the HSM per recovery | server time per recovery | HSM share | recoveries timed |\n\
         |---|---:|---:|---:|---:|\n{}\n",
        rows.join("\n")
    );
    if rows.is_empty() {
        return; // filtered out: keep the last table
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("hsm-share.md"), table);
    }
}

fn vault(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("vault_server");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let soft = SoftHsm::open_or_create(&dir.path().join("master.key")).unwrap();
    bench_recovery(
        &mut group,
        "recovery_server_side_ke1_plus_ke3",
        &dir.path().join("soft.db"),
        soft,
    );
    if let Some(hsm) = softhsm(dir.path()) {
        bench_recovery(
            &mut group,
            "recovery_server_side_softhsm2",
            &dir.path().join("softhsm2.db"),
            hsm,
        );
    }
    if let Some(hsm) = kryoptic(dir.path()) {
        bench_recovery(
            &mut group,
            "recovery_server_side_kryoptic",
            &dir.path().join("kryoptic.db"),
            hsm,
        );
    }
    group.bench_function("ceiling_opaque_ke_server_login_start", |b| {
        use coffer::vault::Suite;
        use opaque_ke::*;
        let mut rng = rand_core::OsRng;
        let setup = ServerSetup::<Suite>::new(&mut rng);
        let argon = KsfParams::TEST.argon2().unwrap();
        let reg = ClientRegistration::<Suite>::start(&mut rng, b"pw").unwrap();
        let resp = ServerRegistration::<Suite>::start(&setup, reg.message, b"id").unwrap();
        let params = ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&argon));
        let fin = reg
            .state
            .finish(&mut rng, b"pw", resp.message, params)
            .unwrap();
        let file = ServerRegistration::<Suite>::finish(fin.message).serialize();
        let ke1 = ClientLogin::<Suite>::start(&mut rng, b"pw")
            .unwrap()
            .message
            .serialize();
        b.iter(|| {
            let pf = ServerRegistration::<Suite>::deserialize(&file).unwrap();
            let req = CredentialRequest::<Suite>::deserialize(&ke1).unwrap();
            black_box(
                ServerLogin::start(
                    &mut rng,
                    &setup,
                    Some(pf),
                    req,
                    b"id",
                    ServerLoginParameters::default(),
                )
                .unwrap(),
            )
        })
    });
    group.bench_function("ceiling_soft_hsm_unseal_record", |b| {
        let hsm = SoftHsm::from_key(&[9; 32], std::path::Path::new("bench")).unwrap();
        let sealed = hsm.seal(b"aad", &[0u8; 252]).unwrap();
        b.iter(|| black_box(hsm.unseal(b"aad", &sealed).unwrap()))
    });
    group.bench_function("ceiling_sqlite_durable_commit", |b| {
        let conn = rusqlite::Connection::open(dir.path().join("commit.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
            .unwrap();
        b.iter(|| conn.execute("INSERT INTO t VALUES (1)", []).unwrap())
    });
    group.finish();
    write_share_table();
}

/// The client's side of one recovery against an in-process vault whose record has `ksf`:
/// KE1, the check of KE2 (the KSF runs here), the release opened; the server's time is not
/// counted.
fn bench_client(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, db: &Path, ksf: KsfParams) {
    let hsm = SoftHsm::open_or_create(&db.with_extension("key")).unwrap();
    let (server, parties) = registered_with(db, hsm, ksf);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut client_time = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
                let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
                client_time += t.elapsed();
                let ke2 = server.recover_start("t", "bench", &ke1).unwrap();
                let t = Instant::now();
                let done = client.finish(&parties, &ke2.ke2, &ke2.ksf).unwrap();
                client_time += t.elapsed();
                let release = server
                    .recover_finish("t", &ke2.session_id, &done.ke3)
                    .unwrap();
                let t = Instant::now();
                black_box(done.open(&ke2.session_id, &release).unwrap());
                client_time += t.elapsed();
            }
            client_time
        })
    });
}

fn client(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("vault_client");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    bench_client(
        &mut group,
        "recovery_client_side_spec_ksf",
        &dir.path().join("spec.db"),
        KsfParams::DEFAULT,
    );
    group.bench_function("ceiling_argon2id_spec_ksf_alone", |b| {
        // What the KSF costs by itself: RFC 9807's Stretch with the spec's parameters (64 MiB,
        // t = 3, p = 1), 64-byte output, the 16 zero bytes of salt opaque-ke uses.
        let argon = KsfParams::DEFAULT.argon2().unwrap();
        let mut out = [0u8; 64];
        b.iter(|| {
            argon
                .hash_password_into(black_box(&[7u8; 64]), &[0u8; 16], &mut out)
                .unwrap();
            black_box(out[0])
        })
    });
    bench_client(
        &mut group,
        "recovery_client_side_cheap_ksf",
        &dir.path().join("cheap.db"),
        KsfParams::TEST,
    );
    group.finish();
}

criterion_group!(benches, client, vault);
criterion_main!(benches);
