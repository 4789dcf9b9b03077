//! The `coffer` binary as a user meets it: exit codes, --json, and no partial output.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn coffer(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command.env_remove("COFFER_KEY");
    coffer_testkit::args_with_key_in_env(&mut command, args.iter().copied())
        .output()
        .expect("run coffer")
}

/// Runs coffer and fails the test, showing stderr, unless it succeeded.
fn coffer_ok(args: &[&str]) -> Output {
    let out = coffer(args);
    assert!(
        out.status.success(),
        "coffer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn decrypt_sample_and_reencrypt_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::sample("encrypted_backup.key");
    let original = common::sample("msgstore.db.crypt15");
    let db = dir.path().join("msgstore.db");
    let out = coffer_ok(&[
        "--json",
        "decrypt",
        "--key",
        s(&key),
        s(&original),
        "-o",
        s(&db),
    ]);
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["format"], "crypt15");
    assert_eq!(report["inner"], "sqlite");
    assert_eq!(std::fs::read(&db).unwrap(), common::msgstore());

    let again = dir.path().join("again.crypt15");
    coffer_ok(&[
        "encrypt",
        "--key",
        s(&key),
        "--like",
        s(&original),
        "--keep-iv",
        s(&db),
        "-o",
        s(&again),
    ]);
    assert!(
        std::fs::read(&again).unwrap() == common::read("msgstore.db.crypt15"),
        "not byte-exact"
    );

    // Without --keep-iv the header is copied but the IV is fresh.
    let fresh = dir.path().join("fresh.crypt15");
    coffer_ok(&[
        "encrypt",
        "--key",
        s(&key),
        "--like",
        s(&original),
        s(&db),
        "-o",
        s(&fresh),
    ]);
    let fresh_bytes = std::fs::read(&fresh).unwrap();
    let original_bytes = common::read("msgstore.db.crypt15");
    assert_eq!(fresh_bytes.len(), original_bytes.len());
    assert_eq!(fresh_bytes[..8], original_bytes[..8]);
    assert_ne!(fresh_bytes[8..24], original_bytes[8..24], "IV must differ");
    assert_eq!(fresh_bytes[24..131], original_bytes[24..131]);
    let back = dir.path().join("back.db");
    coffer_ok(&["decrypt", "--key", s(&key), s(&fresh), "-o", s(&back)]);
    assert_eq!(std::fs::read(&back).unwrap(), common::msgstore());
}

#[test]
fn every_format_decrypts_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = common::sample("key");
    for name in [
        "msgstore.db.crypt14",
        "msgstore-noexpiry.db.crypt14",
        "msgstore.db.crypt12",
    ] {
        let out_path = dir.path().join(format!("{name}.db"));
        coffer_ok(&[
            "decrypt",
            "--key",
            s(&legacy),
            s(&common::sample(name)),
            "-o",
            s(&out_path),
        ]);
        assert_eq!(
            std::fs::read(&out_path).unwrap(),
            common::msgstore(),
            "{name}"
        );
    }
}

