//! `format.yaml`: Coffer-format files (spec/format.md): whole files at the chunk boundaries,
//! compressed and not, with metadata; crafted headers; and damaged files with their class and
//! the plaintext a streaming reader may release before failing.

use crate::doc::{Data, Failures, Outcome, VectorFile, SCHEMA_VERSION};
use coffer::format::{Compression, Header, MetaValue, WriteOptions};
use coffer::internal::cobblestone::{self, CHUNK_SIZE, SALT_LEN};
use coffer::internal::format_header::{
    encode_footer, header_check, key_id, tag, INFO_FILE_KEY, MAGIC, MIN_HEADER_LEN,
};
use coffer::internal::stream;
use coffer::key::RootKey;
use coffer::Classify;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

/// A group of `format.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FormatGroup {
    /// Whole, valid files: decrypt to `plaintext`; encrypt `payload` with `salt` under
    /// `header` to `file`.
    CofferFile {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<CofferFileCase>,
    },
    /// Files that must be refused, each with the plaintext a streaming reader may release
    /// before it fails.
    InvalidCofferFile {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<InvalidCofferFileCase>,
    },
}

/// One valid file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CofferFileCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// K (hex).
    pub key: String,
    /// The file's 24-byte salt (hex).
    pub salt: String,
    /// The header: `context ‖ header_check`, `header_len` bytes (hex). The C2SP context is
    /// the header without its last 8 bytes.
    pub header: String,
    /// `none`, `zstd` (one frame) or `zstd_seekable`.
    pub compression: String,
    /// Metadata as read: `created` (u64), `generator` (text), `content` (`file`/`tar`), and
    /// unknown non-critical tags as `tag_XX` (hex of the value).
    pub metadata: BTreeMap<String, String>,
    /// The C2SP message's plaintext: the plaintext itself, its zstd frame, or its frames
    /// and seek table.
    pub payload: Data,
    /// What a reader outputs.
    pub plaintext: Data,
    /// The whole file.
    pub file: Data,
}

/// One change applied to a base file, in order. Exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// Keep the first N bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_to: Option<u64>,
    /// XOR the byte at this offset with `01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip_byte: Option<u64>,
    /// Append these bytes (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<String>,
    /// Exchange two non-overlapping ranges `[first, second, length]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<[u64; 3]>,
}

/// One file that must be refused.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvalidCofferFileCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// K (hex).
    pub key: String,
    /// The file, written out; or absent when `base` and `edits` make it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Data>,
    /// The id of a coffer_file case whose `file` the `edits` start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The edits, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<Edit>,
    /// The most plaintext a streaming reader may release before failing: the first
    /// `released` bytes of the base case's plaintext, or of `plaintext` for a written-out
    /// file (absent: none).
    pub released: u64,
    /// For a written-out file whose authenticated payload decodes in part (seekable frames
    /// before a bad table): what those frames hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<Data>,
    /// The error class.
    pub error: String,
}

/// The `format.yaml` file.
pub type FormatFile = VectorFile<FormatGroup>;

fn sample_root() -> anyhow::Result<RootKey> {
    let bytes: [u8; 32] = hex::decode(crate::keys::SAMPLE_KEY)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("32 bytes"))?;
    Ok(RootKey::from_bytes(bytes))
}

/// A salt per case: the first 24 bytes of SHA-256 of its id (never one salt for two files).
fn salt_for(id: &str) -> [u8; SALT_LEN] {
    let digest = Sha256::digest(id.as_bytes());
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&digest[..SALT_LEN]);
    salt
}

/// The header context: fixed part, key id, metadata (spec/format.md §3).
fn context(fixed: [u8; 4], key_id: &[u8; 16], metadata: &[u8]) -> Vec<u8> {
    let header_len = (MIN_HEADER_LEN + metadata.len()) as u32;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&fixed);
    out.extend_from_slice(&header_len.to_be_bytes());
    out.extend_from_slice(key_id);
    out.extend_from_slice(metadata);
    out
}

/// One metadata entry: tag, type, length (big-endian), value.
fn entry(tag: u8, kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, kind];
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// A whole file from its parts: `context ‖ check ‖ salt ‖ commitment ‖ chunks ‖ footer`.
fn assemble(
    root: &RootKey,
    salt: &[u8; SALT_LEN],
    context: &[u8],
    payload: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let file_key = root.derive(INFO_FILE_KEY);
    let body = cobblestone::encrypt_with_salt(&file_key, salt, context, payload)?;
    let check = header_check(context, salt, &body[SALT_LEN..SALT_LEN + 32]);
    let mut file = context.to_vec();
    file.extend_from_slice(&check);
    file.extend_from_slice(&body);
    let len = file.len() as u64 + 16;
    file.extend_from_slice(&encode_footer(len));
    Ok(file)
}

