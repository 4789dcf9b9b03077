//! Random access into an uncompressed or seekable-zstd Coffer file: `read_at` authenticates
//! only the chunks it touches (and decompresses only the frames it needs), after the length
//! check C2SP requires (the final chunk is authenticated when the file is opened, so the
//! payload length is known to be the written one, and with it where the seek table is).

use super::cobblestone::{
    commitment_matches, derive, ChunkCipher, CHUNK_SIZE, KEY_LEN, MAX_CHUNKS, PREFIX_LEN, SALT_LEN,
    SEALED_CHUNK_SIZE, TAG_LEN,
};
use super::file::read_preamble;
use super::frame_reader::FrameDecoder;
use super::header::{check_footer, Compression, FooterState, Header, FOOTER_LEN};
use super::seek_table::{
    check_head, parse_foot, table_len, FrameIndex, TABLE_FOOT_LEN, TABLE_HEAD_LEN,
};
use super::wiped::WipedBuf;
use super::FormatError;
use crate::key::RootKey;
use std::io::{self, Read};
use std::sync::Arc;

/// Positional reads, as files and byte slices offer them.
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; 0 means end of input.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Total length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// The whole input, when it is already in memory (lets readers decrypt in place).
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn as_slice(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn as_slice(&self) -> Option<&[u8]> {
        (**self).as_slice()
    }
}

/// Fills `buf` from `offset` or fails with `UnexpectedEof`.
pub(crate) fn read_exact_at<F: ReadAt + ?Sized>(
    input: &F,
    buf: &mut [u8],
    offset: u64,
) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match input.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A sequential `Read` over a `ReadAt`.
pub(crate) struct Cursor<'a, F: ?Sized> {
    input: &'a F,
    offset: u64,
}

impl<'a, F: ?Sized> Cursor<'a, F> {
    /// Reads from `offset` on.
    pub(crate) fn new(input: &'a F, offset: u64) -> Self {
        Cursor { input, offset }
    }
}

impl<F: ReadAt + ?Sized> Read for Cursor<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// An opened file whose plaintext can be read at any offset.
pub struct RandomAccess<F: ReadAt> {
    input: F,
    header: Header,
    body_offset: u64,
    cipher: ChunkCipher,
    /// Number of full chunks; the final (short) chunk has this index.
    full_chunks: u64,
    final_sealed_len: usize,
    plaintext_len: u64,
    scratch: WipedBuf,
    cached: Option<u64>,
    /// The frames of a seekable payload; `None` for an uncompressed file.
    frames: Option<Frames>,
}

/// A seekable payload's index and the one frame kept decompressed.
struct Frames {
    index: Arc<FrameIndex>,
    decoder: FrameDecoder,
    packed: WipedBuf,
    plain: WipedBuf,
    cached: Option<u64>,
    decoded: u64,
}

impl Frames {
    fn new(index: Arc<FrameIndex>) -> Result<Self, FormatError> {
        Ok(Frames {
            index,
            decoder: FrameDecoder::new()?,
            packed: WipedBuf::default(),
            plain: WipedBuf::default(),
            cached: None,
            decoded: 0,
        })
    }
}

impl<F: ReadAt> RandomAccess<F> {
    /// Checks the header, the footer and the final chunk; reads nothing else.
    pub fn open(input: F, root: &RootKey) -> Result<Self, FormatError> {
        let opened = read_preamble(
            &mut Cursor {
                input: &input,
                offset: 0,
            },
            root,
        )?;
        if opened.header.compression == Compression::Zstd {
            return Err(FormatError::Unsupported(
                "random access needs an uncompressed or seekable file (this one is one zstd frame, compression 01); decrypt it whole".into(),
            ));
        }
        let size = input.size().map_err(FormatError::Io)?;
        let body_offset = opened.body_offset;
        let min = body_offset + FOOTER_LEN as u64;
        if size < min + TAG_LEN as u64 {
            return Err(FormatError::Truncated(format!(
                "{size} bytes: too short for a header, one chunk and a footer"
            )));
        }
        let mut tail = [0u8; FOOTER_LEN];
        read_exact_at(&input, &mut tail, size - FOOTER_LEN as u64).map_err(FormatError::Io)?;
        match check_footer(&tail, size) {
            FooterState::Complete => {}
            FooterState::LengthMismatch { declared } => {
                return Err(FormatError::Corrupt(format!(
                    "the footer declares {declared} bytes but the file has {size}"
                )))
            }
            FooterState::Missing => {
                return Err(FormatError::Truncated(
                    "no footer at the end: the file was cut short (or bytes were appended; `coffer verify` tells which)".into(),
                ))
            }
        }
        let seekable = opened.header.compression == Compression::ZstdSeekable;
        let mut access =
            Self::from_body(input, opened.header, body_offset, size - min, opened.cipher)?;
        if seekable {
            let index = access.read_index()?;
            access.frames = Some(Frames::new(Arc::new(index))?);
        }
        Ok(access)
    }

