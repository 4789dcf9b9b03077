//! Parallel decryption of a seekable zstd file (spec/format.md §10): the seek table says
//! where each frame is, so worker threads each take a frame, decrypt the chunks under it,
//! decompress it and write its plaintext at its offset. On any failure the work is thrown
//! away and the streaming reader runs instead, so the output and the class are its own.

use super::batching::for_each_item;
use super::header::Header;
use super::random_access::{RandomAccess, ReadAt};
use super::write_at::WriteAt;
use super::{FileSummary, FormatError};
use crate::key::RootKey;
use std::sync::atomic::{AtomicU64, Ordering};

/// Decrypts a seekable file on `threads` workers. `None`: the file cannot be opened for
/// random access, has one frame, or a frame failed; the caller then streams it (and the
/// streaming reader names the class). `Some(Err)`: reading or writing failed (the output
/// is emptied).
pub(crate) fn decrypt_frames_at<F: ReadAt + Sync, O: WriteAt + Sync + ?Sized>(
    input: &F,
    root: &RootKey,
    output: &O,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Option<Result<(Header, FileSummary), FormatError>> {
    let access = RandomAccess::open(input, root).ok()?;
    let frames = access.frame_count();
    if frames < 2 {
        return None;
    }
    let plaintext_len = access.len();
    if let Err(e) = output.set_len(plaintext_len) {
        return Some(Err(FormatError::Io(e)));
    }
    let first_failure = AtomicU64::new(u64::MAX);
    let done = AtomicU64::new(0);
    let mut readers = Vec::with_capacity(threads);
    for _ in 0..threads.min(frames as usize) {
        match access.fork() {
            Ok(r) => readers.push(r),
            Err(e) => return Some(Err(e)),
        }
    }
    let past = |i: u64| i > first_failure.load(Ordering::Relaxed);
    let run = for_each_item(readers, frames, past, |reader, i| {
        match reader.frame(i) {
            Ok((at, plain)) => {
                output.write_all_at(plain, at).map_err(FormatError::Io)?;
                let n = plain.len() as u64;
                progress(done.fetch_add(n, Ordering::Relaxed) + n);
            }
            Err(FormatError::Io(e)) => return Err(FormatError::Io(e)),
            // The streaming reader will name the class.
            Err(_) => {
                first_failure.fetch_min(i, Ordering::Relaxed);
            }
        }
        Ok(())
    });
    if let Err(e) = run {
        let _ = output.set_len(0);
        return Some(Err(e));
    }
    if first_failure.load(Ordering::Relaxed) != u64::MAX {
        // The streaming reader writes from the start and leaves exactly what it released.
        return None;
    }
    let file_len = match input.size() {
        Ok(n) => n,
        Err(e) => return Some(Err(FormatError::Io(e))),
    };
    Some(Ok((
        access.header().clone(),
        FileSummary {
            plaintext_len,
            file_len,
        },
    )))
}
