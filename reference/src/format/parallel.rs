//! Parallel decryption: one thread reads batches of chunks, worker threads authenticate and
//! decrypt them, the calling thread writes them in order. The output, and the error on a bad
//! file, are identical to the streaming [`super::Reader`]; memory is a fixed pool of batches.

use super::cobblestone::{ChunkCipher, CHUNK_SIZE, SEALED_CHUNK_SIZE};
use super::file::{fault_to_error, read_preamble, FileSummary, HoldBack};
use super::header::{check_footer, Compression, FooterState, Header};
use super::stream::{open_block, read_full, Block, BodyFault};
use super::FormatError;
use crate::key::RootKey;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Chunks per batch (256 KiB of plaintext: fits a core's L2 cache, and small files still
/// spread over the workers).
pub const BATCH_CHUNKS: usize = 16;

struct Batch {
    seq: u64,
    first_index: u64,
    buf: Vec<u8>,
    /// Where the plaintext goes: chunk `i` at `i * CHUNK_SIZE`.
    plain: Vec<u8>,
    /// Bytes of ciphertext in `buf`; less than the batch capacity only at the end.
    len: usize,
}

struct Decrypted {
    batch: Batch,
    /// Plaintext bytes at the start of `batch.plain` that authenticated.
    plain_len: usize,
    fault: Option<BodyFault>,
    done: bool,
}

/// Decrypts the chunks of one batch into its plaintext buffer.
fn decrypt_batch(cipher: &ChunkCipher, mut batch: Batch) -> Decrypted {
    let capacity = batch.buf.len();
    let mut plain_len = 0;
    let mut fault = None;
    let mut done = false;
    let at_end_of_input = batch.len < capacity;
    let blocks = if at_end_of_input {
        batch.len / SEALED_CHUNK_SIZE + 1
    } else {
        BATCH_CHUNKS
    };
    for i in 0..blocks {
        let start = i * SEALED_CHUNK_SIZE;
        let end = (start + SEALED_CHUNK_SIZE).min(batch.len);
        let block = Block {
            index: batch.first_index + i as u64,
            at_end: at_end_of_input && i + 1 == blocks,
        };
        let out = &mut batch.plain[i * CHUNK_SIZE..(i + 1) * CHUNK_SIZE];
        match open_block(cipher, &block, &batch.buf[start..end], out) {
            Ok((n, is_final)) => {
                plain_len += n;
                if is_final {
                    done = true;
                    break;
                }
            }
            Err(f) => {
                fault = Some(f);
                break;
            }
        }
    }
    Decrypted {
        batch,
        plain_len,
        fault,
        done,
    }
}

/// Why the writing loop stopped early.
enum Stop {
    Fault(BodyFault),
    Error(FormatError),
}

/// What the reading thread saw at the end of the input.
type Tail = Option<(Vec<u8>, u64)>;

fn read_batches<R: Read>(
    mut hold: HoldBack<R>,
    free: Receiver<(Vec<u8>, Vec<u8>)>,
    work: SyncSender<Batch>,
) -> Result<Tail, FormatError> {
    let mut seq = 0u64;
    loop {
        let Ok((mut buf, plain)) = free.recv() else {
            return Ok(None);
        };
        let len = read_full(&mut hold, &mut buf).map_err(FormatError::Io)?;
        let last = len < buf.len();
        let batch = Batch {
            seq,
            first_index: seq * BATCH_CHUNKS as u64,
            buf,
            plain,
            len,
        };
        if work.send(batch).is_err() {
            return Ok(None);
        }
        seq += 1;
        if last {
            return Ok(hold.tail().map(|(t, total)| (t.to_vec(), total)));
        }
    }
}

/// Decrypts a Coffer file using `threads` worker threads (0 = all cores). Compressed
/// files are decompressed on one thread, so they take the streaming path.
pub fn decrypt_parallel<R: Read + Send, W: Write>(
    mut input: R,
    root: &RootKey,
    output: &mut W,
    threads: usize,
) -> Result<(Header, FileSummary), FormatError> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        threads
    };
    let opened = read_preamble(&mut input, root)?;
    if opened.header.compression != Compression::None {
        let reader = super::file::resume(input, opened)?;
        return super::file::drain_into(reader, output);
    }
    let header = opened.header.clone();
    let hold = HoldBack::new(input, opened.body_offset);
    let pool = 2 * threads + 2;
    // The pool starts with two batches and grows to `pool` only while all are in flight.
    let (free_tx, free_rx) = sync_channel::<(Vec<u8>, Vec<u8>)>(pool);
    let new_buffers = || {
        (
            vec![0u8; BATCH_CHUNKS * SEALED_CHUNK_SIZE],
            vec![0u8; BATCH_CHUNKS * CHUNK_SIZE],
        )
    };
    for _ in 0..2 {
        free_tx
            .send(new_buffers())
            .map_err(|_| FormatError::Crypto("buffer pool".into()))?;
    }
    let mut allocated = 2;
    let (work_tx, work_rx) = sync_channel::<Batch>(threads);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<Decrypted>(pool);
    let mut ciphers = Vec::with_capacity(threads);
    for _ in 0..threads {
        ciphers.push(opened.cipher.try_clone()?);
    }

    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_batches(hold, free_rx, work_tx));
        for cipher in ciphers {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || loop {
                let next = work_rx.lock().map(|rx| rx.recv());
                let Ok(Ok(batch)) = next else { return };
                if done_tx.send(decrypt_batch(&cipher, batch)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        drop(work_rx);

        let mut pending: BTreeMap<u64, Decrypted> = BTreeMap::new();
        let mut next_seq = 0u64;
        let mut plaintext_len = 0u64;
        let outcome: Result<(), Stop> = 'write: loop {
            // Keep every worker busy: add a buffer while the pool is short of the limit.
            if allocated < pool {
                if free_tx.try_send(new_buffers()).is_ok() {
                    allocated += 1;
                }
            }
            let Ok(result) = done_rx.recv() else {
                break 'write Err(Stop::Error(FormatError::Crypto(
                    "decryption workers stopped early".into(),
                )));
            };
            pending.insert(result.batch.seq, result);
            while let Some(result) = pending.remove(&next_seq) {
                if let Err(e) = output.write_all(&result.batch.plain[..result.plain_len]) {
                    break 'write Err(Stop::Error(FormatError::Io(e)));
                }
                plaintext_len += result.plain_len as u64;
                if let Some(fault) = result.fault {
                    break 'write Err(Stop::Fault(fault));
                }
                if result.done {
                    break 'write Ok(());
                }
                next_seq += 1;
                // Recycle the buffer; if the reader already stopped, nobody needs it.
                let _ = free_tx.send((result.batch.buf, result.batch.plain));
            }
        };
        // Stop the pipeline: the reader and the workers see closed channels and return.
        drop(free_tx);
        drop(done_rx);
        let tail = reader
            .join()
            .map_err(|_| FormatError::Crypto("reader thread panicked".into()))?;
        let footer = match &tail {
            Ok(Some((t, total))) => Some(check_footer(t, *total)),
            _ => None,
        };
        match outcome {
            Ok(()) => match footer {
                Some(FooterState::Complete) => {
                    let file_len = tail.ok().flatten().map_or(0, |(_, total)| total);
                    Ok((
                        header,
                        FileSummary {
                            plaintext_len,
                            file_len,
                        },
                    ))
                }
                other => Err(super::file::footer_error(other)),
            },
            Err(Stop::Fault(fault)) => Err(fault_to_error(fault, footer)),
            Err(Stop::Error(e)) => Err(match tail {
                Err(io) => io,
                Ok(_) => e,
            }),
        }
    })
}