fn metadata_map(header: &Header) -> BTreeMap<String, String> {
    header
        .metadata
        .iter()
        .map(|(t, v)| match (*t, v) {
            (tag::CREATED, MetaValue::U64(n)) => ("created".to_owned(), n.to_string()),
            (tag::GENERATOR, MetaValue::Text(s)) => ("generator".to_owned(), s.clone()),
            (tag::CONTENT, MetaValue::U64(n)) => (
                "content".to_owned(),
                if *n == 1 { "tar".into() } else { "file".into() },
            ),
            (t, MetaValue::U64(n)) => (format!("tag_{t:02x}"), hex::encode(n.to_be_bytes())),
            (t, MetaValue::Text(s)) => (format!("tag_{t:02x}"), hex::encode(s.as_bytes())),
            (t, MetaValue::Bytes(b)) => (format!("tag_{t:02x}"), hex::encode(b)),
        })
        .collect()
}

struct Made {
    case: CofferFileCase,
    file: Vec<u8>,
}

/// A valid file written by the reference writer, cross-checked against [`assemble`].
#[allow(clippy::too_many_arguments)] // one argument per column of the case table
fn valid_file(
    root: &RootKey,
    id: &str,
    comment: &str,
    flags: &[&str],
    plaintext: Data,
    compression: Compression,
    metadata: Vec<(u8, MetaValue)>,
    expected_metadata: &[(&str, &str)],
) -> anyhow::Result<Made> {
    let id = format!("format.file.{id}");
    let salt = salt_for(&id);
    let bytes = plaintext.bytes()?;
    let header = Header::new(compression, metadata);
    let options = WriteOptions {
        salt: Some(salt),
        // Frames of one chunk, so that a few kilobytes make several frames.
        zstd_frame_len: VECTOR_FRAME_LEN,
        ..WriteOptions::default()
    };
    let (file, _) =
        coffer::format::encrypt(root, header.clone(), &mut &bytes[..], Vec::new(), &options)?;
    let header_len = u32::from_be_bytes(file[12..16].try_into()?) as usize;
    let context = &file[..header_len - 8];
    let file_key = root.derive(INFO_FILE_KEY);
    let payload = stream::decrypt(&file_key[..], context, &file[header_len..file.len() - 16])?;
    anyhow::ensure!(
        assemble(root, &salt, context, &payload)? == file,
        "{id}: the writer and the vector's assembly disagree"
    );
    // The metadata a reader must report, written by hand (spec/format.md §3.2).
    let expected: BTreeMap<String, String> = expected_metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Made {
        case: CofferFileCase {
            id,
            comment: comment.into(),
            result: Outcome::Valid,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            key: crate::keys::SAMPLE_KEY.into(),
            salt: hex::encode(salt),
            header: hex::encode(&file[..header_len]),
            compression: match compression {
                Compression::None => "none".into(),
                Compression::Zstd => "zstd".into(),
                Compression::ZstdSeekable => "zstd_seekable".into(),
            },
            metadata: expected,
            payload: if compression == Compression::None {
                plaintext.clone()
            } else {
                Data::hex(&payload)
            },
            plaintext,
            file: Data::hex(&file),
        },
        file,
    })
}

const FIXED_OK: [u8; 4] = [1, 1, 0, 0];

/// A Zstandard frame of empty content: magic, a single-segment header with content size 0,
/// one empty raw block marked last.
/// Plaintext bytes per frame in the seekable vectors: one chunk (the smallest S allowed).
const VECTOR_FRAME_LEN: usize = 16384;

/// A seekable payload (spec/format.md §8.2) of `frames`, each compressed at level 3, with a
/// seek table listing `(compressed, plaintext)` lengths as `entries` rewrites them and
/// `count` frames (the honest values when both are identity).
fn seekable_payload(
    frames: &[&[u8]],
    entries: impl Fn(usize, (u32, u32)) -> (u32, u32),
    count: u32,
    descriptor: u8,
) -> anyhow::Result<Vec<u8>> {
    let mut payload = Vec::new();
    let mut table = Vec::new();
    for (i, plain) in frames.iter().enumerate() {
        let packed = zstd::bulk::compress(plain, 3)?;
        let (c, d) = entries(i, (packed.len() as u32, plain.len() as u32));
        table.extend_from_slice(&c.to_le_bytes());
        table.extend_from_slice(&d.to_le_bytes());
        payload.extend_from_slice(&packed);
    }
    payload.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
    payload.extend_from_slice(&(table.len() as u32 + 9).to_le_bytes());
    payload.extend_from_slice(&table);
    payload.extend_from_slice(&count.to_le_bytes());
    payload.push(descriptor);
    payload.extend_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    Ok(payload)
}

const EMPTY_FRAME: [u8; 9] = [0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00];

/// A single-segment Zstandard frame of `size` zero bytes (RFC 8878 §3.1.1.1): magic, a
/// frame header with a 4-byte content size and no window descriptor, then RLE blocks of at
/// most 128 KiB, the last one marked.
fn single_segment_frame(size: u32) -> Vec<u8> {
    const BLOCK: u32 = 128 * 1024;
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xa0];
    frame.extend_from_slice(&size.to_le_bytes());
    let mut left = size;
    while left > 0 {
        let n = left.min(BLOCK);
        left -= n;
        let header = (n << 3) | (1 << 1) | u32::from(left == 0); // RLE, last
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    frame
}

