//! The etcd store as etcd operators run it: TLS to the members (a CA made here with the
//! openssl command) and etcd's own authentication with a user limited to the vault's
//! prefix. A vault with the CA and the user's password serves; one without the CA, with a
//! wrong password, or with a user without rights on the prefix refuses to start; an expired
//! etcd token is renewed without the vault's callers noticing. Real etcd
//! on loopback (opt out with COFFER_SKIP_ETCD=1).

use coffer_testkit::etcd;

use coffer::http::VaultClient;
use coffer::key::RootKey;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs etcdctl (a missing binary fails the test: Debian etcd-client).
fn etcdctl_output(dir: &Path, endpoint: &str, user: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--cacert"])
        .arg(dir.join("ca.pem"));
    if let Some(u) = user {
        command.args(["--user", u]);
    }
    command
        .args(args)
        .output()
        .expect("etcdctl (Debian package etcd-client; scripts/test.sh installs it)")
}

fn etcdctl(dir: &Path, endpoint: &str, user: Option<&str>, args: &[&str]) -> bool {
    etcdctl_output(dir, endpoint, user, args).status.success()
}

/// Starts `coffer vault serve` on the TLS store; returns its URL, or its stderr if it exits.
fn vault(
    data: &Path,
    store: &str,
    extra: &[&str],
) -> Result<(std::process::Child, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["vault", "serve", "--listen", "127.0.0.1:0"])
        .args(["--ksf", "argon2id:m=256,t=1,p=1", "--etcd-timeout", "3"])
        .args(["--store", store])
        .args(extra)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let out = child.wait_with_output().unwrap();
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let first: serde_json::Value = serde_json::from_str(&line).unwrap();
    Ok((child, first["listening"].as_str().unwrap().to_owned()))
}

#[test]
fn tls_and_etcd_users_as_operators_run_them() {
    if etcd::skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A CA and a member certificate for 127.0.0.1.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=coffer test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "member.key",
            "-out",
            "member.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "member.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "member.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("https://127.0.0.1:{client}");
    let script = format!(
        "etcd --name m0 --data-dir {data} --listen-client-urls {endpoint} \
         --advertise-client-urls {endpoint} --listen-peer-urls http://127.0.0.1:{peer} \
         --initial-advertise-peer-urls http://127.0.0.1:{peer} \
         --initial-cluster m0=http://127.0.0.1:{peer} --cert-file {cert} --key-file {key} \
         --auth-token-ttl 1 --log-level error >{log} 2>&1 & e=$!; \
         while kill -0 {me} 2>/dev/null && kill -0 $e 2>/dev/null; do sleep 0.2; done; kill -9 $e",
        data = d.join("data").display(),
        cert = d.join("member.pem").display(),
        key = d.join("member.key").display(),
        log = d.join("etcd.log").display(),
        me = std::process::id()
    );
    let mut watchdog = Command::new("bash")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::spawn(move || watchdog.wait());
    let started = Instant::now();
    while !etcdctl(d, &endpoint, None, &["endpoint", "health"]) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "etcd with TLS did not start: {}",
            std::fs::read_to_string(d.join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Users: root (to enable auth) and `vault`, allowed only under /coffer/.
    for args in [
        &["user", "add", "root:root-password"][..],
        &["user", "add", "vault:vault-password"],
        &["user", "add", "other:other-password"],
        &["role", "add", "vault"],
        &[
            "role",
            "grant-permission",
            "vault",
            "--prefix=true",
            "readwrite",
            "/coffer/",
        ],
        &["user", "grant-role", "vault", "vault"],
        &["auth", "enable"],
    ] {
        assert!(etcdctl(d, &endpoint, None, args), "etcdctl {args:?}");
    }
    std::fs::write(d.join("vault.pw"), "vault-password\n").unwrap();
    std::fs::write(d.join("wrong.pw"), "not-it\n").unwrap();
    std::fs::write(d.join("other.pw"), "other-password\n").unwrap();
    let store = format!("etcds://127.0.0.1:{client}/coffer");
    let ca = d.join("ca.pem").display().to_string();
    let auth = |pw: &str, user: &str| {
        vec![
            "--etcd-ca".to_owned(),
            ca.clone(),
            "--etcd-user".to_owned(),
            user.to_owned(),
            "--etcd-password-file".to_owned(),
            d.join(pw).display().to_string(),
        ]
    };

    // Refusals: no CA for etcds://; a wrong password; a user with no rights on the prefix.
    let err = vault(&d.join("v0"), &store, &[]).unwrap_err();
    assert!(err.contains("--etcd-ca"), "{err}");
    let err = vault(&d.join("v1"), &store, &args(&auth("wrong.pw", "vault"))).unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
    let err = vault(&d.join("v2"), &store, &args(&auth("other.pw", "other"))).unwrap_err();
    assert!(err.contains("permission denied"), "{err}");
    // A CA that did not sign the member's certificate.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "other-ca.key",
            "-out",
            "other-ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=other CA",
        ],
    );
    let mut wrong_ca = auth("vault.pw", "vault");
    wrong_ca[1] = d.join("other-ca.pem").display().to_string();
    let err = vault(&d.join("v3"), &store, &args(&wrong_ca)).unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");

    // The right CA and user: it serves, over TLS, with etcd's authentication.
    let (mut child, url) = vault(&d.join("v4"), &store, &args(&auth("vault.pw", "vault"))).unwrap();
    let token = std::fs::read_to_string(d.join("v4/tenant-default.token")).unwrap();
    let client =
        VaultClient::new(&url, &token, "coffer-vault").ksf_floor(coffer::vault::KsfFloor::NONE);
    client
        .register("eve", b"pw", &RootKey::from_bytes([6; 32]), None)
        .unwrap();
    // The member forgets an unused token after a second (--auth-token-ttl 1): the vault's
    // next call is refused with "invalid auth token", and it logs in again and retries.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        client.recover("eve", b"pw").unwrap().root.as_bytes(),
        &[6; 32]
    );
    let _ = child.kill();
    let _ = child.wait();
    // The records are in etcd, under the prefix (eve's among them), for the vault user only:
    // the other user is refused by etcd itself ("permission denied"), not by a failure of
    // any other kind.
    let listed = etcdctl_output(
        d,
        &endpoint,
        Some("vault:vault-password"),
        &["get", "--prefix", "--keys-only", "/coffer/user/"],
    );
    assert!(listed.status.success(), "{listed:?}");
    let keys = String::from_utf8_lossy(&listed.stdout);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("/coffer/user/")),
        "{keys:?}"
    );
    let refused = etcdctl_output(
        d,
        &endpoint,
        Some("other:other-password"),
        &["get", "--prefix", "--keys-only", "/coffer/user/"],
    );
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("permission denied"), "{why}");
}
