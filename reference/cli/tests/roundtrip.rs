//! Property tests: whatever the plaintext, encoding and block size, decrypt(encrypt(x)) == x.

mod common;

use coffer::crypt15::PayloadEncoding;
use coffer::key::{BackupKey, RootKey};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(
        key in any::<[u8; 32]>(),
        plain in prop_oneof![proptest::collection::vec(any::<u8>(), 0..20_000), (0usize..60_000).prop_map(common::chat_like)],
        level in 0u32..=9,
        stored in any::<bool>(),
        md5 in any::<bool>(),
        block in 1usize..5000,
    ) {
        // spec/crypt15.md §12.1: the payload kind is read from its first bytes, so stored bytes
        // that begin with a valid zlib header are inflated (real stored payloads are ZIPs).
        prop_assume!(!(stored && looks_like_zlib(&plain)));
        let root = RootKey::from_bytes(key);
        // A zlib payload always carries the MD5 (as WhatsApp writes it); stored payloads may not.
        let (payload, md5) = if stored { (PayloadEncoding::Stored, md5) } else { (PayloadEncoding::Zlib { level }, true) };
        let file = common::crypt15_file(&root, &plain, payload, md5);
        let out = common::try_decrypt(&BackupKey::Root(root), &file, block);
        prop_assert!(out.is_ok(), "{:?}", out.err());
        prop_assert_eq!(out.unwrap(), plain);
    }
}

/// The zlib-header test of spec/crypt15.md §12.1.
fn looks_like_zlib(p: &[u8]) -> bool {
    match p {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && flg & 0x20 == 0
                && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}