    /// Reads and checks the seek table at the end of the payload (spec/format.md §9).
    fn read_index(&mut self) -> Result<FrameIndex, FormatError> {
        let payload_len = self.plaintext_len;
        let short =
            || FormatError::Decompress("the payload is too short for its seek table".into());
        let mut foot = [0u8; TABLE_FOOT_LEN];
        let foot_at = payload_len
            .checked_sub(TABLE_FOOT_LEN as u64)
            .ok_or_else(short)?;
        self.read_payload_exact(foot_at, &mut foot)?;
        let frames = parse_foot(&foot)?;
        let table_at = payload_len
            .checked_sub(table_len(frames))
            .ok_or_else(short)?;
        let mut table = WipedBuf::zeroed(table_len(frames) as usize);
        self.read_payload_exact(table_at, &mut table)?;
        check_head(&table[..TABLE_HEAD_LEN], frames)?;
        FrameIndex::parse(
            &table[TABLE_HEAD_LEN..table.len() - TABLE_FOOT_LEN],
            payload_len,
        )
    }

    /// Fills `buf` with payload bytes from `offset`.
    fn read_payload_exact(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        if self.read_payload_at(offset, buf)? < buf.len() {
            return Err(FormatError::Decompress(
                "the seek table points past the payload".into(),
            ));
        }
        Ok(())
    }

    /// Another reader of the same file for another thread: its own cipher and buffers, the
    /// same index.
    pub(crate) fn fork(&self) -> Result<RandomAccess<&F>, FormatError> {
        Ok(RandomAccess {
            input: &self.input,
            header: self.header.clone(),
            body_offset: self.body_offset,
            cipher: self.cipher.try_clone()?,
            full_chunks: self.full_chunks,
            final_sealed_len: self.final_sealed_len,
            plaintext_len: self.plaintext_len,
            scratch: WipedBuf::zeroed(SEALED_CHUNK_SIZE),
            cached: None,
            frames: match &self.frames {
                Some(f) => Some(Frames::new(Arc::clone(&f.index))?),
                None => None,
            },
        })
    }

    /// Number of frames of a seekable file (1 for an uncompressed one).
    pub(crate) fn frame_count(&self) -> u64 {
        self.frames.as_ref().map_or(1, |f| f.index.frames())
    }

    /// Frames decompressed so far (each at most once in a row: the last is kept).
    pub fn frames_decoded(&self) -> u64 {
        self.frames.as_ref().map_or(0, |f| f.decoded)
    }

    /// Decompresses frame `i` of a seekable file; returns its plaintext offset and bytes.
    pub(crate) fn frame(&mut self, i: u64) -> Result<(u64, &[u8]), FormatError> {
        let mut frames = self
            .frames
            .take()
            .ok_or_else(|| FormatError::Crypto("not a seekable file".into()))?;
        let result = self.load_frame(&mut frames, i);
        self.frames = Some(frames);
        let at = result?;
        let f = self.frames.as_ref().expect("just put back");
        Ok((at, &f.plain))
    }

    fn load_frame(&mut self, frames: &mut Frames, i: u64) -> Result<u64, FormatError> {
        let span = frames.index.span(i);
        if frames.cached == Some(i) {
            return Ok(span.plain_at);
        }
        frames.cached = None;
        frames.packed.resize(span.payload_len as usize, 0);
        self.read_payload_exact(span.payload_at, &mut frames.packed)?;
        frames.plain.resize(span.plain_len as usize, 0);
        frames.decoder.decode(&frames.packed, &mut frames.plain)?;
        frames.decoded += 1;
        frames.cached = Some(i);
        Ok(span.plain_at)
    }

