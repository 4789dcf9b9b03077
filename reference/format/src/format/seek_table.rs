//! The frame index of a seekable payload (compression `02`, spec/format.md §8.2): zstd's
//! seekable format, a skippable frame at the end of the payload listing each frame's
//! compressed and decompressed size. Frames hold `S` plaintext bytes each (the last one
//! 1..=S, or 0 when it is the only one), S a multiple of the chunk size up to 2^24.

use super::cobblestone::CHUNK_SIZE;
use super::FormatError;

/// Magic of the skippable frame that holds the table (little-endian on the wire).
pub(crate) const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Magic ending the table, and with it the payload.
pub(crate) const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Bytes per table entry: compressed size and decompressed size, u32 each.
pub(crate) const ENTRY_LEN: usize = 8;
/// The skippable frame's magic and size field.
pub(crate) const TABLE_HEAD_LEN: usize = 8;
/// Number of frames, descriptor, seekable magic.
pub(crate) const TABLE_FOOT_LEN: usize = 9;
/// Plaintext bytes a frame may hold at most: a frame is decompressed whole into memory.
pub const MAX_FRAME_LEN: usize = 1 << 24;
/// Frames a payload may have at most (the reader's index costs 8 bytes per frame).
pub(crate) const MAX_FRAMES: u64 = 1 << 24;

/// The largest compressed frame a valid payload can hold: zstd's bound for 2^24 bytes.
pub(crate) fn max_packed_len() -> u64 {
    zstd::zstd_safe::compress_bound(MAX_FRAME_LEN) as u64
}

/// Bytes of the table of `frames` frames.
pub(crate) fn table_len(frames: u64) -> u64 {
    (TABLE_HEAD_LEN + TABLE_FOOT_LEN) as u64 + frames * ENTRY_LEN as u64
}

/// One table entry.
pub(crate) fn encode_entry(compressed: u32, decompressed: u32) -> [u8; ENTRY_LEN] {
    let mut e = [0u8; ENTRY_LEN];
    e[..4].copy_from_slice(&compressed.to_le_bytes());
    e[4..].copy_from_slice(&decompressed.to_le_bytes());
    e
}

/// The skippable frame's first 8 bytes for `frames` frames.
pub(crate) fn encode_head(frames: u64) -> [u8; TABLE_HEAD_LEN] {
    let mut h = [0u8; TABLE_HEAD_LEN];
    h[..4].copy_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    // The caller keeps `frames` under MAX_FRAMES, so the size fits in 32 bits.
    let size = (table_len(frames) - TABLE_HEAD_LEN as u64) as u32;
    h[4..].copy_from_slice(&size.to_le_bytes());
    h
}

/// The table's last 9 bytes: frame count, descriptor 0 (no checksums), seekable magic.
pub(crate) fn encode_foot(frames: u64) -> [u8; TABLE_FOOT_LEN] {
    let mut f = [0u8; TABLE_FOOT_LEN];
    f[..4].copy_from_slice(&(frames as u32).to_le_bytes());
    f[5..].copy_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    f
}

fn corrupt(what: impl Into<String>) -> FormatError {
    FormatError::Decompress(what.into())
}

/// Reads the frame count from the table's foot (the payload's last 9 bytes).
pub(crate) fn parse_foot(foot: &[u8; TABLE_FOOT_LEN]) -> Result<u64, FormatError> {
    if foot[5..] != SEEKABLE_MAGIC.to_le_bytes() {
        return Err(corrupt("the payload does not end with a seek table"));
    }
    if foot[4] != 0 {
        return Err(corrupt(format!(
            "seek table descriptor {:#04x} (only 0, without checksums, is allowed)",
            foot[4]
        )));
    }
    let frames = u64::from(u32::from_le_bytes(foot[..4].try_into().expect("4 bytes")));
    if frames == 0 {
        return Err(corrupt("the seek table lists no frame"));
    }
    if frames > MAX_FRAMES {
        return Err(FormatError::Unsupported(format!(
            "{frames} frames (at most {MAX_FRAMES})"
        )));
    }
    Ok(frames)
}

