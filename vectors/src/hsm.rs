//! `hsm.yaml`: the sealed-blob formats of the HSM profile (spec/hsm.md §4, spec/vault.md §7),
//! the blobs a backend must refuse, and the key-wrap known answers `coffer hsm check` uses.

use crate::doc::{Failures, Outcome, VectorFile, SCHEMA_VERSION};
use coffer::hsm::{Hsm, SoftHsm};
use coffer::Classify;
use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::{CipherCtx, CipherCtxFlags};
use openssl::symm::{decrypt_aead, encrypt_aead};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A group of `hsm.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HsmGroup {
    /// Sealed blobs: `format ‖ iv(12) ‖ AES-256-GCM(master_key, iv, plaintext, aad) ‖ tag(16)`.
    SealedBlob {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<SealedCase>,
    },
    /// Blobs an unseal must refuse.
    InvalidSealedBlob {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<InvalidSealedCase>,
    },
    /// AES key wrap (RFC 3394) and with padding (RFC 5649).
    KeyWrap {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<KeyWrapCase>,
    },
}

/// One sealed blob.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealedCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// `soft` (format byte 01) or `pkcs11` (02, CKM_AES_GCM on a token).
    pub backend: String,
    /// The master key (hex). On a token it is never readable: import it as a test key.
    pub master_key: String,
    /// The associated data (hex).
    pub aad: String,
    /// The 12-byte IV (hex); a backend draws it at random for each seal.
    pub iv: String,
    /// The sealed secret (hex).
    pub plaintext: String,
    /// The blob (hex).
    pub sealed: String,
}

/// One blob to refuse.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvalidSealedCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// `soft`.
    pub backend: String,
    /// The master key (hex).
    pub master_key: String,
    /// The associated data the unseal is asked with (hex).
    pub aad: String,
    /// The blob (hex).
    pub sealed: String,
    /// The error class.
    pub error: String,
}

/// One key wrap.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyWrapCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// `aes_key_wrap` (RFC 3394, CKM_AES_KEY_WRAP) or `aes_key_wrap_pad` (RFC 5649,
    /// CKM_AES_KEY_WRAP_KWP 0x210B / 0x210A on SoftHSM2).
    pub mechanism: String,
    /// The key-encryption key (hex).
    pub kek: String,
    /// The wrapped key data (hex).
    pub key: String,
    /// The wrap (hex).
    pub wrapped: String,
}

/// The `hsm.yaml` file.
pub type HsmFile = VectorFile<HsmGroup>;

const MASTER: &str = "4d4153544552206b6579206f6620746865207661756c7420666f722074657374"; // "MASTER key of the vault for test"

fn record_aad(record_id: &[u8; 16], version: u32) -> Vec<u8> {
    [
        b"coffer/v1 record".as_slice(),
        record_id,
        &version.to_be_bytes(),
    ]
    .concat()
}

fn gcm_seal(
    format: u8,
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let mut tag = [0u8; 16];
    let ct = encrypt_aead(
        openssl::symm::Cipher::aes_256_gcm(),
        key,
        Some(iv),
        aad,
        plaintext,
        &mut tag,
    )?;
    Ok([&[format][..], iv, &ct, &tag].concat())
}

fn wrap_cipher(mechanism: &str, kek_len: usize) -> Option<&'static CipherRef> {
    Some(match (mechanism, kek_len) {
        ("aes_key_wrap", 16) => Cipher::aes_128_wrap(),
        ("aes_key_wrap", 24) => Cipher::aes_192_wrap(),
        ("aes_key_wrap", 32) => Cipher::aes_256_wrap(),
        ("aes_key_wrap_pad", 16) => Cipher::aes_128_wrap_pad(),
        ("aes_key_wrap_pad", 24) => Cipher::aes_192_wrap_pad(),
        ("aes_key_wrap_pad", 32) => Cipher::aes_256_wrap_pad(),
        _ => return None,
    })
}

/// OpenSSL's AES key wrap, an implementation independent of the tokens `hsm check` tests.
fn openssl_wrap(
    mechanism: &str,
    kek: &[u8],
    data: &[u8],
    encrypt: bool,
) -> anyhow::Result<Vec<u8>> {
    let cipher = wrap_cipher(mechanism, kek.len()).ok_or_else(|| anyhow::anyhow!("no cipher"))?;
    let mut ctx = CipherCtx::new()?;
    ctx.set_flags(CipherCtxFlags::FLAG_WRAP_ALLOW);
    if encrypt {
        ctx.encrypt_init(Some(cipher), Some(kek), None)?;
    } else {
        ctx.decrypt_init(Some(cipher), Some(kek), None)?;
    }
    let mut out = vec![0u8; data.len() + 32];
    let n = ctx.cipher_update(data, Some(&mut out))?;
    let m = ctx.cipher_final(&mut out[n..])?;
    out.truncate(n + m);
    Ok(out)
}

/// id, comment, backend, format byte, associated data, plaintext, IV.
type SealSpec<'a> = (&'a str, &'a str, &'a str, u8, Vec<u8>, Vec<u8>, [u8; 12]);

/// Builds `hsm.yaml`.
pub fn generate() -> anyhow::Result<HsmFile> {
    let key = hex::decode(MASTER)?;
    let record_id: [u8; 16] = *b"record-id-0001\0\0";
    let setup: Vec<u8> = (0u8..128).collect();
    let record: Vec<u8> = (0u8..252).map(|b| b.wrapping_mul(7)).collect();
    let seals: [SealSpec; 5] = [
        (
            "soft_server_setup",
            "the OPAQUE server setup, soft backend",
            "soft",
            1,
            b"coffer/v1 server setup".to_vec(),
            setup.clone(),
            [1; 12],
        ),
        (
            "soft_record",
            "a record's password file and envelope, bound to its id and version 1",
            "soft",
            1,
            record_aad(&record_id, 1),
            record.clone(),
            [2; 12],
        ),
        (
            "pkcs11_server_setup",
            "the same secret as a token seals it (format 02)",
            "pkcs11",
            2,
            b"coffer/v1 server setup".to_vec(),
            setup,
            [3; 12],
        ),
        (
            "pkcs11_record",
            "a record on a token, version 7",
            "pkcs11",
            2,
            record_aad(&record_id, 7),
            record.clone(),
            [4; 12],
        ),
        (
            "pkcs11_key_check",
            "the key ceremony's check value: the empty string (spec/hsm.md §6)",
            "pkcs11",
            2,
            b"coffer/v1 key check".to_vec(),
            vec![],
            [5; 12],
        ),
    ];
    let mut sealed_cases = Vec::new();
    for (id, comment, backend, format, aad, plaintext, iv) in &seals {
        sealed_cases.push(SealedCase {
            id: format!("hsm.seal.{id}"),
            comment: (*comment).into(),
            result: Outcome::Valid,
            flags: vec![],
            backend: (*backend).into(),
            master_key: MASTER.into(),
            aad: hex::encode(aad),
            iv: hex::encode(iv),
            plaintext: hex::encode(plaintext),
            sealed: hex::encode(gcm_seal(*format, &key, iv, aad, plaintext)?),
        });
    }
    let good = gcm_seal(1, &key, &[2; 12], &record_aad(&record_id, 1), &record)?;
    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 1;
        b
    };
    let invalid =
        |id: &str, comment: &str, flags: &[&str], aad: Vec<u8>, sealed: Vec<u8>, error: &str| {
            InvalidSealedCase {
                id: format!("hsm.invalid.{id}"),
                comment: comment.into(),
                result: Outcome::Invalid,
                flags: flags.iter().map(|f| f.to_string()).collect(),
                backend: "soft".into(),
                master_key: MASTER.into(),
                aad: hex::encode(aad),
                sealed: hex::encode(sealed),
                error: error.into(),
            }
        };
    let n = good.len();
    let mut other_master = invalid(
        "other_master_key",
        "the blob under another master key (a store copied to another vault)",
        &["Binding"],
        record_aad(&record_id, 1),
        good.clone(),
        "corrupt",
    );
    other_master.master_key = hex::encode([0x11u8; 32]);
    let invalid_cases = vec![
        other_master,
        invalid(
            "other_version",
            "the record's blob asked for as version 2: a blob cannot move between versions",
            &["Binding"],
            record_aad(&record_id, 2),
            good.clone(),
            "corrupt",
        ),
        invalid(
            "other_record",
            "asked for as another record",
            &["Binding"],
            record_aad(b"record-id-0002\0\0", 1),
            good.clone(),
            "corrupt",
        ),
        invalid(
            "tag_flipped",
            "the last tag byte flipped",
            &["Tag"],
            record_aad(&record_id, 1),
            flip(n - 1),
            "corrupt",
        ),
        invalid(
            "ciphertext_flipped",
            "a ciphertext byte flipped",
            &["Tag"],
            record_aad(&record_id, 1),
            flip(20),
            "corrupt",
        ),
        invalid(
            "iv_flipped",
            "an IV byte flipped",
            &["Tag"],
            record_aad(&record_id, 1),
            flip(1),
            "corrupt",
        ),
        invalid(
            "short",
            "28 bytes: shorter than format, IV and tag",
            &["Form"],
            record_aad(&record_id, 1),
            good[..28].to_vec(),
            "malformed",
        ),
        invalid(
            "empty",
            "no bytes",
            &["Form"],
            record_aad(&record_id, 1),
            vec![],
            "malformed",
        ),
        invalid(
            "token_format",
            "a token's blob (02) given to the soft backend",
            &["Form"],
            b"coffer/v1 server setup".to_vec(),
            gcm_seal(2, &key, &[3; 12], b"coffer/v1 server setup", b"x")?,
            "malformed",
        ),
    ];
    let wrap = |id: &str, comment: &str, mechanism: &str, kek: &str, key: &str, wrapped: &str| {
        KeyWrapCase {
            id: format!("hsm.wrap.{id}"),
            comment: comment.into(),
            result: Outcome::Valid,
            flags: vec!["Rfc".into()],
            mechanism: mechanism.into(),
            kek: kek.into(),
            key: key.into(),
            wrapped: wrapped.into(),
        }
    };
    let kek128 = "000102030405060708090a0b0c0d0e0f";
    let kek192 = "000102030405060708090a0b0c0d0e0f1011121314151617";
    let kek256 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let data128 = "00112233445566778899aabbccddeeff";
    let data192 = "00112233445566778899aabbccddeeff0001020304050607";
    let data256 = "00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f";
    let kwp_kek = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8";
    let wrap_cases = vec![
        wrap(
            "rfc3394_4_1",
            "RFC 3394 §4.1: 128-bit key, 128-bit KEK",
            "aes_key_wrap",
            kek128,
            data128,
            "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5",
        ),
        wrap(
            "rfc3394_4_2",
            "RFC 3394 §4.2: 128-bit key, 192-bit KEK",
            "aes_key_wrap",
            kek192,
            data128,
            "96778b25ae6ca435f92b5b97c050aed2468ab8a17ad84e5d",
        ),
        wrap(
            "rfc3394_4_3",
            "RFC 3394 §4.3: 128-bit key, 256-bit KEK",
            "aes_key_wrap",
            kek256,
            data128,
            "64e8c3f9ce0f5ba263e9777905818a2a93c8191e7d6e8ae7",
        ),
        wrap(
            "rfc3394_4_4",
            "RFC 3394 §4.4: 192-bit key, 192-bit KEK",
            "aes_key_wrap",
            kek192,
            data192,
            "031d33264e15d33268f24ec260743edce1c6c7ddee725a936ba814915c6762d2",
        ),
        wrap(
            "rfc3394_4_5",
            "RFC 3394 §4.5: 192-bit key, 256-bit KEK",
            "aes_key_wrap",
            kek256,
            data192,
            "a8f9bc1612c68b3ff6e6f4fbe30e71e4769c8b80a32cb8958cd5d17d6b254da1",
        ),
        wrap(
            "rfc3394_4_6",
            "RFC 3394 §4.6: 256-bit key, 256-bit KEK (hsm check uses it)",
            "aes_key_wrap",
            kek256,
            data256,
            "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21",
        ),
        wrap(
            "rfc5649_20_bytes",
            "RFC 5649 §6: 20 bytes (hsm check uses it)",
            "aes_key_wrap_pad",
            kwp_kek,
            "c37b7e6492584340bed12207808941155068f738",
            "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a",
        ),
        wrap(
            "rfc5649_7_bytes",
            "RFC 5649 §6: 7 bytes, one AES block",
            "aes_key_wrap_pad",
            kwp_kek,
            "466f7250617369",
            "afbeb0f07dfbf5419200f2ccb50bb24f",
        ),
    ];
    let groups = vec![
        HsmGroup::SealedBlob {
            description: "Unseal `sealed` with `master_key` and `aad`: the result is `plaintext`. Seal `plaintext` with `iv`: the result is `sealed`. Soft backend: the blob starts 01; a token (CKM_AES_GCM, 96-bit IV, 128-bit tag): 02.".into(),
            cases: sealed_cases,
        },
        HsmGroup::InvalidSealedBlob {
            description: "Unseal must refuse each blob with `error`: `corrupt` when it does not authenticate (wrong key, binding or bytes), `malformed` when it is not of the sealed form, before any decryption.".into(),
            cases: invalid_cases,
        },
        HsmGroup::KeyWrap {
            description: "Wrap `key` under `kek` with `mechanism` (default IVs of RFC 3394 §2.2.3 and RFC 5649 §3): the result is `wrapped`, and unwrapping it gives `key`.".into(),
            cases: wrap_cases,
        },
    ];
    let number_of_cases = groups
        .iter()
        .map(|g| match g {
            HsmGroup::SealedBlob { cases, .. } => cases.len(),
            HsmGroup::InvalidSealedBlob { cases, .. } => cases.len(),
            HsmGroup::KeyWrap { cases, .. } => cases.len(),
        })
        .sum();
    Ok(VectorFile {
        schema: SCHEMA_VERSION.into(),
        topic: "hsm".into(),
        description: "The HSM profile's formats: sealed blobs of the soft and PKCS#11 backends \
                      with the vault's associated data, blobs a backend must refuse, and the AES \
                      key-wrap known answers of `coffer hsm check`."
            .into(),
        how_to_apply: "Sealed blobs: unseal and seal as the group says. Invalid blobs: unseal \
                       and compare the class. Key wraps: wrap and unwrap with the mechanism."
            .into(),
        sources: vec![
            "spec/hsm.md §4 (sealing), §6 (the check value), §8 (checks); spec/vault.md §7 (what is sealed, with which AAD)".into(),
            "RFC 3394 §4 and RFC 5649 §6 (test vectors)".into(),
        ],
        notes: BTreeMap::from([
            ("Binding".into(), "The associated data names what is sealed; a blob does not open as anything else.".into()),
            ("Form".into(), "Not of the sealed form (length or format byte).".into()),
            ("Rfc".into(), "The test vector of the RFC, unchanged.".into()),
            ("Tag".into(), "The bytes were changed: authentication fails.".into()),
        ]),
        number_of_cases,
        groups,
    })
}

fn bytes(text: &str) -> Result<Vec<u8>, String> {
    hex::decode(text).map_err(|e| e.to_string())
}

/// Runs every case of `file`: soft blobs against the reference backend, token blobs and key
/// wraps against OpenSSL (the reference has no software token; `coffer hsm check` runs the
/// same RFC wraps on real tokens).
pub fn verify(file: &HsmFile) -> Failures {
    let mut failures = Failures::default();
    let dir = std::env::temp_dir();
    let soft = |key: &[u8]| SoftHsm::from_key(key, &dir.join("coffer-vectors-unused.key"));
    for group in &file.groups {
        match group {
            HsmGroup::SealedBlob { cases, .. } => {
                for case in cases {
                    let (Ok(key), Ok(aad), Ok(iv), Ok(plaintext), Ok(sealed)) = (
                        bytes(&case.master_key),
                        bytes(&case.aad),
                        bytes(&case.iv),
                        bytes(&case.plaintext),
                        bytes(&case.sealed),
                    ) else {
                        failures.add(&case.id, "bad input");
                        continue;
                    };
                    let format = if case.backend == "soft" { 1 } else { 2 };
                    match gcm_seal(format, &key, &iv, &aad, &plaintext) {
                        Ok(made) => {
                            failures.expect_eq(&case.id, "sealed", &case.sealed, &hex::encode(made))
                        }
                        Err(e) => failures.add(&case.id, e),
                    }
                    if case.backend == "soft" {
                        let opened = soft(&key)
                            .and_then(|h| h.unseal(&aad, &sealed))
                            .map(|p| hex::encode(&p[..]))
                            .map_err(|e| e.class().to_string());
                        if failures.expect_outcome(&case.id, case.result, None, &opened) {
                            failures.expect_eq(
                                &case.id,
                                "plaintext",
                                &case.plaintext,
                                &opened.unwrap_or_default(),
                            );
                        }
                    } else if sealed.len() < 29 || sealed[0] != 2 {
                        failures.add(&case.id, "a token blob must start 02 and hold IV and tag");
                    } else {
                        let (body, tag) = sealed[13..].split_at(sealed.len() - 29);
                        let opened = decrypt_aead(
                            openssl::symm::Cipher::aes_256_gcm(),
                            &key,
                            Some(&sealed[1..13]),
                            &aad,
                            body,
                            tag,
                        );
                        failures.expect_eq(
                            &case.id,
                            "plaintext",
                            &Some(case.plaintext.clone()),
                            &opened.ok().map(hex::encode),
                        );
                    }
                }
            }
            HsmGroup::InvalidSealedBlob { cases, .. } => {
                for case in cases {
                    let (Ok(key), Ok(aad), Ok(sealed)) = (
                        bytes(&case.master_key),
                        bytes(&case.aad),
                        bytes(&case.sealed),
                    ) else {
                        failures.add(&case.id, "bad input");
                        continue;
                    };
                    let opened = soft(&key)
                        .and_then(|h| h.unseal(&aad, &sealed))
                        .map(|_| ())
                        .map_err(|e| e.class().to_string());
                    failures.expect_outcome(&case.id, case.result, Some(&case.error), &opened);
                }
            }
            HsmGroup::KeyWrap { cases, .. } => {
                for case in cases {
                    let (Ok(kek), Ok(key), Ok(wrapped)) =
                        (bytes(&case.kek), bytes(&case.key), bytes(&case.wrapped))
                    else {
                        failures.add(&case.id, "bad input");
                        continue;
                    };
                    match openssl_wrap(&case.mechanism, &kek, &key, true) {
                        Ok(w) => {
                            failures.expect_eq(&case.id, "wrapped", &case.wrapped, &hex::encode(w));
                            let back = openssl_wrap(&case.mechanism, &kek, &wrapped, false)
                                .map(hex::encode)
                                .ok();
                            failures.expect_eq(
                                &case.id,
                                "key (unwrapping)",
                                &Some(case.key.clone()),
                                &back,
                            );
                        }
                        Err(e) => failures.add(&case.id, e),
                    }
                }
            }
        }
    }
    failures
}
