//! Streaming C2SP encryption and decryption as `std::io::Write` / `std::io::Read` adapters,
//! holding one chunk in memory.

use super::cobblestone::{
    commitment_matches, derive, ChunkCipher, CHUNK_SIZE, KEY_LEN, MAX_CHUNKS, PREFIX_LEN, SALT_LEN,
    SEALED_CHUNK_SIZE, TAG_LEN,
};
use super::FormatError;
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

/// Encrypts everything written to it as one C2SP message. Call [`ChunkedWriter::finish`]:
/// without it the final short chunk is never written and readers report truncation.
pub struct ChunkedWriter<W: Write> {
    inner: W,
    cipher: ChunkCipher,
    buf: Zeroizing<Vec<u8>>,
    index: u64,
    written: u64,
}

impl<W: Write> ChunkedWriter<W> {
    /// Writes `salt || commitment` and returns a writer for the message.
    pub fn new(
        mut inner: W,
        input_key: &[u8; KEY_LEN],
        salt: &[u8; SALT_LEN],
        context: &[u8],
    ) -> Result<Self, FormatError> {
        let keys = derive(input_key, salt, context);
        inner.write_all(salt).map_err(FormatError::Io)?;
        inner.write_all(&keys.commitment).map_err(FormatError::Io)?;
        Ok(ChunkedWriter {
            inner,
            cipher: ChunkCipher::new(&keys)?,
            buf: Zeroizing::new(Vec::with_capacity(SEALED_CHUNK_SIZE)),
            index: 0,
            written: PREFIX_LEN as u64,
        })
    }

