//! The whole decryption pipeline on arbitrary files: never panics; success only for files
//! that authenticate (which random input essentially never does).
#![no_main]

use coffer::crypt15::{decrypt, DecryptOptions};
use coffer::key::{BackupKey, RootKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = BackupKey::Root(RootKey::from_bytes([7u8; 32]));
    let options = DecryptOptions {
        block_size: 64,
        ..DecryptOptions::default()
    };
    let mut out = Vec::new();
    let _ = decrypt(&key, data, &mut out, &options, &mut |_| {});
});
