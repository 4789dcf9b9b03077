//! `kdf.yaml`: every derivation Coffer and crypt15 make from K (spec/key.md §5,
//! spec/format.md §2, §3.3, §5).

use crate::doc::{Failures, Outcome, VectorFile, SCHEMA_VERSION};
use coffer::internal::cobblestone;
use coffer::internal::format_header::key_id;
use coffer::key::RootKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A group of `kdf.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KdfGroup {
    /// HKDF-SHA256 (RFC 5869) of K with a 32-byte zero salt and L = 32.
    HkdfSha256 {
        /// What the group covers.
        description: String,
        /// The salt, shared by every case (hex).
        salt: String,
        /// The output length in bytes.
        length: usize,
        /// The cases.
        cases: Vec<HkdfCase>,
    },
    /// The Coffer key id: `HMAC-SHA256(id_key, salt)[0..16]`, `id_key` the HKDF of K with
    /// info `coffer/v1 key id`.
    KeyId {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<KeyIdCase>,
    },
    /// The vault's wrapping keys (spec/vault.md §3.4): HKDF-SHA512 with no salt, L = 32, of
    /// the OPAQUE export key (envelope) or session key (transport).
    VaultKeys {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<HkdfCase>,
    },
    /// C2SP chunked encryption's key schedule: `key ‖ base_nonce ‖ commitment =
    /// HKDF-Expand-SHA-512(prk = input_key, info = "c2sp.org/chunked-encryption@v1+" ‖
    /// "AEAD_AES_256_GCM" ‖ 00 ‖ salt ‖ context, L = 76)`.
    ChunkedEncryptionKeys {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<ChunkKeysCase>,
    },
}

/// One HKDF-SHA256 derivation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HkdfCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// The input keying material (hex): K, or for the vault keys the OPAQUE export or
    /// session key.
    pub ikm: String,
    /// The info string, as text (its UTF-8 bytes are the info).
    pub info: String,
    /// The output (hex).
    pub okm: String,
}

/// One key id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIdCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// K (hex).
    pub root_key: String,
    /// The file's 24-byte salt (hex).
    pub salt: String,
    /// The intermediate `id_key` (hex).
    pub id_key: String,
    /// The 16-byte key id (hex).
    pub key_id: String,
}

/// One C2SP key schedule.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkKeysCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// The 32-byte input key (for a Coffer file, `file_key`) (hex).
    pub input_key: String,
    /// The 24-byte salt (hex).
    pub salt: String,
    /// The context (hex; for a Coffer file, the header up to the header check).
    pub context: String,
    /// The AES-256-GCM key (hex).
    pub aead_key: String,
    /// The 12-byte base nonce (hex).
    pub base_nonce: String,
    /// The 32-byte commitment (hex).
    pub commitment: String,
}

/// The `kdf.yaml` file.
pub type KdfFile = VectorFile<KdfGroup>;

fn root(hex_key: &str) -> anyhow::Result<RootKey> {
    let bytes: [u8; 32] = hex::decode(hex_key)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("a root key is 32 bytes"))?;
    Ok(RootKey::from_bytes(bytes))
}

const INFOS: [(&str, &[u8], &str); 5] = [
    (
        "crypt15_file_key",
        b"backup encryption",
        "the crypt15 AES-256-GCM key",
    ),
    (
        "crypt15_metadata_encryption",
        b"metadata encryption",
        "crypt15 metadata encryption key (derived by WhatsApp; unused by Coffer)",
    ),
    (
        "crypt15_metadata_authentication",
        b"metadata authentication",
        "crypt15 metadata authentication key (derived by WhatsApp; unused by Coffer)",
    ),
    (
        "coffer_file_key",
        b"coffer/v1 file key",
        "the C2SP input key of every Coffer file made under K",
    ),
    (
        "coffer_id_key",
        b"coffer/v1 key id",
        "the MAC key of Coffer key ids",
    ),
];

