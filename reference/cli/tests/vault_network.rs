//! The vault as it meets a network (spec/vault.md §9.1), with real processes on loopback:
//! HTTPS with a private CA, a client that trusts only what it is told to, the vault's OPAQUE
//! key pinned, plain HTTP refused off loopback, a certificate reloaded on SIGHUP, and the
//! bounds that keep slow or idle clients from stopping the vault (header and request
//! timeouts, the connection cap) while an honest client is served.

use coffer_testkit::tls;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

struct Vault {
    child: Child,
    url: String,
    token_file: PathBuf,
    server_key: String,
    /// The admin endpoints' URL, with --admin-listen.
    admin: Option<String>,
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vault {
    fn address(&self) -> String {
        self.url.split("://").nth(1).unwrap().to_owned()
    }
}

fn serve(data: &Path, pki: Option<&tls::Pki>, extra: &[&str]) -> Vault {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command
        .args(["vault", "serve", "--listen", "127.0.0.1:0"])
        .args(["--ksf", "argon2id:m=256,t=1,p=1", "--data"])
        .arg(data)
        .args(extra);
    if let Some(pki) = pki {
        command.arg("--tls-cert").arg(&pki.cert);
        command.arg("--tls-key").arg(&pki.key);
    }
    let mut child = command
        .env_remove("COFFER_VAULT_FAULT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start coffer vault serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    Vault {
        child,
        url: first["listening"].as_str().unwrap().to_owned(),
        // A configuration may give the tenant no shared token (user tokens only).
        token_file: first["token_file"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_default(),
        server_key: first["server_key"].as_str().unwrap().to_owned(),
        admin: first["admin"].as_str().map(str::to_owned),
    }
}

/// `coffer --json vault COMMAND` for user `user` against `vault`, with more arguments.
fn client(vault: &Vault, command: &str, user: &str, password: &Path, extra: &[&str]) -> Output {
    let mut command_line = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command_line
        .args([
            "--json", "vault", command, "--vault", &vault.url, "--user", user,
        ])
        .arg("--token-file")
        .arg(&vault.token_file)
        .env_remove("COFFER_KEY")
        .env_remove("COFFER_VAULT_CA")
        .env_remove("COFFER_VAULT_SERVER_KEY")
        // These vaults stretch passwords cheaply (m=256 KiB, t=1).
        .env("COFFER_ALLOW_WEAK_KSF", "1");
    // Status asks nothing of the password; a password file there is a usage error.
    if command != "status" {
        command_line.arg("--password-file").arg(password);
    }
    coffer_testkit::args_with_key_in_env(&mut command_line, extra.iter().copied())
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    json(out)
}

/// The failure's class and exit code.
fn failed(out: &Output) -> (String, i32) {
    let v = json(out);
    assert_eq!(v["ok"], false, "{v}");
    (
        v["error"].as_str().unwrap().to_owned(),
        out.status.code().unwrap(),
    )
}

fn guesses_left(vault: &Vault, user: &str, password: &Path, ca: &Path) -> u64 {
    let status = ok(&client(
        vault,
        "status",
        user,
        password,
        &["--ca", ca.to_str().unwrap()],
    ));
    status["guesses_left"].as_u64().unwrap()
}

#[test]
fn https_with_a_pinned_key_and_nothing_trusted_that_was_not_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tls::issue(&dir.path().join("pki"), "vault");
    let other = tls::issue(&dir.path().join("other"), "other");
    let vault = serve(&dir.path().join("data"), Some(&pki), &[]);
    assert!(vault.url.starts_with("https://127.0.0.1:"), "{}", vault.url);
    assert_eq!(vault.server_key.len(), 64);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse lantern 1987\n").unwrap();
    let ca = pki.ca.to_str().unwrap();
    let pin = vault.server_key.as_str();
    let wrong_pin = format!(
        "{}{}",
        if pin.starts_with('0') { "1" } else { "0" },
        &pin[1..]
    );

    // A client that trusts the system's roots, or another CA, never reaches the vault.
    for extra in [&[][..], &["--ca", other.ca.to_str().unwrap()][..]] {
        let mut args = vec!["--key", KEY];
        args.extend_from_slice(extra);
        let out = client(&vault, "register", "alice", &pw, &args);
        let (class, code) = failed(&out);
        assert_eq!((class.as_str(), code), ("io", 22), "{}", json(&out));
        assert!(
            json(&out)["message"]
                .as_str()
                .unwrap()
                .contains("certificate"),
            "{}",
            json(&out)
        );
    }
    // A registration against a vault whose OPAQUE key is not the pinned one stops before
    // anything is uploaded.
    let out = client(
        &vault,
        "register",
        "alice",
        &pw,
        &["--key", KEY, "--ca", ca, "--server-key", &wrong_pin],
    );
    assert_eq!(failed(&out), ("server_auth_failed".into(), 19));
    let status = ok(&client(&vault, "status", "alice", &pw, &["--ca", ca]));
    assert_eq!(status["registered"], false, "{status}");

    // With the CA and the right pin: register and recover.
    ok(&client(
        &vault,
        "register",
        "alice",
        &pw,
        &["--key", KEY, "--ca", ca, "--server-key", pin],
    ));
    let recovered = ok(&client(
        &vault,
        "recover",
        "alice",
        &pw,
        &["--ca", ca, "--server-key", pin],
    ));
    assert_eq!(recovered["key"], KEY);
    // A KE2 under another key than the pinned one is refused (the guess was counted by
    // the vault, which cannot know the client will refuse; no KE3 is sent).
    let out = client(
        &vault,
        "recover",
        "alice",
        &pw,
        &["--ca", ca, "--server-key", &wrong_pin],
    );
    assert_eq!(failed(&out), ("server_auth_failed".into(), 19));
    assert_eq!(guesses_left(&vault, "alice", &pw, &pki.ca), 9);
    // A malformed pin is a usage error of its own.
    let out = client(
        &vault,
        "recover",
        "alice",
        &pw,
        &["--ca", ca, "--server-key", "abc"],
    );
    assert_eq!(failed(&out), ("usage".into(), 2));
}

#[test]
fn plain_http_is_refused_off_loopback_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t".repeat(64)).unwrap();
    // `.invalid` never resolves (RFC 6761): were the URL not refused first, the error
    // would be `io` and name the lookup, not `unsupported`.
    for command in [
        vec!["vault", "status", "--vault", "http://vault.invalid:8443"],
        vec!["vault", "recover", "--vault", "http://vault.invalid:8443"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg("--json")
            .args(&command)
            .args(["--user", "alice", "--token-file"])
            .arg(&token)
            .args(
                (command[1] == "recover")
                    .then(|| ["--password-file".as_ref(), pw.as_os_str()])
                    .into_iter()
                    .flatten(),
            )
            .output()
            .unwrap();
        assert_eq!(failed(&out), ("unsupported".into(), 14));
        let message = json(&out)["message"].as_str().unwrap().to_owned();
        assert!(message.contains("--insecure-http"), "{message}");
    }
    // A realms file naming a plain-HTTP realm off loopback is refused the same way.
    std::fs::write(
        dir.path().join("realms.json"),
        r#"{"threshold": 1, "realms": [{"id": "r1", "url": "http://r1.invalid:1", "token_file": "token"}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["--json", "realms", "status", "--user", "alice", "--realms"])
        .arg(dir.path().join("realms.json"))
        .output()
        .unwrap();
    assert_eq!(failed(&out), ("unsupported".into(), 14));
}

#[test]
fn a_new_certificate_is_served_after_sighup_or_a_change_and_a_bad_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let first = tls::issue(&dir.path().join("first"), "vault");
    let second = tls::issue(&dir.path().join("second"), "vault");
    // The vault serves copies, which the test replaces.
    let live = tls::Pki {
        ca: first.ca.clone(),
        cert: dir.path().join("live-cert.pem"),
        key: dir.path().join("live-key.pem"),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let vault = serve(&dir.path().join("data"), Some(&live), &[]);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
    let status = |ca: &Path| {
        client(
            &vault,
            "status",
            "alice",
            &pw,
            &["--ca", ca.to_str().unwrap()],
        )
    };
    ok(&status(&first.ca));
    assert_eq!(failed(&status(&second.ca)).0, "io");

    let hangup = |vault: &Vault| {
        let sent = Command::new("kill")
            .args(["-HUP", &vault.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        std::thread::sleep(Duration::from_millis(500));
    };
    // A key that does not go with the certificate: the reload fails, the old one stays.
    std::fs::copy(&second.cert, &live.cert).unwrap();
    hangup(&vault);
    ok(&status(&first.ca));
    // Both files of the second CA: served from then on.
    std::fs::copy(&second.key, &live.key).unwrap();
    hangup(&vault);
    ok(&status(&second.ca));
    assert_eq!(failed(&status(&first.ca)).0, "io");

    // Without a signal: files replaced in place are picked up within a few seconds (as a
    // certificate manager renews them), one file at a time included.
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    ok(&status(&second.ca));
    std::fs::copy(&first.key, &live.key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&first.ca).status.code() != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the renewed files were never served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(failed(&status(&second.ca)).0, "io");
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent
/// and how long that took.
fn wait_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("still open after {:?}: {e}", start.elapsed()),
        }
    }
    (got, start.elapsed())
}

#[test]
fn slow_and_idle_clients_are_cut_off_while_an_honest_one_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tls::issue(&dir.path().join("pki"), "vault");
    let vault = serve(
        &dir.path().join("data"),
        Some(&pki),
        &["--header-timeout", "2", "--request-timeout", "3"],
    );
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
    let ca = pki.ca.to_str().unwrap();
    // 300 connections that never finish a TLS handshake (a slowloris), held open.
    let mut held: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(vault.address()).unwrap();
            s.write_all(&[0x16, 0x03, 0x01]).unwrap();
            s
        })
        .collect();
    // Meanwhile an honest client registers and recovers within its timeout.
    let start = Instant::now();
    ok(&client(
        &vault,
        "register",
        "bob",
        &pw,
        &["--key", KEY, "--ca", ca],
    ));
    let recovered = ok(&client(&vault, "recover", "bob", &pw, &["--ca", ca]));
    assert_eq!(recovered["key"], KEY);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // And every held connection is closed by the vault once the header timeout passes.
    for s in &mut held {
        let (_, waited) = wait_closed(s, Duration::from_secs(10));
        assert!(waited < Duration::from_secs(10));
    }
    drop(held);
}

