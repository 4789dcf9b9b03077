//! The seekable payload's writer (compression `02`, spec/format.md §8.2): the plaintext cut
//! into frames of `S` bytes, each compressed on its own (on worker threads when there are
//! several), written in order, then the seek table. A frame's bytes depend only on its
//! plaintext and the level, so the payload is the same whatever the number of threads.
//! Memory is a fixed window of frames in flight, whatever the input's size.

use super::pool::Pool;
use super::seek_table::{
    encode_entry, encode_foot, encode_head, ENTRY_LEN, MAX_FRAMES, MAX_FRAME_LEN,
};
use super::wiped::WipedBuf;
use super::FormatError;
use std::collections::BTreeMap;
use std::io::{self, Write};
use zstd::zstd_safe::CParameter;

/// Plaintext bytes per frame that writers use unless told otherwise: 128 chunks. Measured
/// on the chat database at level 3 (benches/README.md): within 1% of one frame's size.
pub const DEFAULT_FRAME_LEN: usize = 2 << 20;

/// A compressor for whole frames: no checksum (the chunks are authenticated), the content
/// size in the frame header (readers check it against the table).
fn compressor(level: i32) -> Result<zstd::bulk::Compressor<'static>, FormatError> {
    let mut c = zstd::bulk::Compressor::new(level).map_err(FormatError::Io)?;
    c.set_parameter(CParameter::ChecksumFlag(false))
        .map_err(FormatError::Io)?;
    c.set_parameter(CParameter::ContentSizeFlag(true))
        .map_err(FormatError::Io)?;
    Ok(c)
}

/// Compresses `plain` as one frame into `out` (cleared first).
fn compress_frame(
    c: &mut zstd::bulk::Compressor<'static>,
    plain: &[u8],
    out: &mut WipedBuf,
) -> Result<(), FormatError> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(plain.len()));
    c.compress_to_buffer(plain, &mut **out)
        .map_err(FormatError::Io)?;
    Ok(())
}

/// A worker's task: compress the job's frame.
fn compress_job(c: &mut zstd::bulk::Compressor<'static>, mut job: Job) -> Job {
    job.result = compress_frame(c, &job.plain, &mut job.packed);
    job
}

/// A frame on its way through a worker: its plaintext, then its compressed bytes.
struct Job {
    seq: u64,
    plain: WipedBuf,
    packed: WipedBuf,
    result: Result<(), FormatError>,
}

/// Writes a seekable payload into `inner` (the sealing layer). Call [`FrameWriter::finish`]
/// for the last frame and the table.
pub(crate) struct FrameWriter<W: Write> {
    inner: W,
    level: i32,
    frame_len: usize,
    workers: usize,
    /// Compressor of the calling thread (one worker), or the pool (several).
    here: Option<zstd::bulk::Compressor<'static>>,
    pool: Option<Pool<Job, Job>>,
    filling: WipedBuf,
    spare: Vec<(WipedBuf, WipedBuf)>,
    arrived: BTreeMap<u64, Job>,
    sent: u64,
    out: u64,
    window: u64,
    /// The table's entries so far.
    entries: Vec<u8>,
    failed: bool,
}

impl<W: Write> FrameWriter<W> {
    /// A writer of frames of `frame_len` plaintext bytes (a multiple of 16 KiB up to 2^24)
    /// at `level`, compressing on `workers` threads (1 = on the caller's).
    pub(crate) fn new(
        inner: W,
        level: i32,
        frame_len: usize,
        workers: usize,
    ) -> Result<Self, FormatError> {
        let chunk = super::cobblestone::CHUNK_SIZE;
        if frame_len == 0 || !frame_len.is_multiple_of(chunk) || frame_len > MAX_FRAME_LEN {
            return Err(FormatError::Unsupported(format!(
                "zstd frames of {frame_len} bytes (use a multiple of {chunk} up to {MAX_FRAME_LEN})"
            )));
        }
        let workers = workers.max(1);
        Ok(FrameWriter {
            inner,
            level,
            frame_len,
            workers,
            here: (workers == 1).then(|| compressor(level)).transpose()?,
            pool: None,
            filling: WipedBuf::with_capacity(frame_len),
            spare: Vec::new(),
            arrived: BTreeMap::new(),
            sent: 0,
            out: 0,
            window: workers as u64 + 2,
            entries: Vec::new(),
            failed: false,
        })
    }

