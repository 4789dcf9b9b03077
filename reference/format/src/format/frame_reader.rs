//! Reading a seekable payload (compression `02`, spec/format.md §8.2): [`FrameReader`]
//! decodes it front to back with constant memory, checking each frame and then the seek
//! table against what it saw; [`FrameDecoder`] decodes one frame whose place the table gave.

use super::seek_table::{
    encode_entry, max_packed_len, parse_foot, FrameSizes, ENTRY_LEN, SKIPPABLE_MAGIC,
    TABLE_FOOT_LEN,
};
use super::FormatError;
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, Read};
use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

/// zstd windows above 2^24 bytes are refused, so decompression memory stays bounded
/// (levels 1..=19 without long mode never exceed 2^23).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// The magic of an ordinary Zstandard frame (RFC 8878 §3.1.1).
pub(crate) const ZSTD_FRAME_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn corrupt(what: impl Into<String>) -> FormatError {
    FormatError::Decompress(what.into())
}

fn zstd_error(code: usize) -> FormatError {
    corrupt(format!(
        "a frame does not decode: {}",
        zstd::zstd_safe::get_error_name(code)
    ))
}

/// A decompression context that refuses windows above 2^24 bytes.
fn dctx() -> Result<DCtx<'static>, FormatError> {
    let mut d = DCtx::create();
    d.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
        .map_err(|c| FormatError::Crypto(zstd::zstd_safe::get_error_name(c).into()))?;
    Ok(d)
}

/// Decodes single frames given whole (random access and parallel decryption).
pub(crate) struct FrameDecoder {
    dctx: DCtx<'static>,
}

impl FrameDecoder {
    pub(crate) fn new() -> Result<Self, FormatError> {
        Ok(FrameDecoder { dctx: dctx()? })
    }

    /// Decodes `packed`, which must be exactly one ordinary frame of exactly `out.len()`
    /// bytes of plaintext, into `out`.
    pub(crate) fn decode(&mut self, packed: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        if packed.get(..4) != Some(&ZSTD_FRAME_MAGIC[..]) {
            return Err(corrupt("a frame does not start with the Zstandard magic"));
        }
        self.dctx
            .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
            .map_err(zstd_error)?;
        let want = out.len();
        let mut input = InBuffer::around(packed);
        let mut output = OutBuffer::around(out);
        loop {
            let hint = self
                .dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(zstd_error)?;
            if hint == 0 {
                break;
            }
            if output.pos() == want {
                // Room is full but the frame goes on: it holds more than the table says.
                let mut probe = [0u8; 1];
                let mut extra = OutBuffer::around(&mut probe[..]);
                let more = self
                    .dctx
                    .decompress_stream(&mut extra, &mut input)
                    .map_err(zstd_error)?;
                if extra.pos() > 0 || more != 0 {
                    return Err(corrupt(format!(
                        "a frame holds more than the {want} bytes its table entry says"
                    )));
                }
                break;
            }
            if input.pos() == packed.len() {
                return Err(corrupt("a frame ends before its table entry says"));
            }
        }
        if output.pos() != want {
            return Err(corrupt(format!(
                "a frame holds {} bytes, its table entry says {want}",
                output.pos()
            )));
        }
        if input.pos() != packed.len() {
            return Err(corrupt("bytes follow a frame inside its table entry"));
        }
        Ok(())
    }
}

enum State {
    /// Before a frame or the table: `magic[..have]` read so far.
    Between { magic: [u8; 4], have: usize },
    /// Inside a frame: compressed bytes consumed and plaintext produced.
    InFrame { packed: u64, plain: u64 },
    /// The table checked out and nothing follows it.
    Done,
}

/// Decodes a seekable payload from a `BufRead` (the decrypted body): frames one after the
/// other, then the table, which must list exactly the frames seen. Memory is constant: the
/// table is compared through a hash of the entries.
pub(crate) struct FrameReader<R: BufRead> {
    inner: R,
    dctx: DCtx<'static>,
    state: State,
    sizes: FrameSizes,
    frames: u64,
    seen: Sha256,
}

