//! Streaming C2SP encryption and decryption as `std::io::Write` / `std::io::Read` adapters,
//! holding one chunk in memory. The reader takes a `BufRead` and decrypts whole chunks
//! straight out of its buffer (and, for large reads, straight into the caller's buffer), so
//! a slice or a well-sized `BufReader` costs no extra copy.

use super::cobblestone::{
    commitment_matches, derive, ChunkCipher, CHUNK_SIZE, KEY_LEN, MAX_CHUNKS, PREFIX_LEN, SALT_LEN,
    SEALED_CHUNK_SIZE, TAG_LEN,
};
use super::header::{check_footer, encode_footer, FooterState, FOOTER_LEN};
use super::wiped::WipedBuf;
use super::FormatError;
use crate::read_full::read_full;
use std::io::{self, BufRead, Read, Write};

/// Encrypts everything written to it as one C2SP message. Call [`ChunkedWriter::finish`]:
/// without it the final short chunk is never written and readers report truncation.
pub struct ChunkedWriter<W: Write> {
    inner: W,
    cipher: ChunkCipher,
    buf: WipedBuf,
    index: u64,
    written: u64,
    /// Set by the first failure: a chunk may have been sealed but not written, and sealing
    /// anything again under its nonce would reuse it, so every later call fails.
    failed: bool,
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
            buf: WipedBuf::with_capacity(SEALED_CHUNK_SIZE),
            index: 0,
            written: PREFIX_LEN as u64,
            failed: false,
        })
    }

    fn seal_buffer(&mut self) -> Result<(), FormatError> {
        if self.failed {
            return Err(FormatError::Io(io::Error::other(
                "an earlier write to this encryptor failed",
            )));
        }
        // Poisoned until the chunk is out: a failure below must never lead to a second seal
        // under the same nonce.
        self.failed = true;
        let tag = self.cipher.seal(self.index, &mut self.buf)?;
        self.buf.extend_from_slice(&tag);
        self.inner.write_all(&self.buf).map_err(FormatError::Io)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        self.index += 1;
        self.failed = false;
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
        if self.failed {
            return Err(io::Error::other(
                "an earlier write to this encryptor failed",
            ));
        }
        let take = data.len().min(CHUNK_SIZE.saturating_sub(self.buf.len()));
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

/// Why a message failed after its commitment checked out. Kept by readers so that every
/// later read fails the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFault {
    /// Chunk `index` did not authenticate; `at_end` when it was the last block of the input.
    ChunkAuth {
        /// The chunk's position, from 0.
        index: u64,
        /// Whether it was the last block of the input.
        at_end: bool,
    },
    /// The input ended without a valid final chunk (or, for a Coffer file, without its
    /// footer): `what` says where.
    Truncated {
        /// Where the input ended.
        what: String,
    },
    /// Chunk `index` is a valid final chunk, but more bytes follow it.
    TrailingData {
        /// The final chunk's position.
        index: u64,
    },
    /// The message ended well but the Coffer footer is wrong, or the last chunk is damaged
    /// in a file whose footer says it is complete.
    Corrupt {
        /// What is wrong.
        what: String,
    },
    /// The counter reached 2^38.
    TooLong,
    /// Reading the input failed (kept so that later reads fail too).
    Io {
        /// The read error, as text.
        what: String,
    },
}

impl From<BodyFault> for FormatError {
    fn from(fault: BodyFault) -> Self {
        match fault {
            BodyFault::ChunkAuth { index, at_end } => FormatError::ChunkAuth { index, at_end },
            BodyFault::Truncated { what } => FormatError::Truncated(what),
            BodyFault::TrailingData { index } => FormatError::TrailingData { index },
            BodyFault::Corrupt { what } => FormatError::Corrupt(what),
            BodyFault::TooLong => FormatError::TooLong,
            BodyFault::Io { what } => FormatError::Io(io::Error::other(what)),
        }
    }
}