/// Builds `kdf.yaml`.
pub fn generate() -> anyhow::Result<KdfFile> {
    let keys = [
        ("sample", crate::keys::SAMPLE_KEY.to_owned()),
        (
            "counting",
            (0u8..32).map(|b| format!("{b:02x}")).collect::<String>(),
        ),
        ("all_ff", "ff".repeat(32)),
    ];
    let mut hkdf_cases = Vec::new();
    for (key_name, key_hex) in &keys {
        let k = root(key_hex)?;
        for (name, info, what) in INFOS {
            hkdf_cases.push(HkdfCase {
                id: format!("kdf.hkdf.{name}.{key_name}"),
                comment: format!("{what}, K = the {key_name} key"),
                result: Outcome::Valid,
                flags: vec![],
                ikm: key_hex.clone(),
                info: String::from_utf8(info.to_vec())?,
                okm: hex::encode(&k.derive(info)[..]),
            });
        }
    }
    let salts = [
        ("zero", vec![0u8; 24]),
        ("counting", (0u8..24).collect()),
        (
            "other",
            (0u8..24)
                .map(|b| b.wrapping_mul(37).wrapping_add(11))
                .collect::<Vec<u8>>(),
        ),
    ];
    let mut key_id_cases = Vec::new();
    for (key_name, key_hex) in &keys[..2] {
        let k = root(key_hex)?;
        for (salt_name, salt) in &salts {
            let salt: [u8; 24] = salt.clone().try_into().map_err(|_| anyhow::anyhow!("24"))?;
            key_id_cases.push(KeyIdCase {
                id: format!("kdf.key_id.{key_name}.{salt_name}_salt"),
                comment: format!("K = the {key_name} key, the {salt_name} salt"),
                result: Outcome::Valid,
                flags: if salt_name == &"other" {
                    vec!["Unlinkable".into()]
                } else {
                    vec![]
                },
                root_key: key_hex.clone(),
                salt: hex::encode(salt),
                id_key: hex::encode(&k.derive(b"coffer/v1 key id")[..]),
                key_id: hex::encode(key_id(&k, &salt)),
            });
        }
    }
    let contexts: [(&str, Vec<u8>); 3] = [
        ("empty_context", vec![]),
        ("short_context", b"coffer".to_vec()),
        ("header_context", {
            // A real header context: the 16-byte fixed part (header_len 40: no metadata) and
            // a key id, as format.yaml's files have.
            let mut c = b"\x89COFFER\n\x01\x01\x00\x00\x00\x00\x00\x28".to_vec();
            c.extend((0u8..16).map(|b| b ^ 0x5a));
            c
        }),
    ];
    let mut chunk_cases = Vec::new();
    for (ctx_name, context) in &contexts {
        let k = root(crate::keys::SAMPLE_KEY)?;
        let input_key = k.derive(b"coffer/v1 file key");
        let salt: [u8; 24] = (0u8..24)
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| anyhow::anyhow!("24"))?;
        let derived = cobblestone::derive(&input_key, &salt, context);
        chunk_cases.push(ChunkKeysCase {
            id: format!("kdf.chunked.{ctx_name}"),
            comment: format!(
                "the sample K's file key, the counting salt, {}",
                ctx_name.replace('_', " ")
            ),
            result: Outcome::Valid,
            flags: vec!["ShortPrk".into()],
            input_key: hex::encode(&input_key[..]),
            salt: hex::encode(salt),
            context: hex::encode(context),
            aead_key: hex::encode(&derived.aead_key[..]),
            base_nonce: hex::encode(derived.base_nonce),
            commitment: hex::encode(derived.commitment),
        });
    }
    let groups = vec![
        KdfGroup::HkdfSha256 {
            description: "OKM = HKDF-SHA256(IKM = K, salt, info, L). Every Coffer and crypt15 key derived from K.".into(),
            salt: "00".repeat(32),
            length: 32,
            cases: hkdf_cases,
        },
        KdfGroup::KeyId {
            description: "id_key = HKDF-SHA256(K, 32 zero bytes, \"coffer/v1 key id\", 32); key_id = HMAC-SHA256(id_key, salt)[0..16].".into(),
            cases: key_id_cases,
        },
        KdfGroup::VaultKeys {
            description: "key = HKDF-SHA512(salt = none, IKM = the OPAQUE export key or session key, info, L = 32): the envelope key seals K (the vault cannot open it), the transport key seals the release.".into(),
            cases: vault_key_cases()?,
        },
        KdfGroup::ChunkedEncryptionKeys {
            description: "C2SP chunked encryption (Cobblestone-256) key schedule: the first 32 bytes of the 76-byte HKDF-Expand-SHA-512 output are the AES key, the next 12 the base nonce, the last 32 the commitment.".into(),
            cases: chunk_cases,
        },
    ];
    let number_of_cases = groups
        .iter()
        .map(|g| match g {
            KdfGroup::HkdfSha256 { cases, .. } => cases.len(),
            KdfGroup::KeyId { cases, .. } => cases.len(),
            KdfGroup::ChunkedEncryptionKeys { cases, .. } => cases.len(),
            KdfGroup::VaultKeys { cases, .. } => cases.len(),
        })
        .sum();
    Ok(VectorFile {
        schema: SCHEMA_VERSION.into(),
        topic: "kdf".into(),
        description: "Every derivation from the root key K: crypt15's HKDF keys, Coffer's file \
                      key and key-id key, the Coffer key id, and the C2SP key schedule of a \
                      Coffer file's body."
            .into(),
        how_to_apply: "Compute each output from the case's inputs (and the group's shared \
                       parameters) and compare byte for byte. Every case is valid."
            .into(),
        sources: vec![
            "spec/key.md §5 (HKDF-SHA256 from K)".into(),
            "spec/format.md §2, §3.3 (file key, key id), §5 (C2SP key schedule)".into(),
            "RFC 5869 (HKDF); https://c2sp.org/chunked-encryption".into(),
        ],
        notes: BTreeMap::from([
            ("ShortPrk".into(), "HKDF-Expand-SHA-512 with a 32-byte PRK, shorter than the hash: RFC 5869 allows it for a uniformly random key, some HKDF libraries refuse it (write Expand out over HMAC-SHA-512 then).".into()),
            ("Unlinkable".into(), "The same K gives unrelated key ids for different salts.".into()),
        ]),
        number_of_cases,
        groups,
    })
}

