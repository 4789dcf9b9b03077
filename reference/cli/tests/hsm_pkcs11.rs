//! The PKCS#11 backend loaded in this process on SoftHSM2 (Debian `softhsm2`, installed by
//! scripts/test.sh), with a private configuration and token under a temporary directory.
//! Opt out by name only: COFFER_SKIP_SOFTHSM=1 (the skip is printed). The vault HTTP suite on
//! SoftHSM2 is tests/vault_http_softhsm2.rs; the ceremony and checks, tests/hsm_ceremony.rs.

mod hsm_common;
use coffer_testkit::tokens;

/// One test function: the module reads its configuration from the environment once, when it
/// is first initialised in this process.
#[test]
fn softhsm2_backend_seals_the_vault_and_never_reveals_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let Some(token) = tokens::create(tokens::Module::SoftHsm2, dir.path(), "coffer-test") else {
        return;
    };
    token.apply_to_this_process();
    hsm_common::exercise_backend(&token.config(), dir.path());
    hsm_common::survives_a_key_replaced_under_it(&token);
}
