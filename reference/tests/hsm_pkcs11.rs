//! The PKCS#11 backend on a real module: SoftHSM2 (Debian `softhsm2`, installed by
//! scripts/test.sh), with a private configuration and token under a temporary directory.
//! Opt out by name only: COFFER_SKIP_SOFTHSM=1 (the skip is printed).

mod hsm_common;

use coffer::hsm::{pkcs11::softhsm2_module, Pkcs11Config};
use std::path::Path;
use std::process::Command;
use zeroize::Zeroizing;

fn softhsm_token(dir: &Path, label: &str) -> Pkcs11Config {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // The module reads its configuration from the environment when it is loaded.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            "12345678",
            "--pin",
            "87654321",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (Debian package softhsm2; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Pkcs11Config {
        module: softhsm2_module().to_owned(),
        token: label.to_owned(),
        pin: Zeroizing::new("87654321".into()),
        key_label: "coffer-vault-master".into(),
    }
}

/// One test function: a module is loaded once per process (dropping a context finalizes it).
#[test]
fn softhsm2_backend_seals_the_vault_and_never_reveals_its_key() {
    if std::env::var("COFFER_SKIP_SOFTHSM").as_deref() == Ok("1") {
        eprintln!("SKIPPED: SoftHSM2 tests (COFFER_SKIP_SOFTHSM=1)");
        return;
    }
    assert!(
        softhsm2_module().exists(),
        "{} is missing: apt-get install softhsm2 (scripts/test.sh does), or opt out with COFFER_SKIP_SOFTHSM=1",
        softhsm2_module().display()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = softhsm_token(dir.path(), "coffer-test");
    hsm_common::exercise_backend(&config, dir.path());
}