#[test]
fn failures_leave_no_output_and_use_the_class_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let original = common::read("msgstore.db.crypt15");
    let key = common::sample("encrypted_backup.key");
    let cases: Vec<(&str, Vec<u8>, &str, i32)> = vec![
        (
            "truncated",
            original[..original.len() / 2].to_vec(),
            "truncated",
            12,
        ),
        (
            "trailing",
            [original.as_slice(), b"garbage"].concat(),
            "trailing_data",
            13,
        ),
        ("empty", Vec::new(), "truncated", 12),
        ("plain", common::msgstore(), "malformed", 15),
        (
            "flipped",
            {
                let mut f = original.clone();
                f[100_000] ^= 1;
                f
            },
            "corrupt",
            11,
        ),
    ];
    for (name, bytes, class, code) in cases {
        let input = dir.path().join(format!("{name}.crypt15"));
        std::fs::write(&input, &bytes).unwrap();
        let output = dir.path().join(format!("{name}.db"));
        let out = coffer(&[
            "--json",
            "decrypt",
            "--key",
            s(&key),
            s(&input),
            "-o",
            s(&output),
        ]);
        assert_eq!(out.status.code(), Some(code), "{name}");
        let report = json(&out);
        assert_eq!(report["ok"], false, "{name}");
        assert_eq!(report["error"], class, "{name}");
        assert!(report["message"].as_str().unwrap().len() > 10);
        assert!(
            !output.exists(),
            "{name}: OUTPUT must not exist after a failure"
        );
    }
    // Wrong key, given as 64 digits; an existing OUTPUT survives a failed --force run.
    let output = dir.path().join("keep.db");
    std::fs::write(&output, b"precious").unwrap();
    let wrong = "00".repeat(32);
    let input = common::sample("msgstore.db.crypt15");
    let out = coffer(&[
        "decrypt",
        "--force",
        "--key",
        &wrong,
        s(&input),
        "-o",
        s(&output),
    ]);
    assert_eq!(out.status.code(), Some(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong_key"));
    assert_eq!(std::fs::read(&output).unwrap(), b"precious");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn existing_output_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("exists.db");
    std::fs::write(&output, b"x").unwrap();
    let key = common::sample("encrypted_backup.key");
    let input = common::sample("msgstore.db.crypt15");
    let out = coffer(&[
        "--json",
        "decrypt",
        "--key",
        s(&key),
        s(&input),
        "-o",
        s(&output),
    ]);
    assert_eq!(out.status.code(), Some(22));
    assert_eq!(json(&out)["error"], "io");
    assert_eq!(std::fs::read(&output).unwrap(), b"x");
    coffer_ok(&[
        "decrypt",
        "--force",
        "--key",
        s(&key),
        s(&input),
        "-o",
        s(&output),
    ]);
    assert_eq!(std::fs::read(&output).unwrap(), common::msgstore());
}

#[test]
fn bad_keys_are_malformed_with_position() {
    let input = common::sample("msgstore.db.crypt15");
    let mut key = "6730a595a1484d0c39c101dc0ac82ec5e401bb6f0e1b8ee2dc104a6b3687f017".to_string();
    key.replace_range(4..5, "z");
    let out = coffer(&[
        "--json",
        "decrypt",
        "--key",
        &key,
        s(&input),
        "-o",
        "/nonexistent/x",
    ]);
    assert_eq!(out.status.code(), Some(15));
    let report = json(&out);
    assert_eq!(report["error"], "malformed");
    assert!(
        report["message"].as_str().unwrap().contains("position 5"),
        "{report}"
    );
    let out = coffer(&[
        "--json",
        "decrypt",
        "--key",
        "abcd",
        s(&input),
        "-o",
        "/nonexistent/x",
    ]);
    assert_eq!(json(&out)["error"], "malformed");
}

#[test]
fn info_needs_no_key() {
    let out = coffer_ok(&["--json", "info", s(&common::sample("msgstore.db.crypt15"))]);
    let report = json(&out);
    assert_eq!(report["format"], "crypt15");
    assert_eq!(report["header_bytes"], 131);
    assert_eq!(report["md5_trailer"], true);
    assert_eq!(report["ciphertext_bytes"], 240_366);
    assert_eq!(report["header"]["iv"], "c395ee009cf8b68ac0ea760550f6559c");
    let text = coffer(&["info", s(&common::sample("msgstore.db.crypt12"))]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("crypt12"));
    let bad = coffer(&["--json", "info", s(&common::sample("msgstore.db"))]);
    assert_eq!(bad.status.code(), Some(15));
}

#[test]
fn key_new_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encrypted_backup.key");
    let out = coffer_ok(&["--json", "key", "new", "--out", s(&path)]);
    let created = json(&out);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 59);
    let shown = json(&coffer(&["--json", "key", "show", s(&path)]));
    assert_eq!(shown["key"], created["key"]);
    let text = coffer(&["key", "show", s(&path)]);
    let line = String::from_utf8_lossy(&text.stdout);
    assert_eq!(line.trim().split(' ').count(), 16);
    // A fresh key encrypts and decrypts.
    let plain = dir.path().join("plain.bin");
    std::fs::write(&plain, common::chat_like(100_000)).unwrap();
    let enc = dir.path().join("plain.crypt15");
    let dec = dir.path().join("plain.out");
    coffer_ok(&[
        "encrypt",
        "--key",
        s(&path),
        s(&plain),
        "-o",
        s(&enc),
        "--jid-suffix",
        "12",
    ]);
    coffer_ok(&["decrypt", "--key", s(&path), s(&enc), "-o", s(&dec)]);
    assert_eq!(std::fs::read(&dec).unwrap(), common::chat_like(100_000));
    // The legacy key file shows its AES key.
    let legacy = json(&coffer(&[
        "--json",
        "key",
        "show",
        s(&common::sample("key")),
    ]));
    assert_eq!(legacy["kind"], "legacy");
}

