//! Shared helpers for integration tests: paths to the vendored real-world samples.
#![allow(dead_code)]

use std::path::PathBuf;

/// `vectors/external/wa-crypt-tools/NAME`.
pub fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../vectors/external/wa-crypt-tools")
        .join(name)
}

/// The sample's plaintext database.
pub fn msgstore() -> Vec<u8> {
    std::fs::read(sample("msgstore.db")).expect("vendored msgstore.db")
}

/// Reads a sample file.
pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(sample(name)).unwrap_or_else(|e| panic!("vendored {name}: {e}"))
}
