//! `keys.yaml`: the 64-digit form (spec/key.md §2) and the key files (§3).

use crate::doc::{Data, Failures, Outcome, VectorFile, SCHEMA_VERSION};
use coffer::key::{KeyError, KeyFile, RootKey};
use coffer::Classify;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The root key of the real WhatsApp sample (`vectors/external/wa-crypt-tools`).
pub const SAMPLE_KEY: &str = "6730a595a1484d0c39c101dc0ac82ec5e401bb6f0e1b8ee2dc104a6b3687f017";

/// A group of `keys.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeysGroup {
    /// Text in the 64-digit form, parsed by spec/key.md §2.2.
    SixtyFourDigits {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<DigitsCase>,
    },
    /// The bytes of a key file, classified and read by spec/key.md §3.4.
    KeyFile {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<KeyFileCase>,
    },
}

/// One 64-digit text.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DigitsCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// The text, exactly (a YAML string; it may hold any Unicode character).
    pub text: String,
    /// Valid: the key, 64 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Invalid: the error class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Invalid because of a character: its 1-based position, counting characters (not bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Invalid because of the count: how many hex digits the text has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<usize>,
}

/// What kind of key a key file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyFileForm {
    /// `encrypted_backup.key`: 59 bytes holding K.
    EncryptedBackupKey,
    /// The crypt12/14 `key` file: 158 bytes.
    Legacy,
    /// A text key file holding the 64-digit form.
    Text,
}

/// One key file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyFileCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// The file's bytes.
    pub file: Data,
    /// Valid: the form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<KeyFileForm>,
    /// Valid `encrypted_backup_key` or `text`: K.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Valid `legacy`: the AES key (body bytes 99..131), used directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aes_key: Option<String>,
    /// Valid `legacy`: the server salt (body bytes 3..35).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_salt: Option<String>,
    /// Valid `legacy`: the Google id salt (body bytes 35..51).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google_id_salt: Option<String>,
    /// Invalid: the error class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `keys.yaml` file.
pub type KeysFile = VectorFile<KeysGroup>;

fn digits(id: &str, comment: &str, flags: &[&str], text: &str, key: &str) -> DigitsCase {
    DigitsCase {
        id: format!("keys.digits.{id}"),
        comment: comment.into(),
        result: Outcome::Valid,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        text: text.into(),
        key: Some(key.into()),
        error: None,
        position: None,
        digits: None,
    }
}

fn bad_digits(
    id: &str,
    comment: &str,
    flags: &[&str],
    text: &str,
    position: Option<usize>,
    count: Option<usize>,
) -> DigitsCase {
    DigitsCase {
        id: format!("keys.digits.{id}"),
        comment: comment.into(),
        result: Outcome::Invalid,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        text: text.into(),
        key: None,
        error: Some("malformed".into()),
        position,
        digits: count,
    }
}

fn grouped(hex: &str, separator: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(separator)
}

fn key_file(id: &str, comment: &str, flags: &[&str], file: &[u8]) -> KeyFileCase {
    KeyFileCase {
        id: format!("keys.file.{id}"),
        comment: comment.into(),
        result: Outcome::Invalid,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        file: Data::hex(file),
        form: None,
        key: None,
        aes_key: None,
        server_salt: None,
        google_id_salt: None,
        error: Some("malformed".into()),
    }
}

fn valid_key_file(
    id: &str,
    comment: &str,
    file: &[u8],
    form: KeyFileForm,
    key: &str,
) -> KeyFileCase {
    KeyFileCase {
        result: Outcome::Valid,
        form: Some(form),
        key: Some(key.into()),
        error: None,
        ..key_file(id, comment, &[], file)
    }
}

/// The crypt12/14 `key` file of the real sample.
fn legacy_sample() -> anyhow::Result<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("external/wa-crypt-tools/key");
    std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Builds `keys.yaml`.
