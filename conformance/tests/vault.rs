//! The vault suites: the reference vault passes every vault-server case over real HTTPS
//! on loopback (and fails them all when its CA is not trusted); vaults over a broken store
//! (guesses counted only at failed KE3s, never destroyed at one, reset whatever the
//! version) fail exactly the cases meant to catch each; the reference client passes every
//! client-vault case; a client that sends KE3 after a bad KE2 fails exactly the cases that
//! forbid it.

use coffer::store::{
    AuditEvent, GroupCommitObserver, GuessOutcome, Record, RecordState, SqliteStore, Store,
    StoreError,
};
use coffer_conformance::local_vault::{sqlite_store, LocalVault};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_coffer-conformance")
}

/// Runs `coffer-conformance run ARGS --json` and returns the exit code and the report.
fn run(args: &[&str]) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new(exe())
        .arg("run")
        .args(args)
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
    ids.iter().map(|s| s.to_string()).collect()
}

/// Runs the vault-server suite against `vault`.
fn against(vault: &LocalVault, dir: &Path) -> (Option<i32>, Value) {
    let token = dir.join("token");
    std::fs::write(&token, &vault.token).unwrap();
    let user_key = dir.join("user.key");
    std::fs::write(&user_key, &vault.user_key[..]).unwrap();
    let other = dir.join("other.token");
    std::fs::write(&other, &vault.other_token).unwrap();
    // These vaults serve stores the test holds, which a restart could not reopen; the default
    // run's own vault is restarted (tests/client_format.rs runs it).
    let expected = dir.join("expected.yaml");
    std::fs::write(
        &expected,
        "vault.durability.restart: served inside this test, it cannot be restarted\n",
    )
    .unwrap();
    assert!(vault.url.starts_with("https://"), "{}", vault.url);
    run(&[
        "--vault",
        &vault.url,
        "--vault-token-file",
        token.to_str().unwrap(),
        "--vault-ca",
        vault.ca.to_str().unwrap(),
        "--vault-user-key",
        user_key.to_str().unwrap(),
        "--vault-user-kid",
        coffer_conformance::local_vault::LOCAL_KID,
        "--vault-other-tenant-token-file",
        other.to_str().unwrap(),
        "--vault-session-lifetime",
        &coffer_conformance::local_vault::LOCAL_SESSION_LIFETIME
            .as_secs()
            .to_string(),
        "--vault-tenant-rate",
        &coffer_conformance::local_vault::LOCAL_TENANT_RATE.to_string(),
        "--expected-failures",
        expected.to_str().unwrap(),
    ])
}

/// Without the vault's CA the runner cannot reach it: every case fails (none passes on a
/// connection it could not make).
#[test]
fn a_vault_whose_certificate_is_not_trusted_fails_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::start(sqlite_store(dir.path()).unwrap(), dir.path()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, &vault.token).unwrap();
    let (code, report) = run(&[
        "--vault",
        &vault.url,
        "--vault-token-file",
        token.to_str().unwrap(),
        "--filter",
        "vault.flow.*",
    ]);
    assert_eq!(code, Some(1), "{report:#}");
    assert!(ids_with(&report, "pass").is_empty(), "{report:#}");
    for case in report["cases"].as_array().unwrap() {
        let said = format!("{} {}", case["actual"], case["detail"]);
        assert!(said.contains("UnknownIssuer"), "{case:#}");
    }
}

#[test]
fn the_reference_vault_passes_every_vault_server_case() {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::start(sqlite_store(dir.path()).unwrap(), dir.path()).unwrap();
    let (code, report) = against(&vault, dir.path());
    assert_eq!(code, Some(0), "{report:#}");
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(
        cases.len(),
        coffer_conformance::suites::vault_server::case_ids().len()
    );
    assert!(cases.iter().all(|c| c["suite"] == "vault-server"));
    assert_eq!(ids_with(&report, "pass").len(), cases.len() - 1);
    assert_eq!(
        ids_with(&report, "expected_failure"),
        set(&["vault.durability.restart"])
    );
}

