//! Positional parallel encryption of an uncompressed Coffer file: workers read, seal and
//! write their own batches, so no thread waits for another.

use super::batching::{for_each_item, Parallelism, BATCH_CHUNKS};
use super::cobblestone::{derive, ChunkCipher, CHUNK_SIZE, MAX_CHUNKS, SEALED_CHUNK_SIZE, TAG_LEN};
use super::file::{preamble, FileSummary, WriteOptions};
use super::header::{encode_footer, Compression, Header, FOOTER_LEN};
use super::parallel_seal::{seal_batch, BATCH_BYTES, SEALED_BATCH_BYTES};
use super::random_access::{read_exact_at, ReadAt};
use super::wiped::WipedBuf;
use super::write_at::WriteAt;
use super::FormatError;
use crate::key::RootKey;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// Encrypts an uncompressed Coffer file from a positional input (a file) to a positional
/// output, with the bytes [`super::encrypt`] writes: `threads` workers (0 = one per core)
/// each read a batch of 64 chunks at its offset, seal it and write it at its offset, so no
/// thread waits for another and memory is one batch per worker. The input must keep its
/// length while it is read (a change is an I/O error). `progress` is called with the
/// plaintext bytes done so far. On error the output holds no usable file.
pub fn encrypt_parallel_at<F: ReadAt + Sync, O: WriteAt + Sync>(
    root: &RootKey,
    header: Header,
    input: &F,
    output: &O,
    options: &WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FileSummary, FormatError> {
    if header.compression != Compression::None {
        return Err(FormatError::Unsupported(
            "positional encryption writes uncompressed files; zstd streams through Writer".into(),
        ));
    }
    let plain_len = input.size().map_err(FormatError::Io)?;
    let chunks = plain_len / CHUNK_SIZE as u64 + 1;
    if chunks > MAX_CHUNKS {
        return Err(FormatError::TooLong);
    }
    let pre = preamble(root, header, options)?;
    let keys = derive(&pre.file_key, &pre.salt, &pre.context);
    let start = [&pre.context[..], &pre.check, &pre.salt, &keys.commitment].concat();
    let body = start.len() as u64;
    let sealed_len = plain_len + chunks * TAG_LEN as u64;
    let file_len = body + sealed_len + FOOTER_LEN as u64;
    // Sized first: writes that extend a file out of order are slow.
    output.set_len(file_len).map_err(FormatError::Io)?;
    output.write_all_at(&start, 0).map_err(FormatError::Io)?;
    let batches = chunks.div_ceil(BATCH_CHUNKS);
    let workers = (Parallelism::threads(options.threads).workers() as u64).clamp(1, batches);
    let cipher = ChunkCipher::new(&keys)?;
    let mut ciphers = Vec::with_capacity(workers as usize);
    for _ in 0..workers {
        ciphers.push(cipher.try_clone()?);
    }
    let done = AtomicU64::new(0);
    let states = ciphers
        .into_iter()
        .map(|c| (c, WipedBuf::with_capacity(SEALED_BATCH_BYTES)))
        .collect();
    for_each_item(
        states,
        batches,
        |_| false,
        |(cipher, buf), seq| {
            let (sealed, plain) =
                seal_at(cipher, input, seq, batches, plain_len, std::mem::take(buf))?;
            let at = body + seq * BATCH_CHUNKS * SEALED_CHUNK_SIZE as u64;
            output.write_all_at(&sealed, at).map_err(FormatError::Io)?;
            progress(done.fetch_add(plain, Ordering::Relaxed) + plain);
            *buf = sealed;
            buf.clear();
            Ok(())
        },
    )?;
    if input.size().map_err(FormatError::Io)? != plain_len {
        return Err(changed());
    }
    output
        .write_all_at(&encode_footer(file_len), body + sealed_len)
        .map_err(FormatError::Io)?;
    Ok(FileSummary {
        plaintext_len: plain_len,
        file_len,
    })
}

fn changed() -> FormatError {
    FormatError::Io(io::Error::other(
        "the input changed length while it was encrypted",
    ))
}

/// Reads batch `seq` of the plaintext from `input` into `buf` and seals it; the sealed
/// batch and its plaintext length.
fn seal_at<F: ReadAt + ?Sized>(
    cipher: &mut ChunkCipher,
    input: &F,
    seq: u64,
    batches: u64,
    plain_len: u64,
    mut buf: WipedBuf,
) -> Result<(WipedBuf, u64), FormatError> {
    let from = seq * BATCH_BYTES as u64;
    let len = (plain_len - from).min(BATCH_BYTES as u64) as usize;
    buf.resize(len, 0);
    read_exact_at(input, &mut buf, from).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => changed(),
        _ => FormatError::Io(e),
    })?;
    let sealed = seal_batch(cipher, seq * BATCH_CHUNKS, buf, seq + 1 == batches)?;
    Ok((sealed, len as u64))
}
