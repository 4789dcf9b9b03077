//! How work is split between threads: batches of 64 chunks, and how many workers.

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
