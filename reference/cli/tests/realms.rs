//! Three realms on loopback, 2-of-3 (`spec/realms.md`): each a `coffer vault serve
//! --realm-id` process with its own SQLite file and master key; the client is `coffer realms`.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct Realm {
    child: Child,
    url: String,
    token_file: String,
    data: PathBuf,
}

impl Drop for Realm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(id: &str, data: &Path) -> Realm {
    start_with(id, data, &[])
}

fn start_with(id: &str, data: &Path, extra: &[&str]) -> Realm {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "vault",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--realm-id",
            id,
        ])
        .args(["--ksf", "argon2id:m=256,t=1,p=1", "--data"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(first["mode"], "realm");
    assert_eq!(first["realm_id"], id);
    Realm {
        child,
        url: first["listening"].as_str().unwrap().to_owned(),
        token_file: first["token_file"].as_str().unwrap().to_owned(),
        data: data.to_owned(),
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    realms: Vec<Realm>,
    file: PathBuf,
    right: PathBuf,
    wrong: PathBuf,
}

fn setup(limit: u32) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let realms: Vec<Realm> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| start(id, &dir.path().join(id)))
        .collect();
    let entries: Vec<Value> = realms
        .iter()
        .enumerate()
        .map(|(i, r)| serde_json::json!({"id": format!("r{}", i + 1), "url": r.url, "token_file": r.token_file}))
        .collect();
    let file = dir.path().join("realms.json");
    std::fs::write(
        &file,
        serde_json::json!({"threshold": 2, "limit": limit, "ksf": "argon2id:m=256,t=1,p=1", "timeout_seconds": 5, "realms": entries})
            .to_string(),
    )
    .unwrap();
    let right = dir.path().join("right");
    let wrong = dir.path().join("wrong");
    std::fs::write(&right, "correct horse lantern 1987\n").unwrap();
    std::fs::write(&wrong, "battery staple\n").unwrap();
    Setup {
        _dir: dir,
        realms,
        file,
        right,
        wrong,
    }
}

fn realms(s: &Setup, command: &str, password: &Path, extra: &[&str]) -> Output {
    let mut command_line = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command_line
        .args(["--json", "realms", command, "--realms"])
        .arg(&s.file)
        .args(["--user", "alice"])
        .env_remove("COFFER_KEY");
    // Status asks nothing of the password; a password file there is a usage error.
    if command != "status" {
        command_line.arg("--password-file").arg(password);
    }
    coffer_testkit::args_with_key_in_env(&mut command_line, extra.iter().copied())
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text:?} / {}", String::from_utf8_lossy(&out.stderr)))
}

/// Exit code of an error class (spec/errors.md: 10 + its index).
fn exit(class: &str) -> i32 {
    10 + [
        "wrong_key",
        "corrupt",
        "truncated",
        "trailing_data",
        "unsupported",
        "malformed",
        "wrong_password",
        "no_record",
        "locked",
        "server_auth_failed",
        "rate_limited",
        "unauthorized",
        "io",
    ]
    .iter()
    .position(|c| *c == class)
    .unwrap() as i32
}