/// Checks the skippable frame's head against the frame count.
pub(crate) fn check_head(head: &[u8], frames: u64) -> Result<(), FormatError> {
    if head != encode_head(frames) {
        return Err(corrupt(
            "the seek table's skippable-frame header does not match its frame count",
        ));
    }
    Ok(())
}

/// Checks frame `index`'s plaintext length against the frames before it: frames before
/// the last hold `S` bytes each (the first frame's length), S a multiple of the chunk size
/// and at most 2^24; the last holds 1..=S, or anything up to 2^24 when it is the only one.
#[derive(Debug, Default, Clone)]
pub(crate) struct FrameSizes {
    /// The first frame's plaintext length, once seen.
    first: Option<u64>,
    /// The previous frame's length, which must turn out to be S when another follows.
    previous: Option<u64>,
}

impl FrameSizes {
    /// Another frame follows the ones recorded: the previous one was not the last, so it
    /// must hold a whole S. Checked before the next frame is decoded.
    pub(crate) fn next_frame(&self) -> Result<(), FormatError> {
        if let Some(prev) = self.previous {
            let s = self.first.unwrap_or(prev);
            if prev == 0 || !prev.is_multiple_of(CHUNK_SIZE as u64) || prev != s {
                return Err(corrupt(format!(
                    "a frame before the last holds {prev} bytes (frames hold S bytes, a multiple of {CHUNK_SIZE}, except the last)"
                )));
            }
        }
        Ok(())
    }

    /// The most plaintext the next frame may hold: S once known, else 2^24.
    pub(crate) fn limit(&self) -> u64 {
        self.first.unwrap_or(MAX_FRAME_LEN as u64)
    }

    /// Records the next frame's plaintext length.
    pub(crate) fn push(&mut self, len: u64) -> Result<(), FormatError> {
        if len > MAX_FRAME_LEN as u64 {
            return Err(corrupt(format!(
                "a frame holds {len} bytes (at most {MAX_FRAME_LEN})"
            )));
        }
        self.next_frame()?;
        if let Some(s) = self.first {
            if len == 0 || len > s {
                return Err(corrupt(format!(
                    "the frame after {s}-byte frames holds {len} bytes"
                )));
            }
        }
        self.first.get_or_insert(len);
        self.previous = Some(len);
        Ok(())
    }
}

/// Where each frame is: parsed from a payload's table and checked against its length.
#[derive(Debug, Clone)]
pub(crate) struct FrameIndex {
    /// Payload offset of each frame's first byte, then of the table.
    offsets: Vec<u64>,
    /// Plaintext bytes of each frame but the last.
    frame_len: u64,
    /// Plaintext bytes of the whole file.
    plaintext_len: u64,
}

/// One frame's place in the payload and in the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameSpan {
    /// Payload offset and length of the compressed frame.
    pub(crate) payload_at: u64,
    pub(crate) payload_len: u64,
    /// Plaintext offset and length.
    pub(crate) plain_at: u64,
    pub(crate) plain_len: u64,
}

impl FrameIndex {
    /// Parses the entries (`entries` is the table without head and foot) of a payload of
    /// `payload_len` bytes: the compressed sizes must fill the payload up to the table.
    pub(crate) fn parse(entries: &[u8], payload_len: u64) -> Result<Self, FormatError> {
        let frames = (entries.len() / ENTRY_LEN) as u64;
        let mut offsets = Vec::with_capacity(entries.len() / ENTRY_LEN + 1);
        let mut sizes = FrameSizes::default();
        let (mut at, mut plain) = (0u64, 0u64);
        for entry in entries.chunks_exact(ENTRY_LEN) {
            let compressed = u64::from(u32::from_le_bytes(entry[..4].try_into().expect("4")));
            let decompressed = u64::from(u32::from_le_bytes(entry[4..].try_into().expect("4")));
            sizes.push(decompressed)?;
            if compressed == 0 || compressed > max_packed_len() {
                return Err(corrupt(format!(
                    "a seek table entry has a compressed size of {compressed}"
                )));
            }
            offsets.push(at);
            at += compressed;
            plain += decompressed;
        }
        if at + table_len(frames) != payload_len {
            return Err(corrupt(format!(
                "the seek table's frames take {at} bytes, the payload has {} before its table",
                payload_len.saturating_sub(table_len(frames))
            )));
        }
        offsets.push(at);
        Ok(FrameIndex {
            offsets,
            frame_len: sizes.first.unwrap_or(0).max(1),
            plaintext_len: plain,
        })
    }

