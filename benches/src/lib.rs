//! Shared workloads for Coffer's benches.

pub mod tokens;

use std::path::PathBuf;

/// Chat-like SQLite: the real WhatsApp msgstore.db sample repeated to `len` bytes.
pub fn chat_sqlite(len: usize) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../vectors/external/wa-crypt-tools/msgstore.db");
    let db = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    db.iter().copied().cycle().take(len).collect()
}

/// Quick mode (`COFFER_BENCH_QUICK=1`, what CI runs with `cargo test --benches`): every
/// bench runs on small inputs so that it is exercised, not measured.
pub fn quick() -> bool {
    std::env::var("COFFER_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// `full` bytes, or at most 1 MiB in quick mode.
pub fn size(full: usize) -> usize {
    if quick() {
        full.min(1 << 20)
    } else {
        full
    }
}
