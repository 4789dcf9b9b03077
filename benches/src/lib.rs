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
