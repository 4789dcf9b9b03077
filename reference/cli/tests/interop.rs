//! Interop with the real wa-crypt-tools from PyPI: its `wadecrypt` opens what `coffer encrypt`
//! writes, and `coffer decrypt` opens what its `waencrypt` writes.
//!
//! `COFFER_WA_CRYPT_TOOLS` names the directory holding `wadecrypt` and `waencrypt` (the test
//! command installs them into a venv). Without it these tests fail, unless the user opted out
//! with `COFFER_SKIP_INTEROP=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn tools() -> Option<PathBuf> {
    if coffer_testkit::opt_out("COFFER_SKIP_INTEROP", "interop with wa-crypt-tools") {
        return None;
    }
    let dir = std::env::var_os("COFFER_WA_CRYPT_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
        panic!("COFFER_WA_CRYPT_TOOLS is not set: run scripts/test.sh (it installs wa-crypt-tools), or set COFFER_SKIP_INTEROP=1 to opt out")
    });
    for tool in ["wadecrypt", "waencrypt"] {
        assert!(
            dir.join(tool).is_file(),
            "{} not found in COFFER_WA_CRYPT_TOOLS={}",
            tool,
            dir.display()
        );
    }
    Some(dir)
}

fn run(program: &Path, args: &[&Path]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed: {stderr}",
        program.display()
    );
    // wa-crypt-tools logs errors without failing: an "[E]" line is a failure too.
    assert!(
        !stderr.contains("[E]") && !stderr.contains("[C]"),
        "{} reported: {stderr}",
        program.display()
    );
}

fn coffer(args: &[&Path]) {
    run(Path::new(env!("CARGO_BIN_EXE_coffer")), args);
}

/// Sizes from empty to over 16 MiB; the large ones mix incompressible bytes in.
fn payloads() -> Vec<(String, Vec<u8>)> {
    let mut mixed = common::chat_like(17 * 1024 * 1024 + 123);
    let mut state = 0x2545f4914f6cdd1du64;
    for chunk in mixed.chunks_mut(64 * 1024).step_by(3) {
        for byte in chunk.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
    }
    vec![
        ("empty".into(), Vec::new()),
        ("one byte".into(), vec![0x42]),
        ("4 KiB".into(), common::chat_like(4096)),
        ("sqlite sample".into(), common::msgstore()),
        ("17 MiB".into(), mixed),
    ]
}

/// Encrypts every payload with one tool and decrypts it with the other, under a fresh key.
fn round_trip(
    label: &str,
    encrypt: impl Fn(&Path, &Path, &Path),
    decrypt: impl Fn(&Path, &Path, &Path),
) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("encrypted_backup.key");
    coffer(&[Path::new("key"), Path::new("new"), Path::new("--out"), &key]);
    for (i, (name, plain)) in payloads().into_iter().enumerate() {
        let input = dir.path().join(format!("in{i}"));
        let encrypted = dir.path().join(format!("{i}.crypt15"));
        let decrypted = dir.path().join(format!("{i}.out"));
        std::fs::write(&input, &plain).unwrap();
        encrypt(&key, &input, &encrypted);
        decrypt(&key, &encrypted, &decrypted);
        assert!(
            std::fs::read(&decrypted).unwrap() == plain,
            "{label}, {name}: output differs"
        );
    }
}

fn coffer_encrypt(key: &Path, input: &Path, output: &Path) {
    coffer(&[
        Path::new("encrypt"),
        Path::new("--key"),
        key,
        input,
        Path::new("-o"),
        output,
    ]);
}

fn coffer_decrypt(key: &Path, input: &Path, output: &Path) {
    coffer(&[
        Path::new("decrypt"),
        Path::new("--key"),
        key,
        input,
        Path::new("-o"),
        output,
    ]);
}

#[test]
fn wadecrypt_opens_what_coffer_writes() {
    let Some(tools) = tools() else { return };
    let wadecrypt = |key: &Path, input: &Path, output: &Path| {
        run(&tools.join("wadecrypt"), &[key, input, output])
    };
    round_trip("coffer encrypt -> wadecrypt", coffer_encrypt, wadecrypt);
}

#[test]
fn coffer_opens_what_waencrypt_writes() {
    let Some(tools) = tools() else { return };
    let waencrypt = |key: &Path, input: &Path, output: &Path| {
        run(&tools.join("waencrypt"), &[key, input, output])
    };
    round_trip("waencrypt -> coffer decrypt", waencrypt, coffer_decrypt);
}

#[test]
fn waencrypt_with_reference_header_round_trips() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = common::sample("encrypted_backup.key");
    let encrypted = dir.path().join("ref.crypt15");
    let decrypted = dir.path().join("ref.db");
    run(
        &tools.join("waencrypt"),
        &[
            &key,
            &common::sample("msgstore.db"),
            &encrypted,
            Path::new("--reference"),
            &common::sample("msgstore.db.crypt15"),
        ],
    );
    coffer_decrypt(&key, &encrypted, &decrypted);
    assert!(std::fs::read(&decrypted).unwrap() == common::msgstore());
}
