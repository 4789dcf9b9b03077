//! The `hsm` suite against the two real modules, with their committed expected-failures
//! files; and what the runner does with a stale entry, a missing reason and no module.

use std::path::{Path, PathBuf};
use std::process::Command;

const SO_PIN: &str = "12345678";
const USER_PIN: &str = "87654321";

/// A token on `module` under `dir`, and the environment variable naming its configuration.
fn token(module: &str, dir: &Path) -> Option<(String, (&'static str, PathBuf))> {
    let skip = if module == "softhsm2" {
        "COFFER_SKIP_SOFTHSM"
    } else {
        "COFFER_SKIP_KRYOPTIC"
    };
    if std::env::var(skip).as_deref() == Ok("1") {
        eprintln!("SKIPPED: {module} ({skip}=1)");
        return None;
    }
    let pin = dir.join("pin");
    std::fs::write(&pin, format!("{USER_PIN}\n")).unwrap();
    let (path, var, conf) = if module == "softhsm2" {
        let conf = dir.join("softhsm2.conf");
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "conformance", "--so-pin", SO_PIN, "--pin", USER_PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util (apt-get install softhsm2; scripts/test.sh does), or COFFER_SKIP_SOFTHSM=1");
        assert!(out.status.success());
        (
            PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            "SOFTHSM2_CONF",
            conf,
        )
    } else {
        let module = PathBuf::from(std::env::var("COFFER_KRYOPTIC_MODULE").expect(
            "COFFER_KRYOPTIC_MODULE: run scripts/kryoptic.sh (scripts/test.sh does), or COFFER_SKIP_KRYOPTIC=1",
        ));
        let conf = dir.join("kryoptic.conf");
        std::fs::write(
            &conf,
            format!(
                "[[slots]]\nslot = 42\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
                dir.join("t.sql").display()
            ),
        )
        .unwrap();
        for args in [
            vec!["--init-token", "--label", "conformance", "--so-pin", SO_PIN],
            vec![
                "--token-label",
                "conformance",
                "--login",
                "--login-type",
                "so",
                "--so-pin",
                SO_PIN,
                "--init-pin",
                "--pin",
                USER_PIN,
            ],
        ] {
            let out = Command::new("pkcs11-tool")
                .arg("--module")
                .arg(&module)
                .args(&args)
                .env("KRYOPTIC_CONF", &conf)
                .output()
                .expect("pkcs11-tool (apt-get install opensc; scripts/test.sh does)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (module, "KRYOPTIC_CONF", conf)
    };
    Some((
        format!(
            "pkcs11:token=conformance?module-path={}&pin-source=file:{}",
            path.display(),
            pin.display()
        ),
        (var, conf),
    ))
}

fn runner(env: &(&str, PathBuf), args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coffer-conformance"))
        .args(args)
        .env(env.0, &env.1)
        .output()
        .unwrap()
}

fn expected_file(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("expected")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn both_modules_meet_their_expected_failures_and_reports_are_written() {
    for (module, expected) in [("softhsm2", "softhsm2.yaml"), ("kryoptic", "kryoptic.yaml")] {
        let dir = tempfile::tempdir().unwrap();
        let Some((uri, env)) = token(module, dir.path()) else {
            continue;
        };
        let json = dir.path().join("report.json");
        let junit = dir.path().join("report.xml");
        let out = runner(
            &env,
            &[
                "run",
                "--hsm",
                &uri,
                "--expected-failures",
                &expected_file(expected),
                "--json",
                json.to_str().unwrap(),
                "--junit",
                junit.to_str().unwrap(),
            ],
        );
        let console = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{module}: {console}");
        assert!(console.contains("every result is as expected"), "{console}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let cases = report["cases"].as_array().unwrap();
        assert_eq!(cases.len(), coffer::hsm::check::CHECKS.len());
        let expected_failures = cases
            .iter()
            .filter(|c| c["status"] == "expected_failure")
            .count();
        let wanted = if module == "softhsm2" { 3 } else { 1 };
        assert_eq!(expected_failures, wanted, "{module}");
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(xml.starts_with("<?xml"));
        assert_eq!(xml.matches("<testcase ").count(), cases.len());

        // Without the file the same run fails, naming the cases.
        let out = runner(&env, &["run", "--hsm", &uri]);
        assert_eq!(out.status.code(), Some(1), "{module}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("hsm.gcm.null_aad_pointer_rejected"));

        // A stale entry (matching no case) and an entry for a case that passes both fail.
        let stale = dir.path().join("stale.yaml");
        std::fs::write(
            &stale,
            "hsm.no.such_case: stale on purpose\nhsm.gcm.round_trip: listed though it passes\n",
        )
        .unwrap();
        let out = runner(
            &env,
            &[
                "run",
                "--hsm",
                &uri,
                "--expected-failures",
                stale.to_str().unwrap(),
                "--filter",
                "hsm.gcm.round_trip",
            ],
        );
        let console = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{console}");
        assert!(
            console.contains("stale expected-failure entry: hsm.no.such_case"),
            "{console}"
        );
        assert!(
            console.contains("UnexpectedPass hsm.gcm.round_trip"),
            "{console}"
        );
    }
}

#[test]
fn the_harness_refuses_an_entry_without_a_reason_and_lists_cases() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "hsm.gcm.*: ''\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer-conformance"))
        .args(["run", "--expected-failures", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no reason"));
    let out = Command::new(env!("CARGO_BIN_EXE_coffer-conformance"))
        .args(["run", "--list", "--filter", "hsm.wrap.*"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.lines().count() >= 4 && listed.lines().all(|l| l.starts_with("hsm hsm.wrap.")),
        "{listed}"
    );
}
