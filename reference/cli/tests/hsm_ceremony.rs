//! The key ceremony, the wrap policy and `coffer hsm check`, on real modules through the CLI
//! (every command is a child process with its own module load): SoftHSM2 and kryoptic.

use coffer_testkit::tokens;

use coffer::hsm::ceremony::TransportKey;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use tokens::{create, generate_aes_key, write_untrusted_public_key, Module, TestToken};

const KEY: &str = "5ec1e7c0ffee5ec1e7c0ffee5ec1e7c0ffee5ec1e7c0ffee5ec1e7c0ffee5ec1";
/// Exit codes (coffer --help).
const CORRUPT: i32 = 11;
const UNSUPPORTED: i32 = 14;
const MALFORMED: i32 = 15;
const IO: i32 = 22;

fn ok(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Asserts the exit code and returns what the command said (the JSON error or stderr).
fn fails_with(out: &Output, code: i32, what: &str) -> String {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "{what}: {said}");
    said
}

struct Server {
    child: Child,
    url: String,
    token_file: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_command(token: &TestToken, data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    token
        .apply(&mut command)
        .args(["vault", "serve", "--listen", "127.0.0.1:0"])
        .args([
            "--ksf",
            "argon2id:m=256,t=1,p=1",
            "--hsm",
            &token.uri,
            "--data",
        ])
        .arg(data)
        .env_remove("COFFER_VAULT_FAULT");
    command
}

fn serve(token: &TestToken, data: &Path) -> Server {
    let mut child = serve_command(token, data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    Server {
        child,
        url: first["listening"].as_str().unwrap().to_owned(),
        token_file: first["token_file"].as_str().unwrap().to_owned(),
    }
}

fn vault(server: &Server, command: &str, user: &str, password: &Path, extra: &[&str]) -> Output {
    let mut command_line = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command_line
        .env("COFFER_ALLOW_WEAK_KSF", "1")
        .args([
            "--json",
            "vault",
            command,
            "--vault",
            &server.url,
            "--user",
            user,
        ])
        .args(["--token-file", &server.token_file, "--password-file"])
        .arg(password);
    coffer_testkit::args_with_key_in_env(&mut command_line, extra.iter().copied())
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Flips one hex digit of a field of a wrapped-key file.
fn tampered(wrapped: &Path, field: &str, out: &Path) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(wrapped).unwrap()).unwrap();
    let mut hex = v[field].as_str().unwrap().to_owned();
    let flipped = if hex.ends_with('0') { "1" } else { "0" };
    hex.replace_range(hex.len() - 1.., flipped);
    v[field] = Value::String(hex);
    std::fs::write(out, v.to_string()).unwrap();
}

/// Site A (SoftHSM2, the only module here whose security officer can mark a key trusted)
/// moves its master key to a second SoftHSM2 token and to a kryoptic token; each then serves
/// the records registered on A from a copy of A's store.
#[test]
fn the_master_key_moves_to_a_second_token_which_then_serves_the_first_sites_records() {
    let dir = tempfile::tempdir().unwrap();
    let Some(a) = create(Module::SoftHsm2, &dir.path().join("softhsm"), "site-a") else {
        return;
    };
    ok(
        &a.coffer(&["--json", "hsm", "init", "--exportable", "--hsm", &a.uri]),
        "init on A",
    );
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse lantern 1987\n").unwrap();
    let data_a = dir.path().join("data-a");
    {
        let server = serve(&a, &data_a);
        ok(
            &vault(&server, "register", "alice", &pw, &["--key", KEY]),
            "register on A",
        );
    }

    let destinations = [
        (Module::SoftHsm2, dir.path().join("softhsm"), "site-b"),
        (Module::Kryoptic, dir.path().join("kryoptic"), "site-c"),
    ];
    for (module, token_dir, label) in destinations {
        let Some(b) = create(module, &token_dir, label) else {
            continue;
        };
        let at = |name: &str| dir.path().join(format!("{label}-{name}"));
        let pem = at("transport.pem");
        let made = ok(
            &b.coffer(&[
                "--json",
                "hsm",
                "transport-key",
                "--hsm",
                &b.uri,
                "--out",
                pem.to_str().unwrap(),
            ]),
            "transport-key",
        );
        // A taken --out fails before the token is touched, and the file is left as it was.
        let taken = at("taken.pem");
        std::fs::write(&taken, "mine").unwrap();
        fails_with(
            &b.coffer(&[
                "--json",
                "hsm",
                "transport-key",
                "--hsm",
                &b.uri,
                "--out",
                taken.to_str().unwrap(),
            ]),
            IO,
            "transport-key over an existing file",
        );
        assert_eq!(std::fs::read_to_string(&taken).unwrap(), "mine");
        let wrapped = at("master.wrapped");
        let export = |out: &Path| {
            a.coffer(&[
                "--json",
                "hsm",
                "export-wrapped",
                "--hsm",
                &a.uri,
                "--transport",
                pem.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
        };
        // Before the security officer trusts the transport key, nothing leaves A.
        let err = fails_with(&export(&wrapped), UNSUPPORTED, "export before trust");
        assert!(err.contains("coffer hsm trust"), "{err}");
        assert!(!wrapped.exists());
        // A wrong SO PIN trusts nothing.
        let bad_so = at("bad-so.pin");
        std::fs::write(&bad_so, "00000000\n").unwrap();
        let trust = |so: &Path| {
            a.coffer(&[
                "--json",
                "hsm",
                "trust",
                "--hsm",
                &a.uri,
                "--public-key",
                pem.to_str().unwrap(),
                "--so-pin-file",
                so.to_str().unwrap(),
            ])
        };
        let err = fails_with(&trust(&bad_so), IO, "trust with a wrong SO PIN");
        assert!(err.contains("CKR_PIN_INCORRECT"), "{err}");
        fails_with(
            &export(&wrapped),
            UNSUPPORTED,
            "export after a failed trust",
        );
        assert!(!wrapped.exists());
        let trusted = ok(&trust(&a.so_pin_file), "trust");
        assert_eq!(
            trusted["sha256"], made["sha256"],
            "both officers see one fingerprint"
        );
        assert_eq!(trusted["created"], true);
        let exported = ok(&export(&wrapped), "export");
        // SoftHSM2 2.6 accepts OAEP with SHA-1 only, and says so by refusing SHA-256.
        assert_eq!(exported["mechanism"], "rsa-oaep-sha1");
        // The file holds nothing of the key in the clear (it is sealed on A's token, and the
        // key never was on this host): the recovered key K is not in it either.
        let text = std::fs::read_to_string(&wrapped).unwrap();
        assert!(!text.contains(KEY));

        let import = |file: &Path| {
            b.coffer(&[
                "--json",
                "hsm",
                "import-wrapped",
                "--hsm",
                &b.uri,
                "--in",
                file.to_str().unwrap(),
            ])
        };
        // A damaged wrapped key or check value leaves no key behind.
        let bad_check = at("bad-check.wrapped");
        tampered(&wrapped, "check", &bad_check);
        fails_with(&import(&bad_check), CORRUPT, "tampered check value");
        let bad_wrap = at("bad-wrap.wrapped");
        tampered(&wrapped, "wrapped", &bad_wrap);
        let out = import(&bad_wrap);
        // The last byte of an RSA-OAEP ciphertext flipped: OAEP decoding fails on the token,
        // which says so as CKR_GENERAL_ERROR (SoftHSM2: `corrupt`) or CKR_DEVICE_ERROR
        // (kryoptic: indistinguishable from a failing device, so `io`).
        match module {
            Module::SoftHsm2 => {
                let err = fails_with(&out, CORRUPT, "a tampered wrapped key");
                assert!(err.contains("does not authenticate"), "{err}");
            }
            Module::Kryoptic => {
                let err = fails_with(&out, IO, "a tampered wrapped key");
                assert!(err.contains("CKR_DEVICE_ERROR"), "{err}");
            }
        }
        let short_check = at("short-check.wrapped");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&wrapped).unwrap()).unwrap();
        v["check"] = Value::String("02abcd".into());
        std::fs::write(&short_check, v.to_string()).unwrap();
        fails_with(
            &import(&short_check),
            MALFORMED,
            "a check value of the wrong form",
        );
        let imported = ok(&import(&wrapped), "import");
        assert_eq!(imported["verified"], true);
        fails_with(
            &import(&wrapped),
            UNSUPPORTED,
            "a second import over the key",
        );

        // The imported key is as sensitive as the original and will not leave B.
        let check = ok(
            &b.coffer(&["--json", "hsm", "check", "--hsm", &b.uri]),
            "check B",
        );
        let policy = check["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "hsm.master.policy")
            .unwrap();
        assert_eq!(policy["verdict"], "pass", "{policy}");
        assert!(policy["detail"]
            .as_str()
            .unwrap()
            .contains("never leaves the token"));

        // Site B serves A's records from a copy of A's store.
        let data_b = at("data");
        copy_dir(&data_a, &data_b);
        let server = serve(&b, &data_b);
        let out = ok(
            &vault(&server, "recover", "alice", &pw, &[]),
            "recover on B",
        );
        assert_eq!(out["key"], KEY, "{module:?}");
    }

    // The same store on a token with another master key is useless: the server will not start.
    let Some(other) = create(Module::SoftHsm2, &dir.path().join("softhsm"), "elsewhere") else {
        return;
    };
    ok(
        &other.coffer(&["--json", "hsm", "init", "--hsm", &other.uri]),
        "init elsewhere",
    );
    let stolen = dir.path().join("stolen");
    copy_dir(&data_a, &stolen);
    let out = serve_command(&other, &stolen).output().unwrap();
    let err = fails_with(&out, CORRUPT, "a copied store with another key");
    assert!(err.contains("authenticate"), "{err}");
}

/// Neither module wraps the master key under a key nobody trusted, and neither wraps a
/// single-site key at all.
#[test]
fn no_module_wraps_the_master_key_under_an_untrusted_key() {
    for module in [Module::SoftHsm2, Module::Kryoptic] {
        let dir = tempfile::tempdir().unwrap();
        let Some(token) = create(module, dir.path(), "vault") else {
            continue;
        };
        ok(
            &token.coffer(&["--json", "hsm", "init", "--exportable", "--hsm", &token.uri]),
            "init --exportable",
        );
        // The user (not the security officer) stores a public key with the id export looks for.
        let pem = dir.path().join("attacker.pem");
        openssl_rsa_public_key(dir.path(), &pem);
        let transport = TransportKey::from_pem(&std::fs::read_to_string(&pem).unwrap()).unwrap();
        write_untrusted_public_key(&token, &pem, &hex::encode(transport.id()));
        let out_file = dir.path().join("stolen.wrapped");
        let out = token.coffer(&[
            "--json",
            "hsm",
            "export-wrapped",
            "--hsm",
            &token.uri,
            "--transport",
            pem.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
        ]);
        let err = fails_with(&out, UNSUPPORTED, &format!("{module:?}: untrusted wrap"));
        let expected = match module {
            Module::SoftHsm2 => "CKR_KEY_NOT_WRAPPABLE",
            Module::Kryoptic => "CKR_WRAPPING_KEY_HANDLE_INVALID",
        };
        assert!(err.contains(expected), "{module:?}: {err}");
        assert!(!out_file.exists());

        let trust = |pem: &Path| {
            token.coffer(&[
                "--json",
                "hsm",
                "trust",
                "--hsm",
                &token.uri,
                "--public-key",
                pem.to_str().unwrap(),
                "--so-pin-file",
                token.so_pin_file.to_str().unwrap(),
            ])
        };
        // The security officer will not bless the user's key in place.
        let err = fails_with(&trust(&pem), UNSUPPORTED, "trust over an untrusted key");
        assert!(err.contains("not trusted"), "{err}");

        let other_pem = dir.path().join("transport.pem");
        openssl_rsa_public_key(dir.path(), &other_pem);
        match module {
            Module::SoftHsm2 => {
                assert_eq!(ok(&trust(&other_pem), "trust")["created"], true);
                // A single-site key does not leave even under a trusted key.
                let single = token.uri_with_object("single-site");
                ok(
                    &token.coffer(&["--json", "hsm", "init", "--hsm", &single]),
                    "init single",
                );
                let out = token.coffer(&[
                    "--json",
                    "hsm",
                    "export-wrapped",
                    "--hsm",
                    &single,
                    "--transport",
                    other_pem.to_str().unwrap(),
                    "--out",
                    out_file.to_str().unwrap(),
                ]);
                let err = fails_with(&out, UNSUPPORTED, "single-site export");
                assert!(err.contains("CKR_KEY_UNEXTRACTABLE"), "{err}");
                assert!(!out_file.exists());
            }
            Module::Kryoptic => {
                // kryoptic 1.5.4 never lets CKA_TRUSTED be set, so nothing can be exported
                // from it; it can only be a ceremony's destination.
                let err = fails_with(&trust(&other_pem), UNSUPPORTED, "kryoptic trust");
                assert!(err.contains("cannot be the source"), "{err}");
            }
        }
    }
}

/// Writes a fresh RSA-3072 public key (PEM) made by OpenSSL on the host.
fn openssl_rsa_public_key(dir: &Path, pem: &Path) {
    let key = dir.join(format!(
        "{}.key",
        pem.file_stem().unwrap().to_string_lossy()
    ));
    let gen = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:3072",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(gen.status.success());
    let pubout = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(pem)
        .output()
        .unwrap();
    assert!(pubout.status.success());
}

fn verdicts(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `coffer hsm check` on both modules: what each offers and where each falls short, with
/// SoftHSM2's crash on a NULL AAD pointer contained in its child process.
#[test]
fn hsm_check_reports_each_module_exactly() {
    for module in [Module::SoftHsm2, Module::Kryoptic] {
        let dir = tempfile::tempdir().unwrap();
        let Some(token) = create(module, dir.path(), "checked") else {
            continue;
        };
        ok(
            &token.coffer(&["--json", "hsm", "init", "--hsm", &token.uri]),
            "init",
        );
        let report = ok(
            &token.coffer(&["--json", "hsm", "check", "--hsm", &token.uri]),
            "check",
        );
        assert_eq!(report["conforms"], true, "{module:?}: {report}");
        let failing: Vec<String> = verdicts(&report)
            .into_iter()
            .filter(|(_, v)| v != "pass")
            .map(|(id, v)| format!("{id}={v}"))
            .collect();
        let expected: &[&str] = match module {
            Module::SoftHsm2 => &[
                "hsm.mechanisms.hkdf=fail",
                "hsm.gcm.empty_iv_rejected=fail",
                "hsm.gcm.null_aad_pointer_rejected=fail",
                "hsm.wrap.rfc5649_known_answer=fail",
            ],
            Module::Kryoptic => &["hsm.gcm.null_aad_pointer_rejected=fail"],
        };
        assert_eq!(failing, expected, "{module:?}: {report:#}");
        let detail = |id: &str| -> String {
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == id)
                .map(|c| c["detail"].as_str().unwrap().to_owned())
                .unwrap()
        };
        match module {
            Module::SoftHsm2 => {
                assert!(detail("hsm.gcm.null_aad_pointer_rejected").contains("SIGSEGV"));
                assert!(detail("hsm.mechanisms.aes_key_wrap_pad").contains("0x210A"));
                // SoftHSM2 matches RFC 5649 for the 20-byte key and not for the 7-byte one.
                assert!(detail("hsm.wrap.rfc5649_known_answer").contains("case 2 (7-byte key)"));
            }
            Module::Kryoptic => {
                assert!(detail("hsm.mechanisms.aes_key_wrap_pad").contains("0x210B"));
                assert!(detail("hsm.wrap.rfc5649_known_answer").contains("matches the RFC"));
            }
        }
        let grade = |id: &str| -> String {
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == id)
                .map(|c| c["grade"].as_str().unwrap_or("none").to_owned())
                .unwrap()
        };
        let (untrusted, gcm_grade) = match module {
            Module::SoftHsm2 => ("CKR_KEY_NOT_WRAPPABLE", "other_rejection"),
            Module::Kryoptic => ("CKR_WRAPPING_KEY_HANDLE_INVALID", "exact"),
        };
        assert_eq!(grade("hsm.wrap.untrusted_refused"), "exact");
        assert!(detail("hsm.wrap.untrusted_refused").contains(untrusted));
        assert_eq!(grade("hsm.wrap.unextractable_refused"), "exact");
        // SoftHSM2 answers a failed GCM tag with CKR_GENERAL_ERROR, kryoptic as PKCS#11 says.
        for id in ["hsm.gcm.bad_tag_rejected", "hsm.gcm.wrong_aad_rejected"] {
            assert_eq!(grade(id), gcm_grade, "{module:?} {id}");
        }
        let user_trust = match module {
            Module::SoftHsm2 => "CKR_ATTRIBUTE_READ_ONLY",
            Module::Kryoptic => "CKR_ATTRIBUTE_TYPE_INVALID",
        };
        assert!(detail("hsm.wrap.user_cannot_trust").contains(user_trust));
        assert!(detail("hsm.master.policy").contains("CKA_ALWAYS_SENSITIVE true"));
        assert_eq!(grade("hsm.key.value_refused"), "exact");

        // The text form, naming the token by --module and --token (PIN from the environment).
        let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
        token
            .apply(&mut command)
            .args(["hsm", "check", "--module"])
            .arg(&token.module_path)
            .args(["--token", &token.label])
            .env("COFFER_PKCS11_PIN", tokens::USER_PIN);
        let text = command.output().unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("every MUST check holds"), "{text}");
        assert!(text.contains("pass  MUST    hsm.master.policy"), "{text}");

        // A master key that is extractable and not sensitive: check exits 1 on it, and the
        // vault refuses to serve with it.
        generate_aes_key(&token, "weak", false);
        let weak = token.uri_with_object("weak");
        let out = token.coffer(&["--json", "hsm", "check", "--hsm", &weak]);
        assert_eq!(out.status.code(), Some(1), "{module:?}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let policy = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "hsm.master.policy")
            .unwrap();
        assert_eq!(policy["verdict"], "fail", "{policy}");
        let mut serve = Command::new(env!("CARGO_BIN_EXE_coffer"));
        token
            .apply(&mut serve)
            .args([
                "vault",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--hsm",
                &weak,
                "--data",
            ])
            .arg(dir.path().join("data"));
        let err = fails_with(
            &serve.output().unwrap(),
            UNSUPPORTED,
            "serve with a weak key",
        );
        assert!(err.contains("not CKA_SENSITIVE"), "{err}");
    }
}

#[test]
fn hsm_check_fails_cleanly_on_a_module_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "1\n").unwrap();
    let not_a_module = dir.path().join("libnothing.so");
    std::fs::write(&not_a_module, b"\x7fELF garbage").unwrap();
    let uri = format!(
        "pkcs11:token=x?module-path={}&pin-source=file:{}",
        not_a_module.display(),
        pin.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["--json", "hsm", "check", "--hsm", &uri])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["conforms"], false);
    for check in report["checks"].as_array().unwrap() {
        assert_eq!(check["verdict"], "fail", "{check}");
        assert!(
            check["detail"]
                .as_str()
                .unwrap()
                .contains("loading the PKCS#11 module"),
            "{check}"
        );
    }
}
