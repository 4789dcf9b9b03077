//! The vault as an operator runs it: `coffer vault serve` on a loopback port (real HTTP,
//! real SQLite on disk), driven by the `coffer vault` client commands and by raw requests.
//! The same suite runs once per HSM backend: the including test file sets `BACKEND` (None
//! for the soft backend, or a PKCS#11 module, each server then sealing on its own token),
//! and once on the etcd store: the including file's `store_url` names the store (None: the
//! embedded SQLite in the data directory), and its `store_skipped` says the store was opted
//! out (every case then skips). The including file's `TLS` says whether the
//! vault serves HTTPS (a private CA made for the test, which every client trusts by `--ca`)
//! or plain HTTP on loopback.

use super::tokens;
use super::{store_skipped, store_url, BACKEND, TLS};
use coffer::store::Store;
use coffer::Classify;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

struct Vault {
    child: Child,
    url: String,
    token_file: PathBuf,
    /// The CA the server's certificate chains to (with TLS).
    ca: Option<PathBuf>,
}

impl Vault {
    /// `--vault URL`, and `--ca FILE` with TLS.
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--vault".to_owned(), self.url.clone()];
        if let Some(ca) = &self.ca {
            args.extend(["--ca".to_owned(), ca.display().to_string()]);
        }
        args
    }

    /// A raw HTTP agent that trusts the vault's CA.
    fn agent(&self) -> ureq::Agent {
        coffer_testkit::tls::agent(self.ca.as_deref())
    }

    /// The library's client, trusting the vault's CA.
    fn client(&self, token: &str) -> coffer::http::VaultClient {
        let tls = match &self.ca {
            Some(ca) => coffer::http::ClientTls::with_ca_file(ca).unwrap(),
            None => coffer::http::ClientTls::default(),
        };
        coffer::http::VaultClient::with_tls(&self.url, token, "coffer-vault", &tls)
            .ksf_floor(coffer::vault::KsfFloor::NONE)
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Vault {
    start_with(data, &[])
}

fn start_with(data: &Path, extra: &[&str]) -> Vault {
    start_env(data, extra, None)
}

/// True (and printed) when the suite's PKCS#11 module was opted out by name.
fn skipped() -> bool {
    store_skipped() || BACKEND.is_some_and(|module| module.path().is_none())
}

fn start_env(data: &Path, extra: &[&str], fault: Option<&str>) -> Vault {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    let mut hsm = Vec::new();
    if let Some(module) = BACKEND {
        // One token per data directory, made on first start and found again on a restart.
        let token = tokens::create(module, &data.with_extension("token"), "vault")
            .expect("the suite checks skipped() first");
        let init = token.coffer(&["hsm", "init", "--hsm", &token.uri]);
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        token.apply(&mut command);
        hsm = vec!["--hsm".to_owned(), token.uri.clone()];
    }
    // One CA per data directory, so that a restarted server keeps its certificate.
    let pki = TLS.then(|| coffer_testkit::tls::issue(&data.with_extension("pki"), "vault"));
    let tls_args = pki
        .iter()
        .flat_map(|pki| [("--tls-cert", &pki.cert), ("--tls-key", &pki.key)])
        .flat_map(|(flag, path)| [flag.into(), path.as_os_str().to_owned()])
        .collect::<Vec<std::ffi::OsString>>();
    if let Some(point) = fault {
        command.env("COFFER_VAULT_FAULT", point);
    } else {
        command.env_remove("COFFER_VAULT_FAULT");
    }
    let mut child = command
        .args([
            "vault",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ksf",
            "argon2id:m=256,t=1,p=1",
            "--data",
        ])
        .arg(data)
        .args(extra)
        .args(&hsm)
        .args(&tls_args)
        .args(
            store_url(data)
                .map(|url| ["--store".to_owned(), url])
                .into_iter()
                .flatten(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start coffer vault serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    // The server says what it seals with: the suite's backend, not a fallback.
    let sealing = first["hsm"].as_str().unwrap_or_default();
    match BACKEND {
        None => assert!(sealing.starts_with("soft"), "{sealing}"),
        Some(module) => assert!(
            sealing.starts_with("pkcs11")
                && sealing.contains(&module.path().unwrap().display().to_string()),
            "{sealing}"
        ),
    }
    // And where it keeps its records: the suite's store.
    let store = first["store"].as_str().unwrap_or_default();
    match store_url(data) {
        None => assert!(store.starts_with("sqlite:"), "{store}"),
        Some(url) => assert_eq!(store, url),
    }
    let url = first["listening"].as_str().unwrap().to_owned();
    assert_eq!(url.starts_with("https://"), TLS, "{url}");
    Vault {
        child,
        url,
        token_file: PathBuf::from(first["token_file"].as_str().unwrap()),
        ca: pki.map(|pki| pki.ca),
    }
}

/// How many `event`s the store's audit log holds for `user` (read through the store).
fn audited(data: &Path, user: &str, event: &str) -> usize {
    let store: Box<dyn Store> = match store_url(data) {
        None => Box::new(coffer::store::SqliteStore::open(&data.join("vault.db")).unwrap()),
        Some(url) => Box::new(
            coffer::store::EtcdStore::connect(&coffer::store::EtcdConfig::parse(&url).unwrap())
                .unwrap(),
        ),
    };
    store
        .audit(0, 1_000_000)
        .unwrap()
        .iter()
        .filter(|e| e.user == user && e.event == event)
        .count()
}

fn coffer(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    // The suite's vaults stretch passwords cheaply (m=256 KiB, t=1).
    command
        .env("COFFER_ALLOW_WEAK_KSF", "1")
        .env_remove("COFFER_KEY");
    coffer_testkit::args_with_key_in_env(&mut command, args.iter().copied())
        .output()
        .unwrap()
}

fn client(vault: &Vault, command: &str, user: &str, password: &Path, extra: &[&str]) -> Output {
    let target = vault.args();
    let mut args = vec!["--json", "vault", command];
    args.extend(target.iter().map(String::as_str));
    args.extend_from_slice(&[
        "--user",
        user,
        "--token-file",
        vault.token_file.to_str().unwrap(),
    ]);
    // --admin deletes without the password; a password file there is a usage error.
    if !extra.contains(&"--admin") && command != "status" {
        args.extend_from_slice(&["--password-file", password.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    coffer(&args)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn register_recover_exhaust_delete_over_http() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vault = start(&dir.path().join("data"));
    let right = dir.path().join("right");
    let wrong = dir.path().join("wrong");
    std::fs::write(&right, "correct horse battery staple\n").unwrap();
    std::fs::write(&wrong, "Tr0ub4dor&3\n").unwrap();

    let out = client(&vault, "register", "alice", &right, &["--key", KEY]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = json(&client(&vault, "status", "alice", &right, &[]));
    assert_eq!(status["registered"], true);
    assert_eq!(status["guesses_left"], 10);

    let out = client(&vault, "recover", "alice", &right, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["key"], KEY);

    // Every wrong guess says how many are left, from the vault's own count; the last says
    // the key is gone.
    for i in 0..10 {
        let out = client(&vault, "recover", "alice", &wrong, &[]);
        assert_eq!(out.status.code(), Some(16), "guess {i}: wrong_password");
        assert_eq!(json(&out)["error"], "wrong_password");
        let message = json(&out)["message"].as_str().unwrap().to_owned();
        let expected = match 9 - i {
            0 => "no guesses left: the key can no longer be recovered".to_owned(),
            1 => "1 guess left before the key is destroyed".to_owned(),
            n => format!("{n} guesses left before the key is destroyed"),
        };
        assert!(message.ends_with(&expected), "guess {i}: {message}");
    }
    let out = client(&vault, "recover", "alice", &right, &[]);
    assert_eq!(
        out.status.code(),
        Some(16),
        "the right password after the limit fails"
    );
    let status = json(&client(&vault, "status", "alice", &right, &[]));
    assert_eq!(status["registered"], false);
    assert_eq!(status["state"], "destroyed");

    // A user who never registered looks the same from outside.
    let out = client(&vault, "recover", "nobody", &right, &[]);
    assert_eq!(out.status.code(), Some(16));

    // Deleting needs the password: a wrong one deletes nothing (and costs a guess), the
    // tenant token alone (--admin without an admin token) is refused, the right one deletes.
    let out = client(&vault, "register", "bob", &right, &["--key", KEY]);
    assert!(out.status.success());
    // Without --yes and without a terminal to type the user id at, nothing is asked of
    // the vault (a usage error, exit 2), and --admin with a password is a usage error too.
    let out = client(&vault, "delete", "bob", &right, &[]);
    assert_eq!(out.status.code(), Some(2), "no confirmation");
    assert!(json(&out)["message"].as_str().unwrap().contains("--yes"));
    let mut with_password = vault.args();
    with_password.extend(
        [
            "--user",
            "bob",
            "--token-file",
            vault.token_file.to_str().unwrap(),
            "--password-file",
            right.to_str().unwrap(),
            "--admin",
            "--yes",
        ]
        .map(String::from),
    );
    let mut args = vec!["--json", "vault", "delete"];
    args.extend(with_password.iter().map(String::as_str));
    let out = coffer(&args);
    assert_eq!(out.status.code(), Some(2), "--admin with --password-file");
    let out = client(&vault, "delete", "bob", &wrong, &["--yes"]);
    assert_eq!(json(&out)["error"], "wrong_password");
    assert!(json(&out)["message"]
        .as_str()
        .unwrap()
        .ends_with("9 guesses left before the key is destroyed"));
    let out = client(&vault, "delete", "bob", &right, &["--admin", "--yes"]);
    assert_eq!(json(&out)["error"], "unauthorized");
    let status = json(&client(&vault, "status", "bob", &right, &[]));
    assert_eq!(status["registered"], true, "{status}");
    assert_eq!(status["guesses_left"], 9, "{status}");
    let out = client(&vault, "delete", "bob", &right, &["--yes"]);
    assert!(out.status.success());
    let status = json(&client(&vault, "status", "bob", &right, &[]));
    assert_eq!(status["state"], "deleted", "{status}");
    // A deleted record answers as if it never existed: the password no longer verifies.
    let out = client(&vault, "delete", "bob", &right, &["--yes"]);
    assert_eq!(json(&out)["error"], "wrong_password");
}

#[test]
fn bad_requests_get_4xx_with_a_class_and_never_crash() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vault = start(&dir.path().join("data"));
    let token = std::fs::read_to_string(&vault.token_file).unwrap();
    let agent = vault.agent();
    let post = |path: &str, body: Vec<u8>, auth: bool| {
        let mut req = agent
            .post(format!("{}{path}", vault.url))
            .header("content-type", "application/json");
        if auth {
            req = req.header("authorization", format!("Bearer {}", token.trim()));
        }
        let mut resp = req.send(&body[..]).unwrap();
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (status, body)
    };
    let cases: Vec<(&str, Vec<u8>, bool, u16, &str)> = vec![
        (
            "/v1/users/alice/recover/start",
            b"{}".to_vec(),
            false,
            401,
            "unauthorized",
        ),
        (
            "/v1/users/alice/recover/start",
            b"not json".to_vec(),
            true,
            400,
            "malformed",
        ),
        (
            "/v1/users/alice/recover/start",
            b"{\"ke1\": 5}".to_vec(),
            true,
            400,
            "malformed",
        ),
        (
            "/v1/users/alice/recover/start",
            b"{\"ke1\": \"!!\"}".to_vec(),
            true,
            400,
            "malformed",
        ),
        (
            "/v1/users/alice/recover/start",
            b"{\"ke1\": \"AAAA\"}".to_vec(),
            true,
            400,
            "malformed",
        ),
        (
            "/v1/users/alice/recover/start",
            b"{\"ke1\": \"AAAA\", \"extra\": 1}".to_vec(),
            true,
            400,
            "malformed",
        ),
        (
            "/v1/users/alice/recover/start",
            vec![b'a'; 9_000],
            true,
            413,
            "malformed",
        ),
        (
            "/v1/sessions/xyz/finish",
            b"{\"ke3\": \"AAAA\"}".to_vec(),
            true,
            400,
            "malformed",
        ),
        (
            "/v1/users/alice/register/finish",
            b"{\"record_id\": \"AA\", \"upload\": \"AA\", \"envelope\": \"AA\"}".to_vec(),
            true,
            400,
            "malformed",
        ),
        ("/v1/nowhere", b"{}".to_vec(), true, 400, "malformed"),
    ];
    for (path, body, auth, status, class) in cases {
        let (got, text) = post(path, body, auth);
        assert_eq!(got, status, "{path}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        assert_eq!(v["error"], class, "{path}");
    }
    // Random bodies: always a 4xx with a class.
    let mut state = 0x1234_5678_9abc_def0u64;
    for _ in 0..200 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 600) as usize;
        let body: Vec<u8> = (0..len).map(|i| (state >> (i % 56)) as u8).collect();
        let (got, text) = post("/v1/users/alice/recover/start", body, true);
        assert!((400..500).contains(&got), "{got}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["error"].is_string());
    }
    // The server is still up.
    let target = vault.args();
    let mut args = vec!["vault", "status"];
    args.extend(target.iter().map(String::as_str));
    args.extend_from_slice(&[
        "--user",
        "x",
        "--token-file",
        vault.token_file.to_str().unwrap(),
    ]);
    let out = coffer(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn guesses_per_user_are_rate_limited_with_retry_after() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vault = start_with(&dir.path().join("data"), &["--user-per-minute", "3"]);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
    let out = client(&vault, "register", "carol", &pw, &["--key", KEY]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The registration took one token of three; two guesses pass, the third is refused.
    for _ in 0..2 {
        assert!(client(&vault, "recover", "carol", &pw, &[])
            .status
            .success());
    }
    let out = client(&vault, "recover", "carol", &pw, &[]);
    assert_eq!(out.status.code(), Some(20), "rate_limited");
    assert_eq!(json(&out)["error"], "rate_limited");
    // Raw: the 429 carries Retry-After.
    let token = std::fs::read_to_string(&vault.token_file).unwrap();
    let agent = vault.agent();
    let resp = agent
        .post(format!("{}/v1/users/carol/recover/start", vault.url))
        .header("authorization", format!("Bearer {}", token.trim()))
        .send(&b"{}"[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // Another user is not affected.
    let out = client(&vault, "register", "dan", &pw, &["--key", KEY]);
    assert!(out.status.success());
}

/// The per-tenant rate (spec/vault.md §9): one tenant's burst is refused with 429 and
/// Retry-After once its bucket is empty, while another tenant on the same vault is served.
#[test]
fn requests_per_tenant_are_rate_limited_and_other_tenants_are_not() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acme.token"), "a".repeat(40)).unwrap();
    std::fs::write(dir.path().join("globex.token"), "g".repeat(40)).unwrap();
    let config = dir.path().join("vault.json");
    std::fs::write(
        &config,
        r#"{"tenants": [{"name": "acme", "token_file": "acme.token"}, {"name": "globex", "token_file": "globex.token"}],
            "rate": {"user_per_minute": 600, "tenant_per_second": 1}}"#,
    )
    .unwrap();
    let vault = start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let agent = vault.agent();
    let status = |token: &str| {
        agent
            .get(format!("{}/v1/users/someone/status", vault.url))
            .header("authorization", format!("Bearer {token}"))
            .call()
            .unwrap()
    };
    // A burst of 2 (twice the rate per second) passes; then requests faster than one a
    // second are refused (at most 100 tries, however slow the machine).
    let acme = "a".repeat(40);
    let first: Vec<u16> = (0..2).map(|_| status(&acme).status().as_u16()).collect();
    assert_eq!(first, [200, 200]);
    let refused = (0..100)
        .map(|_| status(&acme))
        .find(|resp| resp.status().as_u16() == 429)
        .expect("a tenant past its rate is refused");
    let retry: u64 = refused
        .headers()
        .get("retry-after")
        .expect("Retry-After on a 429")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let mut refused = refused;
    let body: Value = serde_json::from_slice(&refused.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    // The other tenant's bucket is its own.
    assert_eq!(status(&"g".repeat(40)).status().as_u16(), 200);
}

#[test]
fn a_crash_at_any_step_of_a_recovery_never_loses_a_counted_guess() {
    if skipped() {
        return;
    }
    for point in coffer::internal::FAULT_POINTS {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
        {
            let vault = start_env(&data, &[], Some(point));
            let out = client(&vault, "register", "erin", &pw, &["--key", KEY]);
            assert!(
                out.status.success(),
                "{point}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // The server dies inside this recovery.
            let out = client(&vault, "recover", "erin", &pw, &[]);
            assert_eq!(
                out.status.code(),
                Some(22),
                "{point}: the client sees an I/O failure"
            );
        }
        let vault = start_env(&data, &[], None);
        let status = json(&client(&vault, "status", "erin", &pw, &[]));
        assert_eq!(status["registered"], true, "{point}: the record survives");
        let left = status["guesses_left"].as_u64().unwrap();
        match point {
            // The guess was committed before the crash: it stays counted.
            "after_guess_commit" | "after_ke2" => assert_eq!(left, 9, "{point}"),
            // The verified KE3 reset the count before the crash.
            _ => assert_eq!(left, 10, "{point}"),
        }
        // The record is intact: the right password still recovers the key.
        let out = client(&vault, "recover", "erin", &pw, &[]);
        assert!(
            out.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json(&out)["key"], KEY);
    }
}

/// spec/vault.md §6.2: whoever can write the store file, but holds no state key, cannot set
/// a count back or revive a destroyed record: the running vault answers `corrupt`, and a
/// restarted vault refuses the store. (Edits the SQLite file; on etcd the same edits are
/// made with etcdctl in `store_contract.rs`.)
#[test]
fn a_store_edited_behind_the_vault_is_refused_as_corrupt() {
    if skipped() || store_url(Path::new("/")).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (right, wrong) = (dir.path().join("right"), dir.path().join("wrong"));
    std::fs::write(&right, "right lantern orbit 1987\n").unwrap();
    std::fs::write(&wrong, "wrong\n").unwrap();
    let db = data.join("vault.db");
    let edit = |sql: &str| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(sql)
            .unwrap()
    };
    let vault = start(&data);
    for user in ["gus", "hal"] {
        let out = client(&vault, "register", user, &right, &["--key", KEY]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Two guesses spent, then set back to 0 in the file.
    for _ in 0..2 {
        client(&vault, "recover", "gus", &wrong, &[]);
    }
    edit("UPDATE records SET guesses = 0 WHERE user_id = 'gus'");
    let out = client(&vault, "recover", "gus", &right, &[]);
    assert_eq!(
        json(&out)["error"],
        "corrupt",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY));

    // A copy of hal's row while it holds its secrets; hal destroyed; the copy put back.
    let copy = dir.path().join("copy.db");
    edit(&format!(
        "ATTACH '{}' AS old; CREATE TABLE old.saved AS SELECT * FROM records WHERE user_id = 'hal';",
        copy.display()
    ));
    for _ in 0..11 {
        client(&vault, "recover", "hal", &wrong, &[]);
    }
    let status = json(&client(&vault, "status", "hal", &right, &[]));
    assert_eq!(status["state"], "destroyed", "{status}");
    edit(&format!(
        "ATTACH '{}' AS old; DELETE FROM records WHERE user_id = 'hal';
         INSERT INTO records SELECT * FROM old.saved;",
        copy.display()
    ));
    let out = client(&vault, "recover", "hal", &right, &[]);
    assert_eq!(
        json(&out)["error"],
        "corrupt",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(vault);

    // Restarted, the vault checks the whole store first and refuses to serve it (on the
    // soft backend: the PKCS#11 suites' tokens are set up by `start`).
    if BACKEND.is_some() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["vault", "serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("tampered"), "{stderr}");
}

#[test]
fn backup_create_then_restore_with_only_the_password() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vault = start(&dir.path().join("data"));
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "my backup password lantern 1987\n").unwrap();
    let db = dir.path().join("msgstore.db");
    let content: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&db, &content).unwrap();
    let backup = dir.path().join("backup.coffer");
    let key_file = dir.path().join("key.txt");
    // `backup` is its own command group: run it with the same client options.
    let args = |command: &str, extra: Vec<String>| {
        let mut a = vec!["--json".to_string(), "backup".into(), command.into()];
        a.extend(vault.args());
        a.extend([
            "--user".into(),
            "frank".into(),
            "--token-file".into(),
            vault.token_file.to_str().unwrap().into(),
            "--password-file".into(),
            pw.to_str().unwrap().into(),
        ]);
        a.extend(extra);
        a
    };
    let run = |a: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            // The suite's vaults stretch passwords cheaply (m=256 KiB, t=1).
            .env("COFFER_ALLOW_WEAK_KSF", "1")
            .args(a)
            .env_remove("COFFER_KEY")
            .output()
            .unwrap()
    };
    let out = run(args(
        "create",
        vec![
            db.to_str().unwrap().into(),
            "-o".into(),
            backup.to_str().unwrap().into(),
            "--key-out".into(),
            key_file.to_str().unwrap().into(),
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = dir.path().join("restored.db");
    let out = run(args(
        "restore",
        vec![
            backup.to_str().unwrap().into(),
            "-o".into(),
            restored.to_str().unwrap().into(),
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&restored).unwrap(), content);
    // The key written with --key-out opens the same backup without the vault.
    let with_key = dir.path().join("with-key.db");
    let out = coffer(&[
        "decrypt",
        "--key",
        key_file.to_str().unwrap(),
        backup.to_str().unwrap(),
        "-o",
        with_key.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&with_key).unwrap(), content);
    // A wrong password restores nothing.
    std::fs::write(&pw, "not it\n").unwrap();
    let nothing = dir.path().join("nothing.db");
    let out = run(args(
        "restore",
        vec![
            backup.to_str().unwrap().into(),
            "-o".into(),
            nothing.to_str().unwrap().into(),
        ],
    ));
    assert_eq!(out.status.code(), Some(16));
    assert!(!nothing.exists());
}

#[test]
fn change_password_from_the_cli() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vault = start(&dir.path().join("data"));
    let old = dir.path().join("old");
    let new = dir.path().join("new");
    std::fs::write(&old, "old password lantern 1987\n").unwrap();
    std::fs::write(&new, "new password velvet 2031\n").unwrap();
    assert!(client(&vault, "register", "gus", &old, &["--key", KEY])
        .status
        .success());
    let out = client(
        &vault,
        "change-password",
        "gus",
        &old,
        &["--new-password-file", new.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["version"], 2);
    assert_eq!(
        client(&vault, "recover", "gus", &old, &[]).status.code(),
        Some(16)
    );
    let out = client(&vault, "recover", "gus", &new, &[]);
    assert_eq!(json(&out)["key"], KEY);
}

#[test]
fn a_config_file_sets_tenants_that_never_see_each_other() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acme.token"), "a".repeat(40)).unwrap();
    std::fs::write(dir.path().join("globex.token"), "g".repeat(40)).unwrap();
    std::fs::write(dir.path().join("acme-admin.token"), "A".repeat(40)).unwrap();
    let config = dir.path().join("vault.json");
    std::fs::write(
        &config,
        r#"{"tenants": [{"name": "acme", "token_file": "acme.token", "admin_token_file": "acme-admin.token"}, {"name": "globex", "token_file": "globex.token"}],
            "guess_limit": {"default": 3, "min": 1, "max": 5}, "server_id": "test-vault"}"#,
    )
    .unwrap();
    let vault = start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
    let run = |token: &str, args: &[&str]| {
        let target = vault.args();
        let mut a = vec!["--json", "vault"];
        a.extend_from_slice(args);
        a.extend(target.iter().map(String::as_str));
        a.extend_from_slice(&["--server-id", "test-vault"]);
        if !args.contains(&"--admin") && args.first() != Some(&"status") {
            a.extend_from_slice(&["--password-file", pw.to_str().unwrap()]);
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
        // The suite's vaults stretch passwords cheaply (m=256 KiB, t=1).
        command
            .env("COFFER_ALLOW_WEAK_KSF", "1")
            .env("COFFER_VAULT_TOKEN", token);
        coffer_testkit::args_with_key_in_env(&mut command, a.iter().copied())
            .output()
            .unwrap()
    };
    let acme = "a".repeat(40);
    let globex = "g".repeat(40);
    assert!(run(&acme, &["register", "--user", "same", "--key", KEY])
        .status
        .success());
    let status = json(&run(&acme, &["status", "--user", "same"]));
    assert_eq!(status["registered"], true);
    assert_eq!(status["limit"], 3, "the configured default limit");
    // The other tenant sees no record for the same user id.
    let status = json(&run(&globex, &["status", "--user", "same"]));
    assert_eq!(status["registered"], false);
    assert_eq!(
        run(&globex, &["recover", "--user", "same"]).status.code(),
        Some(16)
    );
    // An unknown token is refused.
    assert_eq!(
        run(&"x".repeat(40), &["status", "--user", "same"])
            .status
            .code(),
        Some(21)
    );
    let out = run(&acme, &["recover", "--user", "same"]);
    assert_eq!(json(&out)["key"], KEY);
    // Only the tenant's admin token deletes without the password, and only its own users.
    let admin = "A".repeat(40);
    let out = run(&acme, &["delete", "--admin", "--yes", "--user", "same"]);
    assert_eq!(json(&out)["error"], "unauthorized");
    let out = run(&globex, &["delete", "--admin", "--yes", "--user", "same"]);
    assert_eq!(json(&out)["error"], "unauthorized");
    assert!(
        run(&admin, &["delete", "--admin", "--yes", "--user", "same"])
            .status
            .success()
    );
    let status = json(&run(&acme, &["status", "--user", "same"]));
    assert_eq!(status["state"], "deleted", "{status}");

    // The audit log over HTTP (spec/vault.md §9): the admin token reads its own tenant's
    // events, each checked against its chain hash; other credentials are refused.
    assert!(run(&globex, &["register", "--user", "other", "--key", KEY])
        .status
        .success());
    let audit = |token: &str, extra: &[&str]| {
        let mut args = vec!["--json", "vault", "audit"];
        let target = vault.args();
        args.extend(target.iter().map(String::as_str));
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(&args)
            .env("COFFER_VAULT_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = audit(&admin, &["--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = json(&out);
    let events = log["events"].as_array().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["registered", "guess", "recovered", "deleted"],
        "{log}"
    );
    assert!(events.iter().all(|e| e["tenant"] == "acme"), "{log}");
    assert_eq!(log["next"], Value::Null);
    // One at a time: every page but the last says where the next starts.
    let first = json(&audit(&admin, &["--limit", "1"]));
    assert_eq!(first["events"].as_array().unwrap().len(), 1);
    let next = first["next"].as_u64().unwrap().to_string();
    let second = json(&audit(&admin, &["--limit", "1", "--after", &next]));
    assert_eq!(second["events"][0]["event"], "guess", "{second}");
    for token in [&acme, &globex] {
        assert_eq!(json(&audit(token, &[]))["error"], "unauthorized");
    }
    // An event changed in the file no longer chains: the client refuses the page.
    if store_url(Path::new("/")).is_none() {
        let db = dir.path().join("data").join("vault.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(
                "DROP TRIGGER audit_append_only_update;
                 UPDATE audit SET detail = 'nothing happened' WHERE event = 'deleted';",
            )
            .unwrap();
        let out = audit(&admin, &["--all"]);
        assert_eq!(
            json(&out)["error"],
            "corrupt",
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Over HTTP: wrong guesses that complete a (forged) KE3 and wrong guesses abandoned after
/// KE2 count alike; 50 concurrent wrong recoveries on a fresh record get at most 10 real
/// evaluations (read from the audit log on disk afterwards).
#[test]
fn completed_and_abandoned_guesses_and_concurrency_over_http() {
    if skipped() {
        return;
    }
    use coffer::key::RootKey;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let vault = start(&data);
    let token = std::fs::read_to_string(&vault.token_file).unwrap();
    let client = vault.client(&token);
    let root = RootKey::from_bytes([3; 32]);
    client.register("hal", b"right", &root, None).unwrap();
    let agent = vault.agent();
    let post = |path: &str, body: String| {
        let mut resp = agent
            .post(format!("{}{path}", vault.url))
            .header("authorization", format!("Bearer {}", token.trim()))
            .send(body.as_bytes())
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_slice::<Value>(&resp.body_mut().read_to_vec().unwrap()).unwrap(),
        )
    };
    for i in 0..10 {
        if i % 2 == 0 {
            let refused = client.recover("hal", b"wrong").map(drop).unwrap_err();
            assert_eq!(
                refused.class(),
                coffer::ErrorClass::WrongPassword,
                "{refused}"
            );
        } else {
            let (_, ke1) = coffer::vault::RecoveryClient::start(b"wrong").unwrap();
            let b64 = |b: &[u8]| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
            };
            let (status, start) = post(
                "/v1/users/hal/recover/start",
                format!(r#"{{"ke1":"{}"}}"#, b64(&ke1)),
            );
            assert_eq!(status, 200);
            let session = start["session_id"].as_str().unwrap().to_owned();
            let (status, body) = post(
                &format!("/v1/sessions/{session}/finish"),
                format!(r#"{{"ke3":"{}"}}"#, b64(&[7u8; 64])),
            );
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["error"], "wrong_password");
        }
    }
    let refused = client.recover("hal", b"right").map(drop).unwrap_err();
    assert_eq!(
        refused.class(),
        coffer::ErrorClass::WrongPassword,
        "after 10 wrong guesses the right one fails as a wrong one would: {refused}"
    );
    assert!(!client.status("hal").unwrap().registered);

    client.register("ivy", b"right", &root, None).unwrap();
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let client = vault.client(&token);
            std::thread::spawn(move || client.recover("ivy", b"wrong").map(drop).unwrap_err())
        })
        .collect();
    // Every one is refused as a wrong password (the record is destroyed at the tenth;
    // later KE1s get fake answers, which fail the same way), or by the per-user rate
    // limit before it is counted; none by anything else.
    let classes: Vec<coffer::ErrorClass> = threads
        .into_iter()
        .map(|t| t.join().unwrap().class())
        .collect();
    assert!(
        classes.iter().all(|c| matches!(
            c,
            coffer::ErrorClass::WrongPassword | coffer::ErrorClass::RateLimited
        )),
        "{classes:?}"
    );
    assert!(classes.contains(&coffer::ErrorClass::WrongPassword));
    drop(vault);
    let guesses = audited(&data, "ivy", "guess");
    assert_eq!(
        guesses, 10,
        "exactly the limit of KE1s got a real evaluation"
    );
}

/// A registration that sends back another record's id at register/finish (the client holds
/// the id between the two calls, so it can send any) is refused as `unauthorized`, 403, and
/// changes nothing: before, the store's write by id replaced the other record's secrets and
/// count (spec/vault.md §3.1 step 4).
#[test]
fn a_registration_never_takes_over_another_records_id() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use coffer::key::RootKey;
    use coffer::vault::{KsfFloor, Parties, RegistrationClient};
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vault = start(&dir.path().join("data"));
    let token = std::fs::read_to_string(&vault.token_file).unwrap();
    let client = vault.client(token.trim());
    let alice_key = RootKey::generate().unwrap();
    client
        .register("alice", b"alice's password", &alice_key, Some(3))
        .unwrap();
    let alice_id = client
        .recover("alice", b"alice's password")
        .unwrap()
        .record_id;

    let agent = vault.agent();
    let post = |path: &str, body: Value| {
        let mut resp = agent
            .post(format!("{}{path}", vault.url))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", token.trim()))
            .send(body.to_string().as_bytes())
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        (status, body)
    };
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let (registration, request) = RegistrationClient::start(b"mallory's password").unwrap();
    let (status, start) = post(
        "/v1/users/mallory/register/start",
        serde_json::json!({"request": b64(&request)}),
    );
    assert_eq!(status, 200, "{start}");
    let response = URL_SAFE_NO_PAD
        .decode(start["response"].as_str().unwrap())
        .unwrap();
    let parties = Parties {
        user: "mallory".into(),
        server_id: "coffer-vault".into(),
    };
    let (upload, envelope) = registration
        .ksf_floor(KsfFloor::NONE)
        .finish(
            &parties,
            &response,
            start["ksf"].as_str().unwrap(),
            &alice_id,
            1,
            &RootKey::generate().unwrap(),
        )
        .unwrap();
    let (status, finish) = post(
        "/v1/users/mallory/register/finish",
        serde_json::json!({
            "record_id": b64(alice_id.as_bytes()),
            "upload": b64(&upload),
            "envelope": b64(&envelope),
            "limit": 100,
        }),
    );
    assert_eq!(
        (status, finish["error"].as_str()),
        (403, Some("unauthorized")),
        "{finish}"
    );

    let mallory = client.status("mallory").unwrap();
    assert!(!mallory.registered, "{mallory:?}");
    let alice = client.status("alice").unwrap();
    assert_eq!((alice.registered, alice.limit), (true, 3), "{alice:?}");
    let again = client.recover("alice", b"alice's password").unwrap();
    assert_eq!(again.root.as_bytes(), alice_key.as_bytes());
    assert_eq!(again.record_id, alice_id);
}