/// A small file with a crafted header, otherwise made right (its check and commitment hold).
fn crafted(root: &RootKey, id: &str, fixed: [u8; 4], metadata: &[u8]) -> anyhow::Result<Vec<u8>> {
    crafted_payload(root, id, fixed, metadata, b"x")
}

/// A file with a crafted header and payload, otherwise made right.
fn crafted_payload(
    root: &RootKey,
    id: &str,
    fixed: [u8; 4],
    metadata: &[u8],
    payload: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let salt = salt_for(id);
    assemble(
        root,
        &salt,
        &context(fixed, &key_id(root, &salt), metadata),
        payload,
    )
}

fn edit() -> Edit {
    Edit::default()
}

/// Builds `format.yaml`.
pub fn generate() -> anyhow::Result<FormatFile> {
    let root = sample_root()?;
    let day = 1_795_737_600; // 2026-11-27 00:00 UTC
    let text = b"Coffer format vector: a short text that zstd compresses\n".repeat(3);
    let made = [
        valid_file(
            &root,
            "empty",
            "no plaintext: one empty final chunk",
            &["ChunkBoundary"],
            Data::hex(&[]),
            Compression::None,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "one_byte",
            "one byte",
            &[],
            Data::hex(&[0x42]),
            Compression::None,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "chunk_minus_1",
            "16383 bytes: one final chunk",
            &["ChunkBoundary"],
            Data::counting(16383),
            Compression::None,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "one_chunk",
            "16384 bytes: a full chunk and an empty final chunk",
            &["ChunkBoundary"],
            Data::counting(16384),
            Compression::None,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "chunk_plus_1",
            "16385 bytes: a full chunk and a 1-byte final chunk",
            &["ChunkBoundary"],
            Data::counting(16385),
            Compression::None,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "two_chunks",
            "32768 bytes: two full chunks and an empty final chunk",
            &["ChunkBoundary"],
            Data::counting(32768),
            Compression::None,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "zstd_text",
            "a short text, zstd level 3",
            &["Zstd"],
            Data::hex(&text),
            Compression::Zstd,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "zstd_counting",
            "20000 bytes of the counting pattern, zstd level 3",
            &["Zstd"],
            Data::counting(20000),
            Compression::Zstd,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "zstd_seekable_empty",
            "no plaintext, seekable: one empty frame and its table",
            &["ZstdSeekable"],
            Data::hex(&[]),
            Compression::ZstdSeekable,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "zstd_seekable_text",
            "a short text, seekable: one frame",
            &["ZstdSeekable"],
            Data::hex(&text),
            Compression::ZstdSeekable,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "zstd_seekable_frames",
            "40000 bytes of the counting pattern in frames of 16384: two whole frames and one of 7232 bytes",
            &["ZstdSeekable"],
            Data::counting(40000),
            Compression::ZstdSeekable,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "zstd_seekable_whole_frames",
            "32768 bytes in frames of 16384: the last frame is whole (no empty frame follows)",
            &["ZstdSeekable", "ChunkBoundary"],
            Data::counting(32768),
            Compression::ZstdSeekable,
            vec![],
            &[],
        )?,
        valid_file(
            &root,
            "metadata",
            "created, generator and content = tar",
            &["Metadata"],
            Data::hex(b"not really a tar stream"),
            Compression::None,
            vec![
                (tag::CREATED, MetaValue::U64(day)),
                (tag::GENERATOR, MetaValue::Text("coffer-vectors".into())),
                (tag::CONTENT, MetaValue::U64(1)),
            ],
            &[
                ("created", "1795737600"),
                ("generator", "coffer-vectors"),
                ("content", "tar"),
            ],
        )?,
        valid_file(
            &root,
            "unknown_tag",
            "an unknown non-critical tag (0x10) is ignored",
            &["Metadata", "UnknownTag"],
            Data::hex(b"x"),
            Compression::None,
            vec![(0x10, MetaValue::Bytes(vec![1, 2, 3]))],
            &[("tag_10", "010203")],
        )?,
        valid_file(
            &root,
            "tag_00_first",
            "tag 00 first: any tag may open the metadata (an unknown non-critical tag, ignored)",
            &["Metadata", "UnknownTag"],
            Data::hex(b"x"),
            Compression::None,
            vec![
                (0x00, MetaValue::Bytes(vec![7])),
                (tag::CREATED, MetaValue::U64(day)),
            ],
            &[("tag_00", "07"), ("created", "1795737600")],
        )?,
    ];
    let by_id = |id: &str| {
        made.iter()
            .find(|m| m.case.id == format!("format.file.{id}"))
    };
    let base = by_id("chunk_plus_1").ok_or_else(|| anyhow::anyhow!("base"))?;
    let two = by_id("two_chunks").ok_or_else(|| anyhow::anyhow!("two"))?;
    let header_len = u32::from_be_bytes(base.file[12..16].try_into()?) as u64;
    let body = header_len + 56; // first chunk
    let n = base.file.len() as u64;
    let full = CHUNK_SIZE as u64;
    let sealed = full + 16;
    let other_key = (0u8..32).map(|b| format!("{b:02x}")).collect::<String>();

    let derived = |id: &str,
                   comment: &str,
                   flags: &[&str],
                   on: &Made,
                   edits: Vec<Edit>,
                   released: u64,
                   error: &str| InvalidCofferFileCase {
        id: format!("format.invalid.{id}"),
        comment: comment.into(),
        result: Outcome::Invalid,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        key: crate::keys::SAMPLE_KEY.into(),
        file: None,
        base: Some(on.case.id.clone()),
        edits,
        released,
        plaintext: None,
        error: error.into(),
    };
    let written = |id: &str, comment: &str, flags: &[&str], file: Vec<u8>, error: &str| {
        InvalidCofferFileCase {
            id: format!("format.invalid.{id}"),
            comment: comment.into(),
            result: Outcome::Invalid,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            key: crate::keys::SAMPLE_KEY.into(),
            file: Some(Data::hex(&file)),
            base: None,
            edits: vec![],
            released: 0,
            plaintext: None,
            error: error.into(),
        }
    };
    let flip = |at: u64| {
        vec![Edit {
            flip_byte: Some(at),
            ..edit()
        }]
    };
    let cut = |to: u64| {
        vec![Edit {
            truncate_to: Some(to),
            ..edit()
        }]
    };
    let mut wrong_key = derived(
        "wrong_key",
        "the file under another K: refused by the key id before any chunk",
        &["WrongKey"],
        base,
        vec![],
        0,
        "wrong_key",
    );
    wrong_key.key = other_key;
    let crafted_case = |id: &str,
                        comment: &str,
                        flags: &[&str],
                        fixed: [u8; 4],
                        metadata: &[u8],
                        error: &str|
     -> anyhow::Result<InvalidCofferFileCase> {
        let full_id = format!("format.invalid.{id}");
        Ok(written(
            id,
            comment,
            flags,
            crafted(&root, &full_id, fixed, metadata)?,
            error,
        ))
    };
    // Authenticated files whose zstd payload is broken: `corrupt` (spec/format.md §8).
    let zstd_case =
        |id: &str, comment: &str, payload: &[u8]| -> anyhow::Result<InvalidCofferFileCase> {
            let full_id = format!("format.invalid.{id}");
            let file = crafted_payload(&root, &full_id, [1, 1, 1, 0], &[], payload)?;
            Ok(written(
                id,
                comment,
                &["Zstd", "PayloadBroken"],
                file,
                "corrupt",
            ))
        };
    // Authenticated files whose seekable payload is broken: `corrupt` (spec/format.md §8.2).
    // The frames that decode before the fault may be released: `released` bytes of them.
    let seekable_case = |id: &str,
                         comment: &str,
                         payload: Vec<u8>,
                         released: &[u8]|
     -> anyhow::Result<InvalidCofferFileCase> {
        let full_id = format!("format.invalid.{id}");
        let file = crafted_payload(&root, &full_id, [1, 1, 2, 0], &[], &payload)?;
        let mut case = written(
            id,
            comment,
            &["ZstdSeekable", "PayloadBroken"],
            file,
            "corrupt",
        );
        if !released.is_empty() {
            case.released = released.len() as u64;
            case.plaintext = Some(Data::hex(released));
        }
        Ok(case)
    };
    let same = |_: usize, e: (u32, u32)| e;
    let whole = vec![b'a'; VECTOR_FRAME_LEN];
    let one_frame = zstd::bulk::compress(b"tail", 3)?;
    // A forger can rewrite any header byte and recompute the unkeyed header check (§3.4):
    // then only the keyed checks of §7 steps 6 and 7 stand in the way.
    let forged = |at: usize| -> anyhow::Result<Vec<u8>> {
        let hl = header_len as usize;
        let mut file = base.file.clone();
        file[at] ^= 1;
        let check = header_check(&file[..hl - 8], &file[hl..hl + 24], &file[hl + 24..hl + 56]);
        file[hl - 8..hl].copy_from_slice(&check);
        Ok(file)
    };
    // A 256-byte file (a 128-byte payload) cut by its last byte: the footer it ends inside
    // states 256 (0x100), and 255 would differ in the second-last byte too (§7 step 9.2).
    let id_256 = "format.invalid.footer_cut_length_borrows";
    let mut cut_256 = crafted_payload(&root, id_256, FIXED_OK, &[], &[b'x'; 128])?;
    anyhow::ensure!(cut_256.len() == 256, "{id_256}: {} bytes", cut_256.len());
    cut_256.pop();
    let mut version_2 = crafted(&root, "format.invalid.version_2", FIXED_OK, &[])?;
    version_2[8] = 2;
    let mut header_len_39 = base.file[..40].to_vec();
    header_len_39[12..16].copy_from_slice(&39u32.to_be_bytes());
    let invalid_cases = vec![
        wrong_key,
        derived(
            "header_check_flipped",
            "a header check byte flipped",
            &["Header"],
            base,
            flip(header_len - 1),
            0,
            "corrupt",
        ),
        derived(
            "salt_flipped",
            "a salt byte flipped: caught by the header check",
            &["Header"],
            base,
            flip(header_len),
            0,
            "corrupt",
        ),
        derived(
            "commitment_flipped",
            "a commitment byte flipped: caught by the header check",
            &["Header"],
            base,
            flip(header_len + 40),
            0,
            "corrupt",
        ),
        written(
            "commitment_forged",
            "a commitment byte changed and the header check recomputed, as a forger can: \
             only the key commitment (step 7) refuses it",
            &["Header", "Forged"],
            forged(header_len as usize + 40)?,
            "corrupt",
        ),
        written(
            "key_id_forged",
            "a key id byte changed and the header check recomputed under the right K: \
             the key id (step 6) refuses it before any chunk",
            &["Header", "Forged", "WrongKey"],
            forged(20)?,
            "wrong_key",
        ),
        derived(
            "first_chunk_flipped",
            "a byte of the first (full) chunk flipped",
            &["Chunk"],
            base,
            flip(body + 100),
            0,
            "corrupt",
        ),
        derived(
            "final_chunk_flipped",
            "the final chunk's byte flipped: the footer says the file is whole",
            &["Chunk"],
            base,
            flip(body + sealed),
            full,
            "corrupt",
        ),
        derived(
            "footer_length_wrong",
            "the footer states another length",
            &["Footer"],
            base,
            flip(n - 1),
            full,
            "corrupt",
        ),
        derived(
            "cut_at_chunk_boundary",
            "cut after the first chunk: nothing of the final chunk or footer",
            &["Truncated", "ChunkBoundary"],
            base,
            cut(body + sealed),
            full,
            "truncated",
        ),
        derived(
            "cut_in_final_chunk",
            "cut inside the final chunk",
            &["Truncated"],
            base,
            cut(n - 20),
            full,
            "truncated",
        ),
        derived(
            "footer_missing",
            "the footer missing: the final chunk authenticates, nothing follows",
            &["Truncated", "Footer"],
            base,
            cut(n - 16),
            full,
            "truncated",
        ),
        derived(
            "footer_cut",
            "cut 3 bytes into the footer's end",
            &["Truncated", "Footer"],
            base,
            cut(n - 3),
            full,
            "truncated",
        ),
        written(
            "footer_cut_length_borrows",
            "a 256-byte file cut by its last byte: what follows the final chunk begins the \
             footer stating 256, the whole file's length, not the cut input's 255",
            &["Truncated", "Footer"],
            cut_256,
            "truncated",
        ),
        derived(
            "cut_in_header",
            "cut inside the header",
            &["Truncated", "Header"],
            base,
            cut(30),
            0,
            "truncated",
        ),
        derived(
            "cut_in_salt",
            "cut inside the salt",
            &["Truncated", "Header"],
            base,
            cut(header_len + 10),
            0,
            "truncated",
        ),
        derived(
            "appended",
            "5 bytes appended after the footer",
            &["TrailingData"],
            base,
            vec![Edit {
                append: Some("0102030405".into()),
                ..edit()
            }],
            full,
            "trailing_data",
        ),
        derived(
            "chunks_swapped",
            "the two full chunks exchanged",
            &["Chunk"],
            two,
            vec![Edit {
                swap: Some([body, body + sealed, sealed]),
                ..edit()
            }],
            0,
            "corrupt",
        ),
        derived(
            "two_chunks_cut_after_first",
            "cut after the first of two full chunks",
            &["Truncated", "ChunkBoundary"],
            two,
            cut(body + sealed),
            full,
            "truncated",
        ),
        written(
            "empty",
            "no bytes at all",
            &["Truncated"],
            vec![],
            "truncated",
        ),
        written(
            "magic_prefix",
            "the first 4 bytes of the magic only",
            &["Truncated"],
            MAGIC[..4].to_vec(),
            "truncated",
        ),
        written(
            "other_magic",
            "not a Coffer file (a crypt15 header starts this way)",
            &["Magic"],
            b"\x81\x01\x08\x01\x1a\x12\x0a\x10 and more bytes".to_vec(),
            "malformed",
        ),
        written(
            "version_2",
            "version 2",
            &["Header"],
            version_2,
            "unsupported",
        ),
        written(
            "header_len_39",
            "a header length below 40",
            &["Header"],
            header_len_39,
            "malformed",
        ),
        crafted_case(
            "suite_2",
            "suite 2",
            &["Header"],
            [1, 2, 0, 0],
            &[],
            "unsupported",
        )?,
        crafted_case(
            "compression_7",
            "compression 7",
            &["Header"],
            [1, 1, 7, 0],
            &[],
            "unsupported",
        )?,
        crafted_case(
            "flags_1",
            "a flag set",
            &["Header"],
            [1, 1, 0, 1],
            &[],
            "unsupported",
        )?,
        crafted_case(
            "flags_80",
            "the highest flag set",
            &["Header"],
            [1, 1, 0, 0x80],
            &[],
            "unsupported",
        )?,
        crafted_case(
            "critical_unknown_tag",
            "an unknown critical tag (0x90)",
            &["Metadata"],
            FIXED_OK,
            &entry(0x90, 3, b"?"),
            "unsupported",
        )?,
        crafted_case(
            "content_2",
            "content kind 2",
            &["Metadata"],
            FIXED_OK,
            &entry(0x81, 1, &2u64.to_be_bytes()),
            "unsupported",
        )?,
        crafted_case(
            "tags_not_increasing",
            "tag 2 before tag 1",
            &["Metadata"],
            FIXED_OK,
            &[entry(2, 2, b"g"), entry(1, 1, &0u64.to_be_bytes())].concat(),
            "malformed",
        )?,
        crafted_case(
            "u64_length_4",
            "a u64 of 4 bytes",
            &["Metadata"],
            FIXED_OK,
            &entry(1, 1, &[0, 0, 0, 1]),
            "malformed",
        )?,
        crafted_case(
            "text_not_utf8",
            "generator text that is not UTF-8",
            &["Metadata"],
            FIXED_OK,
            &entry(2, 2, &[0xff]),
            "malformed",
        )?,
        crafted_case(
            "type_4",
            "an unknown type",
            &["Metadata"],
            FIXED_OK,
            &entry(0x10, 4, b"?"),
            "malformed",
        )?,
        crafted_case(
            "entry_past_end",
            "an entry longer than the metadata",
            &["Metadata"],
            FIXED_OK,
            &[0x10, 3, 0, 9, 1],
            "malformed",
        )?,
        crafted_case(
            "created_as_text",
            "a defined tag with another type",
            &["Metadata"],
            FIXED_OK,
            &entry(1, 2, b"today"),
            "malformed",
        )?,
        zstd_case(
            "zstd_empty_payload",
            "zstd with an empty payload: no frame at all",
            &[],
        )?,
        zstd_case(
            "zstd_not_a_frame",
            "zstd with a payload that is not a Zstandard frame",
            b"not a frame",
        )?,
        zstd_case(
            "zstd_bytes_after_frame",
            "a frame of empty content, then one more byte",
            &[&EMPTY_FRAME[..], &[0x00][..]].concat(),
        )?,
        zstd_case(
            "zstd_skippable_frame",
            "a skippable frame instead of an ordinary one",
            &[0x50, 0x2a, 0x4d, 0x18, 0x01, 0x00, 0x00, 0x00, 0x00],
        )?,
        zstd_case(
            "zstd_window_2_25",
            "a frame whose window is 2^25 bytes, above the 2^24 limit",
            &[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x78, 0x09, 0x00, 0x00, b'x'],
        )?,
        seekable_case(
            "seekable_empty_payload",
            "seekable with an empty payload: no frame and no table",
            vec![],
            &[],
        )?,
        seekable_case(
            "seekable_no_table",
            "one frame and no seek table",
            one_frame.clone(),
            b"tail",
        )?,
        seekable_case(
            "seekable_table_only",
            "a seek table of no frames",
            seekable_payload(&[], same, 0, 0)?,
            &[],
        )?,
        seekable_case(
            "seekable_count_differs",
            "the table's frame count says 2, one frame and one entry follow",
            seekable_payload(&[b"tail"], same, 2, 0)?,
            b"tail",
        )?,
        seekable_case(
            "seekable_plaintext_length_differs",
            "the entry says the frame holds 5 bytes, it holds 4",
            seekable_payload(&[b"tail"], |_, (c, _)| (c, 5), 1, 0)?,
            b"tail",
        )?,
        seekable_case(
            "seekable_compressed_lengths_differ",
            "two frames whose entries move one byte from the first to the second",
            seekable_payload(
                &[&whole, b"tail"],
                |i, (c, d)| (if i == 0 { c + 1 } else { c - 1 }, d),
                2,
                0,
            )?,
            &[&whole[..], b"tail"].concat(),
        )?,
        seekable_case(
            "seekable_checksum_flag",
            "the table's descriptor announces checksums (0x80), which this format forbids",
            seekable_payload(&[b"tail"], same, 1, 0x80)?,
            b"tail",
        )?,
        seekable_case(
            "seekable_short_frame_first",
            "a 4-byte frame before a 16384-byte one: frames before the last must hold S bytes",
            seekable_payload(&[b"tail", &whole], same, 2, 0)?,
            b"tail",
        )?,
        seekable_case(
            "seekable_bytes_after_table",
            "one more byte after the seek table",
            [seekable_payload(&[b"tail"], same, 1, 0)?, vec![0]].concat(),
            b"tail",
        )?,
        seekable_case(
            "seekable_skippable_frame_first",
            "a skippable frame of one byte before the frames",
            [
                vec![0x50, 0x2a, 0x4d, 0x18, 0x01, 0x00, 0x00, 0x00, 0x00],
                seekable_payload(&[b"tail"], same, 1, 0)?,
            ]
            .concat(),
            &[],
        )?,
        zstd_case(
            "zstd_single_segment_over_2_24",
            "a single-segment frame (no window descriptor: its window is its content size) \
             of 2^24 + 1 bytes, in RLE blocks",
            &single_segment_frame((1 << 24) + 1),
        )?,
    ];
    let file_cases: Vec<CofferFileCase> = made.into_iter().map(|m| m.case).collect();
    let groups = vec![
        FormatGroup::CofferFile {
            description: "Decrypt `file` with `key`: the output is `plaintext`, the header reads as `compression` and `metadata`. Encrypt: `header` ‖ C2SP(file_key = HKDF(K, \"coffer/v1 file key\"), `salt`, context = `header` without its last 8 bytes, `payload`) ‖ footer(L) must equal `file` (kdf.yaml has the key schedule).".into(),
            cases: file_cases,
        },
        FormatGroup::InvalidCofferFile {
            description: "Make the file (written out, or `base`'s file with `edits` applied in order) and decrypt it with `key` by spec/format.md §7: it must fail with `error`; a streaming reader may have released at most the first `released` bytes of the plaintext.".into(),
            cases: invalid_cases,
        },
    ];
    let number_of_cases = groups
        .iter()
        .map(|g| match g {
            FormatGroup::CofferFile { cases, .. } => cases.len(),
            FormatGroup::InvalidCofferFile { cases, .. } => cases.len(),
        })
        .sum();
    Ok(VectorFile {
        schema: SCHEMA_VERSION.into(),
        topic: "format".into(),
        description: "Coffer's own backup format: whole files around the 16 KiB chunk \
                      boundaries, compressed and not, with metadata; crafted headers; and \
                      damaged files with the class and the released prefix."
            .into(),
        how_to_apply: "Valid files: decrypt and encrypt as the coffer_file group says. Invalid \
                       files: build the input, decrypt, compare the class, and check that no \
                       more than the first `released` plaintext bytes came out."
            .into(),
        sources: vec![
            "spec/format.md §3 (header, metadata, key id, check), §4 (footer), §5 (body), §7 (reading and classes)".into(),
            "https://c2sp.org/chunked-encryption (Cobblestone-256)".into(),
        ],
        notes: BTreeMap::from([
            ("Chunk".into(), "Damage to the chunks.".into()),
            ("ChunkBoundary".into(), "Plaintext lengths or cuts at the 16384-byte chunk boundaries.".into()),
            ("Footer".into(), "The footer (magic and file length) is missing or wrong.".into()),
            ("Header".into(), "The fixed part, header check, salt or commitment.".into()),
            (
                "Forged".into(),
                "A header byte changed and the header check recomputed: only keyed checks catch it."
                    .into(),
            ),
            ("Magic".into(), "Not a Coffer file.".into()),
            ("Metadata".into(), "Metadata entries (§3.2).".into()),
            ("TrailingData".into(), "Bytes after a complete file.".into()),
            ("Truncated".into(), "The input ends early.".into()),
            ("PayloadBroken".into(), "The chunks authenticate, but the payload breaks §8 (one frame) or §8.2 (frames and table).".into()),
            ("UnknownTag".into(), "A metadata tag this version does not define.".into()),
            ("WrongKey".into(), "Another K.".into()),
            ("Zstd".into(), "A zstd-compressed payload (the payload is the frame; the plaintext its content).".into()),
            ("ZstdSeekable".into(), "A seekable zstd payload (§8.2): frames of 16384 bytes and a seek table.".into()),
        ]),
        number_of_cases,
        groups,
    })
}