/// Guesses counted at one realm, read from its database.
fn guesses(realm: &Realm) -> (u32, String) {
    let db = rusqlite::Connection::open(realm.data.join("realm.db")).unwrap();
    db.query_row(
        "SELECT guesses, state FROM realm_records WHERE user_id = 'alice'",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .unwrap()
}

#[test]
fn register_recover_lose_a_realm_and_recover_again() {
    let mut s = setup(10);
    let out = realms(&s, "register", &s.right, &["--key", KEY]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["threshold"], 2);

    let out = realms(&s, "recover", &s.right, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["key"], KEY);

    // One realm killed: 2 of 3 still recover, and the dead one is named.
    let dead = s.realms.remove(1);
    drop(dead);
    let out = realms(&s, "recover", &s.right, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = json(&out);
    assert_eq!(answer["key"], KEY);
    let failed = answer["failed_realms"].to_string();
    assert!(failed.contains("r2"), "{failed}");

    // A wrong password: its own class, and one guess counted at each live realm.
    let out = realms(&s, "recover", &s.wrong, &[]);
    assert_eq!(
        out.status.code(),
        Some(exit("wrong_password")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for realm in &s.realms {
        assert_eq!(guesses(realm), (1, "active".into()));
    }
    let message = json(&out)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("9 guesses left") && message.contains("r2: unknown"),
        "{message}"
    );
    // Status counts nothing, and names the realm that is down.
    let status = json(&realms(&s, "status", &s.right, &[]));
    assert_eq!(status["guesses_left"], 9, "{status}");
    assert!(status["realms"][1]["error"].is_string(), "{status}");
    assert_eq!(guesses(&s.realms[0]), (1, "active".into()));
}

#[test]
fn the_limit_destroys_the_key_on_every_realm() {
    let s = setup(2);
    assert!(realms(&s, "register", &s.right, &["--key", KEY])
        .status
        .success());
    // Each wrong password says how many guesses are left (each realm allows two).
    for left in [
        "1 guess left before the key is destroyed",
        "no guesses left",
    ] {
        let out = realms(&s, "recover", &s.wrong, &[]);
        assert_eq!(out.status.code(), Some(exit("wrong_password")));
        let answer = json(&out);
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(left), "{message}");
    }
    let status = json(&realms(&s, "status", &s.right, &[]));
    assert_eq!(status["guesses_left"], 0, "{status}");
    assert_eq!(status["realms"][1]["guesses"], 2, "{status}");
    assert_eq!(status["realms"][1]["state"], "active", "{status}");
    // The next attempt, even with the right password, meets destroyed records.
    let out = realms(&s, "recover", &s.right, &[]);
    assert_eq!(
        out.status.code(),
        Some(exit("no_record")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for realm in &s.realms {
        assert_eq!(guesses(realm).1, "destroyed");
    }
    let status = json(&realms(&s, "status", &s.right, &[]));
    assert_eq!(status["guesses_left"], 0, "{status}");
    assert_eq!(status["realms"][2]["state"], "destroyed", "{status}");
}

#[test]
fn concurrent_wrong_guesses_never_pass_the_limit() {
    let s = setup(3);
    assert!(realms(&s, "register", &s.right, &["--key", KEY])
        .status
        .success());
    // Eight clients guess at once; each asks all three realms.
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| realms(&s, "recover", &s.wrong, &[]));
        }
    });
    for realm in &s.realms {
        let (count, state) = guesses(realm);
        assert!(count <= 3, "{count} guesses counted against a limit of 3");
        assert_eq!(state, "destroyed", "eight guesses at a limit of three");
    }
    assert_eq!(
        realms(&s, "recover", &s.right, &[]).status.code(),
        Some(exit("no_record"))
    );
}

#[test]
fn a_wrong_realm_id_and_deletion() {
    let s = setup(10);
    // A realms file that calls r1 "r9": nothing is registered anywhere.
    let text = std::fs::read_to_string(&s.file)
        .unwrap()
        .replacen("\"r1\"", "\"r9\"", 1);
    let bad = s.file.with_file_name("bad.json");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["realms", "register", "--realms"])
        .arg(&bad)
        .args(["--user", "alice", "--password-file"])
        .arg(&s.right)
        .env("COFFER_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit("io")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("r9") && stderr.contains("nothing registered"),
        "{stderr}"
    );

    assert!(realms(&s, "register", &s.right, &["--key", KEY])
        .status
        .success());
    let out = realms(&s, "delete", &s.right, &["--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        realms(&s, "recover", &s.right, &[]).status.code(),
        Some(exit("no_record"))
    );
}

