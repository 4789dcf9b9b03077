//! The Coffer file header and footer (`spec/format.md` §3 and §6).
//!
//! ```text
//! header  = magic(8) version(1) suite(1) compression(1) flags(1) header_len(u32 BE)
//!           key_id(16) metadata(TLV...) header_check(8)
//! body    = salt(24) commitment(32) chunks...          (c2sp.org/chunked-encryption)
//! footer  = footer_magic(8) file_len(u64 BE)
//! ```

use super::cobblestone::SALT_LEN;
use super::FormatError;
use crate::key::RootKey;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// First bytes of every Coffer file (PNG-style: a high byte, the name, a newline).
pub const MAGIC: [u8; 8] = *b"\x89COFFER\n";
/// The only format version defined.
pub const VERSION: u8 = 1;
/// Cipher suite 1: Cobblestone-256 (AES-256-GCM, HKDF-SHA-512, 16 KiB chunks).
pub const SUITE_COBBLESTONE_256: u8 = 1;
/// Length of the fixed part before the key id.
pub const FIXED_LEN: usize = 16;
/// Length of the key id.
pub const KEY_ID_LEN: usize = 16;
/// Length of the unkeyed header check.
pub const CHECK_LEN: usize = 8;
/// Smallest header: fixed part, key id, check, no metadata.
pub const MIN_HEADER_LEN: usize = FIXED_LEN + KEY_ID_LEN + CHECK_LEN;
/// Largest header a reader accepts.
pub const MAX_HEADER_LEN: usize = 65536;
/// Footer: magic and the total file length.
pub const FOOTER_MAGIC: [u8; 8] = *b"\x89COFFEND";
/// Footer length.
pub const FOOTER_LEN: usize = 16;

/// HKDF-SHA256 label of the C2SP input key, derived from the root key K.
pub const INFO_FILE_KEY: &[u8] = b"coffer/v1 file key";
/// HKDF-SHA256 label of the key-id MAC key, derived from K.
pub const INFO_KEY_ID: &[u8] = b"coffer/v1 key id";
const CHECK_LABEL: &[u8] = b"coffer/v1 header check";

/// How the plaintext was compressed before encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Stored as is; random access works.
    None,
    /// One Zstandard frame (`01`): read from start to end on one core.
    Zstd,
    /// Independent Zstandard frames and a seek table (`02`, spec/format.md §8.2): random
    /// access and parallel decryption work.
    ZstdSeekable,
}

impl Compression {
    fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::ZstdSeekable => 2,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            2 => Some(Compression::ZstdSeekable),
            _ => None,
        }
    }
}

/// What the plaintext is, so a reader knows what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// Opaque bytes (a database, any single file).
    File,
    /// A POSIX tar stream of a directory.
    Tar,
}

/// Metadata tags (`spec/format.md` §4). Tags with the high bit set are critical: a reader
/// that does not know one must refuse the file.
pub mod tag {
    /// u64: seconds since the Unix epoch when the backup was made.
    pub const CREATED: u8 = 0x01;
    /// u64: 0 = file, 1 = tar stream. Critical: it changes what the plaintext means.
    pub const CONTENT: u8 = 0x81;
    /// text: the writing software, e.g. "coffer 0.1.0".
    pub const GENERATOR: u8 = 0x02;
}

/// The typed value of a metadata entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaValue {
    /// Type 1: eight bytes, big-endian.
    U64(u64),
    /// Type 2: UTF-8 text.
    Text(String),
    /// Type 3: raw bytes.
    Bytes(#[serde(serialize_with = "hex_bytes")] Vec<u8>),
}

fn hex_bytes<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

/// The parsed header of a Coffer file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Compression applied before encryption.
    pub compression: Compression,
    /// Per-file key identifier: HMAC of the salt under a key derived from K.
    pub key_id: [u8; KEY_ID_LEN],
    /// Metadata entries in ascending tag order.
    pub metadata: Vec<(u8, MetaValue)>,
}

