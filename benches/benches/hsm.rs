//! Seal and unseal of a vault record (252 bytes: password file and envelope) per HSM backend,
//! in the same run: soft (AES-256-GCM in process), SoftHSM2 and kryoptic (CKM_AES_GCM on a
//! token through PKCS#11). SoftHSM2 needs the Debian package; kryoptic needs
//! COFFER_KRYOPTIC_MODULE (scripts/kryoptic.sh). A missing module is reported and skipped.

use coffer::hsm::{pkcs11::softhsm2_module, Hsm, Pkcs11Config, Pkcs11Hsm, SoftHsm};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
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

fn softhsm(dir: &Path) -> Option<Pkcs11Hsm> {
    if !softhsm2_module().exists() {
        eprintln!("SKIPPED: SoftHSM2 (apt-get install softhsm2)");
        return None;
    }
    let tokens = dir.join("softhsm-tokens");
    std::fs::create_dir_all(&tokens).ok()?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .ok()?;
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let ok = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--so-pin",
            "12345678",
            "--pin",
            "87654321",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    let hsm = Pkcs11Hsm::open(&Pkcs11Config {
        module: softhsm2_module().to_owned(),
        token: "bench".into(),
        pin: Zeroizing::new("87654321".into()),
        key_label: "coffer-vault-master".into(),
    })
    .ok()?;
    hsm.init_key(coffer::hsm::Export::Never).ok()?;
    Some(hsm)
}

fn kryoptic(dir: &Path) -> Option<(cryptoki::context::Pkcs11, Pkcs11Hsm)> {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let Ok(module) = std::env::var("COFFER_KRYOPTIC_MODULE") else {
        eprintln!(
            "SKIPPED: kryoptic (set COFFER_KRYOPTIC_MODULE to the output of scripts/kryoptic.sh)"
        );
        return None;
    };
    let conf = dir.join("kryoptic.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = 42\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            dir.join("k.sql").display()
        ),
    )
    .ok()?;
    std::env::set_var("KRYOPTIC_CONF", &conf);
    let ctx = Pkcs11::new(&module).ok()?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .ok()?;
    let slot = *ctx.get_all_slots().ok()?.first()?;
    let so = AuthPin::new("12345678".into());
    ctx.init_token(slot, &so, "bench").ok()?;
    {
        let s = ctx.open_rw_session(slot).ok()?;
        s.login(UserType::So, Some(&so)).ok()?;
        s.init_pin(&AuthPin::new("87654321".into())).ok()?;
        s.logout().ok()?;
    }
    let hsm = Pkcs11Hsm::open(&Pkcs11Config {
        module: module.into(),
        token: "bench".into(),
        pin: Zeroizing::new("87654321".into()),
        key_label: "coffer-vault-master".into(),
    })
    .ok()?;
    hsm.init_key(coffer::hsm::Export::Never).ok()?;
    // The context that initialised the token stays alive as long as the backend.
    Some((ctx, hsm))
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
    }
    if let Some((_ctx, h)) = kryoptic(dir.path()) {
        bench_backend(&mut group, "kryoptic", &h);
    }
    group.finish();
}

criterion_group!(benches, hsm);
criterion_main!(benches);
