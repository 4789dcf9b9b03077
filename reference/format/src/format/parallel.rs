//! Parallel decryption of a file that can be read at any offset: worker threads each take
//! a batch of chunks, read it themselves (or decrypt it in place from a slice), and the
//! calling thread writes the plaintext in order. The output, and the error on a bad file,
//! are identical to the streaming [`super::Reader`]; memory is a fixed pool of batches.

use super::batching::{for_each_item, Parallelism, BATCH_CHUNKS};
use super::cobblestone::{ChunkCipher, CHUNK_SIZE, SEALED_CHUNK_SIZE, TAG_LEN};
use super::file::{drain_into, read_preamble, resume, FileSummary, Opened};
use super::header::{check_footer, Compression, FooterState, Header, FOOTER_LEN};
use super::parallel_frames::decrypt_frames_at;
use super::random_access::{read_exact_at, Cursor, ReadAt};
use super::write_at::WriteAt;
use super::FormatError;
use crate::key::RootKey;
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// Buffers a worker needs for one batch: ciphertext (unused for slices) and plaintext.
type Buffers = (Vec<u8>, Vec<u8>);

struct Decrypted {
    seq: u64,
    buffers: Buffers,
    /// Plaintext bytes at the start of the plaintext buffer that authenticated.
    plain_len: usize,
    /// The first chunk of the batch that failed, if any.
    failed_at: Option<u64>,
}

/// Where the chunks are: `full` chunks of 16400 bytes from `body_offset`, then the final one.
#[derive(Clone, Copy)]
struct Layout {
    body_offset: u64,
    full: u64,
    final_sealed: usize,
}

impl Layout {
    fn chunks(&self) -> u64 {
        self.full + 1
    }
    fn plaintext_len(&self) -> u64 {
        self.full * CHUNK_SIZE as u64 + (self.final_sealed - TAG_LEN) as u64
    }

    fn sealed_len(&self, index: u64) -> usize {
        if index == self.full {
            self.final_sealed
        } else {
            SEALED_CHUNK_SIZE
        }
    }
}

/// The layout a complete file must have, or `None` (missing footer, impossible lengths):
/// then the streaming reader handles the file and classifies what is wrong.
fn layout<F: ReadAt + ?Sized>(input: &F, body_offset: u64) -> Result<Option<Layout>, FormatError> {
    let size = input.size().map_err(FormatError::Io)?;
    let Some(body) = size.checked_sub(body_offset + FOOTER_LEN as u64) else {
        return Ok(None);
    };
    let mut tail = [0u8; FOOTER_LEN];
    read_exact_at(input, &mut tail, size - FOOTER_LEN as u64).map_err(FormatError::Io)?;
    if check_footer(&tail, size) != FooterState::Complete {
        return Ok(None);
    }
    let full = body / SEALED_CHUNK_SIZE as u64;
    let final_sealed = (body % SEALED_CHUNK_SIZE as u64) as usize;
    Ok((final_sealed >= TAG_LEN).then_some(Layout {
        body_offset,
        full,
        final_sealed,
    }))
}

/// Reads the preamble and decides: the layout to decrypt in parallel, or `None` for the
/// streaming path (compressed, no valid footer, one worker, or fewer chunks than asked).
fn plan<F: ReadAt + ?Sized>(
    input: &F,
    root: &RootKey,
    parallelism: Parallelism,
) -> Result<(Opened, Option<Layout>), FormatError> {
    let opened = read_preamble(&mut Cursor::new(input, 0), root)?;
    let layout = match opened.header.compression {
        Compression::None => layout(input, opened.body_offset)?,
        Compression::Zstd | Compression::ZstdSeekable => None,
    };
    // The worker count is asked last: std reads the cgroup's CPU quota from /sys for it,
    // which costs more than decrypting a small file.
    let layout = layout
        .filter(|l| l.chunks() >= parallelism.min_chunks)
        .filter(|_| parallelism.workers() > 1);
    Ok((opened, layout))
}

/// After a chunk failed in parallel: the streaming reader fails on the same chunk and names
/// the class (spec/format.md §10).
fn streamed_failure<F: ReadAt + ?Sized>(input: &F, root: &RootKey) -> FormatError {
    let result = read_preamble(&mut Cursor::new(input, 0), root)
        .and_then(|again| streaming(input, again, &mut std::io::sink()));
    match result {
        Err(e) => e,
        Ok(_) => FormatError::Crypto("a chunk failed in parallel but not when streamed".into()),
    }
}

