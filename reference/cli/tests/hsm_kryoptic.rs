//! The PKCS#11 backend loaded in this process on kryoptic (a PKCS#11 3.x module in Rust over
//! OpenSSL), built from crates.io by scripts/kryoptic.sh; its path comes in
//! COFFER_KRYOPTIC_MODULE. The token is a private SQLite file under a temporary directory.
//! Opt out by name only: COFFER_SKIP_KRYOPTIC=1 (the skip is printed). The vault HTTP suite on
//! kryoptic is tests/vault_http_kryoptic.rs; the ceremony and checks, tests/hsm_ceremony.rs.

mod hsm_common;
use coffer_testkit::tokens;

/// One test function: the module reads its configuration from the environment once, when it
/// is first initialised in this process.
#[test]
fn kryoptic_backend_seals_the_vault_and_never_reveals_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let Some(token) = tokens::create(tokens::Module::Kryoptic, dir.path(), "coffer-test") else {
        return;
    };
    token.apply_to_this_process();
    hsm_common::exercise_backend(&token.config(), dir.path());
    hsm_common::survives_a_key_replaced_under_it(&token);
    // Wycheproof's RFC 3394 vectors: all right (kryoptic offers RFC 5649 only under 0x210B,
    // which cryptoki names no mechanism for; `coffer hsm check` checks it by known answers).
    let (wrapped, refused, wrong) =
        hsm_common::applies_wycheproof_key_wraps(&token.config(), false);
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!((wrapped + refused, wrapped >= 36), (165, true));
}