#[test]
fn help_teaches() {
    let out = coffer(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "decrypt",
        "encrypt",
        "info",
        "key",
        "Exit codes",
        "wrong_key",
    ] {
        assert!(text.contains(word), "--help lacks {word}");
    }
    let out = coffer(&["decrypt", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Example"));
}

#[test]
fn like_needs_a_crypt15_reference() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("x.crypt15");
    for keep_iv in [true, false] {
        let key = common::sample("encrypted_backup.key");
        let like = common::sample("msgstore.db.crypt14");
        let input = common::sample("msgstore.db");
        let mut args = vec!["--json", "encrypt", "--key", s(&key), "--like", s(&like)];
        if keep_iv {
            args.push("--keep-iv");
        }
        args.extend([s(&input), "-o", s(&output)]);
        let out = coffer(&args);
        assert_eq!(out.status.code(), Some(14), "keep_iv {keep_iv}");
        assert_eq!(json(&out)["error"], "unsupported");
        assert!(!output.exists());
    }
}

const COFFER_KEY: &str = "0001020304050607 08090a0b0c0d0e0f-1011121314151617 18191a1b1c1d1e1f";

#[test]
fn coffer_format_encrypt_info_decrypt_range_verify() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("msgstore.db");
    std::fs::write(&db, common::msgstore()).unwrap();
    for compress in ["zstd", "none"] {
        let file = dir.path().join(format!("backup-{compress}.coffer"));
        let report = json(&coffer_ok(&[
            "--json",
            "encrypt",
            "--format",
            "coffer",
            "--compress",
            compress,
            "--key",
            COFFER_KEY,
            s(&db),
            "-o",
            s(&file),
        ]));
        assert_eq!(report["format"], "coffer");
        // `--compress zstd` writes seekable frames (spec/format.md §8.2).
        let written = if compress == "zstd" {
            "zstd_seekable"
        } else {
            compress
        };
        assert_eq!(report["compression"], written);
        let info = json(&coffer_ok(&["--json", "info", s(&file)]));
        assert_eq!(info["format"], "coffer");
        assert_eq!(info["header_check"], true);
        assert_eq!(info["footer"], "complete");
        let out = dir.path().join(format!("out-{compress}.db"));
        coffer_ok(&["decrypt", "--key", COFFER_KEY, s(&file), "-o", s(&out)]);
        assert_eq!(std::fs::read(&out).unwrap(), common::msgstore());
        let verified = json(&coffer_ok(&[
            "--json",
            "verify",
            "--key",
            COFFER_KEY,
            s(&file),
        ]));
        assert_eq!(verified["authenticated"], true);
        assert_eq!(verified["plaintext_bytes"], common::msgstore().len());
    }
    // Random access on the uncompressed file, END past the end is cut to the length.
    let file = dir.path().join("backup-none.coffer");
    let part = dir.path().join("part");
    let report = json(&coffer_ok(&[
        "--json",
        "decrypt",
        "--key",
        COFFER_KEY,
        s(&file),
        "--range",
        "20000:40000",
        "-o",
        s(&part),
    ]));
    assert_eq!(report["range"]["end"], 40000);
    assert_eq!(
        std::fs::read(&part).unwrap(),
        common::msgstore()[20000..40000]
    );
    let tail = dir.path().join("tail");
    coffer_ok(&[
        "decrypt",
        "--key",
        COFFER_KEY,
        s(&file),
        "--range",
        "100000:",
        "-o",
        s(&tail),
    ]);
    assert_eq!(std::fs::read(&tail).unwrap(), common::msgstore()[100000..]);
    // Random access on a seekable zstd file decompresses only the frame it needs.
    let zstd = dir.path().join("backup-zstd.coffer");
    let part = dir.path().join("part-zstd");
    let report = json(&coffer_ok(&[
        "--json",
        "decrypt",
        "--key",
        COFFER_KEY,
        s(&zstd),
        "--range",
        "20000:40000",
        "-o",
        s(&part),
    ]));
    assert_eq!(report["range"]["frames_decompressed"], 1);
    assert_eq!(
        std::fs::read(&part).unwrap(),
        common::msgstore()[20000..40000]
    );
}

