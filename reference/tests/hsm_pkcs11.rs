//! The PKCS#11 backend on a real module: SoftHSM2 (Debian `softhsm2`, installed by
//! scripts/test.sh), with a private configuration and token under a temporary directory.
//! Opt out by name only: COFFER_SKIP_SOFTHSM=1 (the skip is printed).

use coffer::hsm::{pkcs11::softhsm2_module, Hsm, Pkcs11Config, Pkcs11Hsm, SoftHsm};
use coffer::key::RootKey;
use coffer::store::SqliteStore;
use coffer::vault::client::Parties;
use coffer::vault::{KsfParams, RecoveryClient, RegistrationClient, ServerConfig, VaultServer};
use coffer::{Classify, ErrorClass};
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
    let hsm = Pkcs11Hsm::open(&config).unwrap();
    assert!(hsm.init_key().unwrap(), "the master key is created");
    assert!(!hsm.init_key().unwrap(), "and found the second time");

    // The key never leaves the token.
    assert!(
        hsm.try_read_key_value().is_err(),
        "CKA_VALUE of a sensitive key must be refused"
    );

    // Sealing: round trip, and every tampering refused.
    let sealed = hsm.seal(b"aad", b"secret record").unwrap();
    assert_eq!(&hsm.unseal(b"aad", &sealed).unwrap()[..], b"secret record");
    assert_eq!(
        hsm.unseal(b"other", &sealed).unwrap_err().class(),
        ErrorClass::Corrupt
    );
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        hsm.unseal(b"aad", &flipped).unwrap_err().class(),
        ErrorClass::Corrupt
    );
    assert_eq!(
        hsm.unseal(b"aad", &sealed[..10]).unwrap_err().class(),
        ErrorClass::Malformed
    );
    // An empty AAD (SoftHSM2 is known to mishandle NULL AAD pointers) works.
    let empty = hsm.seal(b"", b"x").unwrap();
    assert_eq!(&hsm.unseal(b"", &empty).unwrap()[..], b"x");

    // The vault on the token: register, recover, and a store that is useless elsewhere.
    let vault_config = ServerConfig {
        ksf: KsfParams::TEST,
        ..ServerConfig::default()
    };
    let db = dir.path().join("vault.db");
    let vault =
        VaultServer::open(SqliteStore::open(&db).unwrap(), hsm, vault_config.clone()).unwrap();
    let parties = Parties {
        user: "alice".into(),
        server_id: vault_config.server_id.clone(),
    };
    let root = RootKey::generate().unwrap();
    let (client, request) = RegistrationClient::start(b"pw").unwrap();
    let start = vault.register_start("t", "alice", &request).unwrap();
    let (upload, envelope) = client
        .finish(
            &parties,
            &start.response,
            &start.ksf,
            &start.record_id,
            1,
            &root,
        )
        .unwrap();
    vault
        .register_finish("t", "alice", start.record_id, &upload, &envelope, None)
        .unwrap();
    let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
    let ke2 = vault.recover_start("t", "alice", &ke1).unwrap();
    let done = client.finish(&parties, &ke2.ke2, &ke2.ksf).unwrap();
    let released = vault
        .recover_finish("t", &ke2.session_id, &done.ke3)
        .unwrap();
    let (_, _, k) = done.open(&ke2.session_id, &released).unwrap();
    assert_eq!(k.as_bytes(), root.as_bytes());
    drop(vault);

    // The same store with any other key (here a software one) cannot even start.
    let other = SoftHsm::open_or_create(&dir.path().join("other.key")).unwrap();
    let err = VaultServer::open(SqliteStore::open(&db).unwrap(), other, vault_config)
        .err()
        .unwrap();
    assert!(
        matches!(err.class(), ErrorClass::Corrupt | ErrorClass::Malformed),
        "{err}"
    );
}