impl Header {
    /// A header for a new file.
    pub fn new(compression: Compression, metadata: Vec<(u8, MetaValue)>) -> Self {
        let mut metadata = metadata;
        metadata.sort_by_key(|(t, _)| *t);
        Header {
            compression,
            key_id: [0; KEY_ID_LEN],
            metadata,
        }
    }

    /// What the plaintext is (tag 0x81, default file).
    pub fn content(&self) -> Content {
        match self.meta(tag::CONTENT) {
            Some(MetaValue::U64(1)) => Content::Tar,
            _ => Content::File,
        }
    }

    /// The value of a metadata tag.
    pub fn meta(&self, wanted: u8) -> Option<&MetaValue> {
        self.metadata
            .iter()
            .find(|(t, _)| *t == wanted)
            .map(|(_, v)| v)
    }

    /// Encodes the header up to (not including) the check: the C2SP context.
    pub fn encode_context(&self) -> Result<Vec<u8>, FormatError> {
        let mut meta = Vec::new();
        let mut last: Option<u8> = None;
        for (t, value) in &self.metadata {
            if last.is_some_and(|l| l >= *t) {
                return Err(FormatError::Malformed(format!(
                    "metadata tag {t:#04x} repeated or out of order"
                )));
            }
            last = Some(*t);
            let (kind, bytes) = match value {
                MetaValue::U64(v) => (1u8, v.to_be_bytes().to_vec()),
                MetaValue::Text(s) => (2, s.as_bytes().to_vec()),
                MetaValue::Bytes(b) => (3, b.clone()),
            };
            let len = u16::try_from(bytes.len()).map_err(|_| {
                FormatError::Malformed(format!("metadata tag {t:#04x} longer than 65535 bytes"))
            })?;
            meta.extend_from_slice(&[*t, kind]);
            meta.extend_from_slice(&len.to_be_bytes());
            meta.extend_from_slice(&bytes);
        }
        let total = MIN_HEADER_LEN + meta.len();
        if total > MAX_HEADER_LEN {
            return Err(FormatError::Malformed(format!(
                "header of {total} bytes exceeds {MAX_HEADER_LEN}"
            )));
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, SUITE_COBBLESTONE_256, self.compression.id(), 0]);
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&meta);
        Ok(out)
    }
}

/// The key id of a file: `HMAC-SHA-256(HKDF(K, "coffer/v1 key id"), salt)[..16]`. It lets
/// the holder of K recognise its files (and tell a wrong key from damage) while files
/// stay unlinkable to anyone else, because the salt differs per file.
pub fn key_id(root: &RootKey, salt: &[u8; SALT_LEN]) -> [u8; KEY_ID_LEN] {
    let mac_key = root.derive(INFO_KEY_ID);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&mac_key[..]).expect("HMAC takes any key");
    mac.update(salt);
    let full = mac.finalize().into_bytes();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&full[..KEY_ID_LEN]);
    id
}

/// Constant-time key id comparison.
pub fn key_id_matches(root: &RootKey, salt: &[u8; SALT_LEN], stored: &[u8; KEY_ID_LEN]) -> bool {
    bool::from(key_id(root, salt).ct_eq(stored))
}

/// The unkeyed header check: `SHA-256(label || context || salt || commitment)[..8]`. It only
/// tells accidental damage to the header from a wrong key; security rests on the commitment
/// and the chunk tags, which bind the same bytes under the key.
pub fn header_check(context: &[u8], salt: &[u8], commitment: &[u8]) -> [u8; CHECK_LEN] {
    let mut h = Sha256::new();
    h.update(CHECK_LABEL);
    h.update(context);
    h.update(salt);
    h.update(commitment);
    let full = h.finalize();
    let mut check = [0u8; CHECK_LEN];
    check.copy_from_slice(&full[..CHECK_LEN]);
    check
}

