//! Real PKCS#11 tokens for the benches: SoftHSM2 (Debian `softhsm2`) and kryoptic
//! (COFFER_KRYOPTIC_MODULE, from scripts/kryoptic.sh), each with a private configuration
//! under `dir`. A module that is missing is reported on stderr and left out of the run.

use coffer::hsm::{pkcs11::softhsm2_module, Pkcs11Config, Pkcs11Hsm};
use std::path::Path;
use std::process::Command;
use zeroize::Zeroizing;

/// A SoftHSM2 token labelled `bench` holding a master key.
pub fn softhsm(dir: &Path) -> Option<Pkcs11Hsm> {
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

/// A kryoptic token labelled `bench` holding a master key, and the context that initialised
/// it (cryptoki never finalizes a module on drop; keeping it is harmless).
pub fn kryoptic(dir: &Path) -> Option<(cryptoki::context::Pkcs11, Pkcs11Hsm)> {
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

/// A session key (CKA_TOKEN false) labelled `label` on the token, alive as long as the
/// returned session: the same AES-GCM work without the token object store. A vault cannot use
/// one (it is gone when the process ends); it shows what the store costs.
pub fn session_key(
    module: &Path,
    token: &str,
    label: &str,
) -> Option<(cryptoki::context::Pkcs11, cryptoki::session::Session)> {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    let ctx = cryptoki::context::Pkcs11::new(module).ok()?;
    let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    let slot = ctx.get_slots_with_token().ok()?.into_iter().find(|s| {
        ctx.get_token_info(*s)
            .is_ok_and(|t| t.label().trim_end() == token)
    })?;
    let session = ctx.open_rw_session(slot).ok()?;
    let _ = session.login(
        cryptoki::session::UserType::User,
        Some(&cryptoki::types::AuthPin::new("87654321".into())),
    );
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
        .ok()?;
    Some((ctx, session))
}