    /// Number of frames.
    pub(crate) fn frames(&self) -> u64 {
        self.offsets.len() as u64 - 1
    }

    /// Plaintext bytes of the whole file.
    pub(crate) fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Frame `i` (< `frames()`).
    pub(crate) fn span(&self, i: u64) -> FrameSpan {
        let plain_at = i * self.frame_len;
        FrameSpan {
            payload_at: self.offsets[i as usize],
            payload_len: self.offsets[i as usize + 1] - self.offsets[i as usize],
            plain_at,
            plain_len: self.frame_len.min(self.plaintext_len - plain_at),
        }
    }

    /// The frame holding plaintext offset `at` (< `plaintext_len()`).
    pub(crate) fn frame_at(&self, at: u64) -> u64 {
        at / self.frame_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};

    fn class<T>(r: Result<T, FormatError>) -> Option<ErrorClass> {
        r.err().map(|e| e.class())
    }

    const CORRUPT: Option<ErrorClass> = Some(ErrorClass::Corrupt);

    fn table(entries: &[(u32, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|&(c, d)| encode_entry(c, d))
            .collect()
    }

    #[test]
    fn sizes_follow_the_rule() {
        let s = CHUNK_SIZE as u64 * 4;
        // The class each sequence of frame lengths gets (None: accepted).
        let judge = |lens: &[u64]| {
            let mut sizes = FrameSizes::default();
            class(lens.iter().try_for_each(|&l| sizes.push(l)))
        };
        assert_eq!(judge(&[0]), None);
        assert_eq!(judge(&[5]), None);
        assert_eq!(judge(&[s, s, 1]), None);
        assert_eq!(judge(&[s, s]), None);
        assert_eq!(
            judge(&[s, s + 1]),
            CORRUPT,
            "the last frame is larger than S"
        );
        assert_eq!(judge(&[s, 0]), CORRUPT, "an empty frame after others");
        assert_eq!(
            judge(&[s + 1, 1]),
            CORRUPT,
            "S not a multiple of the chunk size"
        );
        assert_eq!(
            judge(&[s, s / 2, 1]),
            CORRUPT,
            "a short frame in the middle"
        );
        assert_eq!(judge(&[MAX_FRAME_LEN as u64 + 1]), CORRUPT);
    }

    #[test]
    fn an_index_finds_frames_and_checks_the_payload_length() {
        let s = CHUNK_SIZE as u32;
        let entries = table(&[(100, s), (50, s), (7, 3)]);
        let payload_len = 157 + table_len(3);
        let index = FrameIndex::parse(&entries, payload_len).unwrap();
        assert_eq!(index.frames(), 3);
        assert_eq!(index.plaintext_len(), 2 * s as u64 + 3);
        assert_eq!(index.frame_at(s as u64), 1);
        assert_eq!(
            index.span(2),
            FrameSpan {
                payload_at: 150,
                payload_len: 7,
                plain_at: 2 * s as u64,
                plain_len: 3
            }
        );
        assert_eq!(class(FrameIndex::parse(&entries, payload_len + 1)), CORRUPT);
        assert_eq!(
            class(FrameIndex::parse(&table(&[(0, 5)]), table_len(1))),
            CORRUPT
        );
    }

    #[test]
    fn the_foot_is_checked() {
        assert_eq!(parse_foot(&encode_foot(3)).unwrap(), 3);
        assert_eq!(class(parse_foot(&encode_foot(0))), CORRUPT);
        let mut descriptor = encode_foot(3);
        descriptor[4] = 0x80;
        assert_eq!(class(parse_foot(&descriptor)), CORRUPT);
        let mut magic = encode_foot(3);
        magic[8] ^= 1;
        assert_eq!(class(parse_foot(&magic)), CORRUPT);
        assert!(check_head(&encode_head(3), 3).is_ok());
        assert_eq!(class(check_head(&encode_head(3), 4)), CORRUPT);
    }
}
