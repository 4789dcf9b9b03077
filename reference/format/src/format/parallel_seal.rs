//! Parallel encryption of a C2SP message as a `Write` adapter: the caller's writes fill
//! batches of 64 chunks (1 MiB), worker threads seal whole batches, and the caller writes
//! the sealed batches to the output in order. The bytes are those of the one-thread
//! [`super::stream::ChunkedWriter`] whatever the number of threads (a chunk's nonce is its
//! index, fixed when its batch is handed out), and memory is a fixed window of batches,
//! whatever the input's size. Workers start only when the first batch fills, so a message
//! under 1 MiB is sealed on the calling thread.

use super::batching::BATCH_CHUNKS;
use super::cobblestone::{
    derive, ChunkCipher, CHUNK_SIZE, KEY_LEN, MAX_CHUNKS, PREFIX_LEN, SALT_LEN, SEALED_CHUNK_SIZE,
    TAG_LEN,
};
use super::pool::Pool;
use super::wiped::WipedBuf;
use super::FormatError;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

/// Plaintext bytes of a full batch.
pub(crate) const BATCH_BYTES: usize = BATCH_CHUNKS as usize * CHUNK_SIZE;
/// Sealed bytes of a full batch.
pub(crate) const SEALED_BATCH_BYTES: usize = BATCH_CHUNKS as usize * SEALED_CHUNK_SIZE;

/// A batch handed to a worker: `buf[..len]` is plaintext; chunk `first` is its first chunk.
struct Job {
    seq: u64,
    first: u64,
    buf: WipedBuf,
    /// The message ends in this batch: its last chunk is the short final one.
    last: bool,
}

/// A sealed batch (`chunk ‖ tag` for each chunk), or why it could not be sealed.
struct Sealed {
    seq: u64,
    result: Result<WipedBuf, FormatError>,
}

/// A worker's task: seal the job's batch.
fn seal_job(cipher: &mut ChunkCipher, job: Job) -> Sealed {
    Sealed {
        seq: job.seq,
        result: seal_batch(cipher, job.first, job.buf, job.last),
    }
}

/// Seals `buf[..len]` in place as chunks `first..`: the chunks are first spread apart to
/// make room for their tags (back to front, so nothing is overwritten before it moves).
/// Every byte of the result is ciphertext or tag; no plaintext is left in it.
pub(crate) fn seal_batch(
    cipher: &mut ChunkCipher,
    first: u64,
    mut buf: WipedBuf,
    last: bool,
) -> Result<WipedBuf, FormatError> {
    let len = buf.len();
    // A final batch ends with its short chunk, empty when `len` is a multiple of the size.
    let chunks = if last {
        len / CHUNK_SIZE + 1
    } else {
        len / CHUNK_SIZE
    };
    if first + chunks as u64 > MAX_CHUNKS {
        return Err(FormatError::TooLong);
    }
    buf.resize(len + chunks * TAG_LEN, 0);
    for i in (0..chunks).rev() {
        let from = i * CHUNK_SIZE;
        let to = i * SEALED_CHUNK_SIZE;
        let size = CHUNK_SIZE.min(len - from);
        buf.copy_within(from..from + size, to);
        let tag = cipher.seal(first + i as u64, &mut buf[to..to + size])?;
        buf[to + size..to + size + TAG_LEN].copy_from_slice(&tag);
    }
    Ok(buf)
}

/// Encrypts everything written to it as one C2SP message on several threads, with output
/// identical to [`super::stream::ChunkedWriter`]'s. Call [`ParallelChunkedWriter::finish`]:
/// without it the final chunk is never written and readers report truncation.
pub struct ParallelChunkedWriter<W: Write> {
    inner: W,
    cipher: ChunkCipher,
    workers: usize,
    pool: Option<Pool<Job, Sealed>>,
    /// The batch being filled.
    filling: WipedBuf,
    /// Emptied buffers for the next batches.
    spare: Vec<WipedBuf>,
    /// Sealed batches that came back before the ones ahead of them.
    arrived: BTreeMap<u64, WipedBuf>,
    /// Batches handed out, and batches written.
    sent: u64,
    out: u64,
    /// Batches allowed between the caller and the workers at once.
    window: u64,
    written: u64,
    /// Set by the first failure; every later call fails (see `ChunkedWriter::failed`).
    failed: bool,
}

impl<W: Write> ParallelChunkedWriter<W> {
    /// Writes `salt || commitment` and returns a writer sealing on `workers` threads (≥ 1).
    pub fn new(
        mut inner: W,
        input_key: &[u8; KEY_LEN],
        salt: &[u8; SALT_LEN],
        context: &[u8],
        workers: usize,
    ) -> Result<Self, FormatError> {
        let keys = derive(input_key, salt, context);
        inner.write_all(salt).map_err(FormatError::Io)?;
        inner.write_all(&keys.commitment).map_err(FormatError::Io)?;
        let workers = workers.max(1);
        Ok(ParallelChunkedWriter {
            inner,
            cipher: ChunkCipher::new(&keys)?,
            workers,
            pool: None,
            filling: WipedBuf::with_capacity(SEALED_BATCH_BYTES),
            spare: Vec::new(),
            arrived: BTreeMap::new(),
            sent: 0,
            out: 0,
            window: 2 * workers as u64 + 2,
            written: PREFIX_LEN as u64,
            failed: false,
        })
    }