impl<R: BufRead> FrameReader<R> {
    pub(crate) fn new(inner: R) -> Result<Self, FormatError> {
        Ok(FrameReader {
            inner,
            dctx: dctx()?,
            state: State::Between {
                magic: [0; 4],
                have: 0,
            },
            sizes: FrameSizes::default(),
            frames: 0,
            seen: Sha256::new(),
        })
    }

    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Reads the table after the skippable magic and checks it against the frames seen,
    /// then that the payload ends with it.
    fn read_table(&mut self) -> Result<(), FormatError> {
        let mut size = [0u8; 4];
        self.read_exact_payload(&mut size, "inside the seek table")?;
        let expected = (self.frames * ENTRY_LEN as u64 + TABLE_FOOT_LEN as u64) as u32;
        if u32::from_le_bytes(size) != expected {
            return Err(corrupt(format!(
                "the seek table's size is {}, {} frames need {expected}",
                u32::from_le_bytes(size),
                self.frames
            )));
        }
        let mut listed = Sha256::new();
        let mut entry = [0u8; ENTRY_LEN];
        for _ in 0..self.frames {
            self.read_exact_payload(&mut entry, "inside the seek table")?;
            listed.update(entry);
        }
        let mut foot = [0u8; TABLE_FOOT_LEN];
        self.read_exact_payload(&mut foot, "inside the seek table")?;
        if parse_foot(&foot)? != self.frames {
            return Err(corrupt(
                "the seek table's frame count is not the number of frames",
            ));
        }
        let seen = std::mem::take(&mut self.seen);
        if listed.finalize() != seen.finalize() {
            return Err(corrupt("the seek table does not list the frames' sizes"));
        }
        if !self
            .inner
            .fill_buf()
            .map_err(FormatError::from_io)?
            .is_empty()
        {
            return Err(corrupt("authenticated bytes follow the seek table"));
        }
        Ok(())
    }

    fn read_exact_payload(&mut self, buf: &mut [u8], place: &str) -> Result<(), FormatError> {
        let n = crate::read_full::read_full(&mut self.inner, buf).map_err(FormatError::from_io)?;
        if n < buf.len() {
            return Err(corrupt(format!("the payload ends {place}")));
        }
        Ok(())
    }

    /// One step: returns plaintext bytes written to `out` (0 when a step produced none).
    fn step(&mut self, out: &mut [u8]) -> Result<usize, FormatError> {
        match &mut self.state {
            State::Done => Ok(0),
            State::Between { magic, have } => {
                let avail = self.inner.fill_buf().map_err(FormatError::from_io)?;
                if avail.is_empty() {
                    return Err(corrupt(if self.frames == 0 && *have == 0 {
                        "the payload is empty"
                    } else {
                        "the payload ends without a seek table"
                    }));
                }
                let take = avail.len().min(4 - *have);
                magic[*have..*have + take].copy_from_slice(&avail[..take]);
                *have += take;
                self.inner.consume(take);
                if *have < 4 {
                    return Ok(0);
                }
                let magic = *magic;
                if magic == ZSTD_FRAME_MAGIC {
                    self.sizes.next_frame()?;
                    self.dctx
                        .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
                        .map_err(zstd_error)?;
                    let mut input = InBuffer::around(&magic[..]);
                    let mut output = OutBuffer::around(&mut out[..0]);
                    self.dctx
                        .decompress_stream(&mut output, &mut input)
                        .map_err(zstd_error)?;
                    self.state = State::InFrame {
                        packed: 4,
                        plain: 0,
                    };
                    Ok(0)
                } else if magic == SKIPPABLE_MAGIC.to_le_bytes() && self.frames > 0 {
                    self.read_table()?;
                    self.state = State::Done;
                    Ok(0)
                } else {
                    Err(corrupt(if self.frames == 0 {
                        "the payload does not start with a Zstandard frame"
                    } else {
                        "a frame is followed by something other than a frame or the seek table"
                    }))
                }
            }
            State::InFrame { packed, plain } => {
                let avail = self.inner.fill_buf().map_err(FormatError::from_io)?;
                if avail.is_empty() {
                    return Err(corrupt("the payload ends inside a frame"));
                }
                let mut input = InBuffer::around(avail);
                let mut output = OutBuffer::around(out);
                let hint = self
                    .dctx
                    .decompress_stream(&mut output, &mut input)
                    .map_err(zstd_error)?;
                let (used, produced) = (input.pos(), output.pos());
                self.inner.consume(used);
                *packed += used as u64;
                *plain += produced as u64;
                let limit = self.sizes.limit();
                if *plain > limit || *packed > max_packed_len() {
                    return Err(corrupt(format!(
                        "a frame holds more than {limit} bytes (the first frame's length, or 2^24)"
                    )));
                }
                if hint == 0 {
                    let (packed, plain) = (*packed, *plain);
                    self.sizes.push(plain)?;
                    self.seen.update(encode_entry(packed as u32, plain as u32));
                    self.frames += 1;
                    if self.frames > super::seek_table::MAX_FRAMES {
                        return Err(FormatError::Unsupported("more than 2^24 frames".into()));
                    }
                    self.state = State::Between {
                        magic: [0; 4],
                        have: 0,
                    };
                }
                Ok(produced)
            }
        }
    }
}

impl<R: BufRead> Read for FrameReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if matches!(self.state, State::Done) {
                return Ok(0);
            }
            let n = self.step(out).map_err(FormatError::into_io)?;
            if n > 0 {
                return Ok(n);
            }
        }
    }
}
