//! Seal and unseal of a vault record (252 bytes: password file and envelope) per HSM backend,
//! in the same run: soft (AES-256-GCM in process), SoftHSM2 and kryoptic (CKM_AES_GCM on a
//! token through PKCS#11). SoftHSM2 needs the Debian package; kryoptic needs
//! COFFER_KRYOPTIC_MODULE (scripts/kryoptic.sh). A missing module is reported and skipped.

use coffer::hsm::{softhsm2_module, Hsm, Pkcs11Config, Pkcs11Hsm, SoftHsm};
use coffer_bench::tokens::{kryoptic, session_key, softhsm};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use std::hint::black_box;
use std::time::Duration;
use zeroize::Zeroizing;

const RECORD: [u8; 252] = [7; 252];

fn bench_backend(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    hsm: &dyn Hsm,
) {
    let sealed = hsm.seal(b"coffer/v1 record", &RECORD).unwrap();
    group.bench_function(format!("{name}_seal"), |b| {
        b.iter(|| black_box(hsm.seal(b"coffer/v1 record", &RECORD).unwrap()))
    });
    group.bench_function(format!("{name}_unseal"), |b| {
        b.iter(|| black_box(hsm.unseal(b"coffer/v1 record", &sealed).unwrap()))
    });
}

fn hsm(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("hsm_record");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let soft = SoftHsm::from_key(&[1; 32], &dir.path().join("k")).unwrap();
    bench_backend(&mut group, "soft", &soft);
    if let Some(h) = softhsm(dir.path()) {
        bench_backend(&mut group, "softhsm2", &h);
        let (_ctx, _session) = session_key(softhsm2_module(), "bench", "bench-session");
        let session_hsm = Pkcs11Hsm::open(&Pkcs11Config {
            module: softhsm2_module().to_owned(),
            token: "bench".into(),
            pin: Zeroizing::new("87654321".into()),
            key_label: "bench-session".into(),
        })
        .unwrap();
        bench_backend(&mut group, "softhsm2_session_key", &session_hsm);
    }
    if let Some(h) = kryoptic(dir.path()) {
        bench_backend(&mut group, "kryoptic", &h);
    }
    group.finish();
}

criterion_group!(benches, hsm);
criterion_main!(benches);
