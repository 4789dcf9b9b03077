//! The CLI as users meet it: every `--json` answer follows `reference/cli/schema/
//! output.schema.json`; no local mistake spends a vault guess; `-o DIR`, `-o -` and
//! `--extract` keep their promises; prompts ask twice and refuse weak passwords at a real
//! terminal (a pseudo-terminal, by rexpect); `vault serve` binds first, keeps a second
//! process off its directory and names the backend that sealed it.

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const STRONG: &str = "quiet lantern orbit 1987";

fn coffer() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command
        .env_remove("COFFER_KEY")
        .env_remove("COFFER_ALLOW_WEAK_PASSWORD")
        .env("COFFER_ALLOW_WEAK_KSF", "1")
        .stdin(Stdio::null());
    command
}

fn run(args: &[&str]) -> Output {
    coffer().args(args).output().unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one JSON object a `--json` run printed (on stdout, or on stderr when stdout carried
/// the output), checked against the schema.
fn answer(out: &Output) -> Value {
    let text = if out.stdout.first() == Some(&b'{') {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        stderr(out)
    };
    let value: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: stdout {text:?}, stderr {}", stderr(out)));
    let errors: Vec<String> = validator()
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{value:#}\n{}", errors.join("\n"));
    value
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/output.schema.json"),
            )
            .unwrap(),
        )
        .unwrap();
        jsonschema::validator_for(&schema).unwrap()
    })
}