    fn check(&self) -> Result<(), FormatError> {
        if self.failed {
            return Err(FormatError::Io(io::Error::other(
                "an earlier write to this encryptor failed",
            )));
        }
        Ok(())
    }

    /// Hands the filled batch to the workers (starting them the first time), after making
    /// room in the window by writing what is ready.
    fn dispatch(&mut self, last: bool) -> Result<(), FormatError> {
        self.failed = true;
        if self.pool.is_none() {
            let ciphers = (0..self.workers)
                .map(|_| self.cipher.try_clone())
                .collect::<Result<_, _>>()?;
            // Enough queued work that no worker idles while the caller writes one batch.
            self.pool = Some(Pool::start(
                "coffer-seal",
                self.workers + 1,
                ciphers,
                seal_job,
            )?);
        }
        while self.sent - self.out >= self.window {
            self.write_next(true)?;
        }
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| WipedBuf::with_capacity(SEALED_BATCH_BYTES));
        let buf = std::mem::replace(&mut self.filling, next);
        let job = Job {
            seq: self.sent,
            first: self.sent * BATCH_CHUNKS,
            buf,
            last,
        };
        if !self.pool.as_ref().is_some_and(|p| p.send(job)) {
            return Err(FormatError::Crypto("the sealing threads stopped".into()));
        }
        self.sent += 1;
        // Write whatever is ready without waiting.
        while self.out < self.sent && self.write_next(false)? {}
        self.failed = false;
        Ok(())
    }

    /// Writes the next batch in order if it has come back (waiting for it if `wait`);
    /// returns whether one was written.
    fn write_next(&mut self, wait: bool) -> Result<bool, FormatError> {
        let Some(pool) = &self.pool else {
            return Ok(false);
        };
        while !self.arrived.contains_key(&self.out) {
            let Some(sealed) = pool.next(wait)? else {
                return Ok(false);
            };
            self.arrived.insert(sealed.seq, sealed.result?);
        }
        let Some(mut batch) = self.arrived.remove(&self.out) else {
            return Ok(false);
        };
        self.inner.write_all(&batch).map_err(FormatError::Io)?;
        self.written += batch.len() as u64;
        self.out += 1;
        batch.clear();
        self.spare.push(batch);
        Ok(true)
    }

    /// Seals the final (short, possibly empty) chunk, writes every batch still out, and
    /// returns the inner writer and the number of ciphertext bytes written.
    pub fn finish(mut self) -> Result<(W, u64), FormatError> {
        self.check()?;
        self.failed = true;
        if self.pool.is_none() {
            // Under one batch: sealed here, no thread started.
            let first = self.sent * BATCH_CHUNKS;
            let filling = std::mem::take(&mut self.filling);
            let sealed = seal_batch(&mut self.cipher, first, filling, true)?;
            self.inner.write_all(&sealed).map_err(FormatError::Io)?;
            self.written += sealed.len() as u64;
        } else {
            self.dispatch(true)?;
            self.failed = true;
            while self.out < self.sent {
                self.write_next(true)?;
            }
        }
        self.inner.flush().map_err(FormatError::Io)?;
        self.pool = None;
        self.failed = false;
        let ParallelChunkedWriter { inner, written, .. } = self;
        Ok((inner, written))
    }
}

impl<W: Write> ParallelChunkedWriter<W> {
    /// Reads from `input` straight into the batch being filled (one large read instead of
    /// a copy through the caller's buffer) and hands it out when full; returns the bytes
    /// read, 0 at the end of the input.
    pub fn fill_from(&mut self, input: &mut dyn Read) -> io::Result<usize> {
        self.check().map_err(FormatError::into_io)?;
        let room = (BATCH_BYTES - self.filling.len()) as u64;
        // The buffer's capacity is a sealed batch, so this never reallocates.
        let n = input.take(room).read_to_end(&mut self.filling)?;
        if self.filling.len() == BATCH_BYTES {
            self.dispatch(false).map_err(FormatError::into_io)?;
        }
        Ok(n)
    }
}

impl<W: Write> Write for ParallelChunkedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check().map_err(FormatError::into_io)?;
        let take = data.len().min(BATCH_BYTES - self.filling.len());
        self.filling.extend_from_slice(&data[..take]);
        // A full batch never holds the final chunk, so it can go right away.
        if self.filling.len() == BATCH_BYTES {
            self.dispatch(false).map_err(FormatError::into_io)?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
