//! Replays `tests/fuzz_regressions/CLASS--name`: every input is rejected, without panicking,
//! with the class its file name starts with. And every fuzz target's regression inputs
//! (`reference/fuzz/regressions/<target>/`) through the target's own body
//! (`reference/fuzz/src/targets.rs`, compiled here too), so the targets cannot rot.

#[path = "../../fuzz/src/targets.rs"]
mod targets;

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

/// Every target's inputs through its body: none panics (the targets' assertions included),
/// and every target has inputs.
#[test]
fn every_fuzz_target_replays_its_regression_inputs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    type Body = fn(&[u8]);
    let bodies: [(&str, Body); 11] = [
        ("header", targets::header),
        ("decrypt", targets::decrypt),
        ("format", targets::format),
        ("vault", targets::vault),
        ("payload", targets::payload),
        ("legacy", targets::legacy),
        ("key_file", targets::key_file),
        ("vault_client", targets::vault_client),
        ("hsm_uri", targets::hsm_uri),
        ("etcd_config", targets::etcd_config),
        ("range", targets::range),
    ];
    for (name, body) in bodies {
        let mut count = 0;
        for entry in std::fs::read_dir(root.join(name)).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            body(&data);
            count += 1;
        }
        assert!(count >= 5, "{name}: only {count} regression inputs");
    }
}

/// The `format` seeds reach past the header: the valid ones decrypt under the targets' key.
#[test]
fn the_format_seeds_are_valid_files_where_they_say_so() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/format");
    let root = RootKey::from_bytes([7u8; 32]);
    for name in ["valid-uncompressed", "valid-zstd"] {
        let data = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(data[0] % 4, 0, "{name}: mode 0, the whole file");
        let mut out = Vec::new();
        coffer::format::decrypt(&data[1..], &root, &mut out).unwrap();
        assert_eq!(out, vec![b'a'; 40_000], "{name}");
    }
}
