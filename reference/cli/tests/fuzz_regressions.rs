//! Replays `tests/fuzz_regressions/CLASS--name`: every input is rejected, without panicking,
//! with the class its file name starts with.

use coffer::crypt15::{self, DecryptOptions};
use coffer::key::{BackupKey, RootKey};
use coffer::{Classify, ErrorClass};

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
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = name
            .split_once("--")
            .and_then(|(class, _)| ErrorClass::from_name(class))
            .unwrap_or_else(|| panic!("{name}: file names start with an error class and --"));
        match result {
            Ok(_) => panic!("{name} decrypted"),
            Err(e) => assert_eq!(e.class(), expected, "{name}: {e}"),
        }
        count += 1;
    }
    assert!(count >= 5, "expected the regression inputs, found {count}");
}