/// First step of reading: magic, version and the declared header length. Everything else
/// in the fixed part is checked by [`validate_fixed`] once the header check has passed, so
/// that damage reads as damage rather than as an unknown feature.
pub fn parse_fixed(fixed: &[u8; FIXED_LEN]) -> Result<usize, FormatError> {
    if fixed[..8] != MAGIC {
        return Err(FormatError::NotCoffer);
    }
    if fixed[8] != VERSION {
        return Err(FormatError::Unsupported(format!(
            "format version {} (this reader knows 1)",
            fixed[8]
        )));
    }
    let len = u32::from_be_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]) as usize;
    if !(MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&len) {
        return Err(FormatError::Malformed(format!(
            "declared header length {len} outside {MIN_HEADER_LEN}..={MAX_HEADER_LEN}"
        )));
    }
    Ok(len)
}

/// Second step: suite, compression and flags of a header whose check has passed.
pub fn validate_fixed(fixed: &[u8]) -> Result<Compression, FormatError> {
    if fixed[9] != SUITE_COBBLESTONE_256 {
        return Err(FormatError::Unsupported(format!(
            "cipher suite {} (this reader knows 1)",
            fixed[9]
        )));
    }
    let compression = Compression::from_id(fixed[10])
        .ok_or_else(|| FormatError::Unsupported(format!("compression id {}", fixed[10])))?;
    if fixed[11] != 0 {
        return Err(FormatError::Unsupported(format!(
            "header flags {:#04x} (none are defined)",
            fixed[11]
        )));
    }
    Ok(compression)
}

/// Parses the key id and metadata of a complete header context (fixed part included).
pub fn parse_context(context: &[u8], compression: Compression) -> Result<Header, FormatError> {
    if context.len() < FIXED_LEN + KEY_ID_LEN {
        return Err(FormatError::Malformed(format!(
            "header context of {} bytes, shorter than its fixed part and key id",
            context.len()
        )));
    }
    let mut key_id = [0u8; KEY_ID_LEN];
    key_id.copy_from_slice(&context[FIXED_LEN..FIXED_LEN + KEY_ID_LEN]);
    let mut rest = &context[FIXED_LEN + KEY_ID_LEN..];
    let mut metadata: Vec<(u8, MetaValue)> = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(FormatError::Malformed("metadata entry cut short".into()));
        }
        let (t, kind) = (rest[0], rest[1]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len).ok_or_else(|| {
            FormatError::Malformed(format!("metadata tag {t:#04x} runs past the header"))
        })?;
        rest = &rest[4 + len..];
        if metadata.last().is_some_and(|(l, _)| *l >= t) {
            return Err(FormatError::Malformed(format!(
                "metadata tag {t:#04x} repeated or out of order"
            )));
        }
        let value = match kind {
            1 => MetaValue::U64(u64::from_be_bytes(value.try_into().map_err(|_| {
                FormatError::Malformed(format!("metadata tag {t:#04x}: u64 of {len} bytes"))
            })?)),
            2 => MetaValue::Text(String::from_utf8(value.to_vec()).map_err(|_| {
                FormatError::Malformed(format!("metadata tag {t:#04x}: text is not UTF-8"))
            })?),
            3 => MetaValue::Bytes(value.to_vec()),
            other => {
                return Err(FormatError::Malformed(format!(
                    "metadata tag {t:#04x}: unknown type {other}"
                )))
            }
        };
        let known = matches!(t, tag::CREATED | tag::CONTENT | tag::GENERATOR);
        if !known && t & 0x80 != 0 {
            return Err(FormatError::Unsupported(format!(
                "critical metadata tag {t:#04x}"
            )));
        }
        let typed_ok = match t {
            tag::CREATED => matches!(value, MetaValue::U64(_)),
            tag::CONTENT => matches!(value, MetaValue::U64(0 | 1)),
            tag::GENERATOR => matches!(value, MetaValue::Text(_)),
            _ => true,
        };
        if !typed_ok {
            return Err(if t == tag::CONTENT && matches!(value, MetaValue::U64(_)) {
                FormatError::Unsupported(format!("content kind {value:?}"))
            } else {
                FormatError::Malformed(format!("metadata tag {t:#04x} has the wrong type"))
            });
        }
        metadata.push((t, value));
    }
    Ok(Header {
        compression,
        key_id,
        metadata,
    })
}

