//! The `hsm` suite against the two real modules, with their committed expected-failures
//! files; and what the runner does with a stale entry, a missing reason and no module.

use coffer_testkit::tokens::{self, Module, TestToken};
use std::path::Path;
use std::process::Command;

fn runner(token: &TestToken, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer-conformance"));
    token.apply(&mut command).args(args).output().unwrap()
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
    for (module, expected) in [
        (Module::SoftHsm2, "softhsm2.yaml"),
        (Module::Kryoptic, "kryoptic.yaml"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let Some(token) = tokens::create(module, dir.path(), "conformance") else {
            continue;
        };
        let uri = token.uri.clone();
        let env = &token;
        // Without a master key, hsm.master.policy is not run: a skipped MUST, so the run
        // is not as expected (spec/conformance.md §3).
        let out = runner(
            env,
            &["run", "--hsm", &uri, "--filter", "hsm.master.policy"],
        );
        let console = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{module:?}: {console}");
        assert!(
            console.contains("Skipped hsm.master.policy [Must]"),
            "{console}"
        );
        // The master key, as `coffer hsm init` makes it.
        token.apply_to_this_process();
        coffer::hsm::Pkcs11Hsm::open(&token.config())
            .and_then(|hsm| hsm.init_key(coffer::hsm::Export::Never))
            .unwrap();
        let json = dir.path().join("report.json");
        let junit = dir.path().join("report.xml");
        let out = runner(
            env,
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
        assert_eq!(out.status.code(), Some(0), "{module:?}: {console}");
        assert!(console.contains("every result is as expected"), "{console}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let cases = report["cases"].as_array().unwrap();
        assert_eq!(cases.len(), coffer::hsm::check::CHECKS.len());
        let expected_failures = cases
            .iter()
            .filter(|c| c["status"] == "expected_failure")
            .count();
        let wanted = if module == Module::SoftHsm2 { 3 } else { 1 };
        assert_eq!(expected_failures, wanted, "{module:?}");
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(xml.starts_with("<?xml"));
        assert_eq!(xml.matches("<testcase ").count(), cases.len());

        // Without the file the same run fails, naming the cases.
        let out = runner(env, &["run", "--hsm", &uri]);
        assert_eq!(out.status.code(), Some(1), "{module:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("hsm.gcm.null_aad_pointer_rejected"));

        // A stale entry (matching no case) and an entry for a case that passes both fail.
        let stale = dir.path().join("stale.yaml");
        std::fs::write(
            &stale,
            "hsm.no.such_case: stale on purpose\nhsm.gcm.round_trip: listed though it passes\n",
        )
        .unwrap();
        let out = runner(
            env,
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