/// Decrypts batch `seq` into its plaintext buffer.
fn decrypt_batch<F: ReadAt + ?Sized>(
    input: &F,
    cipher: &ChunkCipher,
    layout: Layout,
    seq: u64,
    (mut sealed, mut plain): Buffers,
) -> Result<Decrypted, FormatError> {
    let first = seq * BATCH_CHUNKS;
    let last = (first + BATCH_CHUNKS).min(layout.chunks());
    let start = layout.body_offset + first * SEALED_CHUNK_SIZE as u64;
    let span: usize = (first..last).map(|i| layout.sealed_len(i)).sum();
    let bytes: &[u8] = match input.as_slice() {
        Some(all) => usize::try_from(start)
            .ok()
            .and_then(|s| all.get(s..s + span))
            .ok_or_else(|| {
                FormatError::Truncated("the input changed size while being read".into())
            })?,
        None => {
            sealed.resize(span, 0);
            read_exact_at(input, &mut sealed[..span], start).map_err(FormatError::Io)?;
            &sealed[..span]
        }
    };
    let mut plain_len = 0;
    let mut failed_at = None;
    let mut at = 0;
    for index in first..last {
        let len = layout.sealed_len(index);
        let out = &mut plain[plain_len..plain_len + CHUNK_SIZE];
        match cipher.open_into(index, &bytes[at..at + len], out) {
            Some(n) => plain_len += n,
            None => {
                failed_at = Some(index);
                break;
            }
        }
        at += len;
    }
    Ok(Decrypted {
        seq,
        buffers: (sealed, plain),
        plain_len,
        failed_at,
    })
}