    fn check(&self) -> Result<(), FormatError> {
        if self.failed {
            return Err(FormatError::Io(io::Error::other(
                "an earlier write to this compressor failed",
            )));
        }
        Ok(())
    }

    /// Compresses the filled frame (here, or on a worker) and writes what is ready. A file
    /// of one frame is compressed here: starting workers would cost more than they save.
    fn dispatch(&mut self, last: bool) -> Result<(), FormatError> {
        if self.sent >= MAX_FRAMES {
            return Err(FormatError::TooLong);
        }
        let (next, packed) = self.spare.pop().unwrap_or_else(|| {
            (
                WipedBuf::with_capacity(self.frame_len),
                WipedBuf::with_capacity(0),
            )
        });
        let plain = std::mem::replace(&mut self.filling, next);
        let mut job = Job {
            seq: self.sent,
            plain,
            packed,
            result: Ok(()),
        };
        self.sent += 1;
        if last && self.pool.is_none() && self.here.is_none() {
            self.here = Some(compressor(self.level)?);
        }
        if let Some(c) = &mut self.here {
            job.result = compress_frame(c, &job.plain, &mut job.packed);
            return self.emit(job);
        }
        if self.pool.is_none() {
            let compressors = (0..self.workers)
                .map(|_| compressor(self.level))
                .collect::<Result<_, _>>()?;
            self.pool = Some(Pool::start(
                "coffer-zstd",
                self.workers,
                compressors,
                compress_job,
            )?);
        }
        while self.sent - 1 - self.out >= self.window {
            self.write_next(true)?;
        }
        if !self.pool.as_ref().is_some_and(|p| p.send(job)) {
            return Err(FormatError::Crypto(
                "the compression threads stopped".into(),
            ));
        }
        while self.out < self.sent && self.write_next(false)? {}
        Ok(())
    }

    /// Writes a compressed frame and its table entry.
    fn emit(&mut self, mut job: Job) -> Result<(), FormatError> {
        std::mem::replace(&mut job.result, Ok(()))?;
        let packed = u32::try_from(job.packed.len())
            .map_err(|_| FormatError::Crypto("a compressed frame over 4 GiB".into()))?;
        self.inner.write_all(&job.packed).map_err(FormatError::Io)?;
        self.entries
            .extend_from_slice(&encode_entry(packed, job.plain.len() as u32));
        self.out += 1;
        job.plain.clear();
        self.spare.push((job.plain, job.packed));
        Ok(())
    }

    /// Writes the next frame in order if it has come back (waiting for it if `wait`).
    fn write_next(&mut self, wait: bool) -> Result<bool, FormatError> {
        let Some(pool) = &self.pool else {
            return Ok(false);
        };
        while !self.arrived.contains_key(&self.out) {
            let Some(job) = pool.next(wait)? else {
                return Ok(false);
            };
            self.arrived.insert(job.seq, job);
        }
        match self.arrived.remove(&self.out) {
            Some(job) => self.emit(job).map(|()| true),
            None => Ok(false),
        }
    }

    /// Compresses the last frame (an empty one if there was no plaintext at all), writes
    /// every frame still out and the seek table; returns the inner writer.
    pub(crate) fn finish(mut self) -> Result<W, FormatError> {
        self.check()?;
        self.failed = true;
        if !self.filling.is_empty() || self.sent == 0 {
            self.dispatch(true)?;
        }
        while self.out < self.sent {
            self.write_next(true)?;
        }
        self.pool = None;
        let frames = self.entries.len() as u64 / ENTRY_LEN as u64;
        self.inner
            .write_all(&encode_head(frames))
            .map_err(FormatError::Io)?;
        self.inner
            .write_all(&self.entries)
            .map_err(FormatError::Io)?;
        self.inner
            .write_all(&encode_foot(frames))
            .map_err(FormatError::Io)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check().map_err(FormatError::into_io)?;
        let take = data.len().min(self.frame_len - self.filling.len());
        self.filling.extend_from_slice(&data[..take]);
        // A full frame may be the last, but an empty frame never follows it: the table
        // says where the plaintext ends, so a full frame can go right away.
        if self.filling.len() == self.frame_len {
            self.failed = true;
            self.dispatch(false).map_err(FormatError::into_io)?;
            self.failed = false;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