fn hkdf_sha512(ikm: &[u8], info: &[u8]) -> anyhow::Result<[u8; 32]> {
    let mut okm = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha512>::new(None, ikm)
        .expand(info, &mut okm)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(okm)
}

fn vault_key_cases() -> anyhow::Result<Vec<HkdfCase>> {
    let mut cases = Vec::new();
    for (name, ikm) in [
        ("counting", (0u8..64).collect::<Vec<u8>>()),
        ("all_a5", vec![0xa5; 64]),
    ] {
        for (what, info) in [
            ("envelope", "coffer/v1 vault envelope key"),
            ("transport", "coffer/v1 vault transport key"),
        ] {
            cases.push(HkdfCase {
                id: format!("kdf.vault.{what}.{name}"),
                comment: format!("the {what} key from a {name} 64-byte key"),
                result: Outcome::Valid,
                flags: vec![],
                ikm: hex::encode(&ikm),
                info: info.into(),
                okm: hex::encode(hkdf_sha512(&ikm, info.as_bytes())?),
            });
        }
    }
    Ok(cases)
}

/// Checks a vault key through the reference: a message sealed under `okm` (with OpenSSL)
/// must open with the reference's envelope or transport opener given only `ikm`.
fn vault_key_opens(case: &HkdfCase) -> Result<(), String> {
    let ikm = hex::decode(&case.ikm).map_err(|e| e.to_string())?;
    let okm = hex::decode(&case.okm).map_err(|e| e.to_string())?;
    let nonce = [9u8; 12];
    let (aad, plain): (Vec<u8>, Vec<u8>) = match case.info.as_str() {
        "coffer/v1 vault envelope key" => (
            [
                b"coffer/v1 envelope".as_slice(),
                &[3; 16],
                &7u32.to_be_bytes(),
            ]
            .concat(),
            vec![0x42; 32],
        ),
        "coffer/v1 vault transport key" => (
            [b"coffer/v1 transport".as_slice(), &[4; 16]].concat(),
            b"released".to_vec(),
        ),
        other => return Err(format!("unknown info {other:?}")),
    };
    let mut tag = [0u8; 16];
    let ct = openssl::symm::encrypt_aead(
        openssl::symm::Cipher::aes_256_gcm(),
        &okm,
        Some(&nonce),
        &aad,
        &plain,
        &mut tag,
    )
    .map_err(|e| e.to_string())?;
    let sealed = [&nonce[..], &ct, &tag].concat();
    let opened = match case.info.as_str() {
        "coffer/v1 vault envelope key" => coffer::internal::envelope::open_envelope(
            &ikm,
            &coffer::vault::RecordId::from_bytes([3; 16]),
            7,
            &sealed,
        )
        .map(|k| k.to_vec()),
        _ => coffer::internal::envelope::open_transport(
            &ikm,
            &coffer::vault::SessionId::from_bytes([4; 16]),
            &sealed,
        )
        .map(|p| p.to_vec()),
    };
    match opened {
        Ok(p) if p == plain => Ok(()),
        Ok(_) => Err("opened to other bytes".into()),
        Err(_) => Err("the reference does not open a message sealed under okm".into()),
    }
}