/// Encodes the footer for a file of `file_len` bytes (footer included).
pub fn encode_footer(file_len: u64) -> [u8; FOOTER_LEN] {
    let mut out = [0u8; FOOTER_LEN];
    out[..8].copy_from_slice(&FOOTER_MAGIC);
    out[8..].copy_from_slice(&file_len.to_be_bytes());
    out
}

/// What the last bytes of a file say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FooterState {
    /// A footer whose length matches the file: the file is complete as written.
    Complete,
    /// A footer, but for another length: the file was spliced or the footer damaged.
    LengthMismatch {
        /// The file length the footer states.
        declared: u64,
    },
    /// No footer: the file was cut short (or bytes were appended after it).
    Missing,
}

/// Checks the last [`FOOTER_LEN`] bytes of a file of `file_len` bytes.
pub fn check_footer(tail: &[u8], file_len: u64) -> FooterState {
    if tail.len() != FOOTER_LEN || tail[..8] != FOOTER_MAGIC {
        return FooterState::Missing;
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&tail[8..]);
    let declared = u64::from_be_bytes(len);
    if declared == file_len {
        FooterState::Complete
    } else {
        FooterState::LengthMismatch { declared }
    }
}

/// The header of a file as read without the key (for `coffer info`).
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    /// The parsed header.
    pub header: Header,
    /// Its length in bytes, check included.
    pub header_len: usize,
    /// Whether the unkeyed header check matches.
    pub check_ok: bool,
}

impl HeaderInfo {
    /// Chunk count and payload length implied by a file size, if the size is a valid one.
    pub fn layout(&self, file_len: u64) -> Option<(u64, u64)> {
        use super::cobblestone::{CHUNK_SIZE, PREFIX_LEN, SEALED_CHUNK_SIZE, TAG_LEN};
        let body = file_len.checked_sub((self.header_len + PREFIX_LEN + FOOTER_LEN) as u64)?;
        let full = body / SEALED_CHUNK_SIZE as u64;
        let last = body % SEALED_CHUNK_SIZE as u64;
        (last >= TAG_LEN as u64)
            .then(|| (full + 1, full * CHUNK_SIZE as u64 + last - TAG_LEN as u64))
    }
}