/// Applies `edits` to `file`.
pub fn apply(file: &[u8], edits: &[Edit]) -> anyhow::Result<Vec<u8>> {
    let mut out = file.to_vec();
    for e in edits {
        let set = [
            e.truncate_to.is_some(),
            e.flip_byte.is_some(),
            e.append.is_some(),
            e.swap.is_some(),
        ];
        anyhow::ensure!(
            set.iter().filter(|s| **s).count() == 1,
            "an edit sets exactly one field"
        );
        if let Some(n) = e.truncate_to {
            anyhow::ensure!(n as usize <= out.len(), "truncate_to past the end");
            out.truncate(n as usize);
        }
        if let Some(at) = e.flip_byte {
            *out.get_mut(at as usize)
                .ok_or_else(|| anyhow::anyhow!("flip_byte past the end"))? ^= 1;
        }
        if let Some(bytes) = &e.append {
            out.extend_from_slice(&hex::decode(bytes)?);
        }
        if let Some([a, b, len]) = e.swap {
            let (a, b, len) = (a as usize, b as usize, len as usize);
            anyhow::ensure!(
                a + len <= b && b + len <= out.len(),
                "swap ranges overlap or run past the end"
            );
            let first = out[a..a + len].to_vec();
            out.copy_within(b..b + len, a);
            out[b..b + len].copy_from_slice(&first);
        }
    }
    Ok(out)
}

