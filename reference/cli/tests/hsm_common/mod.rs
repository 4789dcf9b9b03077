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

/// Wycheproof's AES key-wrap vectors (`vectors/external/wycheproof/aes_wrap_test.json`,
/// RFC 3394; `aes_kwp_test.json`, RFC 5649) applied to the token, through the same PKCS#11
/// calls as `coffer hsm check`'s known answers: every valid (or acceptable) wrap gives the
/// vector's output, and every invalid ciphertext is refused by C_UnwrapKey. With `kwp`, the
/// RFC 5649 file too, under 0x210A (`CKM_AES_KEY_WRAP_PAD`); without, for a module whose
/// RFC 5649 wrap is known to be wrong (SoftHSM2 2.6.1: spec/hsm.md §8). Returns (wrapped,
/// refused) counts, and the vectors the module gets wrong ("FILE tc N"), for the caller to
/// compare with the module's known deviations.
pub(crate) fn applies_wycheproof_key_wraps(
    config: &Pkcs11Config,
    kwp: bool,
) -> (usize, usize, Vec<String>) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, KeyType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let ctx = Pkcs11::new(&config.module).unwrap();
    // The backend may have initialised the module in this process already.
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|t| t.label().trim_end() == config.token)
        })
        .expect("the test token");
    let session = ctx.open_rw_session(slot).unwrap();
    let _ = session.login(
        UserType::User,
        Some(&AuthPin::new(config.pin.as_str().into())),
    );
    // Creating the object may itself be refused (an empty key, say): the token's answer.
    let secret = |key_type: KeyType, value: &[u8], kek: bool| {
        session.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Wrap(kek),
            Attribute::Unwrap(kek),
            Attribute::Value(value.to_vec()),
        ])
    };
    let load = |name: &str| -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../vectors/external/wycheproof")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let mut files = vec![("aes_wrap_test.json", Mechanism::AesKeyWrap)];
    if kwp {
        files.push(("aes_kwp_test.json", Mechanism::AesKeyWrapPad));
    }
    let (mut wrapped, mut refused, mut wrong) = (0, 0, Vec::new());
    for (name, mechanism) in &files {
        for group in load(name)["testGroups"].as_array().unwrap() {
            for t in group["tests"].as_array().unwrap() {
                let hex = |k: &str| hex::decode(t[k].as_str().unwrap()).unwrap();
                let id = format!("{name} tc {}", t["tcId"]);
                let kek = secret(KeyType::AES, &hex("key"), true).unwrap();
                let result = t["result"].as_str().unwrap();
                match result {
                    "valid" | "acceptable" => {
                        // "acceptable" (e.g. an 8-byte key, below RFC 3394's two blocks): a
                        // module may refuse it, but what it does produce must be right.
                        let key = secret(KeyType::GENERIC_SECRET, &hex("msg"), false);
                        match key.and_then(|key| {
                            let out = session.wrap_key(mechanism, kek, key);
                            let _ = session.destroy_object(key);
                            out
                        }) {
                            Ok(out) if hex::encode(&out) == t["ct"].as_str().unwrap() => {
                                wrapped += 1
                            }
                            Ok(_) => wrong.push(format!("{id}: wrong output")),
                            Err(_) if result == "acceptable" => refused += 1,
                            Err(e) => wrong.push(format!("{id}: refused ({e})")),
                        }
                    }
                    _ => {
                        let template = [
                            Attribute::Class(ObjectClass::SECRET_KEY),
                            Attribute::KeyType(KeyType::GENERIC_SECRET),
                            Attribute::Token(false),
                            Attribute::Sensitive(false),
                            Attribute::Extractable(true),
                        ];
                        // Any refusal: the token's return value is its own. A vector with no
                        // ciphertext is a key that must not be wrapped (its size); one with a
                        // ciphertext must not unwrap.
                        let ct = hex("ct");
                        if ct.is_empty() {
                            let key = secret(KeyType::GENERIC_SECRET, &hex("msg"), false);
                            match key.and_then(|key| {
                                let out = session.wrap_key(mechanism, kek, key);
                                let _ = session.destroy_object(key);
                                out
                            }) {
                                Ok(_) => wrong.push(format!("{id}: invalid size, wrapped")),
                                Err(_) => refused += 1,
                            }
                        } else {
                            match session.unwrap_key(mechanism, kek, &ct, &template) {
                                Ok(_) => wrong.push(format!("{id}: invalid, unwrapped")),
                                Err(_) => refused += 1,
                            }
                        }
                    }
                }
                let _ = session.destroy_object(kek);
            }
        }
    }
    (wrapped, refused, wrong)
}