pub fn generate() -> anyhow::Result<KeysFile> {
    let k = SAMPLE_KEY;
    let upper = k.to_uppercase();
    let mixed: String = k
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let zero = "00".repeat(32);
    let ones = "ff".repeat(32);
    let digit_cases = vec![
        digits(
            "lowercase",
            "the canonical form: 64 lowercase digits",
            &[],
            k,
            k,
        ),
        digits("uppercase", "either case is accepted", &[], &upper, k),
        digits("mixed_case", "mixed case is accepted", &[], &mixed, k),
        digits(
            "grouped",
            "16 groups of 4 separated by single spaces, as WhatsApp shows it",
            &["Separators"],
            &grouped(k, " "),
            k,
        ),
        digits(
            "dashes",
            "groups separated by dashes",
            &["Separators"],
            &grouped(k, "-"),
            k,
        ),
        digits(
            "separators_anywhere",
            "spaces and dashes are ignored wherever they are, including at both ends",
            &["Separators"],
            &format!(" -{}- {} -", &k[..7], &k[7..]),
            k,
        ),
        digits(
            "all_zero",
            "every 32-byte value is a key",
            &[],
            &zero,
            &zero,
        ),
        digits("all_ff", "every 32-byte value is a key", &[], &ones, &ones),
        bad_digits(
            "letter_g",
            "a non-hex letter: rejected at its position",
            &["BadCharacter"],
            &format!("{}g{}", &k[..8], &k[9..]),
            Some(9),
            None,
        ),
        bad_digits(
            "62_digits",
            "two digits short",
            &["WrongCount"],
            &k[..62],
            None,
            Some(62),
        ),
        bad_digits(
            "65_digits",
            "one digit too many",
            &["WrongCount"],
            &format!("{k}0"),
            None,
            Some(65),
        ),
        bad_digits(
            "empty",
            "no digits at all",
            &["WrongCount"],
            "",
            None,
            Some(0),
        ),
        bad_digits(
            "only_separators",
            "separators but no digits",
            &["WrongCount", "Separators"],
            " - - ",
            None,
            Some(0),
        ),
        bad_digits(
            "tab",
            "a tab is not a separator",
            &["BadCharacter"],
            &format!("{}\t{}", &k[..4], &k[4..]),
            Some(5),
            None,
        ),
        bad_digits(
            "trailing_newline",
            "the form itself does not trim line feeds (key files do)",
            &["BadCharacter"],
            &format!("{k}\n"),
            Some(65),
            None,
        ),
        bad_digits(
            "colons",
            "colons are not separators",
            &["BadCharacter"],
            &grouped(k, ":"),
            Some(5),
            None,
        ),
        bad_digits(
            "hex_prefix",
            "no 0X prefix",
            &["BadCharacter"],
            &format!("0X{k}"),
            Some(2),
            None,
        ),
        bad_digits(
            "arabic_indic_digit",
            "a non-ASCII digit (U+0663) is not a hex digit",
            &["BadCharacter", "NonAscii"],
            &format!("{}٣{}", &k[..2], &k[3..]),
            Some(3),
            None,
        ),
        bad_digits(
            "fullwidth_letter",
            "a fullwidth A (U+FF21) is not a hex digit",
            &["BadCharacter", "NonAscii"],
            &format!("{}Ａ{}", &k[..10], &k[11..]),
            Some(11),
            None,
        ),
    ];

    let sample = hex::decode(k)?;
    let java = RootKey::from_bytes(
        sample
            .clone()
            .try_into()
            .map_err(|_| anyhow::anyhow!("32 bytes"))?,
    )
    .to_encrypted_backup_key();
    let legacy = legacy_sample()?;
    let mut legacy_case = valid_key_file(
        "legacy_sample",
        "the real crypt12/14 key file of the sample backups: no derivation, the AES key is used as is",
        &legacy,
        KeyFileForm::Legacy,
        "",
    );
    legacy_case.key = None;
    legacy_case.aes_key = Some(hex::encode(&legacy[126..158]));
    legacy_case.server_salt = Some(hex::encode(&legacy[30..62]));
    legacy_case.google_id_salt = Some(hex::encode(&legacy[62..78]));
    let mut uid = java.clone();
    uid[10] ^= 0x01;
    let mut length_33 = java[..23].to_vec();
    length_33.extend_from_slice(&33u32.to_be_bytes());
    length_33.extend_from_slice(&[0x11; 33]);
    let mut length_0 = java[..23].to_vec();
    length_0.extend_from_slice(&0u32.to_be_bytes());
    let mut legacy_trailing = legacy.clone();
    legacy_trailing.push(0);
    let file_cases = vec![
        valid_key_file("encrypted_backup_key", "the real 59-byte encrypted_backup.key of the sample", &java, KeyFileForm::EncryptedBackupKey, k),
        legacy_case,
        valid_key_file("text_grouped", "a text key file as `coffer key new --form hex` writes it: grouped form and a line feed", format!("{}\n", grouped(k, " ")).as_bytes(), KeyFileForm::Text, k),
        valid_key_file("text_crlf_spaces", "line feeds, carriage returns and spaces around the digits are removed", format!("  \r\n{k}\r\n\n ").as_bytes(), KeyFileForm::Text, k),
        key_file("java_truncated", "58 of the 59 bytes", &["Truncated"], &java[..58]),
        key_file("java_trailing", "a byte after the array", &["TrailingData"], &[&java[..], &[0][..]].concat()),
        key_file("java_uid", "another serialVersionUID: not a byte[]", &["JavaHeader"], &uid),
        key_file("java_length_33", "a complete byte[] of 33 bytes is no key file", &["JavaHeader"], &length_33),
        key_file("java_length_0", "an empty byte[]", &["JavaHeader"], &length_0),
        key_file("legacy_trailing", "the 158-byte key file and one more byte", &["TrailingData"], &legacy_trailing),
        key_file("text_63_digits", "a text file one digit short", &["WrongCount"], format!("{}\n", &k[..63]).as_bytes()),
        key_file("not_utf8", "neither a Java array nor UTF-8 text", &["NonAscii"], &[0xff, 0xfe, 0x00, 0x41]),
        key_file("empty", "an empty file (a text file with no digits)", &["WrongCount"], &[]),
    ];
    let groups = vec![
        KeysGroup::SixtyFourDigits {
            description: "Parse the text by spec/key.md §2.2. Valid: the 32 bytes of K. Invalid: \
                          `malformed`, with the character's 1-based position (counting Unicode \
                          characters, separators included) or the number of digits found."
                .into(),
            cases: digit_cases,
        },
        KeysGroup::KeyFile {
            description: "Read the bytes as a key file by spec/key.md §3.4. Valid: the form and \
                          the key material. Invalid: `malformed`."
                .into(),
            cases: file_cases,
        },
    ];
    let number_of_cases = groups
        .iter()
        .map(|g| match g {
            KeysGroup::SixtyFourDigits { cases, .. } => cases.len(),
            KeysGroup::KeyFile { cases, .. } => cases.len(),
        })
        .sum();
    Ok(VectorFile {
        schema: SCHEMA_VERSION.into(),
        topic: "keys".into(),
        description: "The root key K's 64-digit text form and the key files WhatsApp writes \
                      (encrypted_backup.key, the crypt12/14 key file) and text key files."
            .into(),
        how_to_apply: "For each case of a sixty_four_digits group, parse `text`; for each case of \
                       a key_file group, read `file` as a key file. A valid case must give exactly \
                       the outputs listed; an invalid case must be rejected with `error` (and, \
                       where given, report `position` or `digits`)."
            .into(),
        sources: vec![
            "spec/key.md §2 (64-digit form), §3 (key files)".into(),
            "vectors/external/wa-crypt-tools (the real sample key files; MIT, see its README)"
                .into(),
        ],
        notes: BTreeMap::from([
            (
                "BadCharacter".into(),
                "A character that is neither a hex digit, a space nor a dash.".into(),
            ),
            (
                "JavaHeader".into(),
                "A Java-serialized array that is not exactly a byte[] of 32 or 131 bytes.".into(),
            ),
            (
                "NonAscii".into(),
                "Non-ASCII input. Positions count Unicode characters.".into(),
            ),
            (
                "Separators".into(),
                "Spaces and dashes, which the 64-digit form ignores anywhere.".into(),
            ),
            (
                "TrailingData".into(),
                "Bytes after a complete key file.".into(),
            ),
            ("Truncated".into(), "A key file cut short.".into()),
            (
                "WrongCount".into(),
                "Only allowed characters, but not 64 hex digits of them.".into(),
            ),
        ]),
        number_of_cases,
        groups,
    })
}