fn root_of(hex_key: &str) -> Option<RootKey> {
    let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
    Some(RootKey::from_bytes(bytes))
}

/// Streams `file` through the reference reader: the released plaintext and the outcome.
fn stream(root: &RootKey, file: &[u8]) -> (Vec<u8>, Result<coffer::format::Header, String>) {
    let mut reader = match coffer::format::open(file, root) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e.class().to_string())),
    };
    let header = reader.header().clone();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return (out, Ok(header)),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => {
                return (
                    out,
                    Err(coffer::format::FormatError::from_io(e).class().to_string()),
                )
            }
        }
    }
}

/// Runs every case of `file` against the reference implementation.
pub fn verify(file: &FormatFile) -> Failures {
    let mut failures = Failures::default();
    let mut valid: BTreeMap<String, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for group in &file.groups {
        match group {
            FormatGroup::CofferFile { cases, .. } => {
                for case in cases {
                    let (Some(root), Ok(bytes), Ok(plaintext), Ok(payload), Ok(header), Ok(salt)) = (
                        root_of(&case.key),
                        case.file.bytes(),
                        case.plaintext.bytes(),
                        case.payload.bytes(),
                        hex::decode(&case.header),
                        hex::decode(&case.salt),
                    ) else {
                        failures.add(&case.id, "bad input");
                        continue;
                    };
                    let (out, outcome) = stream(&root, &bytes);
                    if failures.expect_outcome(
                        &case.id,
                        case.result,
                        None,
                        &outcome.as_ref().map(|_| ()).map_err(Clone::clone),
                    ) {
                        failures.expect_eq(
                            &case.id,
                            "plaintext",
                            &hex::encode(&plaintext),
                            &hex::encode(&out),
                        );
                        if let Ok(h) = &outcome {
                            let compression = match h.compression {
                                Compression::None => "none",
                                Compression::Zstd => "zstd",
                                Compression::ZstdSeekable => "zstd_seekable",
                            };
                            failures.expect_eq(
                                &case.id,
                                "compression",
                                &case.compression.as_str(),
                                &compression,
                            );
                            failures.expect_eq(
                                &case.id,
                                "metadata",
                                &case.metadata,
                                &metadata_map(h),
                            );
                        }
                    }
                    if !bytes.starts_with(&header) {
                        failures.add(&case.id, "header: not the first bytes of the file");
                    }
                    match (
                        header.len().checked_sub(8),
                        <[u8; SALT_LEN]>::try_from(salt.as_slice()),
                    ) {
                        (Some(ctx_len), Ok(salt)) => {
                            match assemble(&root, &salt, &header[..ctx_len], &payload) {
                                Ok(made) => failures.expect_eq(
                                    &case.id,
                                    "file (encrypting the payload)",
                                    &hex::encode(&bytes),
                                    &hex::encode(made),
                                ),
                                Err(e) => failures.add(&case.id, format!("encrypting: {e}")),
                            }
                        }
                        _ => failures.add(&case.id, "header or salt of the wrong size"),
                    }
                    valid.insert(case.id.clone(), (bytes, plaintext));
                }
            }
            FormatGroup::InvalidCofferFile { cases, .. } => {
                for case in cases {
                    let Some(root) = root_of(&case.key) else {
                        failures.add(&case.id, "bad key");
                        continue;
                    };
                    let (input, plaintext) = match (&case.file, &case.base) {
                        (Some(data), None) => match data.bytes().and_then(|b| {
                            let plain = case.plaintext.as_ref().map(Data::bytes).transpose()?;
                            Ok((b, plain.unwrap_or_default()))
                        }) {
                            Ok(pair) => pair,
                            Err(e) => {
                                failures.add(&case.id, e);
                                continue;
                            }
                        },
                        (None, Some(base)) => {
                            match valid.get(base).map(|(f, p)| (apply(f, &case.edits), p)) {
                                Some((Ok(f), p)) => (f, p.clone()),
                                Some((Err(e), _)) => {
                                    failures.add(&case.id, e);
                                    continue;
                                }
                                None => {
                                    failures.add(&case.id, format!("no base case {base}"));
                                    continue;
                                }
                            }
                        }
                        _ => {
                            failures.add(&case.id, "exactly one of file and base");
                            continue;
                        }
                    };
                    let (out, outcome) = stream(&root, &input);
                    failures.expect_outcome(
                        &case.id,
                        case.result,
                        Some(&case.error),
                        &outcome.map(|_| ()),
                    );
                    // Third parties may release less; the reference releases exactly the
                    // authenticated full chunks before the failing one (§7 step 8).
                    if out.len() as u64 != case.released || !plaintext.starts_with(&out) {
                        failures.add(
                            &case.id,
                            format!(
                                "released {} bytes; the first {} of the plaintext were expected",
                                out.len(),
                                case.released
                            ),
                        );
                    }
                }
            }
        }
    }
    failures
}
