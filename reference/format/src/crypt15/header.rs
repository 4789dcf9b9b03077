//! Backup headers: telling crypt12, crypt14 and crypt15 apart from the bytes, parsing the
//! BackupPrefix protobuf, and encoding new headers (`spec/crypt15.md`).

use super::protobuf::{self, Field, WireValue};
use super::Crypt15Error;
use crate::read_full::read_full;
use serde::Serialize;
use std::io::Read;

/// Largest BackupPrefix a reader accepts. Real headers are under 300 bytes.
pub const MAX_PREFIX_LEN: usize = 16 * 1024;
/// Length of the fixed crypt12 header.
pub const CRYPT12_HEADER_LEN: usize = 67;
/// Length of the AES-GCM IV in every format.
pub const IV_LEN: usize = 16;

/// The backup generation, detected from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupFormat {
    /// Fixed 67-byte header, key from the `key` file.
    Crypt12,
    /// BackupPrefix with a C14 cipher block, key from the `key` file.
    Crypt14,
    /// BackupPrefix with a C15 IV block, key derived from the 64-digit root key.
    Crypt15,
}

impl BackupFormat {
    /// Bytes after the ciphertext when the MD5 trailer is present.
    pub fn trailer_len(self) -> usize {
        match self {
            BackupFormat::Crypt12 => 36,
            BackupFormat::Crypt14 | BackupFormat::Crypt15 => 32,
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupFormat::Crypt12 => "crypt12",
            BackupFormat::Crypt14 => "crypt14",
            BackupFormat::Crypt15 => "crypt15",
        }
    }
}

/// `key_type` values (BackupPrefix fields 1 and 6).
pub const KEY_TYPE_NAMES: [&str; 5] = [
    "wa_provided",
    "e2ee_deprecated",
    "e2ee_password",
    "e2ee_encryption_key",
    "e2ee_passkey",
];

/// The crypt14 cipher block (BackupPrefix field 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct C14Cipher {
    /// Field 1, `00 01`.
    #[serde(with = "hex_bytes")]
    pub cipher_version: Vec<u8>,
    /// Field 2, the key version as ASCII (`"2"`).
    #[serde(with = "hex_bytes")]
    pub key_version: Vec<u8>,
    /// Field 3, equal to the key file's server salt.
    #[serde(with = "hex_bytes")]
    pub server_salt: Vec<u8>,
    /// Field 4, equal to the key file's Google id salt.
    #[serde(with = "hex_bytes")]
    pub google_id_salt: Vec<u8>,
}

/// Kind of a known metadata field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaKind {
    Text,
    Integer,
    Flag,
    Blob,
}

/// Known fields of the metadata message (BackupPrefix field 4); 5..=37 are flags.
fn metadata_field(number: u32) -> Option<(&'static str, MetaKind)> {
    Some(match number {
        1 => ("app_version", MetaKind::Text),
        2 => ("device_model", MetaKind::Text),
        3 => ("jid_suffix", MetaKind::Text),
        4 => ("backup_version", MetaKind::Integer),
        5..=37 => ("feature_flag", MetaKind::Flag),
        38 => ("backup_export_file_size", MetaKind::Integer),
        39 => ("cleaned_db", MetaKind::Flag),
        40 => ("backup_encrypted_hash_salt", MetaKind::Blob),
        41 => ("backup_encrypted_hash", MetaKind::Blob),
        42 => ("identifier_type", MetaKind::Integer),
        43 => ("lid_suffix", MetaKind::Text),
        44 => ("display_suffix", MetaKind::Text),
        _ => return None,
    })
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum MetaValue {
    /// A string field.
    Text(String),
    /// An integer field (or an unknown varint).
    Integer(u64),
    /// A bool field.
    Flag(bool),
    /// A bytes field (or an unknown length-delimited field), hex in JSON.
    Blob(#[serde(with = "hex_bytes")] Vec<u8>),
}

/// One metadata field, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetaField {
    /// Field number.
    pub number: u32,
    /// Name from the known-field table, or `unknown`.
    pub name: &'static str,
    /// Value.
    pub value: MetaValue,
}

/// The BackupPrefix protobuf of crypt14/crypt15 files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupPrefix {
    /// Field 1 (`key_type`), if present.
    pub key_type: Option<u64>,
    /// Field 6 (`key_type_new`), if present.
    pub key_type_new: Option<u64>,
    /// Field 2, crypt14 only.
    pub c14_cipher: Option<C14Cipher>,
    /// Field 4, the plaintext metadata, in file order.
    pub metadata: Vec<MetaField>,
    /// Field 5 (passkey encryption metadata) is present.
    pub passkey_metadata: bool,
    /// Numbers of fields this implementation does not know (kept, not interpreted).
    pub unknown_fields: Vec<u32>,
    /// The stray `01` byte some tools write after a one-byte length (see spec).
    pub legacy_flag_byte: bool,
}

