//! The Coffer-format readers on hostile input: never panic, never succeed on junk.
//! The first byte picks what is fuzzed, so the fuzzer gets past the header check and the
//! commitment (which random bytes never satisfy):
//! 0: the whole file; 1/2: the body and footer after a valid header (uncompressed / zstd);
//! 3: the metadata of a valid header.
#![no_main]

use coffer::internal::cobblestone::{derive, SALT_LEN};
use coffer::internal::format_header::{header_check, inspect, key_id, INFO_FILE_KEY, MAGIC};
use coffer::format::{decrypt_parallel, Parallelism};
use coffer::format::{self, RandomAccess};
use coffer::key::RootKey;
use libfuzzer_sys::fuzz_target;

/// A valid header (with its check, salt and commitment) around `meta`.
fn preamble(root: &RootKey, compression: u8, meta: &[u8]) -> Vec<u8> {
    let salt = [3u8; SALT_LEN];
    let mut context = MAGIC.to_vec();
    context.extend_from_slice(&[1, 1, compression, 0]);
    context.extend_from_slice(&((16 + 16 + meta.len() + 8) as u32).to_be_bytes());
    context.extend_from_slice(&key_id(root, &salt));
    context.extend_from_slice(meta);
    let keys = derive(&root.derive(INFO_FILE_KEY), &salt, &context);
    let mut out = context.clone();
    out.extend_from_slice(&header_check(&context, &salt, &keys.commitment));
    out.extend_from_slice(&salt);
    out.extend_from_slice(&keys.commitment);
    out
}

fuzz_target!(|data: &[u8]| {
    let root = RootKey::from_bytes([7u8; 32]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = match mode % 4 {
        0 => rest.to_vec(),
        1 | 2 => [preamble(&root, mode % 4 - 1, &[]), rest.to_vec()].concat(),
        _ => {
            let split = rest.len().min(rest.first().copied().unwrap_or(0) as usize);
            [preamble(&root, 0, &rest[..split]), rest[split..].to_vec()].concat()
        }
    };
    let mut out = Vec::new();
    let sequential = format::decrypt(&file[..], &root, &mut out);
    let mut par_out = Vec::new();
    let parallel = decrypt_parallel(
        &file[..],
        &root,
        &mut par_out,
        Parallelism {
            threads: 2,
            min_chunks: 0,
        },
        &|_| {},
    );
    assert_eq!(sequential.is_ok(), parallel.is_ok());
    assert_eq!(out, par_out);
    if let Ok(mut access) = RandomAccess::open(&file[..], &root) {
        let mut buf = [0u8; 64];
        let _ = access.read_at(0, &mut buf);
    }
    let _ = inspect(&mut &file[..], file.len() as u64);
});