#[test]
fn coffer_failures_have_their_exit_codes_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("msgstore.db");
    std::fs::write(&db, common::msgstore()).unwrap();
    let file = dir.path().join("b.coffer");
    coffer_ok(&[
        "encrypt",
        "--format",
        "coffer",
        "--compress",
        "none",
        "--key",
        COFFER_KEY,
        s(&db),
        "-o",
        s(&file),
    ]);
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 4;
    let cases: Vec<(&str, Vec<u8>, i32, &str)> = vec![
        (
            "truncated",
            bytes[..bytes.len() - 100].to_vec(),
            12,
            "truncated",
        ),
        (
            "appended",
            [bytes.clone(), b"extra".to_vec()].concat(),
            13,
            "trailing_data",
        ),
        ("flipped", flipped, 11, "corrupt"),
    ];
    for (what, content, code, class) in cases {
        let bad = dir.path().join(format!("{what}.coffer"));
        std::fs::write(&bad, content).unwrap();
        for threads in ["1", "0"] {
            let out_path = dir.path().join(format!("{what}-{threads}.db"));
            let out = coffer(&[
                "--json",
                "decrypt",
                "--threads",
                threads,
                "--key",
                COFFER_KEY,
                s(&bad),
                "-o",
                s(&out_path),
            ]);
            assert_eq!(out.status.code(), Some(code), "{what}");
            assert_eq!(json(&out)["error"], class, "{what}");
            assert!(!out_path.exists(), "{what}: no output on failure");
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                .collect();
            assert!(leftovers.is_empty(), "{what}: temporary file left behind");
        }
        let out = coffer(&["verify", "--key", COFFER_KEY, s(&bad)]);
        assert_eq!(out.status.code(), Some(code), "verify {what}");
    }
    let wrong = "ff".repeat(32);
    let out = coffer(&["verify", "--key", &wrong, s(&file)]);
    assert_eq!(out.status.code(), Some(10));
    // crypt15-only options are refused for the Coffer format.
    let out = coffer(&[
        "encrypt",
        "--format",
        "coffer",
        "--stored",
        "--key",
        COFFER_KEY,
        s(&db),
        "-o",
        s(&dir.path().join("x")),
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stored applies to crypt15 only"));
}

#[test]
fn a_directory_becomes_one_tar_backup() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("Media");
    std::fs::create_dir_all(media.join("WhatsApp Images")).unwrap();
    std::fs::write(
        media.join("WhatsApp Images/IMG-1.jpg"),
        vec![0xFFu8; 50_000],
    )
    .unwrap();
    std::fs::write(media.join("note.txt"), b"hello").unwrap();
    let file = dir.path().join("media.coffer");
    let report = json(&coffer_ok(&[
        "--json",
        "encrypt",
        "--format",
        "coffer",
        "--key",
        COFFER_KEY,
        s(&media),
        "-o",
        s(&file),
    ]));
    assert_eq!(report["content"], "tar");
    let tar_path = dir.path().join("media.tar");
    let report = json(&coffer_ok(&[
        "--json",
        "decrypt",
        "--key",
        COFFER_KEY,
        s(&file),
        "-o",
        s(&tar_path),
    ]));
    assert_eq!(report["content"], "tar");
    let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
    let mut names: Vec<(String, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().size().unwrap(),
            )
        })
        .filter(|(_, size)| *size > 0)
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("WhatsApp Images/IMG-1.jpg".to_string(), 50_000),
            ("note.txt".to_string(), 5)
        ]
    );
    // crypt15 cannot hold a directory.
    let out = coffer(&[
        "encrypt",
        "--key",
        COFFER_KEY,
        s(&media),
        "-o",
        s(&dir.path().join("m.crypt15")),
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("crypt15 holds one file"));
}