impl BackupPrefix {
    /// A metadata text field by name.
    pub fn metadata_text(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find_map(|f| match (&f.value, f.name == name) {
                (MetaValue::Text(text), true) => Some(text.as_str()),
                _ => None,
            })
    }
}

/// The crypt12 header fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crypt12Fields {
    /// Key version byte.
    pub key_version: u8,
    /// Server salt (equal to the key file's).
    #[serde(with = "hex_bytes")]
    pub server_salt: Vec<u8>,
    /// Google id salt (equal to the key file's).
    #[serde(with = "hex_bytes")]
    pub google_id_salt: Vec<u8>,
}

/// A parsed header: everything before the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupHeader {
    /// Detected generation.
    pub format: BackupFormat,
    /// The AES-GCM IV.
    #[serde(with = "hex_bytes")]
    pub iv: Vec<u8>,
    /// crypt14/15 prefix.
    pub prefix: Option<BackupPrefix>,
    /// crypt12 fields.
    pub crypt12: Option<Crypt12Fields>,
    /// The exact header bytes as found (length prefix included): where the ciphertext starts.
    #[serde(skip)]
    pub raw: Vec<u8>,
    /// Offset of the IV inside `raw`.
    #[serde(skip)]
    pub iv_offset: usize,
}

impl BackupHeader {
    /// Offset of the first ciphertext byte.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Headers are never empty; provided for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Starts of plaintext files that are sometimes mistaken for backups; none can begin a header.
const PLAINTEXT_MAGICS: [(&[u8], &str); 6] = [
    (b"SQLite format 3\0", "a plaintext SQLite database"),
    (b"PK\x03\x04", "a plaintext ZIP archive"),
    (b"\x78\x01", "a plaintext zlib stream"),
    (b"\x78\x5e", "a plaintext zlib stream"),
    (b"\x78\x9c", "a plaintext zlib stream"),
    (b"\x78\xda", "a plaintext zlib stream"),
];

/// Reads exactly `n` more bytes onto `raw`, or reports truncation.
fn read_more<R: Read>(
    input: &mut R,
    raw: &mut Vec<u8>,
    n: usize,
    what: &str,
) -> Result<(), Crypt15Error> {
    let start = raw.len();
    raw.resize(start + n, 0);
    let got =
        read_full(input, &mut raw[start..]).map_err(Crypt15Error::io("reading the header"))?;
    if got < n {
        raw.truncate(start + got);
        return Err(Crypt15Error::Truncated(format!(
            "the file ends inside the {what}: {} of {} header bytes present",
            raw.len(),
            start + n
        )));
    }
    Ok(())
}

/// Reads and parses the header from the start of `input`, leaving `input` at the first
/// ciphertext byte. Reads at most `MAX_PREFIX_LEN` + 6 bytes.
pub fn read_header<R: Read>(input: &mut R) -> Result<BackupHeader, Crypt15Error> {
    let mut raw = vec![0u8; 16];
    let got = read_full(input, &mut raw).map_err(Crypt15Error::io("reading the header"))?;
    raw.truncate(got);
    if raw.is_empty() {
        return Err(Crypt15Error::Truncated("the file is empty".into()));
    }
    if let Some((_, what)) = PLAINTEXT_MAGICS
        .iter()
        .find(|(magic, _)| raw.starts_with(magic))
    {
        return Err(Crypt15Error::Malformed(format!(
            "this is {what}, not an encrypted backup"
        )));
    }
    if raw[0] == 0 {
        return read_crypt12(input, raw);
    }
    // A varint length of at most 3 bytes (MAX_PREFIX_LEN < 2^21).
    let mut pos = 0usize;
    let mut declared = 0usize;
    loop {
        let Some(&byte) = raw.get(pos) else {
            return Err(Crypt15Error::Truncated(
                "the file ends inside the header length".into(),
            ));
        };
        declared |= usize::from(byte & 0x7f) << (7 * pos);
        pos += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if pos == 3 {
            return Err(Crypt15Error::Malformed(format!(
                "header length varint is longer than 3 bytes (limit {MAX_PREFIX_LEN} bytes)"
            )));
        }
    }
    if declared > MAX_PREFIX_LEN {
        return Err(Crypt15Error::Malformed(format!(
            "header length {declared} exceeds the limit of {MAX_PREFIX_LEN} bytes"
        )));
    }
    // Tolerate the stray 0x01 that some tools write after a one-byte length:
    // 0x01 would be field 0, which can never start a valid message.
    let legacy_flag_byte = pos == 1 && raw.get(1) == Some(&0x01);
    let body_start = pos + usize::from(legacy_flag_byte);
    let needed = body_start + declared;
    if raw.len() > needed {
        return Err(Crypt15Error::Malformed(format!(
            "header length {declared} is too short to hold a backup header"
        )));
    }
    let have = raw.len();
    read_more(input, &mut raw, needed - have, "header")?;
    let mut prefix = parse_prefix(&raw[body_start..needed])?;
    prefix.legacy_flag_byte = legacy_flag_byte;
    let (format, iv, iv_in_body) = prefix_format_and_iv(&raw[body_start..needed])?;
    Ok(BackupHeader {
        format,
        iv,
        prefix: Some(prefix),
        crypt12: None,
        raw,
        iv_offset: body_start + iv_in_body,
    })
}

fn read_crypt12<R: Read>(input: &mut R, mut raw: Vec<u8>) -> Result<BackupHeader, Crypt15Error> {
    if raw.len() >= 2 && raw[..2] != [0x00, 0x01] {
        return Err(Crypt15Error::Malformed(format!(
            "starts with {:02x} {:02x}: neither a crypt12 cipher header (00 01) nor a header length",
            raw[0], raw[1]
        )));
    }
    let have = raw.len();
    read_more(input, &mut raw, CRYPT12_HEADER_LEN - have, "crypt12 header")?;
    if raw[..2] != [0x00, 0x01] {
        return Err(Crypt15Error::Malformed(
            "crypt12 cipher header is not 00 01".into(),
        ));
    }
    Ok(BackupHeader {
        format: BackupFormat::Crypt12,
        iv: raw[51..67].to_vec(),
        prefix: None,
        crypt12: Some(Crypt12Fields {
            key_version: raw[2],
            server_salt: raw[3..35].to_vec(),
            google_id_salt: raw[35..51].to_vec(),
        }),
        raw,
        iv_offset: 51,
    })
}

fn malformed(what: impl std::fmt::Display) -> Crypt15Error {
    Crypt15Error::Malformed(format!("header: {what}"))
}

fn bytes_of<'a>(field: &Field<'a>, name: &str) -> Result<&'a [u8], Crypt15Error> {
    match field.value {
        WireValue::Bytes(bytes) => Ok(bytes),
        _ => Err(malformed(format!(
            "{name} (field {}) is not length-delimited",
            field.number
        ))),
    }
}

