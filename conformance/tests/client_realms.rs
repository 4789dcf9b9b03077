//! The client-realms suite bites: the reference client passes every case against the
//! runner's played realms; a client that names no realm, and one that sends phase 2 after a
//! failed password check, each fail exactly the cases meant to catch them.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_coffer-conformance")
}

fn double() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/doubles/broken_client.py")
        .display()
        .to_string()
}

/// `coffer-conformance run --client CLIENT --filter 'client.realms.*' --json`: the exit
/// code and the report.
fn run(client: &str) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new(exe())
        .args(["run", "--client", client, "--filter", "client.realms.*"])
        .args(["--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

fn ids_with(report: &Value, status: &str) -> BTreeSet<String> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| format!("client.realms.{id}")).collect()
}

#[test]
fn the_reference_client_passes_every_client_realms_case() {
    let (code, report) = run("reference");
    assert_eq!(code, Some(0), "{report:#}");
    let passed = ids_with(&report, "pass");
    assert_eq!(passed.len(), 22, "{report:#}");
    assert!(passed.iter().all(|id| id.starts_with("client.realms.")));
}

#[test]
fn a_client_that_names_no_realm_fails_exactly_the_naming_cases() {
    let (code, report) = run(&format!("python3 {} names-nobody {}", double(), exe()));
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        ids_with(&report, "fail"),
        set(&[
            "recover.one_down",
            "recover.one_hangs",
            "recover.wrong_evaluation",
            "recover.wrong_proof",
            "recover.identity_evaluation",
            "recover.stolen_index",
            "recover.tampered_release",
            "recover.replayed_release",
            "recover.wrong_share",
            "recover.below_threshold",
            "recover.locked_at_unlock",
            "recover.too_few_releases",
            "register.wrong_realm_id",
            "register.one_refuses",
            "register.below_threshold",
        ]),
        "{report:#}"
    );
}

#[test]
fn a_client_that_unlocks_after_a_wrong_password_fails_exactly_those_cases() {
    let (code, report) = run(&format!("python3 {} unlock-anyway {}", double(), exe()));
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        ids_with(&report, "fail"),
        set(&["recover.wrong_password", "recover.other_users_record"]),
        "{report:#}"
    );
}