#[test]
fn verify_authenticates_crypt15_too() {
    let key = common::sample("encrypted_backup.key");
    let report = json(&coffer_ok(&[
        "--json",
        "verify",
        "--key",
        s(&key),
        s(&common::sample("msgstore.db.crypt15")),
    ]));
    assert_eq!(report["authenticated"], true);
    assert_eq!(report["format"], "crypt15");
}

#[test]
fn info_shows_a_damaged_header_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::write(&db, b"some bytes").unwrap();
    let file = dir.path().join("b.coffer");
    coffer_ok(&[
        "encrypt",
        "--format",
        "coffer",
        "--key",
        COFFER_KEY,
        s(&db),
        "-o",
        s(&file),
    ]);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[9] ^= 0x40; // the suite byte
    std::fs::write(&file, &bytes).unwrap();
    let info = json(&coffer_ok(&["--json", "info", s(&file)]));
    assert_eq!(info["header_check"], false);
    let out = coffer(&["verify", "--key", COFFER_KEY, s(&file)]);
    assert_eq!(
        out.status.code(),
        Some(11),
        "damage is corrupt, not unsupported"
    );
}

/// spec/key.md §3.5: the 64 digits are refused on the command line, and every other way to
/// give them works: COFFER_KEY, a file, standard input; with none of them and no terminal,
/// the command says where the key may go. Nothing is written when the key is refused.
#[test]
fn a_key_is_never_taken_from_the_command_line() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let sample = common::sample("msgstore.db.crypt15");
    let hex = common::sample_root_hex();
    let out_path = dir.path().join("out.db");
    // `coffer --json decrypt KEY_ARGS sample -o out.db --force`, with COFFER_KEY and standard
    // input as given.
    let decrypt = |key_args: &[&str], env: Option<&str>, stdin: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
        command
            .args(["--json", "decrypt"])
            .args(key_args)
            .args([s(&sample), "-o", s(&out_path), "--force"])
            .env_remove("COFFER_KEY")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(key) = env {
            command.env("COFFER_KEY", key);
        }
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    };

    // On the command line: refused, nothing written, and the message names the other ways.
    let out = decrypt(&["--key", &hex], None, None);
    assert_eq!(out.status.code(), Some(15));
    let message = json(&out)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("COFFER_KEY") && message.contains("--key -"),
        "{message}"
    );
    assert!(
        !message.contains(&hex),
        "the refusal repeats no key: {message}"
    );
    assert!(!out_path.exists());

    // Through the environment, a file, and standard input.
    let key_file = dir.path().join("k.txt");
    std::fs::write(&key_file, &hex).unwrap();
    for (key_args, env, stdin) in [
        (vec![], Some(hex.as_str()), None),
        (vec!["--key", s(&key_file)], None, None),
        (vec!["--key", "-"], None, Some(hex.as_str())),
    ] {
        let out = decrypt(&key_args, env, stdin);
        assert!(
            out.status.success(),
            "{key_args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::fs::remove_file(&out_path).unwrap();
    }

    // None at all, and standard input is no terminal: told where the key may go.
    let out = decrypt(&[], None, None);
    assert_eq!(out.status.code(), Some(15));
    assert!(
        json(&out)["message"].as_str().unwrap().contains("no key"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// spec/hsm.md §5: a PIN in an argument (pin-value= in an --hsm URI) is refused before any
/// module is loaded, with the ways that keep it off the command line.
#[test]
fn a_pin_is_never_taken_from_the_command_line() {
    let out = coffer(&[
        "--json",
        "hsm",
        "init",
        "--hsm",
        "pkcs11:token=t?module-path=/nonexistent/module.so&pin-value=12345678",
    ]);
    assert_eq!(out.status.code(), Some(15));
    let message = json(&out)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("pin-source=file:") && message.contains("COFFER_PKCS11_PIN"),
        "{message}"
    );
    assert!(
        !message.contains("12345678"),
        "the refusal repeats no PIN: {message}"
    );
}

/// spec/format.md's promise that a refused or unfinished decryption leaves no plaintext
/// holds when the user interrupts it too: SIGTERM or SIGINT at several points while
/// `decrypt` writes leaves no file in the output directory, and the process exits 128 + the
/// signal; even SIGKILL, which no handler sees, leaves nothing, because the output has no
/// name until it is complete (O_TMPFILE).
#[test]
fn an_interrupted_decryption_leaves_nothing_behind() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (plain, sealed, key) = (
        dir.path().join("big"),
        dir.path().join("big.coffer"),
        dir.path().join("k.key"),
    );
    // 256 MiB of zeros, sparse on disk: long enough to decrypt that it can be interrupted.
    std::fs::File::create(&plain)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    coffer_ok(&["key", "new", "--out", s(&key)]);
    coffer_ok(&[
        "encrypt",
        "--format",
        "coffer",
        "--compress",
        "none",
        "--key",
        s(&key),
        s(&plain),
        "-o",
        s(&sealed),
    ]);
    std::fs::remove_file(&plain).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    // Bytes the child has written to an output file in `out_dir` so far (its open files).
    let written = |pid: u32| -> Option<u64> {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.filter_map(|fd| {
            let fd = fd.ok()?.path();
            let target = std::fs::read_link(&fd).ok()?;
            target
                .starts_with(&out_dir)
                .then(|| std::fs::metadata(&fd).ok())?
        })
        .map(|m| m.len())
        .max()
    };
    let mut interrupted = 0;
    for (signal, code) in [("-TERM", 143), ("-INT", 130), ("-KILL", 128 + 9)] {
        for at_least in [1u64, 32 << 20, 128 << 20] {
            let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
                .args([
                    "decrypt",
                    "--threads",
                    "1",
                    "--key",
                    s(&key),
                    s(&sealed),
                    "-o",
                ])
                .arg(out_dir.join("out.db"))
                .env_remove("COFFER_KEY")
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while written(child.id()).is_none_or(|n| n < at_least) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "decrypt wrote nothing to interrupt"
                );
                if child.try_wait().unwrap().is_some() {
                    break; // a fast machine: finished before this point
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            let sent = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            let status = child.wait().unwrap();
            if status.success() {
                std::fs::remove_file(out_dir.join("out.db")).unwrap();
                continue;
            }
            assert!(sent.success());
            interrupted += 1;
            let got = status.code().or(status.signal().map(|s| 128 + s));
            assert_eq!(got, Some(code), "{signal} after {at_least} bytes");
            assert!(
                leftovers().is_empty(),
                "{signal} after {at_least} bytes left {:?}",
                leftovers()
            );
        }
    }
    assert!(
        interrupted >= 6,
        "only {interrupted} of 9 runs were interrupted"
    );
}

/// `-o` naming the input itself, by any path (a hard link included), is refused before any
/// work, even with --force: the backup would be replaced by what it decrypts to.
#[test]
fn an_output_that_is_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (backup, key) = (dir.path().join("m.crypt15"), dir.path().join("k.key"));
    std::fs::copy(common::sample("msgstore.db.crypt15"), &backup).unwrap();
    std::fs::copy(common::sample("encrypted_backup.key"), &key).unwrap();
    let link = dir.path().join("link.crypt15");
    std::fs::hard_link(&backup, &link).unwrap();
    let before = std::fs::read(&backup).unwrap();
    let dotted = dir.path().join(".").join("m.crypt15");
    for output in [&backup, &dotted, &link] {
        for command in ["decrypt", "encrypt"] {
            let out = coffer(&[
                "--json",
                command,
                "--key",
                s(&key),
                s(&backup),
                "-o",
                s(output),
                "--force",
            ]);
            assert_eq!(
                out.status.code(),
                Some(22),
                "{command} -o {}",
                output.display()
            );
            assert!(
                json(&out)["message"]
                    .as_str()
                    .unwrap()
                    .contains("is the input itself"),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    assert_eq!(
        std::fs::read(&backup).unwrap(),
        before,
        "the backup is untouched"
    );
    // A different file is still written.
    coffer_ok(&[
        "decrypt",
        "--key",
        s(&key),
        s(&backup),
        "-o",
        s(&dir.path().join("out.db")),
    ]);
}