fn varint_of(field: &Field<'_>, name: &str) -> Result<u64, Crypt15Error> {
    match field.value {
        WireValue::Varint(value) => Ok(value),
        _ => Err(malformed(format!(
            "{name} (field {}) is not a varint",
            field.number
        ))),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), Crypt15Error> {
    if slot.replace(value).is_some() {
        return Err(malformed(format!("{name} appears twice")));
    }
    Ok(())
}

fn check_key_type(value: u64, name: &str) -> Result<u64, Crypt15Error> {
    if value as usize >= KEY_TYPE_NAMES.len() {
        return Err(Crypt15Error::Unsupported(format!("unknown {name} {value}")));
    }
    Ok(value)
}

/// Parses a BackupPrefix message (without its length).
pub fn parse_prefix(body: &[u8]) -> Result<BackupPrefix, Crypt15Error> {
    let mut prefix = BackupPrefix {
        key_type: None,
        key_type_new: None,
        c14_cipher: None,
        metadata: Vec::new(),
        passkey_metadata: false,
        unknown_fields: Vec::new(),
        legacy_flag_byte: false,
    };
    let mut seen_metadata = false;
    for field in protobuf::fields(body) {
        let field = field.map_err(malformed)?;
        match field.number {
            1 => set_once(
                &mut prefix.key_type,
                check_key_type(varint_of(&field, "key_type")?, "key_type")?,
                "key_type",
            )?,
            6 => set_once(
                &mut prefix.key_type_new,
                check_key_type(varint_of(&field, "key_type_new")?, "key_type_new")?,
                "key_type_new",
            )?,
            2 => set_once(
                &mut prefix.c14_cipher,
                parse_c14(bytes_of(&field, "c14 cipher")?)?,
                "c14 cipher",
            )?,
            3 => {
                bytes_of(&field, "c15 iv")?;
            }
            4 => {
                if std::mem::replace(&mut seen_metadata, true) {
                    return Err(malformed("metadata appears twice"));
                }
                prefix.metadata = parse_metadata(bytes_of(&field, "metadata")?)?;
            }
            5 => {
                bytes_of(&field, "passkey metadata")?;
                prefix.passkey_metadata = true;
            }
            other => prefix.unknown_fields.push(other),
        }
    }
    Ok(prefix)
}

/// The IV (field `number`) inside a cipher block.
fn block_iv<'a>(block: &Field<'a>, number: u32, name: &str) -> Result<&'a [u8], Crypt15Error> {
    let mut iv = None;
    for inner in protobuf::fields(bytes_of(block, name)?) {
        let inner = inner.map_err(malformed)?;
        if inner.number == number {
            set_once(&mut iv, bytes_of(&inner, name)?, name)?;
        }
    }
    iv.ok_or_else(|| malformed(format!("{name} has no IV")))
}