/// How the end of a body is recognised: bare C2SP (the message ends with the input) or a
/// Coffer file (a 16-byte footer stating the file length follows the final chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Bare C2SP ciphertext.
    Bare,
    /// Coffer body and footer; `body_offset` bytes of the file precede the body.
    Footer {
        /// Bytes of the file before the body (the header's length).
        body_offset: u64,
    },
}

/// Classifies the last block of the input, `tail` (everything from the start of chunk
/// `index` to the end of the input), after it did not open as a full chunk: a final chunk
/// (and footer), trailing data, damage or truncation (`spec/format.md` §7). Returns the
/// final chunk's sealed length when the message ends well.
pub(crate) fn classify_tail(
    cipher: &ChunkCipher,
    index: u64,
    tail: &[u8],
    ending: Ending,
    file_len: u64,
    scratch: &mut [u8],
) -> Result<usize, BodyFault> {
    let trailer = match ending {
        Ending::Bare => 0,
        Ending::Footer { .. } => FOOTER_LEN,
    };
    let footer = (ending != Ending::Bare && tail.len() >= FOOTER_LEN)
        .then(|| check_footer(&tail[tail.len() - FOOTER_LEN..], file_len));
    // The final chunk is everything but the trailer.
    if let Some(final_len) = tail.len().checked_sub(trailer) {
        if (TAG_LEN..SEALED_CHUNK_SIZE).contains(&final_len)
            && cipher
                .open_into(index, &tail[..final_len], scratch)
                .is_some()
        {
            return match footer {
                None | Some(FooterState::Complete) => Ok(final_len),
                Some(FooterState::LengthMismatch { declared }) => Err(BodyFault::Corrupt {
                    what: format!("the footer declares {declared} bytes, the file has {file_len}"),
                }),
                Some(FooterState::Missing) => Err(BodyFault::Corrupt {
                    what: "the footer is damaged after a valid final chunk".into(),
                }),
            };
        }
    }
    // A valid final chunk followed by something else than exactly its footer: trailing data,
    // unless what follows is the start of the right footer (the file was cut inside it).
    if let Some(final_len) = cipher.find_final_chunk(index, tail) {
        let rest = &tail[final_len..];
        if let Ending::Footer { .. } = ending {
            let complete_len = file_len - tail.len() as u64 + (final_len + FOOTER_LEN) as u64;
            if rest.len() < FOOTER_LEN && encode_footer(complete_len).starts_with(rest) {
                return Err(BodyFault::Truncated {
                    what: "the file ends inside its footer".into(),
                });
            }
        }
        return Err(BodyFault::TrailingData { index });
    }
    if tail.len() < trailer + TAG_LEN && matches!(footer, None | Some(FooterState::Missing)) {
        return Err(BodyFault::Truncated {
            what: format!(
                "the input ends {} byte(s) into chunk {index}, before a final chunk and footer fit",
                tail.len()
            ),
        });
    }
    match (ending, footer) {
        (Ending::Bare, _) if tail.len() < TAG_LEN => Err(BodyFault::Truncated {
            what: format!("the final chunk {index} is shorter than its tag"),
        }),
        (Ending::Bare, _) => Err(BodyFault::ChunkAuth { index, at_end: true }),
        (_, Some(FooterState::Complete)) => Err(BodyFault::Corrupt {
            what: format!("the final chunk {index} fails authentication although the footer says the file is complete"),
        }),
        (_, Some(FooterState::LengthMismatch { declared })) => Err(BodyFault::Corrupt {
            what: format!("the footer declares {declared} bytes, the file has {file_len}"),
        }),
        _ => Err(BodyFault::Truncated {
            what: format!("the file ends inside chunk {index} and has no footer"),
        }),
    }
}

/// Decrypts a C2SP body from a `BufRead`, one chunk at a time. Plaintext is released only
/// chunk by chunk after each chunk authenticates; a failed message keeps failing.
pub struct ChunkedReader<R: BufRead> {
    inner: R,
    cipher: ChunkCipher,
    ending: Ending,
    stage: Vec<u8>,
    plain: WipedBuf,
    start: usize,
    end: usize,
    index: u64,
    consumed: u64,
    state: ReadState,
    io_error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadState {
    Reading,
    Done,
    Failed(BodyFault),
}

impl<R: BufRead> ChunkedReader<R> {
    /// Reads and checks `salt || commitment` of a bare C2SP ciphertext, then reads chunks on
    /// demand.
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
        Ok(Self::after_prefix(
            inner,
            ChunkCipher::new(&keys)?,
            Ending::Bare,
        ))
    }