/// Runs every case of `file` against the reference implementation.
pub fn verify(file: &KdfFile) -> Failures {
    let mut failures = Failures::default();
    for group in &file.groups {
        match group {
            KdfGroup::HkdfSha256 {
                salt,
                length,
                cases,
                ..
            } => {
                if salt != &"00".repeat(32) || *length != 32 {
                    failures.add(
                        "kdf.hkdf",
                        "the reference derives with a 32-byte zero salt and L = 32 only",
                    );
                }
                for case in cases {
                    failures.expect_eq(&case.id, "result", &Outcome::Valid, &case.result);
                    match root(&case.ikm) {
                        Ok(k) => {
                            let okm = hex::encode(&k.derive(case.info.as_bytes())[..]);
                            failures.expect_eq(&case.id, "okm", &case.okm, &okm);
                        }
                        Err(e) => failures.add(&case.id, e),
                    }
                }
            }
            KdfGroup::KeyId { cases, .. } => {
                for case in cases {
                    failures.expect_eq(&case.id, "result", &Outcome::Valid, &case.result);
                    let salt: Result<[u8; 24], _> = hex::decode(&case.salt)
                        .map_err(|e| e.to_string())
                        .and_then(|s| s.try_into().map_err(|_| "24 bytes".to_string()));
                    match (root(&case.root_key), salt) {
                        (Ok(k), Ok(salt)) => {
                            failures.expect_eq(
                                &case.id,
                                "id_key",
                                &case.id_key,
                                &hex::encode(&k.derive(b"coffer/v1 key id")[..]),
                            );
                            failures.expect_eq(
                                &case.id,
                                "key_id",
                                &case.key_id,
                                &hex::encode(key_id(&k, &salt)),
                            );
                        }
                        _ => failures.add(&case.id, "bad input"),
                    }
                }
            }
            KdfGroup::VaultKeys { cases, .. } => {
                for case in cases {
                    failures.expect_eq(&case.id, "result", &Outcome::Valid, &case.result);
                    if let Err(e) = vault_key_opens(case) {
                        failures.add(&case.id, format!("okm: {e}"));
                    }
                }
            }
            KdfGroup::ChunkedEncryptionKeys { cases, .. } => {
                for case in cases {
                    failures.expect_eq(&case.id, "result", &Outcome::Valid, &case.result);
                    let input: Option<[u8; 32]> = hex::decode(&case.input_key)
                        .ok()
                        .and_then(|b| b.try_into().ok());
                    let salt: Option<[u8; 24]> =
                        hex::decode(&case.salt).ok().and_then(|b| b.try_into().ok());
                    let context = hex::decode(&case.context).ok();
                    let (Some(input), Some(salt), Some(context)) = (input, salt, context) else {
                        failures.add(&case.id, "bad input");
                        continue;
                    };
                    let derived = cobblestone::derive(&input, &salt, &context);
                    failures.expect_eq(
                        &case.id,
                        "aead_key",
                        &case.aead_key,
                        &hex::encode(&derived.aead_key[..]),
                    );
                    failures.expect_eq(
                        &case.id,
                        "base_nonce",
                        &case.base_nonce,
                        &hex::encode(derived.base_nonce),
                    );
                    failures.expect_eq(
                        &case.id,
                        "commitment",
                        &case.commitment,
                        &hex::encode(derived.commitment),
                    );
                }
            }
        }
    }
    failures
}
