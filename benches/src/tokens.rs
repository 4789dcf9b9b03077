//! Real PKCS#11 tokens for the benches, made by the shared test kit: SoftHSM2 (Debian
//! `softhsm2`) and kryoptic (COFFER_KRYOPTIC_MODULE, from scripts/kryoptic.sh), each with a
//! private configuration under `dir`. A missing module fails with instructions unless the
//! user opted out by name (COFFER_SKIP_SOFTHSM=1, COFFER_SKIP_KRYOPTIC=1), as in the tests.

use coffer::hsm::{Export, Pkcs11Hsm};
use coffer_testkit::tokens::{self, Module};
use std::path::Path;

/// A token labelled `bench` (PINs as in the test kit) holding a new master key; this
/// process is pointed at its configuration.
fn token_with_key(module: Module, dir: &Path) -> Option<Pkcs11Hsm> {
    let token = tokens::create(module, &dir.join(format!("{module:?}")), "bench")?;
    token.apply_to_this_process();
    let hsm = Pkcs11Hsm::open(&token.config()).expect("opening the bench token");
    hsm.init_key(Export::Never)
        .expect("a master key on the bench token");
    Some(hsm)
}

/// A SoftHSM2 token labelled `bench` holding a master key.
pub fn softhsm(dir: &Path) -> Option<Pkcs11Hsm> {
    token_with_key(Module::SoftHsm2, dir)
}

/// A kryoptic token labelled `bench` holding a master key.
pub fn kryoptic(dir: &Path) -> Option<Pkcs11Hsm> {
    token_with_key(Module::Kryoptic, dir)
}

/// A session key (CKA_TOKEN false) labelled `label` on the token, alive as long as the
/// returned session: the same AES-GCM work without the token object store. A vault cannot use
/// one (it is gone when the process ends); it shows what the store costs. Any failure is a
/// failure of the bench, never a silently missing row.
pub fn session_key(
    module: &Path,
    token: &str,
    label: &str,
) -> (cryptoki::context::Pkcs11, cryptoki::session::Session) {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    let ctx = cryptoki::context::Pkcs11::new(module)
        .unwrap_or_else(|e| panic!("loading {}: {e}", module.display()));
    // Already initialised by the backend in this process is fine.
    let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    let slot = ctx
        .get_slots_with_token()
        .expect("listing the slots")
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|t| t.label().trim_end() == token)
        })
        .unwrap_or_else(|| panic!("no token labelled {token}"));
    let session = ctx
        .open_rw_session(slot)
        .expect("a session on the bench token");
    // Logged in already through the backend's session is fine too (CKR_USER_ALREADY_LOGGED_IN).
    let _ = session.login(
        cryptoki::session::UserType::User,
        Some(&cryptoki::types::AuthPin::new(
            coffer_testkit::tokens::USER_PIN.into(),
        )),
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
        .expect("a session AES key on the bench token");
    (ctx, session)
}
