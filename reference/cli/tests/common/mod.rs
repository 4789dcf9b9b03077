//! Shared helpers for integration tests: paths to the vendored real-world samples.
#![allow(dead_code)]

use std::path::PathBuf;

/// `vectors/external/wa-crypt-tools/NAME`.
pub(crate) fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../vectors/external/wa-crypt-tools")
        .join(name)
}

/// The sample's plaintext database.
pub(crate) fn msgstore() -> Vec<u8> {
    std::fs::read(sample("msgstore.db")).expect("vendored msgstore.db")
}

/// Reads a sample file.
pub(crate) fn read(name: &str) -> Vec<u8> {
    std::fs::read(sample(name)).unwrap_or_else(|e| panic!("vendored {name}: {e}"))
}

use coffer::crypt15::{self, DecryptOptions, EncryptOptions, HeaderSpec, PayloadEncoding};
use coffer::key::{BackupKey, RootKey};
use coffer::{Classify, ErrorClass};

/// A fixed test key.
pub(crate) fn test_key() -> RootKey {
    RootKey::from_bytes([7u8; 32])
}

/// Chat-like bytes: repetitive text with a counter, compressible like a message database.
pub(crate) fn chat_like(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "msg {i}: see you at {} o'clock, ok? {}\n",
                i % 24,
                i.wrapping_mul(2654435761) % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// Encrypts `plain` as crypt15 under `key` with a fixed IV.
pub(crate) fn crypt15_file(
    key: &RootKey,
    plain: &[u8],
    payload: PayloadEncoding,
    md5: bool,
) -> Vec<u8> {
    let header = HeaderSpec::new([9u8; 16], "2.24.1.1", "42", 1).encode();
    let mut out = Vec::new();
    let options = EncryptOptions {
        payload,
        md5,
        ..EncryptOptions::default()
    };
    crypt15::encrypt(key, &header, plain, &mut out, &options, &mut |_| {}).expect("encrypt");
    out
}

/// Decrypts with the given block size; returns the output or the error class.
pub(crate) fn try_decrypt(
    key: &BackupKey,
    file: &[u8],
    block_size: usize,
) -> Result<Vec<u8>, (ErrorClass, String)> {
    let mut out = Vec::new();
    let options = DecryptOptions {
        block_size,
        ..DecryptOptions::default()
    };
    crypt15::decrypt(key, file, &mut out, &options, &mut |_| {})
        .map(|_| out)
        .map_err(|e| (e.class(), e.to_string()))
}

/// Expects decryption to fail with `class`.
pub(crate) fn expect_class(key: &BackupKey, file: &[u8], class: ErrorClass, what: &str) {
    match try_decrypt(key, file, 4096) {
        Ok(_) => panic!("{what}: decrypted, expected {class}"),
        Err((got, message)) => assert_eq!(got, class, "{what}: {message}"),
    }
}

/// Recomputes the MD5 trailer of a crypt14/15 file in place.
pub(crate) fn fix_md5(file: &mut [u8]) {
    use md5_shim::digest;
    let n = file.len();
    let d = digest(&file[..n - 16]);
    file[n - 16..].copy_from_slice(&d);
}

mod md5_shim {
    pub(super) fn digest(data: &[u8]) -> [u8; 16] {
        let d = openssl::hash::hash(openssl::hash::MessageDigest::md5(), data).expect("md5");
        let mut out = [0u8; 16];
        out.copy_from_slice(&d);
        out
    }
}

/// The 64 digits of the sample's `encrypted_backup.key`.
pub(crate) fn sample_root_hex() -> String {
    match BackupKey::from_file_bytes(&read("encrypted_backup.key")).expect("the sample key") {
        BackupKey::Root(root) => root.to_hex().as_str().to_owned(),
        BackupKey::Legacy(_) => panic!("encrypted_backup.key is a crypt15 key"),
    }
}