#[test]
fn a_backup_whose_key_lives_on_the_realms() {
    let mut s = setup(10);
    let dir = s.file.parent().unwrap().to_owned();
    let input = dir.join("msgstore.db");
    std::fs::write(&input, b"SQLite format 3\0 and the chats of a lifetime").unwrap();
    let coffer = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(args)
            .output()
            .unwrap()
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let out = coffer(&[
        &os("backup"),
        &os("create"),
        &os("--realms"),
        s.file.as_os_str(),
        &os("--user"),
        &os("alice"),
        &os("--password-file"),
        s.right.as_os_str(),
        input.as_os_str(),
        &os("-o"),
        dir.join("backup.coffer").as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("split over 3 realms"));
    // One realm gone; the backup still restores.
    drop(s.realms.remove(0));
    let out = coffer(&[
        &os("backup"),
        &os("restore"),
        &os("--realms"),
        s.file.as_os_str(),
        &os("--user"),
        &os("alice"),
        &os("--password-file"),
        s.right.as_os_str(),
        dir.join("backup.coffer").as_os_str(),
        &os("-o"),
        dir.join("restored.db").as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.join("restored.db")).unwrap(),
        std::fs::read(&input).unwrap()
    );
    // Neither --vault nor --realms: a readable refusal.
    let out = coffer(&[
        &os("backup"),
        &os("restore"),
        &os("--user"),
        &os("alice"),
        dir.join("backup.coffer").as_os_str(),
        &os("-o"),
        dir.join("again.db").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("or --realms FILE"));
}

#[test]
fn a_realm_that_never_answers_costs_one_timeout_and_is_named() {
    let s = setup(10);
    assert!(realms(&s, "register", &s.right, &["--key", KEY])
        .status
        .success());
    // r2's address now leads to a listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let keep_open = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(std::time::Duration::from_secs(30));
        drop(held);
    });
    let text = std::fs::read_to_string(&s.file)
        .unwrap()
        .replacen(&s.realms[1].url, &silent_url, 1)
        .replacen("\"timeout_seconds\":5", "\"timeout_seconds\":2", 1);
    std::fs::write(&s.file, text).unwrap();
    let started = std::time::Instant::now();
    let out = realms(&s, "recover", &s.right, &[]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = json(&out);
    assert_eq!(answer["key"], KEY);
    assert!(
        answer["failed_realms"].to_string().contains("r2"),
        "{answer}"
    );
    assert!(
        took < std::time::Duration::from_secs(8),
        "took {took:?} with a 2 s timeout"
    );
    drop(keep_open);
}

#[test]
fn a_password_change_keeps_the_key_and_needs_every_realm() {
    let mut s = setup(10);
    assert!(realms(&s, "register", &s.right, &["--key", KEY])
        .status
        .success());
    let third = s.right.with_file_name("third");
    std::fs::write(&third, "tr0ub4dor &3 lantern orbit\n").unwrap();
    let change = |s: &Setup, old: &Path, new: &Path| {
        let new = new.to_str().unwrap().to_owned();
        realms(s, "change-password", old, &["--new-password-file", &new])
    };

    // Registering again over the active registration, without its password: refused at
    // every realm, so a tenant token cannot replace (and so delete) a user's key.
    let out = realms(&s, "register", &s.wrong, &["--key", KEY]);
    assert_eq!(out.status.code(), Some(exit("io")));
    let answer = json(&out).to_string();
    assert!(answer.contains("unauthorized"), "{answer}");

    // The wrong old password changes nothing (and is a counted guess).
    let out = change(&s, &s.wrong, &third);
    assert_eq!(out.status.code(), Some(exit("wrong_password")));
    assert_eq!(json(&realms(&s, "recover", &s.right, &[]))["key"], KEY);

    // The right one: the same key behind the new password, the old one no longer works.
    let out = change(&s, &s.right, &s.wrong);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&realms(&s, "recover", &s.wrong, &[]))["key"], KEY);
    assert_eq!(
        realms(&s, "recover", &s.right, &[]).status.code(),
        Some(exit("wrong_password"))
    );

    // With one realm down nothing changes (a realm left out would keep the old password
    // alive), the dead realm is named, and the current password still recovers.
    drop(s.realms.remove(2));
    let out = change(&s, &s.wrong, &third);
    assert_eq!(out.status.code(), Some(exit("io")));
    let stderr = json(&out).to_string();
    assert!(
        stderr.contains("r3") && stderr.contains("nothing changed"),
        "{stderr}"
    );
    assert_eq!(json(&realms(&s, "recover", &s.wrong, &[]))["key"], KEY);
    assert_eq!(
        realms(&s, "recover", &third, &[]).status.code(),
        Some(exit("wrong_password"))
    );
}