    /// A reader positioned after a prefix the caller has already checked.
    pub(crate) fn after_prefix(inner: R, cipher: ChunkCipher, ending: Ending) -> Self {
        ChunkedReader {
            inner,
            cipher,
            ending,
            stage: vec![0u8; SEALED_CHUNK_SIZE + FOOTER_LEN],
            plain: WipedBuf::zeroed(CHUNK_SIZE),
            start: 0,
            end: 0,
            index: 0,
            consumed: 0,
            state: ReadState::Reading,
            io_error: false,
        }
    }

    /// The failure this reader has stopped on, if any.
    pub fn fault(&self) -> Option<&BodyFault> {
        match &self.state {
            ReadState::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// True once the final chunk (and footer) checked out.
    pub fn is_done(&self) -> bool {
        self.state == ReadState::Done
    }

    /// True if reading the input failed (as opposed to the data being bad).
    pub fn saw_io_error(&self) -> bool {
        self.io_error
    }

    /// Bytes of body (and footer) read so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Reading failed: the reader stops for good (a retry would start mid-chunk).
    fn io(&mut self, e: io::Error) -> FormatError {
        self.io_error = true;
        self.state = ReadState::Failed(BodyFault::Io {
            what: e.to_string(),
        });
        FormatError::Io(e)
    }

    /// Makes the reader's buffer non-empty unless at the end, retrying interrupted reads.
    fn refill(&mut self) -> Result<(), FormatError> {
        loop {
            match self.inner.fill_buf() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    /// Decrypts the next chunk into `dest` (the caller's buffer, at least a chunk long) and
    /// returns the length written there; without `dest`, or for the final chunk, the
    /// plaintext goes to the internal buffer (`start..end`) and 0 is returned.
    fn step(&mut self, dest: Option<&mut [u8]>) -> Result<usize, FormatError> {
        let index = self.index;
        if index >= MAX_CHUNKS {
            return Err(self.fail(BodyFault::TooLong));
        }
        self.refill()?;
        let internal = dest.is_none();
        // Fast path: a whole chunk in the reader's buffer is decrypted where it lies.
        let avail = self.inner.fill_buf().unwrap_or_default();
        if avail.len() >= SEALED_CHUNK_SIZE {
            let out = match dest {
                Some(d) => d,
                None => &mut self.plain[..],
            };
            if let Some(n) = self
                .cipher
                .open_into(index, &avail[..SEALED_CHUNK_SIZE], out)
            {
                self.inner.consume(SEALED_CHUNK_SIZE);
                self.consumed += SEALED_CHUNK_SIZE as u64;
                self.index += 1;
                return Ok(self.landed(n, internal));
            }
            self.stage[..SEALED_CHUNK_SIZE].copy_from_slice(&avail[..SEALED_CHUNK_SIZE]);
            self.inner.consume(SEALED_CHUNK_SIZE);
            self.consumed += SEALED_CHUNK_SIZE as u64;
            return self.at_failure(SEALED_CHUNK_SIZE);
        }
        // Slow path: assemble the block in the stage.
        let mut staged = 0;
        while staged < SEALED_CHUNK_SIZE {
            self.refill()?;
            let avail = self.inner.fill_buf().unwrap_or_default();
            if avail.is_empty() {
                break;
            }
            let take = avail.len().min(SEALED_CHUNK_SIZE - staged);
            self.stage[staged..staged + take].copy_from_slice(&avail[..take]);
            self.inner.consume(take);
            staged += take;
        }
        self.consumed += staged as u64;
        if staged == SEALED_CHUNK_SIZE {
            let out = match dest {
                Some(d) => d,
                None => &mut self.plain[..],
            };
            if let Some(n) = self
                .cipher
                .open_into(index, &self.stage[..SEALED_CHUNK_SIZE], out)
            {
                self.index += 1;
                return Ok(self.landed(n, internal));
            }
            return self.at_failure(SEALED_CHUNK_SIZE);
        }
        // The input ended inside this block: it is the tail of the message.
        self.finish_tail(staged)
    }

    /// A full-size block did not open as a full chunk. If the input ends within a footer's
    /// length after it, it is the tail (a long final chunk and its footer); otherwise it is
    /// damage in the middle, or a final chunk followed by extra bytes.
    fn at_failure(&mut self, staged: usize) -> Result<usize, FormatError> {
        let trailer = if self.ending == Ending::Bare {
            0
        } else {
            FOOTER_LEN
        };
        let mut staged = staged;
        let limit = SEALED_CHUNK_SIZE + trailer;
        while staged <= limit {
            self.refill()?;
            let avail = self.inner.fill_buf().unwrap_or_default();
            if avail.is_empty() {
                self.consumed += (staged - SEALED_CHUNK_SIZE) as u64;
                return self.finish_tail(staged);
            }
            if staged == limit {
                break;
            }
            let take = avail.len().min(limit - staged);
            self.stage[staged..staged + take].copy_from_slice(&avail[..take]);
            self.inner.consume(take);
            staged += take;
        }
        // More input follows: not the tail.
        let fault = match self
            .cipher
            .find_final_chunk(self.index, &self.stage[..SEALED_CHUNK_SIZE])
        {
            Some(_) => BodyFault::TrailingData { index: self.index },
            None => BodyFault::ChunkAuth {
                index: self.index,
                at_end: false,
            },
        };
        Err(self.fail(fault))
    }

    /// The last `staged` bytes of the input are in the stage: the final chunk (and footer).
    fn finish_tail(&mut self, staged: usize) -> Result<usize, FormatError> {
        let file_len = match self.ending {
            Ending::Bare => 0,
            Ending::Footer { body_offset } => body_offset + self.consumed,
        };
        let mut plain = std::mem::take(&mut self.plain);
        let result = classify_tail(
            &self.cipher,
            self.index,
            &self.stage[..staged],
            self.ending,
            file_len,
            &mut plain,
        );
        self.plain = plain;
        match result {
            Ok(final_len) => {
                self.index += 1;
                self.state = ReadState::Done;
                self.start = 0;
                self.end = final_len - TAG_LEN;
                Ok(0)
            }
            Err(fault) => Err(self.fail(fault)),
        }
    }

    /// Where `n` decrypted bytes went: the caller's buffer, or the internal one.
    fn landed(&mut self, n: usize, internal: bool) -> usize {
        if internal {
            self.start = 0;
            self.end = n;
            0
        } else {
            n
        }
    }

    fn fail(&mut self, fault: BodyFault) -> FormatError {
        self.state = ReadState::Failed(fault.clone());
        fault.into()
    }
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.start < self.end {
                let n = out.len().min(self.end - self.start);
                out[..n].copy_from_slice(&self.plain[self.start..self.start + n]);
                self.start += n;
                return Ok(n);
            }
            match &self.state {
                ReadState::Done => return Ok(0),
                ReadState::Failed(fault) => return Err(FormatError::from(fault.clone()).into_io()),
                ReadState::Reading => {}
            }
            if out.is_empty() {
                return Ok(0);
            }
            // Large reads get chunks decrypted straight into the caller's buffer.
            let dest = (out.len() >= CHUNK_SIZE).then_some(&mut *out);
            let n = self.step(dest).map_err(FormatError::into_io)?;
            if n > 0 {
                return Ok(n);
            }
        }
    }
}

/// Decrypts a whole in-memory C2SP ciphertext. On failure nothing is returned.
pub fn decrypt(
    input_key: &[u8],
    context: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let input_key: &[u8; KEY_LEN] = input_key
        .try_into()
        .map_err(|_| FormatError::KeySize(input_key.len()))?;
    let mut reader = ChunkedReader::new(ciphertext, input_key, context)?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut out).map_err(FormatError::from_io)?;
    Ok(out)
}
