//! Replays `tests/fuzz_regressions/*`: every input is rejected with a class, without panicking.

use coffer::crypt15::{self, DecryptOptions};
use coffer::key::{BackupKey, RootKey};

#[test]
fn fuzz_regressions_are_rejected_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let key = BackupKey::Root(RootKey::from_bytes([7u8; 32]));
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let _ = crypt15::read_header(&mut &data[..]);
        let options = DecryptOptions {
            block_size: 64,
            ..DecryptOptions::default()
        };
        let result = crypt15::decrypt(&key, &data[..], &mut Vec::new(), &options, &mut |_| {});
        assert!(result.is_err(), "{} decrypted", path.display());
        count += 1;
    }
    assert!(count >= 5, "expected the regression inputs, found {count}");
}
