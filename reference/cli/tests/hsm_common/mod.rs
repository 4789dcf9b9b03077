//! The checks every PKCS#11 module must pass with the vault's backend (shared by the
//! SoftHSM2 and kryoptic test binaries: one module per process).

use coffer::hsm::{Hsm, Pkcs11Config, Pkcs11Hsm, SoftHsm};
use coffer::key::RootKey;
use coffer::store::SqliteStore;
use coffer::vault::{KsfParams, ServerConfig, VaultServer};
use coffer::{Classify, ErrorClass};
use std::path::Path;

/// Creates the master key, checks it cannot be read, seals and unseals, runs the vault on
/// the token, and shows the store is useless with any other key.
pub(crate) fn exercise_backend(config: &Pkcs11Config, dir: &Path) {
    let hsm = Pkcs11Hsm::open(config).unwrap();
    assert!(
        hsm.init_key(coffer::hsm::Export::Never).unwrap(),
        "the master key is created"
    );
    assert!(
        !hsm.init_key(coffer::hsm::Export::Never).unwrap(),
        "and found the second time"
    );

    // Made on the token, it has always been sensitive and never extractable.
    let policy = hsm.master_key_policy().unwrap().expect("the key exists");
    assert_eq!(policy.sensitive, Some(true));
    assert_eq!(policy.always_sensitive, Some(true));
    assert_eq!(policy.extractable, Some(false));
    assert_eq!(policy.never_extractable, Some(true));
    assert_eq!(policy.objection(), None);

    // The key never leaves the token.
    let refused = hsm
        .try_read_key_value()
        .expect_err("CKA_VALUE of a sensitive key must be refused");
    // The token's own refusal (CKR_ATTRIBUTE_SENSITIVE, or the attribute withheld), not a
    // failure to reach the key.
    let refused = refused.to_string();
    assert!(
        refused.contains("Sensitive")
            || refused.contains("SENSITIVE")
            || refused.contains("CKA_VALUE not returned"),
        "{refused}"
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
    let db = dir.join("vault.db");
    let vault =
        VaultServer::open(SqliteStore::open(&db).unwrap(), hsm, vault_config.clone()).unwrap();
    let root = RootKey::generate().unwrap();
    coffer_testkit::flows::register(&vault, "t", "alice", b"pw", &root, None).unwrap();
    let k = coffer_testkit::flows::recover(&vault, "t", "alice", b"pw")
        .unwrap()
        .root;
    assert_eq!(k.as_bytes(), root.as_bytes());
    drop(vault);

    // The same store with another key of the same token, same form (02), cannot even
    // start: the GCM tag under the other key fails (corrupt).
    let mut other_config = config.clone();
    other_config.key_label = "another-master".into();
    let other = Pkcs11Hsm::open(&other_config).unwrap();
    other.init_key(coffer::hsm::Export::Never).unwrap();
    let err = VaultServer::open(SqliteStore::open(&db).unwrap(), other, vault_config.clone())
        .err()
        .unwrap();
    assert_eq!(err.class(), ErrorClass::Corrupt, "{err}");
    // And with a software key: a token-sealed blob (02) is not of its form (01).
    let soft = SoftHsm::open_or_create(&dir.join("other.key")).unwrap();
    let err = VaultServer::open(SqliteStore::open(&db).unwrap(), soft, vault_config)
        .err()
        .unwrap();
    assert_eq!(err.class(), ErrorClass::Malformed, "{err}");
}

/// An operator replaces the master key from another process while the backend runs: the
/// backend notices its cached handle is stale, finds the new key, and old blobs no longer
/// open (`corrupt`); a weak replacement is refused (`unsupported`).
pub(crate) fn survives_a_key_replaced_under_it(token: &crate::tokens::TestToken) {
    use crate::tokens::{delete_secret_key, generate_aes_key};
    let mut config = token.config();
    config.key_label = "rotating".into();
    let hsm = Pkcs11Hsm::open(&config).unwrap();
    hsm.init_key(coffer::hsm::Export::Never).unwrap();
    let old = hsm.seal(b"aad", b"before").unwrap();
    assert_eq!(&hsm.unseal(b"aad", &old).unwrap()[..], b"before");

    delete_secret_key(token, "rotating");
    generate_aes_key(token, "rotating", true);
    // Sealing first: it succeeds only if the backend found the new key (on kryoptic the stale
    // handle fails with CKR_GENERAL_ERROR, which an unseal would also report for a bad tag).
    let new = hsm.seal(b"aad", b"after").unwrap();
    assert_eq!(&hsm.unseal(b"aad", &new).unwrap()[..], b"after");
    assert_eq!(
        hsm.unseal(b"aad", &old).unwrap_err().class(),
        ErrorClass::Corrupt,
        "a blob of the old key does not open under the new one"
    );

    delete_secret_key(token, "rotating");
    generate_aes_key(token, "rotating", false);
    assert_eq!(
        hsm.unseal(b"aad", &new).unwrap_err().class(),
        ErrorClass::Unsupported,
        "an extractable, non-sensitive replacement is refused"
    );
}