/// Reads and checks a header without the key: structure, versions and the header check.
/// A header whose check fails is still shown as far as it parses (`check_ok` false).
pub fn inspect(input: &mut impl std::io::Read, file_len: u64) -> Result<HeaderInfo, FormatError> {
    use super::cobblestone::PREFIX_LEN;
    let mut fixed = [0u8; FIXED_LEN];
    let n = crate::read_full::read_full(input, &mut fixed).map_err(FormatError::Io)?;
    if n < FIXED_LEN {
        let seen = n.min(MAGIC.len());
        return Err(if fixed[..seen] == MAGIC[..seen] {
            FormatError::Truncated(format!(
                "{file_len} bytes: the file ends inside its fixed header"
            ))
        } else {
            FormatError::NotCoffer
        });
    }
    let header_len = parse_fixed(&fixed)?;
    let mut rest = vec![0u8; header_len - FIXED_LEN + PREFIX_LEN];
    let n = crate::read_full::read_full(input, &mut rest).map_err(FormatError::Io)?;
    if n < rest.len() {
        return Err(FormatError::Truncated(
            "the file ends inside its header".into(),
        ));
    }
    let mut context = fixed.to_vec();
    context.extend_from_slice(&rest[..header_len - FIXED_LEN - CHECK_LEN]);
    let stored = &rest[header_len - FIXED_LEN - CHECK_LEN..header_len - FIXED_LEN];
    let (salt, commitment) = rest[header_len - FIXED_LEN..].split_at(SALT_LEN);
    let check_ok = bool::from(header_check(&context, salt, commitment).ct_eq(stored));
    let header = if check_ok {
        parse_context(&context, validate_fixed(&fixed)?)?
    } else {
        // Damaged: show what can be read, refuse nothing more.
        let compression = validate_fixed(&fixed).unwrap_or(Compression::None);
        parse_context(&context, compression).unwrap_or_else(|_| {
            let mut key_id = [0u8; KEY_ID_LEN];
            key_id.copy_from_slice(&context[FIXED_LEN..FIXED_LEN + KEY_ID_LEN]);
            Header {
                compression,
                key_id,
                metadata: Vec::new(),
            }
        })
    };
    Ok(HeaderInfo {
        header,
        header_len,
        check_ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header::new(
            Compression::Zstd,
            vec![
                (tag::GENERATOR, MetaValue::Text("coffer test".into())),
                (tag::CREATED, MetaValue::U64(1_764_806_400)),
                (0x10, MetaValue::Bytes(vec![0, 1, 2])),
                (tag::CONTENT, MetaValue::U64(1)),
            ],
        )
    }

    #[test]
    fn context_round_trips_with_tags_sorted() {
        let h = header();
        let context = h.encode_context().unwrap();
        assert_eq!(&context[..8], &MAGIC);
        assert_eq!(
            parse_fixed(context[..FIXED_LEN].try_into().unwrap()).unwrap(),
            context.len() + CHECK_LEN
        );
        let back = parse_context(&context, Compression::Zstd).unwrap();
        assert_eq!(back.metadata, h.metadata);
        assert_eq!(back.content(), Content::Tar);
        assert_eq!(back.meta(0x10), Some(&MetaValue::Bytes(vec![0, 1, 2])));
        let tags: Vec<u8> = back.metadata.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, [0x01, 0x02, 0x10, 0x81]);
    }

    /// The context with its metadata replaced by `entries` (tag, type, value).
    fn with_entries(entries: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let mut context = Header::new(Compression::None, vec![])
            .encode_context()
            .unwrap();
        for (t, kind, value) in entries {
            context.extend_from_slice(&[*t, *kind]);
            context.extend_from_slice(&(value.len() as u16).to_be_bytes());
            context.extend_from_slice(value);
        }
        context
    }

    #[test]
    fn metadata_rules_each_have_their_error() {
        let parse =
            |entries: &[(u8, u8, &[u8])]| parse_context(&with_entries(entries), Compression::None);
        // Unknown but not critical (high bit clear): kept.
        assert!(parse(&[(0x20, 3, b"x")]).is_ok());
        // Unknown and critical: the reader cannot know what it changes.
        assert!(matches!(
            parse(&[(0x90, 3, b"x")]),
            Err(FormatError::Unsupported(_))
        ));
        // Repeated and out of order.
        assert!(matches!(
            parse(&[(0x02, 2, b"a"), (0x02, 2, b"b")]),
            Err(FormatError::Malformed(_))
        ));
        assert!(matches!(
            parse(&[(0x02, 2, b"a"), (0x01, 1, &[0; 8])]),
            Err(FormatError::Malformed(_))
        ));
        // Wrong types and sizes.
        assert!(matches!(
            parse(&[(tag::CREATED, 1, &[0; 4])]),
            Err(FormatError::Malformed(_))
        ));
        assert!(matches!(
            parse(&[(tag::GENERATOR, 2, &[0xff])]),
            Err(FormatError::Malformed(_))
        ));
        assert!(matches!(
            parse(&[(tag::CREATED, 2, b"now")]),
            Err(FormatError::Malformed(_))
        ));
        assert!(matches!(
            parse(&[(0x20, 9, b"")]),
            Err(FormatError::Malformed(_))
        ));
        // A content kind from a later version.
        assert!(matches!(
            parse(&[(tag::CONTENT, 1, &7u64.to_be_bytes())]),
            Err(FormatError::Unsupported(_))
        ));
        // Cut short: an entry header, or a value running past the end.
        let mut cut = with_entries(&[(0x20, 3, b"abc")]);
        cut.truncate(cut.len() - 1);
        assert!(matches!(
            parse_context(&cut, Compression::None),
            Err(FormatError::Malformed(_))
        ));
        let mut stub = with_entries(&[]);
        stub.extend_from_slice(&[0x20, 3]);
        assert!(matches!(
            parse_context(&stub, Compression::None),
            Err(FormatError::Malformed(_))
        ));
        // Shorter than the fixed part and key id: an error, not a panic.
        assert!(matches!(
            parse_context(&MAGIC, Compression::None),
            Err(FormatError::Malformed(_))
        ));
    }

    #[test]
    fn writing_refuses_what_reading_would() {
        let repeated = Header {
            compression: Compression::None,
            key_id: [0; KEY_ID_LEN],
            metadata: vec![
                (0x02, MetaValue::Text("a".into())),
                (0x02, MetaValue::Text("b".into())),
            ],
        };
        assert!(matches!(
            repeated.encode_context(),
            Err(FormatError::Malformed(_))
        ));
        let huge = Header::new(
            Compression::None,
            vec![(0x20, MetaValue::Bytes(vec![0; 70_000]))],
        );
        assert!(matches!(
            huge.encode_context(),
            Err(FormatError::Malformed(_))
        ));
    }

    #[test]
    fn fixed_part_fails_in_reading_order() {
        let context = header().encode_context().unwrap();
        let fixed = |edit: &dyn Fn(&mut [u8; FIXED_LEN])| {
            let mut f: [u8; FIXED_LEN] = context[..FIXED_LEN].try_into().unwrap();
            edit(&mut f);
            f
        };
        assert!(matches!(
            parse_fixed(&fixed(&|f| f[0] ^= 1)),
            Err(FormatError::NotCoffer)
        ));
        assert!(matches!(
            parse_fixed(&fixed(&|f| f[8] = 2)),
            Err(FormatError::Unsupported(_))
        ));
        let too_short =
            fixed(&|f| f[12..16].copy_from_slice(&((MIN_HEADER_LEN - 1) as u32).to_be_bytes()));
        assert!(matches!(
            parse_fixed(&too_short),
            Err(FormatError::Malformed(_))
        ));
        let too_long =
            fixed(&|f| f[12..16].copy_from_slice(&((MAX_HEADER_LEN + 1) as u32).to_be_bytes()));
        assert!(matches!(
            parse_fixed(&too_long),
            Err(FormatError::Malformed(_))
        ));
        // Suite, compression and flags are judged only after the header check.
        assert_eq!(validate_fixed(&context).unwrap(), Compression::Zstd);
        assert!(matches!(
            validate_fixed(&fixed(&|f| f[9] = 2)),
            Err(FormatError::Unsupported(_))
        ));
        assert!(matches!(
            validate_fixed(&fixed(&|f| f[10] = 9)),
            Err(FormatError::Unsupported(_))
        ));
        assert!(matches!(
            validate_fixed(&fixed(&|f| f[11] = 1)),
            Err(FormatError::Unsupported(_))
        ));
    }

    #[test]
    fn footer_tells_complete_spliced_and_missing_apart() {
        let footer = encode_footer(1000);
        assert_eq!(check_footer(&footer, 1000), FooterState::Complete);
        assert_eq!(
            check_footer(&footer, 999),
            FooterState::LengthMismatch { declared: 1000 }
        );
        let mut damaged = footer;
        damaged[0] ^= 1;
        assert_eq!(check_footer(&damaged, 1000), FooterState::Missing);
        assert_eq!(check_footer(&footer[1..], 1000), FooterState::Missing);
    }

    #[test]
    fn key_ids_recognise_the_key_and_differ_per_salt() {
        let key = RootKey::from_bytes([1; 32]);
        let other = RootKey::from_bytes([2; 32]);
        let id = key_id(&key, &[0; SALT_LEN]);
        assert!(key_id_matches(&key, &[0; SALT_LEN], &id));
        assert!(!key_id_matches(&other, &[0; SALT_LEN], &id));
        assert_ne!(
            id,
            key_id(&key, &[1; SALT_LEN]),
            "files must not be linkable by their key id"
        );
    }
}