/// Decrypts a Coffer file using `threads` worker threads (0 = one per core) into any
/// `Write`, in order (the calling thread writes). Files the streaming reader must look at
/// closely (no valid footer), compressed files (zstd decompresses on one thread) and small
/// files take the streaming path. `progress` is called with the plaintext bytes written so
/// far. With a file or nothing as output, [`decrypt_parallel_at`] is faster: no thread waits.
pub fn decrypt_parallel<F: ReadAt + Sync, W: Write>(
    input: F,
    root: &RootKey,
    output: &mut W,
    parallelism: Parallelism,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Header, FileSummary), FormatError> {
    let (opened, plan) = plan(&input, root, parallelism)?;
    let Some(layout) = plan else {
        return streaming(&input, opened, output);
    };
    let threads = parallelism.workers();
    let header = opened.header.clone();
    let batches = layout.chunks().div_ceil(BATCH_CHUNKS);
    let pool = 2 * threads + 2;
    let (free_tx, free_rx) = sync_channel::<Buffers>(pool);
    for _ in 0..pool {
        let sealed = if input.as_slice().is_some() {
            Vec::new()
        } else {
            Vec::with_capacity(BATCH_CHUNKS as usize * SEALED_CHUNK_SIZE)
        };
        let _ = free_tx.send((sealed, vec![0u8; BATCH_CHUNKS as usize * CHUNK_SIZE]));
    }
    let free_rx = Mutex::new(free_rx);
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (done_tx, done_rx) = sync_channel::<Result<Decrypted, FormatError>>(pool);
    let mut ciphers = Vec::with_capacity(threads);
    for _ in 0..threads {
        ciphers.push(opened.cipher.try_clone()?);
    }

    let written = std::thread::scope(|scope| {
        for cipher in ciphers {
            let done_tx: SyncSender<_> = done_tx.clone();
            let (input, free_rx, next, stop) = (&input, &free_rx, &next, &stop);
            scope.spawn(move || {
                worker(
                    input, &cipher, layout, batches, free_rx, next, stop, &done_tx,
                )
            });
        }
        drop(done_tx);
        let result = write_in_order(&done_rx, &free_tx, batches, output, progress);
        stop.store(true, Ordering::Relaxed);
        drop(free_tx);
        drop(done_rx);
        result
    });
    match written {
        Ok(plaintext_len) => {
            let file_len = input.size().map_err(FormatError::Io)?;
            Ok((
                header,
                FileSummary {
                    plaintext_len,
                    file_len,
                },
            ))
        }
        Err(Stop::Chunk) => {
            // The plaintext before the failed chunk is out; the streaming reader gives the
            // exact class (it fails on the same chunk).
            Err(streamed_failure(&input, root))
        }
        Err(Stop::Error(e)) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
fn worker<F: ReadAt + ?Sized>(
    input: &F,
    cipher: &ChunkCipher,
    layout: Layout,
    batches: u64,
    free_rx: &Mutex<Receiver<Buffers>>,
    next: &AtomicU64,
    stop: &AtomicBool,
    done_tx: &SyncSender<Result<Decrypted, FormatError>>,
) {
    while !stop.load(Ordering::Relaxed) {
        // A buffer first, then a batch: whoever holds a batch can always finish it.
        let buffers = match free_rx.lock().map(|rx| rx.recv()) {
            Ok(Ok(b)) => b,
            _ => return,
        };
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= batches {
            return;
        }
        if done_tx
            .send(decrypt_batch(input, cipher, layout, seq, buffers))
            .is_err()
        {
            return;
        }
    }
}

/// Why writing stopped early.
enum Stop {
    /// A chunk failed authentication.
    Chunk,
    /// Reading or writing failed.
    Error(FormatError),
}

fn write_in_order<W: Write>(
    done_rx: &Receiver<Result<Decrypted, FormatError>>,
    free_tx: &SyncSender<Buffers>,
    batches: u64,
    output: &mut W,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, Stop> {
    let mut pending: BTreeMap<u64, Decrypted> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut written = 0u64;
    while next_seq < batches {
        let Ok(result) = done_rx.recv() else {
            return Err(Stop::Error(FormatError::Crypto(
                "decryption workers stopped early".into(),
            )));
        };
        let batch = result.map_err(Stop::Error)?;
        pending.insert(batch.seq, batch);
        while let Some(batch) = pending.remove(&next_seq) {
            output
                .write_all(&batch.buffers.1[..batch.plain_len])
                .map_err(|e| Stop::Error(FormatError::Io(e)))?;
            written += batch.plain_len as u64;
            progress(written);
            if batch.failed_at.is_some() {
                return Err(Stop::Chunk);
            }
            next_seq += 1;
            let _ = free_tx.try_send(batch.buffers);
        }
    }
    Ok(written)
}

/// The streaming reader over a positional input, from the end of the preamble.
fn streaming<F: ReadAt + ?Sized, W: Write>(
    input: &F,
    opened: Opened,
    output: &mut W,
) -> Result<(Header, FileSummary), FormatError> {
    let offset = opened.body_offset;
    if let Some(all) = input.as_slice() {
        // In memory: the streaming reader decrypts straight from the slice.
        let body = usize::try_from(offset)
            .ok()
            .and_then(|o| all.get(o..))
            .unwrap_or_default();
        return drain_into(resume(body, opened)?, output);
    }
    let body = BufReader::with_capacity(super::file::READ_BUFFER, Cursor::new(input, offset));
    drain_into(resume(body, opened)?, output)
}

/// A sequential `Write` over a `WriteAt` (for the streaming fallback), reporting progress.
struct WriteCursor<'a, O: ?Sized> {
    output: &'a O,
    offset: u64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<O: WriteAt + ?Sized> Write for WriteCursor<'_, O> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.write_all_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        (self.progress)(self.offset);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decrypts a Coffer file on worker threads, each reading its
/// own batches and writing the plaintext at its offset in `output` (a file, or [`Discard`](super::Discard)
/// to verify). On failure `output` is cut to the valid prefix the streaming reader would
/// have released, and the streaming reader names the class. Seekable zstd files are
/// decrypted a frame per worker; one-frame zstd files, files without a valid footer and
/// small files take the streaming path.
pub fn decrypt_parallel_at<F: ReadAt + Sync, O: WriteAt + Sync>(
    input: F,
    root: &RootKey,
    output: &O,
    parallelism: Parallelism,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Header, FileSummary), FormatError> {
    let (opened, plan) = plan(&input, root, parallelism)?;
    if opened.header.compression == Compression::ZstdSeekable && parallelism.workers() > 1 {
        let threads = parallelism.workers();
        if let Some(result) = decrypt_frames_at(&input, root, output, threads, progress) {
            return result;
        }
    }
    let Some(layout) = plan else {
        let mut cursor = WriteCursor {
            output,
            offset: 0,
            progress,
        };
        let result = streaming(&input, opened, &mut cursor);
        output.set_len(cursor.offset).map_err(FormatError::Io)?;
        return result;
    };
    let threads = parallelism.workers();
    let header = opened.header.clone();
    let plaintext_len = layout.plaintext_len();
    // Size the output first: writes that extend a file out of order are slow on most file
    // systems.
    output.set_len(plaintext_len).map_err(FormatError::Io)?;
    let batches = layout.chunks().div_ceil(BATCH_CHUNKS);
    let first_failure = AtomicU64::new(u64::MAX);
    let done = AtomicU64::new(0);
    let mut states = Vec::with_capacity(threads);
    for _ in 0..threads {
        let buffers = (Vec::new(), vec![0u8; BATCH_CHUNKS as usize * CHUNK_SIZE]);
        states.push((opened.cipher.try_clone()?, buffers));
    }
    // Batches after a failure are not needed: the output stops before it.
    let past = |seq: u64| seq * BATCH_CHUNKS > first_failure.load(Ordering::Relaxed);
    let run = for_each_item(states, batches, past, |(cipher, buffers), seq| {
        let batch = decrypt_batch(&input, cipher, layout, seq, std::mem::take(buffers))?;
        let offset = seq * BATCH_CHUNKS * CHUNK_SIZE as u64;
        output
            .write_all_at(&batch.buffers.1[..batch.plain_len], offset)
            .map_err(FormatError::Io)?;
        if let Some(index) = batch.failed_at {
            first_failure.fetch_min(index, Ordering::Relaxed);
        }
        let n = batch.plain_len as u64;
        progress(done.fetch_add(n, Ordering::Relaxed) + n);
        *buffers = batch.buffers;
        Ok(())
    });
    if let Err(e) = run {
        // Reading or writing failed: what the workers wrote is not a prefix; keep nothing.
        let _ = output.set_len(0);
        return Err(e);
    }
    let failed = first_failure.load(Ordering::Relaxed);
    if failed != u64::MAX {
        // Keep exactly the chunks before the failed one, as the streaming reader would.
        output
            .set_len(failed * CHUNK_SIZE as u64)
            .map_err(FormatError::Io)?;
        return Err(streamed_failure(&input, root));
    }
    let file_len = input.size().map_err(FormatError::Io)?;
    Ok((
        header,
        FileSummary {
            plaintext_len,
            file_len,
        },
    ))
}
