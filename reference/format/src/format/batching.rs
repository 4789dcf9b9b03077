//! How work is split between threads: batches of 64 chunks, how many workers, and the
//! loop every parallel path runs them in.

use super::FormatError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Files of fewer chunks (4 MiB) are decrypted on one thread: starting workers would cost
/// more than it saves.
pub(crate) const PARALLEL_MIN_CHUNKS: u64 = 256;

/// How to run a parallel decryption.
#[derive(Debug, Clone, Copy)]
pub struct Parallelism {
    /// Worker threads; 0 = one per core.
    pub threads: usize,
    /// Smaller files take the streaming path.
    pub min_chunks: u64,
}

impl Parallelism {
    /// `threads` workers (0 = one per core) for files of at least 256 chunks (4 MiB); smaller files run on one thread.
    pub fn threads(threads: usize) -> Self {
        Parallelism {
            threads,
            min_chunks: PARALLEL_MIN_CHUNKS,
        }
    }

    pub(crate) fn workers(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.threads
        }
    }
}

/// Chunks per batch (1 MiB of plaintext): large enough that handing a batch between
/// threads costs little, small enough to stay in a core's L2 cache.
pub(crate) const BATCH_CHUNKS: u64 = 64;

/// Runs one scoped worker thread per element of `states`. The workers take items `0..items`
/// in order from a shared counter and call `work(state, item)` until the items run out, an
/// item is `past` the point where results are no longer needed, or a call fails: then the
/// others stop taking items. Returns the first failure (a panicking worker is one).
pub(crate) fn for_each_item<S: Send>(
    states: Vec<S>,
    items: u64,
    past: impl Fn(u64) -> bool + Sync,
    work: impl Fn(&mut S, u64) -> Result<(), FormatError> + Sync,
) -> Result<(), FormatError> {
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let results: Vec<Result<(), FormatError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = states
            .into_iter()
            .map(|mut state| {
                let (next, stop, past, work) = (&next, &stop, &past, &work);
                scope.spawn(move || loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    if item >= items || stop.load(Ordering::Relaxed) || past(item) {
                        return Ok(());
                    }
                    work(&mut state, item).inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(FormatError::Crypto("a worker thread panicked".into())))
            })
            .collect()
    });
    results.into_iter().collect()
}