/// Offset of `part` inside `whole`; `part` must be a subslice of it.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// Finds the IV (and its offset in `body`) and decides crypt14 vs crypt15 (exactly one of
/// fields 2 and 3).
fn prefix_format_and_iv(body: &[u8]) -> Result<(BackupFormat, Vec<u8>, usize), Crypt15Error> {
    let mut found: Option<(BackupFormat, &[u8])> = None;
    for field in protobuf::fields(body) {
        let field = field.map_err(malformed)?;
        let candidate = match field.number {
            2 => (
                BackupFormat::Crypt14,
                block_iv(&field, 5, "crypt14 cipher block")?,
            ),
            3 => (
                BackupFormat::Crypt15,
                block_iv(&field, 1, "crypt15 IV block")?,
            ),
            _ => continue,
        };
        if found.replace(candidate).is_some() {
            return Err(malformed(
                "more than one cipher block (fields 2 and 3 are exclusive)",
            ));
        }
    }
    let (format, iv) = found.ok_or_else(|| malformed("no cipher block (field 2 or 3): no IV"))?;
    if iv.len() != IV_LEN {
        return Err(malformed(format!(
            "IV is {} bytes, expected {IV_LEN}",
            iv.len()
        )));
    }
    Ok((format, iv.to_vec(), offset_in(body, iv)))
}

fn parse_c14(body: &[u8]) -> Result<C14Cipher, Crypt15Error> {
    let mut slots: [Option<Vec<u8>>; 4] = Default::default();
    for field in protobuf::fields(body) {
        let field = field.map_err(malformed)?;
        if let Some(slot) = (1..=4)
            .contains(&field.number)
            .then(|| &mut slots[field.number as usize - 1])
        {
            set_once(slot, bytes_of(&field, "c14 field")?.to_vec(), "c14 field")?;
        }
    }
    let [cipher_version, key_version, server_salt, google_id_salt] =
        slots.map(Option::unwrap_or_default);
    if server_salt.len() != 32 || google_id_salt.len() != 16 {
        return Err(malformed(
            "crypt14 server salt must be 32 bytes and Google id salt 16 bytes",
        ));
    }
    Ok(C14Cipher {
        cipher_version,
        key_version,
        server_salt,
        google_id_salt,
    })
}

