//! The realm-server suite bites: the reference realm passes every case over real HTTP on
//! loopback, and a realm whose store never counts an evaluation fails exactly the cases
//! meant to catch it.

use coffer::hsm::SoftHsm;
use coffer::http::{realm_router, RateLimits, Tenants};
use coffer::realms::{Realm, RealmConfig, RealmGuess, RealmRecord, RealmStore, SqliteRealmStore};
use coffer::store::StoreError;
use coffer_conformance::local_vault::serve_loopback;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// A store that answers every evaluation without counting it (the bug the suite exists for).
struct NeverCounts(SqliteRealmStore);

impl RealmStore for NeverCounts {
    fn put(&self, record: &RealmRecord) -> Result<(), StoreError> {
        self.0.put(record)
    }
    fn get(&self, tenant: &str, user: &str) -> Result<Option<RealmRecord>, StoreError> {
        self.0.get(tenant, user)
    }
    fn count_guess(&self, tenant: &str, user: &str) -> Result<RealmGuess, StoreError> {
        Ok(match self.0.get(tenant, user)? {
            Some(r) if r.state == coffer::store::RecordState::Active => RealmGuess::Counted(r),
            _ => RealmGuess::Absent,
        })
    }
    fn reset(&self, tenant: &str, user: &str, reg_id: &[u8; 16]) -> Result<bool, StoreError> {
        self.0.reset(tenant, user, reg_id)
    }
    fn destroy_if_spent(
        &self,
        tenant: &str,
        user: &str,
        reg_id: &[u8; 16],
    ) -> Result<bool, StoreError> {
        self.0.destroy_if_spent(tenant, user, reg_id)
    }
    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        self.0.delete(tenant, user)
    }
    fn init_fake_seed(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.0.init_fake_seed(sealed)
    }
}

/// Serves `store` as a realm and runs the realm-server suite against it.
fn run_against<St: RealmStore + 'static>(store: St, dir: &Path) -> (Option<i32>, Value) {
    let hsm = SoftHsm::open_or_create(&dir.join("realm.key")).unwrap();
    let realm = Realm::open(store, hsm, RealmConfig::new("under-test")).unwrap();
    let mut tenants = Tenants::default();
    let token = "t".repeat(40);
    tenants.add(&token, "default");
    let (url, runtime) =
        serve_loopback(realm_router(realm, tenants, RateLimits::default())).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, &token).unwrap();
    let json = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_coffer-conformance"))
        .args(["run", "--realm", &url, "--realm-token-file"])
        .arg(&token_file)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    runtime.shutdown_background();
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

fn failed(report: &Value) -> BTreeSet<String> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "pass")
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_reference_realm_passes_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteRealmStore::open(&dir.path().join("realm.db")).unwrap();
    let (code, report) = run_against(store, dir.path());
    assert_eq!(failed(&report), BTreeSet::new());
    assert_eq!(code, Some(0));
    assert_eq!(
        report["cases"].as_array().unwrap().len(),
        coffer_conformance::suites::realm_server::case_ids().len()
    );
}

#[test]
fn a_realm_that_never_counts_fails_exactly_the_counting_cases() {
    let dir = tempfile::tempdir().unwrap();
    let store = NeverCounts(SqliteRealmStore::open(&dir.path().join("realm.db")).unwrap());
    let (code, report) = run_against(store, dir.path());
    let expected: BTreeSet<String> = [
        "realm.guess.abandoned_evaluations_count",
        "realm.guess.limit_destroys",
        "realm.guess.parallel_bounded",
        // Its status shows no count after an evaluation.
        "realm.status.uncounted",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(failed(&report), expected);
    assert_eq!(code, Some(1));
}
