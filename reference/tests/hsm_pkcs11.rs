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

/// The CLI on a token: `coffer hsm init` then `coffer vault serve --hsm pkcs11:...`, with a
/// recovery over HTTP (child processes get their own SOFTHSM2_CONF).
#[test]
fn vault_serve_on_softhsm2_through_a_pkcs11_uri() {
    if std::env::var("COFFER_SKIP_SOFTHSM").as_deref() == Ok("1") {
        eprintln!("SKIPPED: SoftHSM2 tests (COFFER_SKIP_SOFTHSM=1)");
        return;
    }
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "cli-vault",
            "--so-pin",
            "12345678",
            "--pin",
            "87654321",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util");
    assert!(out.status.success());
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "87654321\n").unwrap();
    let uri = format!(
        "pkcs11:token=cli-vault;object=master?module-path={}&pin-source=file:{}",
        softhsm2_module().display(),
        pin.display()
    );
    let coffer = env!("CARGO_BIN_EXE_coffer");
    let init = Command::new(coffer)
        .args(["--json", "hsm", "init", "--hsm", &uri])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let data = dir.path().join("data");
    let mut server = Command::new(coffer)
        .args([
            "vault",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ksf",
            "argon2id:m=256,t=1,p=1",
            "--hsm",
            &uri,
            "--data",
        ])
        .arg(&data)
        .env("SOFTHSM2_CONF", &conf)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let url = first["listening"].as_str().unwrap().to_owned();
    let token_file = first["token_file"].as_str().unwrap().to_owned();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    let key = "aa".repeat(32);
    let run = |args: &[&str]| {
        let mut a = vec!["--json", "vault"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[
            "--vault",
            &url,
            "--token-file",
            &token_file,
            "--password-file",
            pw.to_str().unwrap(),
        ]);
        Command::new(coffer).args(&a).output().unwrap()
    };
    let reg = run(&["register", "--user", "u", "--key", &key]);
    assert!(
        reg.status.success(),
        "{}",
        String::from_utf8_lossy(&reg.stderr)
    );
    let rec = run(&["recover", "--user", "u"]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        rec.status.success(),
        "{}",
        String::from_utf8_lossy(&rec.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&rec.stdout).unwrap();
    assert_eq!(v["key"], key.as_str());
    // No key file was written: the master key lives on the token.
    assert!(!data.join("master.key").exists());
}