/// A reference vault on loopback with cheap Argon2id parameters; killed on drop.
struct Vault {
    child: Child,
    url: String,
    token_file: PathBuf,
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Vault {
    let mut child = coffer()
        .args(["vault", "serve", "--listen", "127.0.0.1:0"])
        .args(["--ksf", "argon2id:m=256,t=1,p=1", "--data", s(data)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    Vault {
        child,
        url: first["listening"].as_str().unwrap().to_owned(),
        token_file: PathBuf::from(first["token_file"].as_str().unwrap()),
    }
}

impl Vault {
    /// `coffer --json <command...> --vault URL --token-file F --user USER <extra...>`.
    fn run(&self, command: &[&str], user: &str, extra: &[&str]) -> Output {
        coffer()
            .arg("--json")
            .args(command)
            .args(["--vault", &self.url, "--token-file", s(&self.token_file)])
            .args(["--user", user])
            .args(extra)
            .output()
            .unwrap()
    }

    fn guesses_left(&self, user: &str) -> u64 {
        let status = answer(&self.run(&["vault", "status"], user, &[]));
        status["guesses_left"].as_u64().unwrap()
    }
}

/// Every command's `--json` answer, success and failure, is one object the schema accepts;
/// the same names mean the same things (`md5` is a word in both directions; times are ISO
/// 8601).
#[test]
fn every_json_answer_follows_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("k.key");
    let db = common::sample("msgstore.db");
    answer(&run(&["--json", "key", "new", "--out", s(&key)]));
    answer(&run(&["--json", "key", "show", s(&key)]));
    answer(&run(&["--json", "key", "show", s(&common::sample("key"))]));
    let c15 = d.join("m.crypt15");
    let enc = answer(&run(&[
        "--json",
        "encrypt",
        "--key",
        s(&key),
        s(&db),
        "-o",
        s(&c15),
    ]));
    assert_eq!(enc["md5"], "written");
    let dec = answer(&run(&[
        "--json",
        "decrypt",
        "--key",
        s(&key),
        s(&c15),
        "-o",
        s(&d.join("m.db")),
    ]));
    assert_eq!(dec["md5"], "verified");
    answer(&run(&["--json", "verify", "--key", s(&key), s(&c15)]));
    answer(&run(&["--json", "info", s(&c15)]));
    let cf = d.join("m.coffer");
    answer(&run(&[
        "--json",
        "encrypt",
        "--format",
        "coffer",
        "--key",
        s(&key),
        s(&db),
        "-o",
        s(&cf),
    ]));
    let cf_none = d.join("none.coffer");
    answer(&run(&[
        "--json",
        "encrypt",
        "--format",
        "coffer",
        "--compress",
        "none",
        "--key",
        s(&key),
        s(&db),
        "-o",
        s(&cf_none),
    ]));
    let info = answer(&run(&["--json", "info", s(&cf)]));
    assert!(
        info["created"].as_str().unwrap().ends_with("T00:00:00Z"),
        "{info}"
    );
    let text = String::from_utf8(run(&["info", s(&cf)]).stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("created") && l.ends_with("T00:00:00Z")),
        "{text}"
    );
    answer(&run(&["--json", "verify", "--key", s(&key), s(&cf)]));
    // -o -: the plaintext on stdout, the answer on stderr.
    let out = run(&["--json", "decrypt", "--key", s(&key), s(&cf), "-o", "-"]);
    assert_eq!(out.stdout, common::msgstore());
    assert_eq!(answer(&out)["output"], "-");
    // Failures: a class, or usage.
    let wrong = d.join("wrong.key");
    assert!(run(&["key", "new", "--out", s(&wrong)]).status.success());
    let out = run(&[
        "--json",
        "decrypt",
        "--key",
        s(&wrong),
        s(&cf),
        "-o",
        s(&d.join("x")),
    ]);
    assert_eq!(
        (out.status.code(), answer(&out)["error"].clone()),
        (Some(10), "wrong_key".into())
    );
    for usage in [
        vec!["--json", "decrypt", "--bogus"],
        vec![
            "--json",
            "encrypt",
            "--key",
            s(&key),
            "--zstd-level",
            "5",
            s(&db),
            "-o",
            "x",
        ],
        vec![
            "--json",
            "decrypt",
            "--key",
            s(&key),
            "--threads",
            "2",
            s(&c15),
            "-o",
            "x",
        ],
        vec![
            "--json",
            "decrypt",
            "--key",
            s(&key),
            "--range",
            "1:2",
            s(&c15),
            "-o",
            "x",
        ],
        vec![
            "--json",
            "decrypt",
            "--key",
            s(&key),
            "--range",
            "99999999:",
            s(&cf_none),
            "-o",
            "x",
        ],
        vec![
            "--json",
            "encrypt",
            "--format",
            "coffer",
            "--level",
            "3",
            "--key",
            s(&key),
            s(&db),
            "-o",
            "x",
        ],
        vec![
            "--json",
            "encrypt",
            "--format",
            "coffer",
            "--compress",
            "none",
            "--zstd-level",
            "3",
            "--key",
            s(&key),
            s(&db),
            "-o",
            "x",
        ],
    ] {
        let out = run(&usage);
        assert_eq!(out.status.code(), Some(2), "{usage:?}: {}", stderr(&out));
        assert_eq!(answer(&out)["error"], "usage", "{usage:?}");
    }
    let out = run(&["--json", "info", s(&d.join("nosuch"))]);
    assert_eq!(
        (out.status.code(), answer(&out)["error"].clone()),
        (Some(22), "io".into())
    );
}

/// `-o DIR` writes `DIR/<name>`: the backup's extension dropped when decrypting, added when
/// encrypting; a name that cannot be derived is a usage error before any work. `-o -` writes
/// nothing to stdout for a backup that does not authenticate.
#[test]
fn output_directories_and_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("k.key");
    run(&["key", "new", "--out", s(&key)]);
    let out_dir = d.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let plain = d.join("chat.db");
    std::fs::write(&plain, common::chat_like(100_000)).unwrap();
    for (format, name) in [("crypt15", "chat.db.crypt15"), ("coffer", "chat.db.coffer")] {
        let out = run(&[
            "encrypt",
            "--format",
            format,
            "--key",
            s(&key),
            s(&plain),
            "-o",
            s(&out_dir),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let sealed = out_dir.join(name);
        assert!(sealed.is_file(), "{format}");
        let back = d.join("back");
        std::fs::create_dir_all(&back).unwrap();
        let out = run(&["decrypt", "--key", s(&key), s(&sealed), "-o", s(&back)]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            std::fs::read(back.join("chat.db")).unwrap(),
            common::chat_like(100_000)
        );
        std::fs::remove_file(back.join("chat.db")).unwrap();
        // Tampered: nothing on stdout, and the class on stderr.
        let mut bytes = std::fs::read(&sealed).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        let bad = d.join(format!("bad.{format}"));
        std::fs::write(&bad, bytes).unwrap();
        let out = run(&["decrypt", "--key", s(&key), s(&bad), "-o", "-"]);
        assert_eq!(out.status.code(), Some(11), "{format}: {}", stderr(&out));
        assert!(
            out.stdout.is_empty(),
            "{format}: {} bytes on stdout",
            out.stdout.len()
        );
    }
    // No name follows from a file without a backup extension.
    let odd = d.join("odd.bin");
    std::fs::copy(out_dir.join("chat.db.coffer"), &odd).unwrap();
    let out = run(&["decrypt", "--key", s(&key), s(&odd), "-o", s(&out_dir)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("NAME"), "{}", stderr(&out));
}

/// `decrypt --extract DIR` unpacks a folder backup once it authenticated; DIR must be new or
/// empty; a single-file backup is a usage error; a damaged backup leaves no DIR.
#[test]
fn extract_unpacks_a_folder_backup_or_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("k.key");
    run(&["key", "new", "--out", s(&key)]);
    let media = d.join("Media");
    std::fs::create_dir_all(media.join("WhatsApp Images")).unwrap();
    std::fs::write(media.join("WhatsApp Images/IMG-1.jpg"), vec![7u8; 50_000]).unwrap();
    std::fs::write(media.join("note.txt"), "hello").unwrap();
    std::os::unix::fs::symlink("note.txt", media.join("link")).unwrap();
    let sealed = d.join("media.coffer");
    let out = run(&[
        "encrypt",
        "--format",
        "coffer",
        "--key",
        s(&key),
        s(&media),
        "-o",
        s(&sealed),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = d.join("restored");
    let out = run(&[
        "--json",
        "decrypt",
        "--key",
        s(&key),
        s(&sealed),
        "--extract",
        s(&restored),
    ]);
    assert_eq!(answer(&out)["entries"], 4, "{}", stderr(&out));
    assert_eq!(
        std::fs::read(restored.join("WhatsApp Images/IMG-1.jpg")).unwrap(),
        vec![7u8; 50_000]
    );
    assert_eq!(
        std::fs::read_to_string(restored.join("link")).unwrap(),
        "hello"
    );
    // Not over a directory that holds something.
    let out = run(&[
        "decrypt",
        "--key",
        s(&key),
        s(&sealed),
        "--extract",
        s(&restored),
    ]);
    assert_eq!(out.status.code(), Some(22));
    // A damaged backup: no directory, and nothing staged beside it.
    let mut bytes = std::fs::read(&sealed).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&sealed, bytes).unwrap();
    let target = d.join("again");
    let out = run(&[
        "decrypt",
        "--key",
        s(&key),
        s(&sealed),
        "--extract",
        s(&target),
    ]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(!target.exists());
    let staged: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".coffer-extract")
        })
        .collect();
    assert!(staged.is_empty());
    // One file is not a folder.
    let one = d.join("one.coffer");
    run(&[
        "encrypt",
        "--format",
        "coffer",
        "--key",
        s(&key),
        s(&key),
        "-o",
        s(&one),
    ]);
    let out = run(&[
        "decrypt",
        "--key",
        s(&key),
        s(&one),
        "--extract",
        s(&d.join("x")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// No local mistake spends a guess: a restore with a missing input, a file that is not a
/// Coffer file, an existing output or an output directory that does not exist, and a
/// recovery whose --key-out exists, are each refused before the vault is asked (its count
/// is read before and after each). A backup create whose output exists registers nothing.
/// A wrong password then says how many guesses are left.
#[test]
fn local_mistakes_cost_no_guess() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vault = serve(&d.join("data"));
    let pw = d.join("pw");
    std::fs::write(&pw, format!("{STRONG}\n")).unwrap();
    let wrong = d.join("wrong");
    std::fs::write(&wrong, "not the password at all\n").unwrap();
    let db = common::sample("msgstore.db");
    let backup = d.join("backup.coffer");
    let made = vault.run(
        &["backup", "create"],
        "alice",
        &[s(&db), "-o", s(&backup), "--password-file", s(&pw)],
    );
    assert_eq!(answer(&made)["user"], "alice", "{}", stderr(&made));
    assert_eq!(vault.guesses_left("alice"), 10);
    let existing = d.join("existing.db");
    std::fs::write(&existing, "mine").unwrap();
    let not_coffer = common::sample("msgstore.db.crypt15");
    let nowhere = d.join("no-such-dir/out.db");
    let restores: [(&Path, &Path, i32); 4] = [
        (&d.join("nosuch.coffer"), &d.join("out1.db"), 22),
        (&not_coffer, &d.join("out2.db"), 14),
        (&backup, &existing, 22),
        (&backup, &nowhere, 22),
    ];
    for (input, output, code) in restores {
        for password in [&pw, &wrong] {
            let out = vault.run(
                &["backup", "restore"],
                "alice",
                &[s(input), "-o", s(output), "--password-file", s(password)],
            );
            assert_eq!(
                out.status.code(),
                Some(code),
                "{input:?} -> {output:?}: {}",
                stderr(&out)
            );
            answer(&out);
            assert_eq!(vault.guesses_left("alice"), 10, "{input:?} -> {output:?}");
        }
    }
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "mine");
    let out = vault.run(
        &["vault", "recover"],
        "alice",
        &["--key-out", s(&existing), "--password-file", s(&wrong)],
    );
    assert_eq!(out.status.code(), Some(22), "{}", stderr(&out));
    assert_eq!(vault.guesses_left("alice"), 10);
    // backup create onto an existing output: nothing registered for bob.
    let out = vault.run(
        &["backup", "create"],
        "bob",
        &[s(&db), "-o", s(&existing), "--password-file", s(&pw)],
    );
    assert_eq!(out.status.code(), Some(22));
    let status = answer(&vault.run(&["vault", "status"], "bob", &[]));
    assert_eq!(status["registered"], false, "{status}");
    // A wrong password: one guess, and the answer says how many are left.
    let out = vault.run(
        &["backup", "restore"],
        "alice",
        &[
            s(&backup),
            "-o",
            s(&d.join("out.db")),
            "--password-file",
            s(&wrong),
        ],
    );
    let failed = answer(&out);
    assert_eq!(failed["error"], "wrong_password");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .ends_with("9 guesses left before the key is destroyed"),
        "{failed}"
    );
    assert!(!d.join("out.db").exists());
    // The right one restores, and the count is back to the limit.
    let out = vault.run(
        &["backup", "restore"],
        "alice",
        &[
            s(&backup),
            "-o",
            s(&d.join("out.db")),
            "--password-file",
            s(&pw),
        ],
    );
    assert_eq!(answer(&out)["plaintext_bytes"], common::msgstore().len());
    assert_eq!(std::fs::read(d.join("out.db")).unwrap(), common::msgstore());
    assert_eq!(vault.guesses_left("alice"), 10);
}

/// New passwords: a weak one is refused (zxcvbn) unless --allow-weak-password; one from
/// standard input (`--password-file -`) is read; without a terminal, a prompt is refused with
/// what to do instead; a deletion needs --yes without a terminal.
#[test]
fn new_passwords_are_estimated_and_scripts_are_told_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vault = serve(&d.join("data"));
    let key = d.join("k.key");
    run(&["key", "new", "--out", s(&key)]);
    let weak = d.join("weak");
    std::fs::write(&weak, "password1\n").unwrap();
    let out = vault.run(
        &["vault", "register"],
        "carol",
        &["--key", s(&key), "--password-file", s(&weak)],
    );
    assert_eq!(out.status.code(), Some(15), "{}", stderr(&out));
    let message = answer(&out)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("too easy to guess") && message.contains("--allow-weak-password"),
        "{message}"
    );
    assert_eq!(
        answer(&vault.run(&["vault", "status"], "carol", &[]))["registered"],
        false
    );
    let out = vault.run(
        &["vault", "register"],
        "carol",
        &[
            "--key",
            s(&key),
            "--password-file",
            s(&weak),
            "--allow-weak-password",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // From standard input.
    let mut child = coffer()
        .args(["--json", "vault", "register", "--vault", &vault.url])
        .args(["--token-file", s(&vault.token_file), "--user", "dave"])
        .args(["--key", s(&key), "--password-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{STRONG}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Both secrets from standard input cannot be.
    let out = vault.run(
        &["vault", "register"],
        "erin",
        &["--key", "-", "--password-file", "-"],
    );
    assert_eq!(out.status.code(), Some(2));
    // No terminal at all (a new session has no controlling terminal): say what to do.
    let out = Command::new("setsid")
        .arg("-w")
        .arg(env!("CARGO_BIN_EXE_coffer"))
        .args(["vault", "recover", "--vault", &vault.url])
        .args(["--token-file", s(&vault.token_file), "--user", "dave"])
        .env("COFFER_ALLOW_WEAK_KSF", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(22), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--password-file -"),
        "{}",
        stderr(&out)
    );
    let out = vault.run(
        &["vault", "delete"],
        "dave",
        &["--password-file", &format!("{}", d.join("x").display())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(vault.guesses_left("dave"), 10, "the vault was not asked");
}

/// At a terminal: a new password is asked twice and two different ones change nothing; a
/// deletion asks for the user id and a wrong one deletes nothing. Driven through a
/// pseudo-terminal, as a person would type.
#[test]
fn prompts_at_a_terminal_confirm_what_cannot_be_undone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vault = serve(&d.join("data"));
    let key = d.join("k.key");
    run(&["key", "new", "--out", s(&key)]);
    // `sh -c '...; echo EXIT=$?'` reports the exit code through the terminal.
    let at_terminal = |args: &str| {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "{} {args} --vault {} --token-file {}; echo EXIT=$?",
                env!("CARGO_BIN_EXE_coffer"),
                vault.url,
                s(&vault.token_file)
            ))
            .env("COFFER_ALLOW_WEAK_KSF", "1")
            .env_remove("COFFER_ALLOW_WEAK_PASSWORD");
        rexpect::session::spawn_command(command, Some(30_000)).unwrap()
    };
    let register = format!("vault register --user frank --key {}", s(&key));
    let mut p = at_terminal(&register);
    p.exp_string("new vault password for frank: ").unwrap();
    p.send_line(STRONG).unwrap();
    p.exp_string("the same password again: ").unwrap();
    p.send_line("quiet lantern orbit 1988").unwrap();
    p.exp_string("the two passwords differ; nothing was changed")
        .unwrap();
    p.exp_string("EXIT=15").unwrap();
    assert_eq!(
        answer(&vault.run(&["vault", "status"], "frank", &[]))["registered"],
        false
    );
    let mut p = at_terminal(&register);
    p.exp_string("new vault password for frank: ").unwrap();
    p.send_line("frank").unwrap();
    p.exp_string("the same password again: ").unwrap();
    p.send_line("frank").unwrap();
    p.exp_string("too easy to guess").unwrap();
    p.exp_string("EXIT=15").unwrap();
    let mut p = at_terminal(&register);
    p.exp_string("new vault password for frank: ").unwrap();
    p.send_line(STRONG).unwrap();
    p.exp_string("the same password again: ").unwrap();
    p.send_line(STRONG).unwrap();
    p.exp_string("registered frank").unwrap();
    p.exp_string("EXIT=0").unwrap();
    // Deletion: the user id typed must match.
    let mut p = at_terminal("vault delete --user frank");
    p.exp_string("type the user id (frank) to go on: ").unwrap();
    p.send_line("frnak").unwrap();
    p.exp_string("nothing was deleted").unwrap();
    p.exp_string("EXIT=2").unwrap();
    assert_eq!(vault.guesses_left("frank"), 10);
    let mut p = at_terminal("vault delete --user frank");
    p.exp_string("type the user id (frank) to go on: ").unwrap();
    p.send_line("frank").unwrap();
    p.exp_string("vault password for frank: ").unwrap();
    p.send_line(STRONG).unwrap();
    p.exp_string("deleted the record of frank").unwrap();
    p.exp_string("EXIT=0").unwrap();
}

/// `vault serve`: a port it cannot bind leaves no data directory; a second serve on one
/// directory is refused; a directory sealed by a PKCS#11 token is not opened with the
/// software key (and no software key is made beside it).
#[test]
fn serve_binds_first_locks_its_directory_and_knows_its_sealing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap().to_string();
    let data = d.join("d1");
    let out = run(&["vault", "serve", "--listen", &at, "--data", s(&data)]);
    assert_eq!(out.status.code(), Some(22), "{}", stderr(&out));
    assert!(
        !data.exists(),
        "a serve that cannot listen made its data directory"
    );

    let data = d.join("d2");
    let first = serve(&data);
    let out = run(&[
        "vault",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        s(&data),
    ]);
    assert_eq!(out.status.code(), Some(22));
    assert!(
        stderr(&out).contains("another vault serve"),
        "{}",
        stderr(&out)
    );
    drop(first);
    assert_eq!(
        std::fs::read_to_string(data.join("sealing")).unwrap(),
        "soft\n"
    );

    let data = d.join("d3");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("sealing"), "pkcs11\n").unwrap();
    let out = run(&[
        "vault",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        s(&data),
    ]);
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sealed by a PKCS#11 token: pass --hsm"),
        "{}",
        stderr(&out)
    );
    assert!(!data.join("master.key").exists());
}

/// Completions and the man page come from the same definitions as --help.
#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("decrypt") && script.contains("extract"),
            "{shell}"
        );
    }
    let out = run(&["man"]);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH coffer"),
        "{page:.200}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["man", "--out-dir", s(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("coffer-decrypt.1").is_file());
    assert!(dir.path().join("coffer-vault-serve.1").is_file());
}

/// The README's SoftHSM2 recipe works as written, from an empty home directory (the
/// `apt-get` line aside: the test command installs SoftHSM2).
#[test]
fn the_readme_softhsm2_recipe_works_as_written() {
    if coffer_testkit::opt_out("COFFER_SKIP_SOFTHSM", "SoftHSM2") {
        return;
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let block = readme
        .split("<!-- softhsm2-recipe:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- softhsm2-recipe:end -->").next())
        .expect("the recipe's markers in README.md");
    let script: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("```") && !l.is_empty() && !l.contains("apt-get"))
        .collect();
    assert!(script.len() >= 6, "{script:?}");
    let home = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_coffer")).parent().unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script.join("\n")])
        .env("HOME", home.path())
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env_remove("SOFTHSM2_CONF")
        .env_remove("COFFER_PKCS11_PIN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hsm.master.policy"));
}