#[test]
fn plain_http_bounds_headers_bodies_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let vault = serve(
        &dir.path().join("data"),
        None,
        &[
            "--header-timeout",
            "1",
            "--request-timeout",
            "2",
            "--max-connections",
            "20",
        ],
    );
    let token = std::fs::read_to_string(&vault.token_file).unwrap();
    // Half-sent headers: closed after the header timeout (1 s), not held.
    let mut half = TcpStream::connect(vault.address()).unwrap();
    half.write_all(b"POST /v1/users/x/recover/start HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (_, waited) = wait_closed(&mut half, Duration::from_secs(10));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Headers, then a body that never completes: 408 after the request timeout (2 s), with
    // the JSON error body.
    let mut slow = TcpStream::connect(vault.address()).unwrap();
    write!(
        slow,
        "POST /v1/users/x/recover/start HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"ke1\":",
        token.trim()
    )
    .unwrap();
    let (answer, waited) = wait_closed(&mut slow, Duration::from_secs(10));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"io""#), "{answer}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // The connection cap: 20 idle connections fill it, the 21st is closed at once, and
    // once the idle ones time out the vault answers again.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(vault.address()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = TcpStream::connect(vault.address()).unwrap();
    let _ = over.write_all(b"GET /v1/users/x/status HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, waited) = wait_closed(&mut over, Duration::from_secs(10));
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(waited < Duration::from_millis(900), "{waited:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let agent = tls::agent(None);
    let response = agent
        .get(format!("{}/v1/users/x/status", vault.url))
        .header("authorization", format!("Bearer {}", token.trim()))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    drop(idle);
}

/// The files a served vault makes are its operator's alone: the data directory 0700, the
/// database, the master key file and the tenant token 0600.
#[cfg(unix)]
#[test]
fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let vault = serve(&data, None, &[]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in ["vault.db", "master.key", "tenant-default.token"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    drop(vault);
}

/// spec/vault.md §9.2: the admin endpoints, on their own listener. `/metrics` is parsed by
/// the Prometheus project's own OpenMetrics parser (PyPI prometheus-client; scripts/test.sh
/// sets COFFER_PROMETHEUS_PYTHON, opt out with COFFER_SKIP_PROMETHEUS=1), and says what
/// happened without naming any user.
/// Runs `script` with `python`, `input` on its standard input.
fn python_reads(python: &str, script: &str, input: &[u8]) -> Output {
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The sum of the parsed samples named `name` whose labels include `labels`.
fn metric(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

#[test]
fn health_readiness_and_metrics_a_prometheus_parser_reads() {
    if coffer_testkit::opt_out("COFFER_SKIP_PROMETHEUS", "the Prometheus parser") {
        return;
    }
    let python = std::env::var("COFFER_PROMETHEUS_PYTHON").expect(
        "COFFER_PROMETHEUS_PYTHON is not set: scripts/test.sh makes .venv/prometheus (pip \
         install prometheus-client) and sets it; or opt out with COFFER_SKIP_PROMETHEUS=1",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut vault = serve(
        &dir.path().join("data"),
        None,
        &["--admin-listen", "127.0.0.1:0"],
    );
    let admin = vault.admin.take().expect("an admin URL");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();
    ok(&client(
        &vault,
        "register",
        "alice-secret-name",
        &pw,
        &["--key", KEY],
    ));
    failed(&client(&vault, "recover", "alice-secret-name", &wrong, &[]));
    ok(&client(&vault, "recover", "alice-secret-name", &pw, &[]));
    let bad_token = dir.path().join("bad.token");
    std::fs::write(&bad_token, "x".repeat(64)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "--json", "vault", "status", "--vault", &vault.url, "--user", "bob",
        ])
        .arg("--token-file")
        .arg(&bad_token)
        .output()
        .unwrap();
    assert_eq!(failed(&out).0, "unauthorized");

    let agent = tls::agent(None);
    let get = |path: &str| {
        let mut response = agent.get(format!("{admin}{path}")).call().unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    assert_eq!(get("/healthz").0, 200);
    assert_eq!(get("/readyz"), (200, "ready\n".to_owned()));
    let (status, text) = get("/metrics");
    assert_eq!(status, 200);
    assert!(
        !text.contains("alice-secret-name"),
        "a user named in the metrics"
    );
    let parse = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples = [
    {"name": s.name, "labels": s.labels, "value": s.value}
    for family in text_string_to_metric_families(sys.stdin.read())
    for s in family.samples
]
print(json.dumps(samples))
"#;
    let out = python_reads(&python, parse, text.as_bytes());
    assert!(
        out.status.success(),
        "the parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| metric(&samples, name, labels);
    assert_eq!(
        value("coffer_vault_events_total", &[("event", "registered")]),
        1.0
    );
    assert_eq!(
        value("coffer_vault_events_total", &[("event", "guess_counted")]),
        2.0
    );
    assert_eq!(
        value("coffer_vault_events_total", &[("event", "recovered")]),
        1.0
    );
    assert_eq!(
        value(
            "coffer_http_requests_total",
            &[("route", "/v1/users/{user}/recover/start"), ("class", "ok")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "coffer_http_requests_total",
            &[("class", "unauthorized"), ("status", "401")]
        ),
        1.0
    );
    assert!(
        value(
            "coffer_store_duration_seconds_count",
            &[("op", "count_guess")]
        ) >= 2.0
    );
    assert!(value("coffer_hsm_duration_seconds_count", &[("op", "unseal")]) >= 1.0);
    // Each counted guess was answered by a group commit; SQLite never tries one again.
    assert_eq!(
        value("coffer_store_group_commit_changes_sum", &[]),
        value("coffer_vault_events_total", &[("event", "guess_counted")])
    );
    assert!(value("coffer_store_group_commit_changes_count", &[]) >= 1.0);
    assert_eq!(value("coffer_store_group_commit_retries_total", &[]), 0.0);

    // During a load run: four clients recover for two seconds while /metrics is scraped
    // every 100 ms; every scrape parses, and the guess counter never goes down.
    let token = std::fs::read_to_string(&vault.token_file).unwrap();
    let client = || {
        coffer::http::VaultClient::new(&vault.url, token.trim(), "coffer-vault")
            .ksf_floor(coffer::vault::KsfFloor::NONE)
    };
    // 16 users per client, taken in turn: the per-user rate limit (30 a minute) stays clear.
    for n in 0..64u8 {
        let root = coffer::key::RootKey::from_bytes([n; 32]);
        client()
            .register(&format!("load-{n}"), b"pw", &root, Some(100))
            .unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let scrapes: Vec<String> = std::thread::scope(|scope| {
        for n in 0..4 {
            let (client, stop) = (client(), &stop);
            scope.spawn(move || {
                for turn in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let user = format!("load-{}", n * 16 + turn % 16);
                    client.recover(&user, b"pw").unwrap();
                }
            });
        }
        let mut scrapes = Vec::new();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let (status, text) = get("/metrics");
            assert_eq!(status, 200);
            scrapes.push(text);
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        scrapes
    });
    let each = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
counts = []
for text in json.load(sys.stdin):
    counts.append(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                      if s.name == "coffer_vault_events_total" and s.labels.get("event") == "guess_counted"))
print(json.dumps(counts))
"#;
    let out = python_reads(&python, each, &serde_json::to_vec(&scrapes).unwrap());
    assert!(
        out.status.success(),
        "the parser refused a scrape taken under load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(counts.len() >= 10, "{counts:?}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(
        counts.last().unwrap() > counts.first().unwrap(),
        "no load seen: {counts:?}"
    );

    // After the load, every guess counted is one change in the group commits, and four
    // clients at once made some batches of more than one.
    let (_, text) = get("/metrics");
    let out = python_reads(&python, parse, text.as_bytes());
    assert!(out.status.success());
    let after: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| metric(&after, name, labels);
    let guesses = value("coffer_vault_events_total", &[("event", "guess_counted")]);
    let batches = value("coffer_store_group_commit_changes_count", &[]);
    assert_eq!(value("coffer_store_group_commit_changes_sum", &[]), guesses);
    assert!(batches > 0.0 && batches <= guesses, "{batches} {guesses}");
    assert_eq!(value("coffer_store_group_commit_retries_total", &[]), 0.0);
}

/// `vault serve --config FILE.toml`: tenants, limits and rates from TOML (rates that are not
/// positive numbers refused), and `--log-format json` logs one JSON object per line.
#[test]
fn a_toml_configuration_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let token = "a".repeat(40);
    std::fs::write(dir.path().join("acme.token"), &token).unwrap();
    let config = dir.path().join("vault.toml");
    std::fs::write(
        &config,
        "server_id = \"toml-vault\"\n\
         [guess_limit]\ndefault = 4\nmin = 1\nmax = 5\n\
         [rate]\nuser_per_minute = 600.0\ntenant_per_second = 1000.0\n\
         [[tenants]]\nname = \"acme\"\ntoken_file = \"acme.token\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "--log-format",
            "json",
            "-v",
            "vault",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--ksf", "argon2id:m=256,t=1,p=1", "--data"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(first["tenant"], "acme", "{first}");
    let url = first["listening"].as_str().unwrap().to_owned();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "--json", "vault", "register", "--vault", &url, "--user", "u",
        ])
        .args(["--server-id", "toml-vault", "--password-file"])
        .arg(&pw)
        .env("COFFER_KEY", KEY)
        .env("COFFER_VAULT_TOKEN", &token)
        .env("COFFER_ALLOW_WEAK_KSF", "1")
        .output()
        .unwrap();
    ok(&out);
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["--json", "vault", "status", "--vault", &url, "--user", "u"])
        .env("COFFER_VAULT_TOKEN", &token)
        .output()
        .unwrap();
    assert_eq!(ok(&out)["guesses_left"], 4, "the TOML default limit");
    let _ = child.kill();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let _ = child.wait();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }

    // A rate that is not a positive number is refused before anything is served.
    std::fs::write(
        &config,
        "[rate]\nuser_per_minute = nan\ntenant_per_second = 1000.0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "--json",
            "vault",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path().join("data2"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(failed(&out).0, "malformed");
}

/// `coffer vault user-token`, as a tenant's front end would mint a token.
fn user_token(key: &Path, user: &str, audience: &str, ttl: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "--json",
            "vault",
            "user-token",
            "--kid",
            "k1",
            "--tenant",
            "acme",
        ])
        .args(["--user", user, "--audience", audience, "--ttl", ttl])
        .arg("--signing-key")
        .arg(key)
        .output()
        .unwrap();
    ok(&out)["token"].as_str().unwrap().to_owned()
}

/// spec/vault.md §9.3: a tenant that signs per-user tokens. A token acts for its user only
/// (another user's record, status or session is refused), for this server only, and not
/// once expired; nobody holds a tenant-wide token, and the admin token still deletes.
#[test]
fn a_user_token_acts_for_its_user_only() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("acme-signing.key");
    let made = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["--json", "vault", "user-key", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    let public = ok(&made)["public_key"].as_str().unwrap().to_owned();
    std::fs::write(dir.path().join("admin.token"), "Z".repeat(48)).unwrap();
    let config = dir.path().join("vault.toml");
    std::fs::write(
        &config,
        format!(
            "[[tenants]]\nname = \"acme\"\nadmin_token_file = \"admin.token\"\n\
             user_token_keys = [{{ kid = \"k1\", public_key = \"{public}\" }}]\n"
        ),
    )
    .unwrap();
    let vault = serve(
        &dir.path().join("data"),
        None,
        &["--config", config.to_str().unwrap()],
    );
    let alice = user_token(&key, "alice", "coffer-vault", "600");
    let bob = user_token(&key, "bob", "coffer-vault", "600");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
    let as_user = |token: &str, command: &str, user: &str, extra: &[&str]| {
        let mut command_line = Command::new(env!("CARGO_BIN_EXE_coffer"));
        command_line
            .args([
                "--json", "vault", command, "--vault", &vault.url, "--user", user,
            ])
            .env("COFFER_VAULT_TOKEN", token)
            .env("COFFER_ALLOW_WEAK_KSF", "1");
        if !extra.contains(&"--admin") && command != "status" {
            command_line.arg("--password-file").arg(&pw);
        }
        coffer_testkit::args_with_key_in_env(&mut command_line, extra.iter().copied())
            .output()
            .unwrap()
    };
    ok(&as_user(&alice, "register", "alice", &["--key", KEY]));
    assert_eq!(ok(&as_user(&alice, "recover", "alice", &[]))["key"], KEY);
    // Bob's token for Alice's record: refused, and nothing counted.
    for command in ["recover", "status"] {
        let out = as_user(&bob, command, "alice", &[]);
        assert_eq!(failed(&out).0, "unauthorized", "{command}");
    }
    assert_eq!(
        ok(&as_user(&alice, "status", "alice", &[]))["guesses_left"],
        10
    );
    // Bob's token on Alice's session: refused; Alice's own token gets the vault's answer.
    let agent = tls::agent(None);
    let post = |token: &str, path: &str, body: &str| {
        let mut response = agent
            .post(format!("{}{path}", vault.url))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&response.body_mut().read_to_vec().unwrap())
            .unwrap_or(Value::Null);
        (status, body)
    };
    let (_, ke1) = coffer::vault::RecoveryClient::start(b"pw").unwrap();
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let (status, start) = post(
        &alice,
        "/v1/users/alice/recover/start",
        &format!(r#"{{"ke1":"{}"}}"#, b64(&ke1)),
    );
    assert_eq!(status, 200, "{start}");
    let session = start["session_id"].as_str().unwrap();
    let finish = format!("/v1/sessions/{session}/finish");
    let ke3 = format!(r#"{{"ke3":"{}"}}"#, b64(&[7u8; 64]));
    let (status, body) = post(&bob, &finish, &ke3);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("unauthorized"))
    );
    let (status, body) = post(&alice, &finish, &ke3);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("wrong_password"))
    );
    // Another server's token, an expired one, a forged one: 401 unauthorized.
    let elsewhere = user_token(&key, "alice", "another-vault", "600");
    let signing = std::fs::read(&key).unwrap();
    let now = coffer::http::unix_now();
    let claims = |iat: u64, exp: u64| coffer::http::UserClaims {
        iss: "acme".into(),
        sub: "alice".into(),
        aud: "coffer-vault".into(),
        iat,
        exp,
    };
    // Expired two minutes ago (past the minute of clock skew allowed).
    let expired =
        coffer::http::mint_user_token(&signing, "k1", &claims(now - 600, now - 120)).unwrap();
    let (other_key, _) = coffer::http::new_signing_key().unwrap();
    let forged = coffer::http::mint_user_token(&other_key, "k1", &claims(now, now + 600)).unwrap();
    for token in [&elsewhere, &expired, &forged] {
        let out = as_user(token, "status", "alice", &[]);
        assert_eq!(failed(&out).0, "unauthorized");
    }
    // A user token cannot delete without the password; the admin token can.
    let out = as_user(&alice, "delete", "alice", &["--admin", "--yes"]);
    assert_eq!(failed(&out).0, "unauthorized");
    let out = as_user(&"Z".repeat(48), "delete", "alice", &["--admin", "--yes"]);
    ok(&out);
}

/// spec/vault.md §9: a tenant known by its client certificate. With `--tls-client-ca`, a
/// certificate whose SHA-256 the tenant's config lists acts as the tenant's token; a
/// certificate from a trusted CA that no tenant lists, no certificate, or the header the
/// router derives from a certificate sent by hand are each `unauthorized`, and a certificate
/// from a CA not trusted never finishes the handshake.
#[test]
fn a_tenant_known_by_its_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = tls::issue(&dir.path().join("server"), "vault");
    let (mine, other, stranger) = (
        tls::issue(&dir.path().join("mine"), "acme-frontend"),
        tls::issue(&dir.path().join("other"), "someone"),
        tls::issue(&dir.path().join("stranger"), "stranger"),
    );
    // Clients of two CAs may connect; only `mine` is a tenant's.
    let client_ca = dir.path().join("client-ca.pem");
    std::fs::write(
        &client_ca,
        [&mine.ca, &other.ca]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>(),
    )
    .unwrap();
    let leaf = &coffer::http::read_certificates(&mine.cert).unwrap()[0];
    let fingerprint = hex::encode(coffer::http::ClientCert::of(leaf.as_ref()).0);
    let config = dir.path().join("vault.toml");
    std::fs::write(
        &config,
        format!("[[tenants]]\nname = \"acme\"\nclient_cert_sha256 = [\"{fingerprint}\"]\n"),
    )
    .unwrap();
    let vault = serve(
        &dir.path().join("data"),
        Some(&server),
        &[
            "--config",
            config.to_str().unwrap(),
            "--tls-client-ca",
            client_ca.to_str().unwrap(),
        ],
    );
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "quiet lantern orbit 1987\n").unwrap();
    let as_holder = |pki: Option<&tls::Pki>, command: &str, extra: &[&str]| {
        let mut command_line = Command::new(env!("CARGO_BIN_EXE_coffer"));
        command_line
            .args([
                "--json", "vault", command, "--vault", &vault.url, "--user", "alice",
            ])
            .arg("--ca")
            .arg(&server.ca)
            .env_remove("COFFER_VAULT_TOKEN")
            .env("COFFER_ALLOW_WEAK_KSF", "1");
        if command != "status" {
            command_line.arg("--password-file").arg(&pw);
        }
        if let Some(pki) = pki {
            command_line
                .arg("--client-cert")
                .arg(&pki.cert)
                .arg("--client-key")
                .arg(&pki.key);
        }
        coffer_testkit::args_with_key_in_env(&mut command_line, extra.iter().copied())
            .output()
            .unwrap()
    };
    ok(&as_holder(Some(&mine), "register", &["--key", KEY]));
    assert_eq!(ok(&as_holder(Some(&mine), "recover", &[]))["key"], KEY);
    // A trusted CA's certificate that no tenant lists; no certificate and no token.
    assert_eq!(
        failed(&as_holder(Some(&other), "status", &[])).0,
        "unauthorized"
    );
    assert_eq!(failed(&as_holder(None, "status", &[])).0, "unauthorized");
    // A CA the vault does not trust: the handshake fails.
    assert_eq!(failed(&as_holder(Some(&stranger), "status", &[])).0, "io");
    // The header the router sets from a verified certificate, sent by hand: ignored.
    let mut response = tls::agent(Some(&server.ca))
        .get(format!("{}/v1/users/alice/status", vault.url))
        .header("x-coffer-client-cert", &fingerprint)
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response
        .body_mut()
        .read_to_string()
        .unwrap()
        .contains("unauthorized"));
    // Nothing was counted by the refused calls: one recovery, then a reset.
    assert_eq!(
        ok(&as_holder(Some(&mine), "status", &[]))["guesses_left"],
        10
    );
}