    fn seal_buffer(&mut self) -> Result<(), FormatError> {
        let tag = self.cipher.seal(self.index, &mut self.buf)?;
        self.buf.extend_from_slice(&tag);
        self.inner.write_all(&self.buf).map_err(FormatError::Io)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Seals the final (short, possibly empty) chunk and returns the inner writer and the
    /// number of ciphertext bytes written.
    pub fn finish(mut self) -> Result<(W, u64), FormatError> {
        self.seal_buffer()?;
        self.inner.flush().map_err(FormatError::Io)?;
        Ok((self.inner, self.written))
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        // A full buffer is never the final chunk, so it can be sealed right away.
        if self.buf.len() == CHUNK_SIZE {
            self.seal_buffer().map_err(FormatError::into_io)?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads `buf.len()` bytes unless the input ends first; returns how many were read.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Why a message failed after its commitment checked out. Kept by readers so that every
/// later read fails the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// Chunk `index` did not authenticate; `at_end` when it was the short block at the end
    /// of the input (a cut inside a chunk looks like this).
    ChunkAuth { index: u64, at_end: bool },
    /// The input ended after `chunks` full chunks, or inside a tag: no valid final chunk.
    Truncated { chunks: u64 },
    /// Chunk `index` is a valid final chunk, but more bytes follow it.
    TrailingData { index: u64 },
    /// The counter reached 2^38.
    TooLong,
}

impl From<BodyFault> for FormatError {
    fn from(fault: BodyFault) -> Self {
        match fault {
            BodyFault::ChunkAuth { index, at_end } => FormatError::ChunkAuth { index, at_end },
            BodyFault::Truncated { chunks } => FormatError::Truncated(format!(
                "the message ends after {chunks} full chunk(s) without a valid final chunk"
            )),
            BodyFault::TrailingData { index } => FormatError::TrailingData { index },
            BodyFault::TooLong => FormatError::TooLong,
        }
    }
}

/// One sealed block as read from the input.
pub(crate) struct Block {
    pub index: u64,
    /// True when the input ended within or right after this block.
    pub at_end: bool,
}

/// Reads the next sealed block into `buf` (which must hold [`SEALED_CHUNK_SIZE`] bytes) and
/// returns its length. A block shorter than a full chunk can only come at the end.
pub(crate) fn next_block(
    reader: &mut impl Read,
    buf: &mut [u8],
    index: u64,
) -> io::Result<(Block, usize)> {
    let n = read_full(reader, &mut buf[..SEALED_CHUNK_SIZE])?;
    Ok((
        Block {
            index,
            at_end: n < SEALED_CHUNK_SIZE,
        },
        n,
    ))
}

/// Authenticates and decrypts one block into `plain` (at least [`CHUNK_SIZE`] bytes),
/// leaving `sealed` as it was. Returns the plaintext length and whether it was the final
/// chunk.
pub(crate) fn open_block(
    cipher: &ChunkCipher,
    block: &Block,
    sealed: &[u8],
    plain: &mut [u8],
) -> Result<(usize, bool), BodyFault> {
    if block.index >= MAX_CHUNKS {
        return Err(BodyFault::TooLong);
    }
    let len = sealed.len();
    if block.at_end && len < TAG_LEN {
        // Either nothing followed the last full chunk or the final chunk lost bytes of its tag.
        return Err(BodyFault::Truncated {
            chunks: block.index,
        });
    }
    match cipher.open_into(block.index, sealed, plain) {
        Some(n) => Ok((n, len < SEALED_CHUNK_SIZE)),
        None => Err(refine_fault(
            cipher,
            BodyFault::ChunkAuth {
                index: block.index,
                at_end: block.at_end,
            },
            sealed,
        )),
    }
}

/// Decrypts a C2SP message from a reader, one chunk at a time. Plaintext is released only
/// chunk by chunk after each chunk authenticates; a failed message keeps failing.
pub struct ChunkedReader<R: Read> {
    inner: R,
    cipher: ChunkCipher,
    sealed: Vec<u8>,
    plain: Zeroizing<Vec<u8>>,
    start: usize,
    end: usize,
    index: u64,
    state: ReadState,
    io_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Reading,
    Done,
    Failed(BodyFault),
}

impl<R: Read> ChunkedReader<R> {
    /// Reads and checks `salt || commitment`, then reads chunks on demand.
    pub fn new(
        mut inner: R,
        input_key: &[u8; KEY_LEN],
        context: &[u8],
    ) -> Result<Self, FormatError> {
        let mut prefix = [0u8; PREFIX_LEN];
        let n = read_full(&mut inner, &mut prefix).map_err(FormatError::Io)?;
        if n < PREFIX_LEN {
            return Err(FormatError::Truncated(format!(
                "{n} bytes, shorter than the {PREFIX_LEN}-byte salt and commitment"
            )));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&prefix[..SALT_LEN]);
        let keys = derive(input_key, &salt, context);
        if !commitment_matches(&keys, &prefix[SALT_LEN..]) {
            return Err(FormatError::Commitment);
        }
        Ok(Self::after_prefix(inner, ChunkCipher::new(&keys)?))
    }

    /// A reader positioned after a prefix the caller has already checked.
    pub(crate) fn after_prefix(inner: R, cipher: ChunkCipher) -> Self {
        ChunkedReader {
            inner,
            cipher,
            sealed: vec![0u8; SEALED_CHUNK_SIZE],
            plain: Zeroizing::new(vec![0u8; CHUNK_SIZE]),
            start: 0,
            end: 0,
            index: 0,
            state: ReadState::Reading,
            io_error: false,
        }
    }

    /// The failure this reader has stopped on, if any.
    pub fn fault(&self) -> Option<BodyFault> {
        match self.state {
            ReadState::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// True once the final chunk has authenticated.
    pub fn is_done(&self) -> bool {
        self.state == ReadState::Done
    }

    /// True if reading the input failed (as opposed to the data being bad).
    pub fn saw_io_error(&self) -> bool {
        self.io_error
    }

    /// The wrapped reader (for the footer held back by the Coffer layer).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    fn fill(&mut self) -> Result<(), FormatError> {
        let (block, n) = match next_block(&mut self.inner, &mut self.sealed, self.index) {
            Ok(read) => read,
            Err(e) => {
                self.io_error = true;
                return Err(FormatError::Io(e));
            }
        };
        match open_block(&self.cipher, &block, &self.sealed[..n], &mut self.plain) {
            Ok((plain, is_final)) => {
                self.start = 0;
                self.end = plain;
                self.index += 1;
                if is_final {
                    self.state = ReadState::Done;
                }
                Ok(())
            }
            Err(fault) => {
                self.state = ReadState::Failed(fault);
                Err(fault.into())
            }
        }
    }
}

/// A chunk that fails may be a valid final chunk followed by extra bytes: look for one in
/// the failed block's ciphertext.
pub(crate) fn refine_fault(cipher: &ChunkCipher, fault: BodyFault, original: &[u8]) -> BodyFault {
    match fault {
        BodyFault::ChunkAuth { index, .. } => match cipher.find_final_chunk(index, original) {
            Some(_) => BodyFault::TrailingData { index },
            None => fault,
        },
        other => other,
    }
}

impl<R: Read> Read for ChunkedReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.start < self.end {
                let n = out.len().min(self.end - self.start);
                out[..n].copy_from_slice(&self.plain[self.start..self.start + n]);
                self.start += n;
                return Ok(n);
            }
            match self.state {
                ReadState::Done => return Ok(0),
                ReadState::Failed(fault) => return Err(FormatError::from(fault).into_io()),
                ReadState::Reading => self.fill().map_err(FormatError::into_io)?,
            }
            if out.is_empty() {
                return Ok(0);
            }
        }
    }
}