/// A vault whose clients hold the admin token can delete any record without the password:
/// exactly the case that forbids it fails.
#[test]
fn a_vault_that_deletes_without_the_password_fails_that_case() {
    let dir = tempfile::tempdir().unwrap();
    let vault =
        LocalVault::start_with(sqlite_store(dir.path()).unwrap(), dir.path(), true).unwrap();
    let (code, report) = against(&vault, dir.path());
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        ids_with(&report, "fail"),
        set(&["vault.auth.delete_needs_password"]),
        "{report:#}"
    );
}

/// How a [`BrokenStore`] departs from spec/vault.md §4.2.
#[derive(Clone, Copy, PartialEq)]
enum Mutation {
    /// A KE1 counts no guess; only a failed KE3 does (abandoned recoveries cost nothing).
    CountsOnlyFailedKe3,
    /// A failed KE3 on the last guess leaves the record active (its next KE1 destroys it).
    NeverDestroysAtFailedKe3,
    /// A verified KE3 resets the record whatever version its KE1 saw (a password change in
    /// between goes unnoticed, and the old envelope is released).
    ResetsAnyVersion,
}

/// A deliberately broken store: the reference's SQLite store with one [`Mutation`].
struct BrokenStore {
    inner: SqliteStore,
    mutation: Mutation,
}

impl BrokenStore {
    fn new(dir: &Path, mutation: Mutation) -> Self {
        BrokenStore {
            inner: sqlite_store(dir).unwrap(),
            mutation,
        }
    }
}

impl Store for BrokenStore {
    fn bind(
        &self,
        integrity: std::sync::Arc<coffer::store::integrity::Integrity>,
    ) -> Result<coffer::store::integrity::StoreSummary, StoreError> {
        self.inner.bind(integrity)
    }
    fn server_setup(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.server_setup()
    }
    fn init_server_setup(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.inner.init_server_setup(sealed)
    }
    fn insert(&self, record: &Record) -> Result<(), StoreError> {
        self.inner.insert(record)
    }
    fn latest(&self, tenant: &str, user: &str) -> Result<Option<Record>, StoreError> {
        self.inner.latest(tenant, user)
    }
    fn count_guess(&self, tenant: &str, user: &str) -> Result<GuessOutcome, StoreError> {
        if self.mutation != Mutation::CountsOnlyFailedKe3 {
            return self.inner.count_guess(tenant, user);
        }
        match self.inner.latest(tenant, user)? {
            Some(r) if r.state == RecordState::Active => Ok(GuessOutcome::Counted(r)),
            _ => Ok(GuessOutcome::Absent),
        }
    }
    fn recovered(
        &self,
        tenant: &str,
        user: &str,
        record_id: &coffer::vault::RecordId,
        version: u32,
    ) -> Result<bool, StoreError> {
        if self.mutation == Mutation::ResetsAnyVersion {
            for later in version..version + 3 {
                if self.inner.recovered(tenant, user, record_id, later)? {
                    return Ok(true);
                }
            }
        }
        self.inner.recovered(tenant, user, record_id, version)
    }
    fn failed_at_limit(
        &self,
        tenant: &str,
        user: &str,
        record_id: &coffer::vault::RecordId,
    ) -> Result<bool, StoreError> {
        match self.mutation {
            Mutation::NeverDestroysAtFailedKe3 => Ok(false),
            Mutation::CountsOnlyFailedKe3 => {
                self.inner.count_guess(tenant, user)?;
                self.inner.failed_at_limit(tenant, user, record_id)
            }
            Mutation::ResetsAnyVersion => self.inner.failed_at_limit(tenant, user, record_id),
        }
    }
    fn replace(
        &self,
        record_id: &coffer::vault::RecordId,
        version: u32,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        self.inner.replace(record_id, version, sealed)
    }
    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        self.inner.delete(tenant, user)
    }
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit(after, limit)
    }
    fn calls_waiting_on_network(&self) -> usize {
        self.inner.calls_waiting_on_network()
    }
    fn observe_group_commits(&self, observer: Arc<dyn GroupCommitObserver>) {
        self.inner.observe_group_commits(observer);
    }
}

/// Runs the vault-server suite against the reference vault over a [`BrokenStore`] and
/// returns the ids of the cases that failed (the run must fail).
fn failed_with(mutation: Mutation) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let vault = LocalVault::start(BrokenStore::new(dir.path(), mutation), dir.path()).unwrap();
    let (code, report) = against(&vault, dir.path());
    assert_eq!(code, Some(1), "{report:#}");
    ids_with(&report, "fail")
}