    /// Random access to a bare C2SP message (`salt || commitment || chunks`, no Coffer
    /// header or footer), as the Wycheproof vectors are applied.
    pub fn open_c2sp(
        input: F,
        input_key: &[u8; KEY_LEN],
        context: &[u8],
    ) -> Result<Self, FormatError> {
        let mut prefix = [0u8; PREFIX_LEN];
        let size = input.size().map_err(FormatError::Io)?;
        if size < PREFIX_LEN as u64 {
            return Err(FormatError::Truncated(format!(
                "{size} bytes, shorter than the salt and commitment"
            )));
        }
        read_exact_at(&input, &mut prefix, 0).map_err(FormatError::Io)?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&prefix[..SALT_LEN]);
        let keys = derive(input_key, &salt, context);
        if !commitment_matches(&keys, &prefix[SALT_LEN..]) {
            return Err(FormatError::Commitment);
        }
        let header = Header::new(Compression::None, Vec::new());
        Self::from_body(
            input,
            header,
            PREFIX_LEN as u64,
            size - PREFIX_LEN as u64,
            ChunkCipher::new(&keys)?,
        )
    }

    /// Applies the C2SP length rules to a body of `body_len` bytes at `body_offset` and
    /// authenticates its final chunk.
    fn from_body(
        input: F,
        header: Header,
        body_offset: u64,
        body_len: u64,
        cipher: ChunkCipher,
    ) -> Result<Self, FormatError> {
        let full_chunks = body_len / SEALED_CHUNK_SIZE as u64;
        let final_sealed_len = (body_len % SEALED_CHUNK_SIZE as u64) as usize;
        if final_sealed_len < TAG_LEN {
            return Err(FormatError::Truncated(format!(
                "the body ends after {full_chunks} full chunk(s) without a final chunk"
            )));
        }
        if full_chunks >= MAX_CHUNKS {
            return Err(FormatError::TooLong);
        }
        let mut access = RandomAccess {
            input,
            header,
            body_offset,
            cipher,
            full_chunks,
            final_sealed_len,
            plaintext_len: full_chunks * CHUNK_SIZE as u64 + (final_sealed_len - TAG_LEN) as u64,
            scratch: WipedBuf::zeroed(SEALED_CHUNK_SIZE),
            cached: None,
            frames: None,
        };
        access.load(full_chunks)?;
        Ok(access)
    }

    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The authenticated plaintext length.
    pub fn len(&self) -> u64 {
        match &self.frames {
            Some(f) => f.index.plaintext_len(),
            None => self.plaintext_len,
        }
    }

    /// True for an empty plaintext.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decrypts chunk `index` into the scratch buffer; returns its plaintext length.
    fn load(&mut self, index: u64) -> Result<usize, FormatError> {
        let sealed_len = if index == self.full_chunks {
            self.final_sealed_len
        } else {
            SEALED_CHUNK_SIZE
        };
        if self.cached == Some(index) {
            return Ok(sealed_len - TAG_LEN);
        }
        self.cached = None;
        let offset = self.body_offset + index * SEALED_CHUNK_SIZE as u64;
        let sealed = &mut self.scratch[..sealed_len];
        read_exact_at(&self.input, sealed, offset).map_err(FormatError::Io)?;
        let plain = self
            .cipher
            .open(index, sealed)
            .ok_or(FormatError::ChunkAuth {
                index,
                at_end: index == self.full_chunks,
            })?;
        self.cached = Some(index);
        Ok(plain)
    }

    /// Reads plaintext at `offset` into `buf`; returns the bytes read (fewer only at the
    /// end, 0 at or past the end). Every byte returned comes from an authenticated chunk;
    /// of a seekable file only the frames that hold the range are decompressed.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FormatError> {
        if self.frames.is_none() {
            return self.read_payload_at(offset, buf);
        }
        let len = self.len();
        if offset >= len {
            return Ok(0);
        }
        let end = len.min(offset.saturating_add(buf.len() as u64));
        let mut at = offset;
        while at < end {
            let i = self.frames.as_ref().expect("seekable").index.frame_at(at);
            let (frame_at, plain) = self.frame(i)?;
            let within = (at - frame_at) as usize;
            let take = (plain.len() - within).min((end - at) as usize);
            let dst = (at - offset) as usize;
            buf[dst..dst + take].copy_from_slice(&plain[within..within + take]);
            at += take as u64;
        }
        Ok((end - offset) as usize)
    }

    /// Reads payload (decrypted body) bytes at `offset`: the plaintext of an uncompressed
    /// file, the frames and table of a seekable one.
    fn read_payload_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FormatError> {
        if offset >= self.plaintext_len {
            return Ok(0);
        }
        let end = self
            .plaintext_len
            .min(offset.saturating_add(buf.len() as u64));
        let mut at = offset;
        while at < end {
            let index = at / CHUNK_SIZE as u64;
            let plain = self.load(index)?;
            let within = (at % CHUNK_SIZE as u64) as usize;
            let take = (plain - within).min((end - at) as usize);
            let dst = (at - offset) as usize;
            buf[dst..dst + take].copy_from_slice(&self.scratch[within..within + take]);
            at += take as u64;
        }
        Ok((end - offset) as usize)
    }
}