fn class_of(e: &KeyError) -> String {
    e.class().to_string()
}

/// Runs every case of `file` against the reference implementation.
pub fn verify(file: &KeysFile) -> Failures {
    let mut failures = Failures::default();
    for group in &file.groups {
        match group {
            KeysGroup::SixtyFourDigits { cases, .. } => {
                for case in cases {
                    let parsed = RootKey::parse(&case.text);
                    let outcome = parsed
                        .as_ref()
                        .map(|k| hex::encode(k.as_bytes()))
                        .map_err(class_of);
                    if failures.expect_outcome(
                        &case.id,
                        case.result,
                        case.error.as_deref(),
                        &outcome,
                    ) {
                        failures.expect_eq(&case.id, "key", &case.key, &outcome.ok());
                        continue;
                    }
                    match parsed {
                        Err(KeyError::BadCharacter { position, .. }) => {
                            failures.expect_eq(
                                &case.id,
                                "position",
                                &case.position,
                                &Some(position),
                            );
                        }
                        Err(KeyError::WrongLength { digits }) => {
                            failures.expect_eq(&case.id, "digits", &case.digits, &Some(digits));
                        }
                        _ => {}
                    }
                    if case.result == Outcome::Invalid
                        && case.position.is_none()
                        && case.digits.is_none()
                    {
                        failures.add(
                            &case.id,
                            "an invalid text case names neither position nor digits",
                        );
                    }
                }
            }
            KeysGroup::KeyFile { cases, .. } => {
                for case in cases {
                    let bytes = match case.file.bytes() {
                        Ok(b) => b,
                        Err(e) => {
                            failures.add(&case.id, format!("file: {e}"));
                            continue;
                        }
                    };
                    let parsed = KeyFile::parse(&bytes);
                    let outcome = parsed.as_ref().map(|_| ()).map_err(class_of);
                    if !failures.expect_outcome(
                        &case.id,
                        case.result,
                        case.error.as_deref(),
                        &outcome,
                    ) {
                        continue;
                    }
                    let (form, key, aes, salt, gid) = match parsed {
                        Ok(KeyFile::EncryptedBackupKey(k)) => (
                            KeyFileForm::EncryptedBackupKey,
                            Some(hex::encode(k.as_bytes())),
                            None,
                            None,
                            None,
                        ),
                        Ok(KeyFile::Hex(k)) => (
                            KeyFileForm::Text,
                            Some(hex::encode(k.as_bytes())),
                            None,
                            None,
                            None,
                        ),
                        Ok(KeyFile::Legacy(l)) => (
                            KeyFileForm::Legacy,
                            None,
                            Some(hex::encode(l.aes_key)),
                            Some(hex::encode(l.server_salt)),
                            Some(hex::encode(l.google_id_salt)),
                        ),
                        Err(_) => continue,
                    };
                    failures.expect_eq(&case.id, "form", &case.form, &Some(form));
                    failures.expect_eq(&case.id, "key", &case.key, &key);
                    failures.expect_eq(&case.id, "aes_key", &case.aes_key, &aes);
                    failures.expect_eq(&case.id, "server_salt", &case.server_salt, &salt);
                    failures.expect_eq(&case.id, "google_id_salt", &case.google_id_salt, &gid);
                }
            }
        }
    }
    failures
}