#[test]
fn a_vault_counting_only_failed_ke3s_fails_exactly_the_guess_counting_cases() {
    assert_eq!(
        failed_with(Mutation::CountsOnlyFailedKe3),
        set(&[
            "vault.guess.abandoned_counts",
            "vault.guess.success_resets",
            "vault.limit.exact_then_destroyed",
            "vault.limit.failed_ke3_at_limit_destroys",
            "vault.limit.parallel_bounded",
            "vault.session.expired",
        ]),
    );
}

#[test]
fn a_vault_that_never_destroys_at_a_failed_ke3_fails_exactly_that_case() {
    assert_eq!(
        failed_with(Mutation::NeverDestroysAtFailedKe3),
        set(&["vault.limit.failed_ke3_at_limit_destroys"]),
    );
}

#[test]
fn a_vault_that_resets_whatever_the_version_fails_exactly_the_locked_case() {
    assert_eq!(
        failed_with(Mutation::ResetsAnyVersion),
        set(&["vault.session.ke3_after_password_change_locked"]),
    );
}

fn double() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/doubles/broken_client.py")
        .display()
        .to_string()
}

#[test]
fn the_reference_client_passes_every_client_vault_case() {
    let (code, report) = run(&["--client", "reference", "--filter", "client.vault.*"]);
    assert_eq!(code, Some(0), "{report:#}");
    let passed = ids_with(&report, "pass");
    assert_eq!(passed.len(), 22, "{report:#}");
    assert!(passed.iter().all(|id| id.starts_with("client.vault.")));
}

#[test]
fn a_client_that_sends_ke3_after_a_bad_ke2_fails_exactly_those_cases() {
    let client = format!("python3 {} ke3-anyway {}", double(), exe());
    let (code, report) = run(&["--client", &client, "--filter", "client.vault.*"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        ids_with(&report, "fail"),
        set(&[
            "client.vault.recover.wrong_password",
            "client.vault.recover.wrong_server_key",
            "client.vault.recover.ke2_other_record",
            "client.vault.recover.tampered_ke2",
            "client.vault.recover.replayed_ke2",
            "client.vault.recover.truncated_ke2",
            "client.vault.recover.costly_ksf",
            "client.vault.recover.weak_ksf",
            "client.vault.recover.rate_limited",
            "client.vault.recover.token_refused",
            "client.vault.recover.pinned_key_mismatch",
        ]),
        "{report:#}"
    );
    for case in report["cases"].as_array().unwrap() {
        if case["status"] == "fail" {
            assert!(
                case["actual"]
                    .as_str()
                    .unwrap()
                    .ends_with("after sending KE3"),
                "{case}"
            );
        }
    }
}

/// A client that never pins the vault's key recovers from, and registers with, a vault whose
/// key is not the one it was given: exactly the two pinning cases fail.
#[test]
fn a_client_that_ignores_the_pinned_key_fails_exactly_those_cases() {
    let client = format!("python3 {} no-pin {}", double(), exe());
    let (code, report) = run(&["--client", &client, "--filter", "client.vault.*"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        ids_with(&report, "fail"),
        set(&[
            "client.vault.recover.pinned_key_mismatch",
            "client.vault.register.pinned_key_mismatch",
        ]),
        "{report:#}"
    );
}

#[test]
fn a_client_without_vault_support_fails_the_gate_until_listed() {
    let client = format!("python3 {} crypt15-only {}", double(), exe());
    // Skipped MUST cases do not pass (exit 1) ...
    let (code, report) = run(&["--client", &client, "--filter", "client.vault.*"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(ids_with(&report, "skipped").len(), 22, "{report:#}");
    // ... until an expected-failures entry says why they are not run.
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("expected.yaml");
    std::fs::write(
        &expected,
        "client.vault.*: this client keeps no key in a vault\n",
    )
    .unwrap();
    let (code, report) = run(&[
        "--client",
        &client,
        "--filter",
        "client.vault.*",
        "--expected-failures",
        expected.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        ids_with(&report, "expected_failure").len(),
        22,
        "{report:#}"
    );
}