fn parse_metadata(body: &[u8]) -> Result<Vec<MetaField>, Crypt15Error> {
    let mut out: Vec<MetaField> = Vec::new();
    for field in protobuf::fields(body) {
        let field = field.map_err(malformed)?;
        if out.iter().any(|f| f.number == field.number) {
            return Err(malformed(format!(
                "metadata field {} appears twice",
                field.number
            )));
        }
        let (name, value) = match (metadata_field(field.number), field.value) {
            (Some((name, MetaKind::Text)), WireValue::Bytes(bytes)) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| malformed(format!("metadata {name} is not UTF-8")))?;
                (name, MetaValue::Text(text.to_owned()))
            }
            (Some((name, MetaKind::Integer)), WireValue::Varint(v)) => {
                (name, MetaValue::Integer(v))
            }
            (Some((name, MetaKind::Flag)), WireValue::Varint(v)) => (name, MetaValue::Flag(v != 0)),
            (Some((name, MetaKind::Blob)), WireValue::Bytes(bytes)) => {
                (name, MetaValue::Blob(bytes.to_vec()))
            }
            (Some((name, _)), _) => {
                return Err(malformed(format!(
                    "metadata {name} (field {}) has the wrong wire type",
                    field.number
                )))
            }
            (None, WireValue::Varint(v)) => ("unknown", MetaValue::Integer(v)),
            (None, WireValue::Bytes(bytes)) => ("unknown", MetaValue::Blob(bytes.to_vec())),
            (None, WireValue::Fixed64(v)) => ("unknown", MetaValue::Integer(v)),
            (None, WireValue::Fixed32(v)) => ("unknown", MetaValue::Integer(u64::from(v))),
        };
        out.push(MetaField {
            number: field.number,
            name,
            value,
        });
    }
    Ok(out)
}

/// What a new crypt15 header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSpec {
    /// `key_type` (field 1); 1 in WhatsApp's 64-digit-key backups.
    pub key_type: u64,
    /// The 16-byte IV.
    pub iv: [u8; IV_LEN],
    /// Metadata fields, written in this order. Known fields must have their kind.
    pub metadata: Vec<MetaField>,
}

/// The feature flags of the WhatsApp 2.22.5.13 backup in `vectors/external/` (fields 5..=37,
/// each with its value): Coffer's default when no reference file is given.
pub const DEFAULT_FLAGS: [(u32, bool); 33] = [
    (5, true),
    (6, false),
    (7, true),
    (8, true),
    (9, false),
    (10, false),
    (11, false),
    (12, false),
    (13, true),
    (14, true),
    (15, false),
    (16, false),
    (17, false),
    (18, false),
    (19, true),
    (20, false),
    (21, false),
    (22, true),
    (23, false),
    (24, false),
    (25, true),
    (26, false),
    (27, false),
    (28, true),
    (29, false),
    (30, true),
    (31, true),
    (32, true),
    (33, false),
    (34, false),
    (35, false),
    (36, true),
    (37, true),
];

impl HeaderSpec {
    /// A header with the given metadata values and [`DEFAULT_FLAGS`].
    pub fn new(iv: [u8; IV_LEN], app_version: &str, jid_suffix: &str, backup_version: u64) -> Self {
        let mut metadata = vec![
            MetaField {
                number: 1,
                name: "app_version",
                value: MetaValue::Text(app_version.into()),
            },
            MetaField {
                number: 3,
                name: "jid_suffix",
                value: MetaValue::Text(jid_suffix.into()),
            },
            MetaField {
                number: 4,
                name: "backup_version",
                value: MetaValue::Integer(backup_version),
            },
        ];
        metadata.extend(DEFAULT_FLAGS.iter().map(|&(number, on)| MetaField {
            number,
            name: metadata_field(number).map_or("unknown", |(name, _)| name),
            value: MetaValue::Flag(on),
        }));
        HeaderSpec {
            key_type: 1,
            iv,
            metadata,
        }
    }

    /// The header bytes: varint length, then the BackupPrefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut iv_block = Vec::with_capacity(18);
        protobuf::put_bytes_field(&mut iv_block, 1, &self.iv);
        let mut meta = Vec::new();
        for field in &self.metadata {
            match &field.value {
                MetaValue::Text(text) => {
                    protobuf::put_bytes_field(&mut meta, field.number, text.as_bytes())
                }
                MetaValue::Blob(bytes) => protobuf::put_bytes_field(&mut meta, field.number, bytes),
                MetaValue::Integer(v) => protobuf::put_varint_field(&mut meta, field.number, *v),
                MetaValue::Flag(on) => {
                    protobuf::put_varint_field(&mut meta, field.number, u64::from(*on))
                }
            }
        }
        let mut body = Vec::with_capacity(meta.len() + 32);
        protobuf::put_varint_field(&mut body, 1, self.key_type);
        protobuf::put_bytes_field(&mut body, 3, &iv_block);
        protobuf::put_bytes_field(&mut body, 4, &meta);
        let mut out = Vec::with_capacity(body.len() + 3);
        protobuf::put_varint(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
        out
    }
}

