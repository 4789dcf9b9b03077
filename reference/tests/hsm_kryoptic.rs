//! The PKCS#11 backend on kryoptic (a PKCS#11 3.x module in Rust over OpenSSL), built from
//! crates.io by scripts/kryoptic.sh; its path comes in COFFER_KRYOPTIC_MODULE. The token is
//! a private SQLite file under a temporary directory, initialised through PKCS#11 itself.
//! Opt out by name only: COFFER_SKIP_KRYOPTIC=1 (the skip is printed).

mod hsm_common;

use coffer::hsm::Pkcs11Config;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::path::PathBuf;
use zeroize::Zeroizing;

#[test]
fn kryoptic_backend_seals_the_vault_and_never_reveals_its_key() {
    if std::env::var("COFFER_SKIP_KRYOPTIC").as_deref() == Ok("1") {
        eprintln!("SKIPPED: kryoptic tests (COFFER_SKIP_KRYOPTIC=1)");
        return;
    }
    let module = PathBuf::from(std::env::var("COFFER_KRYOPTIC_MODULE").expect(
        "COFFER_KRYOPTIC_MODULE is not set: run scripts/kryoptic.sh (scripts/test.sh does) and export its output, \
         or opt out with COFFER_SKIP_KRYOPTIC=1",
    ));
    assert!(
        module.exists(),
        "{} does not exist: run scripts/kryoptic.sh",
        module.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("kryoptic.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = 42\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            dir.path().join("token.sql").display()
        ),
    )
    .unwrap();
    std::env::set_var("KRYOPTIC_CONF", &conf);

    // Initialise the token and the user PIN through PKCS#11. This context stays alive for the
    // whole test: dropping it would finalize the module under the backend's feet.
    let ctx = Pkcs11::new(&module).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx.get_all_slots().unwrap()[0];
    let so_pin = AuthPin::new("12345678".into());
    ctx.init_token(slot, &so_pin, "coffer-test").unwrap();
    {
        let session = ctx.open_rw_session(slot).unwrap();
        session.login(UserType::So, Some(&so_pin)).unwrap();
        session.init_pin(&AuthPin::new("87654321".into())).unwrap();
        session.logout().unwrap();
    }
    let config = Pkcs11Config {
        module,
        token: "coffer-test".into(),
        pin: Zeroizing::new("87654321".into()),
        key_label: "coffer-vault-master".into(),
    };
    hsm_common::exercise_backend(&config, dir.path());
    drop(ctx);
}
