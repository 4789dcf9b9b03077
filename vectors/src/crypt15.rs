//! `crypt15.yaml`: header encodings, whole small files, and damaged files with their classes
//! (spec/crypt15.md).

use crate::doc::{Data, Failures, Outcome, VectorFile, SCHEMA_VERSION};
use coffer::crypt15::{
    decrypt, encrypt, read_header, DecryptOptions, EncryptOptions, HeaderSpec, PayloadEncoding,
};
use coffer::internal::protobuf::{put_bytes_field, put_varint, put_varint_field};
use coffer::key::{BackupKey, KeyFile, RootKey};
use coffer::Classify;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A group of `crypt15.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Crypt15Group {
    /// Header bytes (length prefix and BackupPrefix), read by spec/crypt15.md §5-§7.
    Header {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<HeaderCase>,
    },
    /// Whole, authentic files: decrypt `file` with `key` to `plaintext`; encrypt `payload`
    /// under `header` to `file`.
    File {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<FileCase>,
    },
    /// Damaged or wrong inputs: decryption fails with `error`; anything streamed out before
    /// the failure is unauthenticated and must be discarded (§14, §17.3).
    InvalidFile {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<InvalidFileCase>,
    },
    /// crypt14 and crypt12 files (§9, §10), read with a crypt12/14 `key` file or the 32-byte
    /// AES key: decrypt `file` to `plaintext`, or fail with `error`.
    LegacyFile {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<LegacyFileCase>,
    },
}

/// One crypt14 or crypt12 file and the key it is read with.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyFileCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// `crypt14` or `crypt12`.
    pub format: String,
    /// The key given: the 32-byte AES key (hex), or (with flag `KeyFile`) the bytes of a
    /// crypt12/14 `key` file (hex).
    pub key: String,
    /// The file (hex).
    pub file: Data,
    /// Valid: what decryption outputs (the inflated payload, or the stored bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<Data>,
    /// Invalid: the error class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One header.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// The header bytes: the whole input of the case (hex).
    pub header: String,
    /// Valid: `crypt15` or `crypt14`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Valid: H, the header's length in bytes (where the ciphertext starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_length: Option<usize>,
    /// Valid: the 16-byte IV (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iv: Option<String>,
    /// Valid: field 1, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<u64>,
    /// Valid: field 6, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type_new: Option<u64>,
    /// Valid: metadata field 1, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// Valid: whether the stray `01` byte of §6.2 was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stray_byte: Option<bool>,
    /// Invalid: the error class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One authentic file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// K (hex); the file key is HKDF(K, "backup encryption") (kdf.yaml).
    pub key: String,
    /// The header bytes (hex); the IV is inside.
    pub header: String,
    /// The 16-byte IV the header holds (hex).
    pub iv: String,
    /// The GCM plaintext exactly (a zlib stream, or the stored bytes).
    pub payload: Data,
    /// What decryption outputs (the inflated payload, or the stored bytes).
    pub plaintext: Data,
    /// Whether the file ends with the MD5 trailer (layout A) or with the tag (layout B).
    pub md5: bool,
    /// The whole file (hex).
    pub file: Data,
}

/// One file that must be refused.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvalidFileCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// The key given: K as hex, or (with flag `KeyFile`) the bytes of a key file (hex).
    pub key: String,
    /// The file (hex).
    pub file: Data,
    /// The error class.
    pub error: String,
}

/// The `crypt15.yaml` file.
pub type Crypt15File = VectorFile<Crypt15Group>;

const IV: [u8; 16] = [
    0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
];

fn sample_root() -> anyhow::Result<RootKey> {
    let bytes: [u8; 32] = hex::decode(crate::keys::SAMPLE_KEY)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("32 bytes"))?;
    Ok(RootKey::from_bytes(bytes))
}

/// A BackupPrefix body from its fields, and the header with a minimal varint length.
fn prefix(fields: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = Vec::new();
    fields(&mut body);
    body
}

fn with_length(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

fn iv_block(iv: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    put_bytes_field(&mut block, 1, iv);
    block
}

fn minimal_body(key_type: u64) -> Vec<u8> {
    prefix(|b| {
        put_varint_field(b, 1, key_type);
        put_bytes_field(b, 3, &iv_block(&IV));
    })
}

struct HeaderBuilder {
    id: String,
    comment: String,
    flags: Vec<String>,
    header: Vec<u8>,
}

fn header(id: &str, comment: &str, flags: &[&str], header: Vec<u8>) -> HeaderBuilder {
    HeaderBuilder {
        id: format!("crypt15.header.{id}"),
        comment: comment.into(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        header,
    }
}

impl HeaderBuilder {
    #[allow(clippy::too_many_arguments)]
    fn valid(
        self,
        header_length: usize,
        key_type: Option<u64>,
        key_type_new: Option<u64>,
        app_version: Option<&str>,
        stray_byte: bool,
    ) -> HeaderCase {
        HeaderCase {
            id: self.id,
            comment: self.comment,
            result: Outcome::Valid,
            flags: self.flags,
            header: hex::encode(&self.header),
            format: Some("crypt15".into()),
            header_length: Some(header_length),
            iv: Some(hex::encode(IV)),
            key_type,
            key_type_new,
            app_version: app_version.map(str::to_owned),
            stray_byte: Some(stray_byte),
            error: None,
        }
    }

    fn invalid(self, error: &str) -> HeaderCase {
        HeaderCase {
            id: self.id,
            comment: self.comment,
            result: Outcome::Invalid,
            flags: self.flags,
            header: hex::encode(&self.header),
            format: None,
            header_length: None,
            iv: None,
            key_type: None,
            key_type_new: None,
            app_version: None,
            stray_byte: None,
            error: Some(error.into()),
        }
    }
}

fn header_cases() -> Vec<HeaderCase> {
    let minimal = minimal_body(1);
    let n = minimal.len();
    let coffer_default = HeaderSpec::new(IV, "2.22.5.13", "67", 0).encode();
    // 2 length bytes + 129 bytes of BackupPrefix, counted by hand from §15.2's field list.
    debug_assert_eq!(coffer_default.len(), 131);
    let mut stray = vec![n as u8, 0x01];
    stray.extend_from_slice(&minimal);
    let mut two_byte = vec![0x80 | n as u8, 0x00];
    two_byte.extend_from_slice(&minimal);
    let mut three_byte = vec![0x80 | n as u8, 0x80, 0x00];
    three_byte.extend_from_slice(&minimal);
    let mut cases = vec![
        header(
            "coffer_default",
            "Coffer's header layout (§15.2) with the sample's metadata (jid suffix 67): a 2-byte length, key_type 1, 36 metadata fields",
            &["LongLength"],
            coffer_default.clone(),
        )
        .valid(131, Some(1), None, Some("2.22.5.13"), false),
        header(
            "minimal",
            "key_type and the IV block only: a 1-byte length",
            &[],
            with_length(&minimal),
        )
        .valid(n + 1, Some(1), None, None, false),
        header(
            "stray_byte",
            "wa-crypt-tools' stray 01 after a 1-byte length is skipped (§6.2)",
            &["StrayByte"],
            stray,
        )
        .valid(n + 2, Some(1), None, None, true),
        header(
            "non_minimal_2",
            "a non-minimal 2-byte length is read",
            &["NonMinimalLength"],
            two_byte,
        )
        .valid(n + 2, Some(1), None, None, false),
        header(
            "non_minimal_3",
            "a non-minimal 3-byte length is read",
            &["NonMinimalLength"],
            three_byte,
        )
        .valid(n + 3, Some(1), None, None, false),
    ];
    for key_type in 0..=4u64 {
        cases.push(
            header(
                &format!("key_type_{key_type}"),
                "every KeyType 0-4 is accepted in any format and reported",
                &["KeyType"],
                with_length(&minimal_body(key_type)),
            )
            .valid(n + 1, Some(key_type), None, None, false),
        );
    }
    let new_type = prefix(|b| {
        put_varint_field(b, 1, 1);
        put_bytes_field(b, 3, &iv_block(&IV));
        put_varint_field(b, 6, 3);
    });
    cases.push(
        header(
            "key_type_new",
            "recent WhatsApp: key_type 1 and key_type_new 3",
            &["KeyType"],
            with_length(&new_type),
        )
        .valid(new_type.len() + 1, Some(1), Some(3), None, false),
    );
    let passkey_unknown = prefix(|b| {
        put_varint_field(b, 1, 4);
        put_bytes_field(b, 3, &iv_block(&IV));
        put_bytes_field(b, 5, b"opaque passkey data");
        put_varint_field(b, 99, 7);
    });
    cases.push(
        header(
            "passkey_and_unknown",
            "passkey metadata (field 5, not interpreted) and an unknown field 99 are accepted",
            &["UnknownField"],
            with_length(&passkey_unknown),
        )
        .valid(passkey_unknown.len() + 1, Some(4), None, None, false),
    );
    // Invalid headers.
    let key_type_5 = with_length(&minimal_body(5));
    let no_block = with_length(&prefix(|b| put_varint_field(b, 1, 1)));
    let two_blocks = with_length(&prefix(|b| {
        put_bytes_field(b, 3, &iv_block(&IV));
        put_bytes_field(b, 3, &iv_block(&IV));
    }));
    let short_iv = with_length(&prefix(|b| {
        put_varint_field(b, 1, 1);
        put_bytes_field(b, 3, &iv_block(&IV[..12]));
    }));
    let twice_key_type = with_length(&prefix(|b| {
        put_varint_field(b, 1, 1);
        put_varint_field(b, 1, 1);
        put_bytes_field(b, 3, &iv_block(&IV));
    }));
    let meta_twice = with_length(&prefix(|b| {
        put_varint_field(b, 1, 1);
        put_bytes_field(b, 3, &iv_block(&IV));
        let mut meta = Vec::new();
        put_bytes_field(&mut meta, 1, b"2.22.5.13");
        put_bytes_field(&mut meta, 1, b"2.22.5.14");
        put_bytes_field(b, 4, &meta);
    }));
    let meta_not_utf8 = with_length(&prefix(|b| {
        put_varint_field(b, 1, 1);
        put_bytes_field(b, 3, &iv_block(&IV));
        let mut meta = Vec::new();
        put_bytes_field(&mut meta, 1, &[0xff, 0xfe]);
        put_bytes_field(b, 4, &meta);
    }));
    let group_wire = with_length(&prefix(|b| {
        put_varint_field(b, 1, 1);
        put_bytes_field(b, 3, &iv_block(&IV));
        b.push(0x3b); // field 7, wire type 3 (start group)
    }));
    let runs_past = {
        let mut body = minimal.clone();
        body.extend_from_slice(&[0x22, 0x40, 0x01]); // field 4, 64 bytes announced, 1 present
        with_length(&body)
    };
    let mut cut = with_length(&minimal);
    cut.truncate(cut.len() - 3);
    let mut too_long = Vec::new();
    put_varint(&mut too_long, 16385);
    too_long.extend_from_slice(&minimal);
    let four_byte = {
        let mut h = vec![0x80 | n as u8, 0x80, 0x80, 0x00];
        h.extend_from_slice(&minimal);
        h
    };
    let both_blocks = with_length(&prefix(|b| {
        let mut c14 = Vec::new();
        put_bytes_field(&mut c14, 3, &[0x11; 32]);
        put_bytes_field(&mut c14, 4, &[0x22; 16]);
        put_bytes_field(&mut c14, 5, &IV);
        put_bytes_field(b, 2, &c14);
        put_bytes_field(b, 3, &iv_block(&IV));
    }));
    // A crypt14 header whose server salt is 31 bytes (§7.4: exactly 32).
    let c14_short_salt = with_length(&prefix(|b| {
        put_varint_field(b, 1, 0);
        let mut c14 = Vec::new();
        put_bytes_field(&mut c14, 3, &[0x11; 31]);
        put_bytes_field(&mut c14, 4, &[0x22; 16]);
        put_bytes_field(&mut c14, 5, &IV);
        put_bytes_field(b, 2, &c14);
    }));
    let sqlite = b"SQLite format 3\0and the rest of a database page".to_vec();
    cases.extend([
        header(
            "key_type_5",
            "KeyType 5 or more is unsupported",
            &["KeyType"],
            key_type_5,
        )
        .invalid("unsupported"),
        header(
            "no_cipher_block",
            "neither field 2 nor field 3",
            &["CipherBlock"],
            no_block,
        )
        .invalid("malformed"),
        header(
            "two_iv_blocks",
            "field 3 twice",
            &["CipherBlock"],
            two_blocks,
        )
        .invalid("malformed"),
        header(
            "c14_and_c15",
            "both a C14 cipher block and a C15 IV block",
            &["CipherBlock"],
            both_blocks,
        )
        .invalid("malformed"),
        header(
            "c14_short_salt",
            "a crypt14 cipher block whose server salt is 31 bytes (§7.4)",
            &["CipherBlock"],
            c14_short_salt,
        )
        .invalid("malformed"),
        header(
            "iv_12_bytes",
            "an IV of 12 bytes",
            &["CipherBlock"],
            short_iv,
        )
        .invalid("malformed"),
        header(
            "key_type_twice",
            "field 1 twice",
            &["Protobuf"],
            twice_key_type,
        )
        .invalid("malformed"),
        header(
            "metadata_field_twice",
            "a metadata field twice",
            &["Protobuf"],
            meta_twice,
        )
        .invalid("malformed"),
        header(
            "metadata_not_utf8",
            "app_version that is not UTF-8",
            &["Protobuf"],
            meta_not_utf8,
        )
        .invalid("malformed"),
        header(
            "group_wire_type",
            "wire type 3 (groups) is refused",
            &["Protobuf"],
            group_wire,
        )
        .invalid("malformed"),
        header(
            "field_runs_past",
            "a length-delimited field longer than its message",
            &["Protobuf"],
            runs_past,
        )
        .invalid("malformed"),
        header(
            "length_over_limit",
            "a header length of 16385",
            &["LongLength"],
            too_long,
        )
        .invalid("malformed"),
        header(
            "length_4_bytes",
            "a length varint of 4 bytes",
            &["LongLength"],
            four_byte,
        )
        .invalid("malformed"),
        header(
            "cut_short",
            "the input ends 3 bytes before the header does",
            &["Truncated"],
            cut,
        )
        .invalid("truncated"),
        header("empty", "no bytes at all", &["Truncated"], vec![]).invalid("truncated"),
        header(
            "zip_lead",
            "a plaintext ZIP archive, not a backup",
            &["Plaintext"],
            b"PK\x03\x04\x14\x00\x00\x00\x00\x00 and so on".to_vec(),
        )
        .invalid("malformed"),
        header(
            "zlib_lead",
            "a plaintext zlib stream, not a backup",
            &["Plaintext"],
            vec![
                0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00,
            ],
        )
        .invalid("malformed"),
        header(
            "ends_inside_lead",
            "a header declared to end within the first 16 bytes of a longer file",
            &["LongLength"],
            [&[0x05, 0x08, 0x01, 0x1a, 0x01, 0x00][..], &[0u8; 20][..]].concat(),
        )
        .invalid("malformed"),
        header(
            "iv_twice_in_block",
            "the C15 block holds field 1 (the IV) twice",
            &["CipherBlock"],
            with_length(&prefix(|b| {
                put_varint_field(b, 1, 1);
                let mut block = iv_block(&IV);
                block.extend_from_slice(&iv_block(&IV));
                put_bytes_field(b, 3, &block);
            })),
        )
        .invalid("malformed"),
        header(
            "sqlite_prefix_only",
            "the 6 bytes SQLite: shorter than the plaintext pattern, so read as a header \
             whose length (83) runs past the end (§5 step 3)",
            &["Plaintext", "Truncated"],
            b"SQLite".to_vec(),
        )
        .invalid("truncated"),
        header(
            "c15_block_parsed_in_pass_2",
            "a C15 block whose content is no valid message, then key_type 7: pass 1 does not \
             parse field 3's content, so the key type decides (§7.2)",
            &["CipherBlock", "KeyType"],
            with_length(&prefix(|b| {
                put_bytes_field(b, 3, &[0xff]);
                put_varint_field(b, 1, 7);
            })),
        )
        .invalid("unsupported"),
        header(
            "sqlite_plaintext",
            "a plaintext SQLite database, not a backup",
            &["Plaintext"],
            sqlite,
        )
        .invalid("malformed"),
    ]);
    cases
}

/// Encrypts `plaintext` (or stores it) under the Coffer default header with [`IV`].
fn build_file(
    root: &RootKey,
    header: &[u8],
    plaintext: &[u8],
    payload: PayloadEncoding,
    md5: bool,
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut file = Vec::new();
    let options = EncryptOptions {
        payload,
        md5,
        ..EncryptOptions::default()
    };
    encrypt(root, header, plaintext, &mut file, &options, &mut |_| {})?;
    // The exact GCM plaintext, for encryption-side tests independent of a zlib build.
    let mut raw = Vec::new();
    let raw_options = DecryptOptions {
        decompress: false,
        ..DecryptOptions::default()
    };
    decrypt(
        &BackupKey::Root(root.clone()),
        &file[..],
        &mut raw,
        &raw_options,
        &mut |_| {},
    )?;
    Ok((file, raw))
}

/// AES-256-GCM of `payload` under a crypt12/14 AES key: ciphertext ‖ tag.
fn legacy_seal(aes_key: &[u8], iv: &[u8; 16], payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut tag = [0u8; 16];
    let mut out = openssl::symm::encrypt_aead(
        openssl::symm::Cipher::aes_256_gcm(),
        aes_key,
        Some(iv),
        &[],
        payload,
        &mut tag,
    )?;
    out.extend_from_slice(&tag);
    Ok(out)
}

fn md5(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok(openssl::hash::hash(openssl::hash::MessageDigest::md5(), bytes)?.to_vec())
}

/// crypt14 and crypt12 files under the sample `key` file of wa-crypt-tools (§9, §10), and
/// the ways they must be refused.
fn legacy_cases(root: &RootKey) -> anyhow::Result<Vec<LegacyFileCase>> {
    let key_file = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("external/wa-crypt-tools/key"),
    )?;
    anyhow::ensure!(key_file.len() == 158, "the sample key file is 158 bytes");
    let body = &key_file[27..];
    let (server_salt, google_salt, aes_key) = (&body[3..35], &body[35..51], &body[99..131]);
    let text = b"Coffer crypt14 and crypt12 vector\n";
    // The zlib payload as WhatsApp writes it (level 1), taken from a crypt15 file's GCM input.
    let crypt15_header = HeaderSpec::new(IV, "2.22.5.13", "67", 0).encode();
    let (_, zlib) = build_file(
        root,
        &crypt15_header,
        text,
        PayloadEncoding::Zlib { level: 1 },
        true,
    )?;
    let json = br#"{"coffer":"a stored crypt14 payload"}"#.to_vec();
    let c14_header = with_length(&prefix(|b| {
        put_varint_field(b, 1, 0);
        let mut c14 = Vec::new();
        put_bytes_field(&mut c14, 1, &[0x00, 0x01]);
        put_bytes_field(&mut c14, 2, b"2");
        put_bytes_field(&mut c14, 3, server_salt);
        put_bytes_field(&mut c14, 4, google_salt);
        put_bytes_field(&mut c14, 5, &IV);
        put_bytes_field(b, 2, &c14);
    }));
    let mut crypt14 = [&c14_header[..], &legacy_seal(aes_key, &IV, &zlib)?].concat();
    crypt14.extend(md5(&crypt14)?);
    let crypt14_stored = [&c14_header[..], &legacy_seal(aes_key, &IV, &json)?].concat();
    let c12_header = [&[0x00, 0x01, 0x02][..], server_salt, google_salt, &IV].concat();
    let crypt12_with = |footer: &[u8]| -> anyhow::Result<Vec<u8>> {
        let mut file = [&c12_header[..], &legacy_seal(aes_key, &IV, &zlib)?].concat();
        file.extend(md5(&file)?);
        file.extend_from_slice(footer);
        Ok(file)
    };
    let crypt12 = crypt12_with(b"--67")?;
    let mut other_salts = key_file.clone();
    other_salts[30] ^= 0x01; // body offset 3: the server salt's first byte
    let edited = |file: &[u8], at: usize| {
        let mut f = file.to_vec();
        f[at] ^= 0x01;
        f
    };
    let (key_file_hex, aes_hex) = (hex::encode(&key_file), hex::encode(aes_key));
    let other_aes = (0u8..32).map(|b| format!("{b:02x}")).collect::<String>();
    let case = |id: &str,
                comment: &str,
                flags: &[&str],
                format: &str,
                key: &str,
                file: &[u8],
                outcome: Result<&[u8], &str>| LegacyFileCase {
        id: format!("crypt15.legacy.{id}"),
        comment: comment.into(),
        result: if outcome.is_ok() {
            Outcome::Valid
        } else {
            Outcome::Invalid
        },
        flags: flags.iter().map(|f| f.to_string()).collect(),
        format: format.into(),
        key: key.into(),
        file: Data::hex(file),
        plaintext: outcome.ok().map(Data::hex),
        error: outcome.err().map(str::to_owned),
    };
    let n14 = crypt14.len();
    let n12 = crypt12.len();
    Ok(vec![
        case(
            "crypt14_key_file",
            "crypt14 read with its key file: the salts match (§9.2), zlib inflated",
            &["KeyFile", "Zlib"],
            "crypt14",
            &key_file_hex,
            &crypt14,
            Ok(text),
        ),
        case(
            "crypt14_aes_key",
            "crypt14 read with the 32-byte AES key alone: no salt check (§4)",
            &["Zlib"],
            "crypt14",
            &aes_hex,
            &crypt14,
            Ok(text),
        ),
        case(
            "crypt14_stored_no_md5",
            "crypt14 with a stored payload and no MD5 (layout B, §9.1, §11)",
            &["KeyFile", "Stored", "LayoutB"],
            "crypt14",
            &key_file_hex,
            &crypt14_stored,
            Ok(&json),
        ),
        case(
            "crypt12_key_file",
            "crypt12 (§10) read with its key file",
            &["KeyFile", "Zlib"],
            "crypt12",
            &key_file_hex,
            &crypt12,
            Ok(text),
        ),
        case(
            "crypt12_aes_key",
            "crypt12 read with the 32-byte AES key alone",
            &["Zlib"],
            "crypt12",
            &aes_hex,
            &crypt12,
            Ok(text),
        ),
        case(
            "crypt12_footer_edited",
            "crypt12 whose 4-byte footer says --99: not covered by MD5 or tag, not checked (§10)",
            &["KeyFile", "Zlib"],
            "crypt12",
            &key_file_hex,
            &crypt12_with(b"--99")?,
            Ok(text),
        ),
        case(
            "crypt14_other_salts",
            "crypt14 with a key file whose server salt differs: wrong_key before decrypting (§9.2)",
            &["KeyFile", "WrongKey"],
            "crypt14",
            &hex::encode(&other_salts),
            &crypt14,
            Err("wrong_key"),
        ),
        case(
            "crypt12_other_salts",
            "crypt12 with a key file whose server salt differs",
            &["KeyFile", "WrongKey"],
            "crypt12",
            &hex::encode(&other_salts),
            &crypt12,
            Err("wrong_key"),
        ),
        case(
            "crypt12_cipher_version",
            "crypt12 whose cipher version is 00 03 (§10)",
            &["KeyFile"],
            "crypt12",
            &key_file_hex,
            &edited(&crypt12, 1),
            Err("malformed"),
        ),
        case(
            "crypt12_wrong_aes_key",
            "crypt12 under another AES key: the MD5 matches, the tag does not (§13 step 2)",
            &["WrongKey"],
            "crypt12",
            &other_aes,
            &crypt12,
            Err("wrong_key"),
        ),
        case(
            "crypt12_cut",
            "crypt12 cut inside its ciphertext: the zlib stream does not end (§13)",
            &["KeyFile", "Truncated"],
            "crypt12",
            &key_file_hex,
            &crypt12[..n12 - 40],
            Err("truncated"),
        ),
        case(
            "crypt12_appended",
            "crypt12 with 5 bytes after its footer: the zlib stream ends early (§13)",
            &["KeyFile", "TrailingData"],
            "crypt12",
            &key_file_hex,
            &[&crypt12[..], b"extra"].concat(),
            Err("trailing_data"),
        ),
        case(
            "crypt14_tag_flipped",
            "crypt14 with a tag byte flipped, MD5 left as it was",
            &["KeyFile", "Tag"],
            "crypt14",
            &key_file_hex,
            &edited(&crypt14, n14 - 17),
            Err("corrupt"),
        ),
    ])
}

/// The class of a decryption of `file` with `key`, or the plaintext.
fn run_decrypt(key: &BackupKey, file: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    decrypt(key, file, &mut out, &DecryptOptions::default(), &mut |_| {})
        .map(|_| out)
        .map_err(|e| e.class().to_string())
}

/// A stored (uncompressed) ZIP archive of one file: local header, data, central directory,
/// end of central directory (APPNOTE.TXT 4.3), written by hand.
fn stored_zip(name: &[u8], data: &[u8]) -> Vec<u8> {
    let crc = crc32(data).to_le_bytes();
    let size = (data.len() as u32).to_le_bytes();
    let name_len = (name.len() as u16).to_le_bytes();
    let mut zip = Vec::new();
    zip.extend_from_slice(b"PK\x03\x04\x0a\x00\x00\x00\x00\x00\x00\x00\x21\x00");
    zip.extend_from_slice(&crc);
    zip.extend_from_slice(&size);
    zip.extend_from_slice(&size);
    zip.extend_from_slice(&name_len);
    zip.extend_from_slice(&[0, 0]);
    zip.extend_from_slice(name);
    zip.extend_from_slice(data);
    let central = zip.len() as u32;
    zip.extend_from_slice(b"PK\x01\x02\x14\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x21\x00");
    zip.extend_from_slice(&crc);
    zip.extend_from_slice(&size);
    zip.extend_from_slice(&size);
    zip.extend_from_slice(&name_len);
    zip.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
    zip.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    zip.extend_from_slice(name);
    let central_len = zip.len() as u32 - central;
    zip.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00");
    zip.extend_from_slice(&central_len.to_le_bytes());
    zip.extend_from_slice(&central.to_le_bytes());
    zip.extend_from_slice(&[0, 0]);
    zip
}

/// CRC-32 (ISO-HDLC), as ZIP uses it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// id, comment, flags, plaintext, payload encoding, MD5 trailer, plaintext as written.
type FileSpec<'a> = (
    &'a str,
    &'a str,
    &'a [&'a str],
    Vec<u8>,
    PayloadEncoding,
    bool,
    Data,
);

/// Builds `crypt15.yaml`.
pub fn generate() -> anyhow::Result<Crypt15File> {
    let root = sample_root()?;
    let header = HeaderSpec::new(IV, "2.22.5.13", "67", 0).encode();
    let sqlite_page = {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("external/wa-crypt-tools/msgstore.db");
        let mut db =
            std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        db.truncate(4096);
        db
    };
    let json = br#"{"coffer":"a stored payload of kind unknown"}"#.to_vec();
    let counting = Data::counting(20_000).bytes()?;
    let zip = stored_zip(b"sticker.webp", b"RIFF\x0c\x00\x00\x00WEBPVP8 ");
    let specs: [FileSpec; 7] = [
        (
            "empty",
            "an empty database: zlib of nothing",
            &["Zlib"],
            vec![],
            PayloadEncoding::Zlib { level: 1 },
            true,
            Data::hex(&[]),
        ),
        (
            "short_text",
            "a short text, zlib level 1 as WhatsApp writes",
            &["Zlib"],
            b"Coffer crypt15 vector\n".to_vec(),
            PayloadEncoding::Zlib { level: 1 },
            true,
            Data::hex(b"Coffer crypt15 vector\n"),
        ),
        (
            "sqlite_page",
            "the first 4096 bytes of the real sample msgstore.db",
            &["Zlib"],
            sqlite_page.clone(),
            PayloadEncoding::Zlib { level: 1 },
            true,
            Data::hex(&sqlite_page),
        ),
        (
            "counting_20000",
            "20000 bytes of the counting pattern",
            &["Zlib"],
            counting,
            PayloadEncoding::Zlib { level: 1 },
            true,
            Data::counting(20_000),
        ),
        (
            "stored_md5",
            "a stored payload (kind unknown) with the MD5 trailer",
            &["Stored"],
            json.clone(),
            PayloadEncoding::Stored,
            true,
            Data::hex(&json),
        ),
        (
            "stored_no_md5",
            "a stored payload (kind unknown) ending with the tag: accepted, only zlib needs an MD5",
            &["Stored", "LayoutB"],
            json.clone(),
            PayloadEncoding::Stored,
            false,
            Data::hex(&json),
        ),
        (
            "multi_file_zip",
            "layout B as older multi-file backups are: a stored ZIP, tag last, no MD5",
            &["Stored", "LayoutB", "Zip"],
            zip.clone(),
            PayloadEncoding::Stored,
            false,
            Data::hex(&zip),
        ),
    ];
    let mut file_cases = Vec::new();
    let mut base = None;
    let mut zip_file = Vec::new();
    for (id, comment, flags, plaintext, payload, md5, plaintext_data) in specs {
        let (file, raw) = build_file(&root, &header, &plaintext, payload, md5)?;
        if id == "short_text" {
            base = Some((file.clone(), raw.clone()));
        }
        if id == "multi_file_zip" {
            zip_file = file.clone();
        }
        file_cases.push(FileCase {
            id: format!("crypt15.file.{id}"),
            comment: comment.into(),
            result: Outcome::Valid,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            key: crate::keys::SAMPLE_KEY.into(),
            header: hex::encode(&header),
            iv: hex::encode(IV),
            payload: Data::hex(&raw),
            plaintext: plaintext_data,
            md5,
            file: Data::hex(&file),
        });
    }
    let (base, base_payload) = base.ok_or_else(|| anyhow::anyhow!("no base file"))?;
    let h = header.len();
    let recompute_md5 = |mut file: Vec<u8>| -> anyhow::Result<Vec<u8>> {
        let body = file.len() - 16;
        let digest = openssl::hash::hash(openssl::hash::MessageDigest::md5(), &file[..body])?;
        file[body..].copy_from_slice(&digest);
        Ok(file)
    };
    let flip = |at: usize| {
        let mut f = base.clone();
        f[at] ^= 0x01;
        f
    };
    let n = base.len();
    let other_key = (0u8..32).map(|b| format!("{b:02x}")).collect::<String>();
    let legacy = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("external/wa-crypt-tools/key"),
    )?;
    // A zlib header and an invalid deflate block, encrypted as is (tag and MD5 right).
    let mut broken_zlib = Vec::new();
    let stored = EncryptOptions {
        payload: PayloadEncoding::Stored,
        ..EncryptOptions::default()
    };
    encrypt(
        &root,
        &header,
        &[0x78, 0x01, 0xff, 0xff, 0xff, 0xff, 0x00, 0x11, 0x22][..],
        &mut broken_zlib,
        &stored,
        &mut |_| {},
    )?;
    let invalid =
        |id: &str, comment: &str, flags: &[&str], key: &str, file: Vec<u8>, error: &str| {
            InvalidFileCase {
                id: format!("crypt15.invalid.{id}"),
                comment: comment.into(),
                result: Outcome::Invalid,
                flags: flags.iter().map(|f| f.to_string()).collect(),
                key: key.into(),
                file: Data::hex(&file),
                error: error.into(),
            }
        };
    let payload_middle = h + base_payload.len() / 2;
    let zip_len = zip_file.len();
    let invalid_cases = vec![
        invalid(
            "zip_wrong_key",
            "a layout B ZIP under another K: without an MD5 a wrong key cannot be told from damage",
            &["WrongKey", "LayoutB", "Zip"],
            &other_key,
            zip_file.clone(),
            "corrupt",
        ),
        invalid(
            "zip_cut",
            "a layout B ZIP cut by 10 bytes: the end-of-central-directory is gone",
            &["Truncated", "LayoutB", "Zip"],
            crate::keys::SAMPLE_KEY,
            zip_file[..zip_len - 10].to_vec(),
            "truncated",
        ),
        invalid(
            "wrong_key",
            "an intact file under another K: the MD5 matches, the payload is noise",
            &["WrongKey"],
            &other_key,
            base.clone(),
            "wrong_key",
        ),
        invalid(
            "legacy_key_file",
            "a crypt12/14 key file given for a crypt15 file",
            &["WrongKey", "KeyFile"],
            &hex::encode(&legacy),
            base.clone(),
            "wrong_key",
        ),
        invalid(
            "legacy_key_file_cut",
            "a crypt12/14 key file for a crypt15 file cut inside its ciphertext: the key's \
             kind is checked before the body (§4), so wrong_key, not truncated",
            &["WrongKey", "KeyFile", "Truncated"],
            &hex::encode(&legacy),
            base[..n - 40].to_vec(),
            "wrong_key",
        ),
        invalid(
            "legacy_key_file_header_cut",
            "a crypt12/14 key file for a crypt15 file cut inside its header: the header comes \
             first (§4), so truncated",
            &["KeyFile", "Truncated"],
            &hex::encode(&legacy),
            base[..50].to_vec(),
            "truncated",
        ),
        invalid(
            "tag_flipped",
            "the last tag byte flipped, MD5 left as it was",
            &["Tag"],
            crate::keys::SAMPLE_KEY,
            flip(n - 17),
            "corrupt",
        ),
        invalid(
            "tag_flipped_md5_recomputed",
            "the last tag byte flipped and the MD5 recomputed",
            &["Tag", "Md5Recomputed"],
            crate::keys::SAMPLE_KEY,
            recompute_md5(flip(n - 17))?,
            "corrupt",
        ),
        invalid(
            "ciphertext_flipped_md5_recomputed",
            "a ciphertext byte in the middle flipped and the MD5 recomputed",
            &["Md5Recomputed"],
            crate::keys::SAMPLE_KEY,
            recompute_md5(flip(payload_middle))?,
            "corrupt",
        ),
        invalid(
            "md5_flipped",
            "an MD5 byte flipped: the file is tried as layout B and fails",
            &["Md5"],
            crate::keys::SAMPLE_KEY,
            flip(n - 1),
            "corrupt",
        ),
        invalid(
            "cut_1",
            "the last byte missing",
            &["Truncated"],
            crate::keys::SAMPLE_KEY,
            base[..n - 1].to_vec(),
            "truncated",
        ),
        invalid(
            "cut_md5",
            "the MD5 missing: authentic as layout B, but a zlib payload always has an MD5",
            &["Truncated", "LayoutB"],
            crate::keys::SAMPLE_KEY,
            base[..n - 16].to_vec(),
            "truncated",
        ),
        invalid(
            "cut_in_ciphertext",
            "cut 5 bytes after the header: no room for a tag",
            &["Truncated"],
            crate::keys::SAMPLE_KEY,
            base[..h + 5].to_vec(),
            "truncated",
        ),
        invalid(
            "header_only",
            "the header and nothing else",
            &["Truncated"],
            crate::keys::SAMPLE_KEY,
            base[..h].to_vec(),
            "truncated",
        ),
        invalid(
            "trailing_5",
            "5 bytes appended",
            &["TrailingData"],
            crate::keys::SAMPLE_KEY,
            [&base[..], &[0xaa; 5][..]].concat(),
            "trailing_data",
        ),
        invalid(
            "empty",
            "an empty file",
            &["Truncated"],
            crate::keys::SAMPLE_KEY,
            vec![],
            "truncated",
        ),
        invalid(
            "authentic_broken_zlib",
            "authentic (tag and MD5 right) but its zlib stream is broken",
            &["Zlib"],
            crate::keys::SAMPLE_KEY,
            broken_zlib,
            "corrupt",
        ),
    ];
    let groups = vec![
        Crypt15Group::Header {
            description: "Read the header (§5-§7). Valid: the format, H, the IV and the fields listed. Invalid: the class.".into(),
            cases: header_cases(),
        },
        Crypt15Group::File {
            description: "Decrypt `file` with `key` to `plaintext` (zlib payloads inflated). Encrypt: `header` ‖ AES-256-GCM(HKDF(K, \"backup encryption\"), the header's 16-byte IV, `payload`) ‖ tag ‖ MD5(all before) when `md5` is true, must equal `file`.".into(),
            cases: file_cases,
        },
        Crypt15Group::InvalidFile {
            description: "Decrypt `file` with `key` (64-digit K in hex, or a key file's bytes with flag KeyFile): it must fail with `error` (§11-§13); whatever a streaming reader wrote before failing is unauthenticated and must be discarded (§17.3).".into(),
            cases: invalid_cases,
        },
        Crypt15Group::LegacyFile {
            description: "Decrypt the crypt14 or crypt12 `file` (§9, §10) with `key`: the 32-byte AES key in hex, used directly, or with flag KeyFile the bytes of a crypt12/14 `key` file, whose salts must match the header's (§9.2) and whose AES key (body 99..131) decrypts. Valid: the output is `plaintext`. Invalid: it fails with `error` (§11-§13).".into(),
            cases: legacy_cases(&root)?,
        },
    ];
    let number_of_cases = groups
        .iter()
        .map(|g| match g {
            Crypt15Group::Header { cases, .. } => cases.len(),
            Crypt15Group::File { cases, .. } => cases.len(),
            Crypt15Group::InvalidFile { cases, .. } => cases.len(),
            Crypt15Group::LegacyFile { cases, .. } => cases.len(),
        })
        .sum();
    Ok(VectorFile {
        schema: SCHEMA_VERSION.into(),
        topic: "crypt15".into(),
        description: "WhatsApp-compatible crypt15 backups: header encodings, whole small files \
                      with their key, IV and payload, and damaged files with the class a reader \
                      must report."
            .into(),
        how_to_apply: "Header cases: read `header` as the start of a file. File cases: decrypt \
                       and encrypt as the group says. Invalid files: decrypt and compare the \
                       class."
            .into(),
        sources: vec![
            "spec/crypt15.md §5-§8 (detection, length prefix, BackupPrefix, layout), §11-§13 (trailer, payload, classes), §15 (writing)".into(),
            "spec/key.md §5 (the file key); vectors/external/wa-crypt-tools (the sample key file and database; MIT)".into(),
        ],
        notes: BTreeMap::from([
            ("CipherBlock".into(), "The C14/C15 cipher block rules of §7.2 pass 2.".into()),
            ("KeyFile".into(), "`key` holds the bytes of a key file instead of K.".into()),
            ("KeyType".into(), "KeyType values (§7.3): reported, never used to pick the key.".into()),
            ("LayoutB".into(), "No MD5 trailer: the file ends with the tag.".into()),
            ("LongLength".into(), "A header length of more than one varint byte, or over the limit.".into()),
            ("Md5".into(), "The MD5 trailer is wrong.".into()),
            ("Md5Recomputed".into(), "Damage with the MD5 recomputed, as an attacker can.".into()),
            ("NonMinimalLength".into(), "A non-minimal varint length, which readers accept and writers never write.".into()),
            ("Plaintext".into(), "A plaintext file given as a backup.".into()),
            ("Protobuf".into(), "A BackupPrefix wire-format or field-rule error.".into()),
            ("Stored".into(), "A payload written as is (not zlib).".into()),
            ("StrayByte".into(), "The stray 01 byte wa-crypt-tools writes after a 1-byte length.".into()),
            ("Tag".into(), "The GCM tag is wrong.".into()),
            ("TrailingData".into(), "Bytes after the end of the file.".into()),
            ("Truncated".into(), "The input ends early.".into()),
            ("UnknownField".into(), "Fields a reader must accept without interpreting.".into()),
            ("WrongKey".into(), "A key that does not open the file.".into()),
            ("Zip".into(), "A stored ZIP payload, as older multi-file backups (stickers, wallpapers) have.".into()),
            ("Zlib".into(), "A zlib payload (inflated on output).".into()),
        ]),
        number_of_cases,
        groups,
    })
}

fn key_of(text: &str, flags: &[String]) -> Result<BackupKey, String> {
    let bytes = hex::decode(text).map_err(|e| e.to_string())?;
    if flags.iter().any(|f| f == "KeyFile") {
        return match KeyFile::parse(&bytes).map_err(|e| e.to_string())? {
            KeyFile::Legacy(l) => Ok(BackupKey::Legacy(l)),
            KeyFile::EncryptedBackupKey(k) | KeyFile::Hex(k) => Ok(BackupKey::Root(k)),
        };
    }
    let key: [u8; 32] = bytes.try_into().map_err(|_| "K is 32 bytes".to_string())?;
    Ok(BackupKey::Root(RootKey::from_bytes(key)))
}

/// Runs every case of `file` against the reference implementation.
pub fn verify(file: &Crypt15File) -> Failures {
    let mut failures = Failures::default();
    for group in &file.groups {
        match group {
            Crypt15Group::Header { cases, .. } => {
                for case in cases {
                    let Ok(bytes) = hex::decode(&case.header) else {
                        failures.add(&case.id, "header is not hex");
                        continue;
                    };
                    let parsed = read_header(&mut &bytes[..]);
                    let outcome = parsed
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| e.class().to_string());
                    if !failures.expect_outcome(
                        &case.id,
                        case.result,
                        case.error.as_deref(),
                        &outcome,
                    ) {
                        continue;
                    }
                    let Ok(h) = parsed else { continue };
                    failures.expect_eq(
                        &case.id,
                        "format",
                        &case.format.as_deref(),
                        &Some(h.format.as_str()),
                    );
                    failures.expect_eq(
                        &case.id,
                        "header_length",
                        &case.header_length,
                        &Some(h.len()),
                    );
                    failures.expect_eq(&case.id, "iv", &case.iv, &Some(hex::encode(&h.iv)));
                    let prefix = h.prefix.as_ref();
                    failures.expect_eq(
                        &case.id,
                        "key_type",
                        &case.key_type,
                        &prefix.and_then(|p| p.key_type),
                    );
                    failures.expect_eq(
                        &case.id,
                        "key_type_new",
                        &case.key_type_new,
                        &prefix.and_then(|p| p.key_type_new),
                    );
                    failures.expect_eq(
                        &case.id,
                        "app_version",
                        &case.app_version.as_deref(),
                        &prefix.and_then(|p| p.metadata_text("app_version")),
                    );
                    failures.expect_eq(
                        &case.id,
                        "stray_byte",
                        &case.stray_byte,
                        &prefix.map(|p| p.legacy_flag_byte),
                    );
                }
            }
            Crypt15Group::File { cases, .. } => {
                for case in cases {
                    let (Ok(file_bytes), Ok(plaintext), Ok(payload), Ok(header), Ok(key)) = (
                        case.file.bytes(),
                        case.plaintext.bytes(),
                        case.payload.bytes(),
                        hex::decode(&case.header),
                        key_of(&case.key, &case.flags),
                    ) else {
                        failures.add(&case.id, "bad input");
                        continue;
                    };
                    match read_header(&mut &header[..]) {
                        Ok(h) => failures.expect_eq(&case.id, "iv", &case.iv, &hex::encode(&h.iv)),
                        Err(e) => failures.add(&case.id, format!("header: {e}")),
                    }
                    let decrypted = run_decrypt(&key, &file_bytes);
                    if failures.expect_outcome(&case.id, case.result, None, &decrypted) {
                        failures.expect_eq(
                            &case.id,
                            "plaintext",
                            &hex::encode(&plaintext),
                            &hex::encode(decrypted.unwrap_or_default()),
                        );
                    }
                    // Encryption: the same payload under the same header gives the same file.
                    let BackupKey::Root(root) = &key else {
                        continue;
                    };
                    let mut out = Vec::new();
                    let options = EncryptOptions {
                        payload: PayloadEncoding::Stored,
                        md5: case.md5,
                        ..EncryptOptions::default()
                    };
                    match encrypt(root, &header, &payload[..], &mut out, &options, &mut |_| {}) {
                        Ok(_) => failures.expect_eq(
                            &case.id,
                            "file (encrypting the payload)",
                            &hex::encode(&file_bytes),
                            &hex::encode(&out),
                        ),
                        Err(e) => failures.add(&case.id, format!("encrypting the payload: {e}")),
                    }
                }
            }
            Crypt15Group::InvalidFile { cases, .. } => {
                for case in cases {
                    let (Ok(file_bytes), Ok(key)) =
                        (case.file.bytes(), key_of(&case.key, &case.flags))
                    else {
                        failures.add(&case.id, "bad input");
                        continue;
                    };
                    let decrypted = run_decrypt(&key, &file_bytes);
                    failures.expect_outcome(&case.id, case.result, Some(&case.error), &decrypted);
                }
            }
            Crypt15Group::LegacyFile { cases, .. } => {
                for case in cases {
                    let (Ok(file_bytes), Ok(key)) =
                        (case.file.bytes(), key_of(&case.key, &case.flags))
                    else {
                        failures.add(&case.id, "bad input");
                        continue;
                    };
                    if let Ok(h) = read_header(&mut &file_bytes[..]) {
                        let format = h.format.as_str();
                        failures.expect_eq(&case.id, "format", &case.format.as_str(), &format);
                    }
                    let decrypted = run_decrypt(&key, &file_bytes);
                    if failures.expect_outcome(
                        &case.id,
                        case.result,
                        case.error.as_deref(),
                        &decrypted,
                    ) {
                        let want = case.plaintext.as_ref().and_then(|p| p.bytes().ok());
                        failures.expect_eq(
                            &case.id,
                            "plaintext",
                            &want.map(hex::encode),
                            &decrypted.ok().map(hex::encode),
                        );
                    }
                }
            }
        }
    }
    failures
}
