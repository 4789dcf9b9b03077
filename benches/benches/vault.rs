//! Server-side cost of one vault recovery: KE1 handling (guess committed to SQLite on disk,
//! unseal, `ServerLogin::start`) plus KE3 handling (`ServerLogin::finish`, count reset
//! committed, release sealed), timed without the client's work; and in the same run its
//! ceilings: opaque-ke `ServerLogin::start` alone, the soft HSM's unseal alone, and one
//! durable SQLite commit.

use coffer::hsm::{Hsm, SoftHsm};
use coffer::key::RootKey;
use coffer::store::SqliteStore;
use coffer::vault::client::Parties;
use coffer::vault::{KsfParams, RecoveryClient, RegistrationClient, ServerConfig, VaultServer};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn vault(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = ServerConfig {
        ksf: KsfParams::TEST,
        ..ServerConfig::default()
    };
    let store = SqliteStore::open(&dir.path().join("vault.db")).unwrap();
    let hsm = SoftHsm::open_or_create(&dir.path().join("master.key")).unwrap();
    let server = VaultServer::open(store, hsm, config.clone()).unwrap();
    let parties = Parties {
        user: "bench".into(),
        server_id: config.server_id.clone(),
    };
    let (client, request) = RegistrationClient::start(b"pw").unwrap();
    let start = server.register_start("t", "bench", &request).unwrap();
    let (upload, envelope) = client
        .finish(
            &parties,
            &start.response,
            &start.ksf,
            &start.record_id,
            1,
            &RootKey::from_bytes([1; 32]),
        )
        .unwrap();
    server
        .register_finish("t", "bench", start.record_id, &upload, &envelope, None)
        .unwrap();

    let mut group = c.benchmark_group("vault_server");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("recovery_server_side_ke1_plus_ke3", |b| {
        b.iter_custom(|iters| {
            let mut server_time = Duration::ZERO;
            for _ in 0..iters {
                let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
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
            server_time
        })
    });
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
}

criterion_group!(benches, vault);
criterion_main!(benches);