/// The realms file of `s`, with realm `i` reached at `node` instead.
fn through(s: &Setup, i: usize, node: &Realm) -> PathBuf {
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&s.file).unwrap()).unwrap();
    file["realms"][i]["url"] = node.url.clone().into();
    file["realms"][i]["token_file"] = node.token_file.clone().into();
    let path = s.file.with_file_name(format!(
        "through-{}.json",
        node.url.replace([':', '/'], "_")
    ));
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

/// Realm r1 as two nodes on one etcd prefix (one master key, copied): a registration made
/// through one node recovers through the other, the guesses made through both are one count,
/// and the realm survives losing either node.
#[test]
fn a_realm_of_two_nodes_on_etcd_keeps_one_count() {
    if coffer_testkit::etcd::skipped() {
        return;
    }
    let mut s = setup(10);
    let store = format!(
        "etcd://{}/realm-r1-{}",
        coffer_testkit::etcd::shared().members[0].client,
        std::process::id()
    );
    let dir = s.file.parent().unwrap().to_owned();
    drop(s.realms.remove(0));
    let first = start_with("r1", &dir.join("r1-a"), &["--store", &store]);
    std::fs::create_dir_all(dir.join("r1-b")).unwrap();
    std::fs::copy(dir.join("r1-a/master.key"), dir.join("r1-b/master.key")).unwrap();
    let second = start_with("r1", &dir.join("r1-b"), &["--store", &store]);
    let via_first = through(&s, 0, &first);
    let via_second = through(&s, 0, &second);
    let run = |file: &Path, command: &str, password: &Path| {
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["--json", "realms", command, "--realms"])
            .arg(file)
            .args(["--user", "alice", "--password-file"])
            .arg(password)
            .env("COFFER_KEY", KEY)
            .output()
            .unwrap()
    };
    let out = run(&via_first, "register", &s.right);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&run(&via_second, "recover", &s.right))["key"], KEY);
    // Three wrong guesses through the first node, four through the second: r1 counts seven
    // in etcd, as r2 does on its own disk.
    for _ in 0..3 {
        assert_eq!(
            run(&via_first, "recover", &s.wrong).status.code(),
            Some(exit("wrong_password"))
        );
    }
    for _ in 0..4 {
        assert_eq!(
            run(&via_second, "recover", &s.wrong).status.code(),
            Some(exit("wrong_password"))
        );
    }
    assert_eq!(guesses(&s.realms[0]), (7, "active".into()));
    use coffer::realms::RealmStore;
    let r1 = coffer::realms::EtcdRealmStore::new(
        coffer::store::EtcdStore::connect(&coffer::store::EtcdConfig::parse(&store).unwrap())
            .unwrap(),
    );
    let counted =
        |r1: &coffer::realms::EtcdRealmStore| r1.get("default", "alice").unwrap().unwrap().guesses;
    assert_eq!(counted(&r1), 7);
    drop(first);
    let out = run(&via_second, "recover", &s.right);
    let answer = json(&out);
    assert_eq!(answer["key"], KEY, "{answer}");
    assert_eq!(answer["failed_realms"].as_array().map(Vec::len), Some(0));
    assert_eq!(guesses(&s.realms[0]), (0, "active".into()));
    assert_eq!(counted(&r1), 0);
}