/// Replaces the IV inside the exact header bytes of a crypt15 file, keeping every other byte.
pub fn with_new_iv(header: &BackupHeader, iv: &[u8; IV_LEN]) -> Result<Vec<u8>, Crypt15Error> {
    if header.format != BackupFormat::Crypt15 {
        return Err(Crypt15Error::Unsupported(format!(
            "a {} header cannot be reused for crypt15 output",
            header.format.as_str()
        )));
    }
    let position = header.iv_offset;
    if header.raw.get(position..position + IV_LEN) != Some(header.iv.as_slice()) {
        return Err(malformed("IV offset does not match the header bytes"));
    }
    let mut raw = header.raw.clone();
    raw[position..position + IV_LEN].copy_from_slice(iv);
    Ok(raw)
}

mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HeaderSpec {
        HeaderSpec::new([0x11; IV_LEN], "2.24.9.80", "11", 1)
    }

    /// A header followed by some ciphertext-like bytes, as a file would be.
    fn file(header: &[u8]) -> Vec<u8> {
        [header, &[0xaa; 64][..]].concat()
    }

    fn read(bytes: &[u8]) -> Result<BackupHeader, Crypt15Error> {
        read_header(&mut &bytes[..])
    }

    #[test]
    fn a_written_header_reads_back_exactly() {
        let header = spec().encode();
        assert!(header[0] >= 0x80, "WhatsApp's flags make a two-byte length");
        let read = read(&file(&header)).unwrap();
        assert_eq!(read.format, BackupFormat::Crypt15);
        assert_eq!(
            read.raw, header,
            "the reader stops where the ciphertext starts"
        );
        assert_eq!(read.iv, [0x11; IV_LEN]);
        assert_eq!(
            &read.raw[read.iv_offset..read.iv_offset + IV_LEN],
            &[0x11; IV_LEN]
        );
        let prefix = read.prefix.unwrap();
        assert_eq!(prefix.metadata_text("app_version"), Some("2.24.9.80"));
        assert!(prefix.unknown_fields.is_empty() && !prefix.legacy_flag_byte);
    }

    #[test]
    fn a_new_iv_changes_only_the_iv() {
        let old = read(&file(&spec().encode())).unwrap();
        let new = with_new_iv(&old, &[0x22; IV_LEN]).unwrap();
        assert_eq!(new.len(), old.raw.len());
        let reread = read(&file(&new)).unwrap();
        assert_eq!(reread.iv, [0x22; IV_LEN]);
        let mut expected = old.raw.clone();
        expected[old.iv_offset..old.iv_offset + IV_LEN].copy_from_slice(&[0x22; IV_LEN]);
        assert_eq!(new, expected);
    }

    #[test]
    fn the_stray_01_after_a_one_byte_length_is_tolerated() {
        let mut small = spec();
        small.metadata.truncate(3); // without the flags: a one-byte length
        let header = small.encode();
        assert!(header[0] < 0x80);
        let with_stray = [&header[..1], &[0x01], &header[1..]].concat();
        let read = read(&file(&with_stray)).unwrap();
        assert!(read.prefix.unwrap().legacy_flag_byte);
        assert_eq!(read.raw, with_stray);
    }

    #[test]
    fn bad_starts_each_get_their_error() {
        assert!(matches!(read(b""), Err(Crypt15Error::Truncated(_))));
        let sqlite = read(b"SQLite format 3\0 the database itself");
        assert!(
            matches!(&sqlite, Err(Crypt15Error::Malformed(m)) if m.contains("plaintext SQLite"))
        );
        // A length varint over 3 bytes, and a length over the limit.
        assert!(matches!(
            read(&[0xff, 0xff, 0xff, 0x01, 0, 0]),
            Err(Crypt15Error::Malformed(_))
        ));
        let too_long = MAX_PREFIX_LEN + 1;
        let varint = [
            (too_long as u8 & 0x7f) | 0x80,
            (too_long >> 7) as u8 & 0x7f | 0x80,
            (too_long >> 14) as u8,
        ];
        assert!(matches!(
            read(&file(&varint)),
            Err(Crypt15Error::Malformed(_))
        ));
        // The file ends inside the length, and inside the header.
        assert!(matches!(read(&[0x80]), Err(Crypt15Error::Truncated(_))));
        let header = spec().encode();
        assert!(matches!(
            read(&header[..header.len() - 1]),
            Err(Crypt15Error::Truncated(_))
        ));
        // A length too short for the bytes a header needs.
        assert!(matches!(
            read(&file(&[0x02, 0x08, 0x01])),
            Err(Crypt15Error::Malformed(_))
        ));
    }
}
