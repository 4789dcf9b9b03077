//! The shim protocol's JSON Schemas (conformance/schema/shim-runner.schema.json and
//! shim-adapter.schema.json, spec/conformance.md §7) hold every message of a whole run of the
//! client suites against the reference adapter, recorded on the wire; and they are not
//! vacuous: a request missing a field, an unknown class, an extra field are refused.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(name);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Every line the runner and the reference adapter exchanged in a run of the client suites:
/// (who sent it, the message).
fn recorded_run() -> Vec<(String, Value)> {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let double = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/doubles/broken_client.py");
    let exe = env!("CARGO_BIN_EXE_coffer-conformance");
    let out = Command::new(exe)
        .args(["run", "--client"])
        .arg(format!("python3 {} record {exe}", double.display()))
        .env("RECORD_FILE", &record)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            let message = serde_json::from_str(entry["line"].as_str().unwrap()).unwrap();
            (entry["from"].as_str().unwrap().to_owned(), message)
        })
        .collect()
}

#[test]
fn every_message_of_a_run_matches_its_schema() {
    let runner = schema("shim-runner.schema.json");
    let adapter = schema("shim-adapter.schema.json");
    let messages = recorded_run();
    assert!(messages.len() > 250, "only {} messages", messages.len());
    let mut ops = BTreeSet::new();
    for (from, message) in &messages {
        let validator = if from == "runner" { &runner } else { &adapter };
        let errors: Vec<String> = validator
            .iter_errors(message)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{from}: {message}: {errors:?}");
        if let Some(op) = message["op"].as_str() {
            ops.insert(format!(
                "{op} {}",
                message["format"].as_str().unwrap_or("-")
            ));
        }
    }
    let want: BTreeSet<String> = [
        "decrypt crypt15",
        "decrypt coffer",
        "decrypt crypt14",
        "decrypt crypt12",
        "encrypt crypt15",
        "encrypt coffer",
        "vault_recover -",
        "vault_register -",
        "realms_recover -",
        "realms_register -",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(ops, want, "the run did not exercise every request kind");
}

#[test]
fn the_schemas_refuse_what_the_protocol_does_not_allow() {
    let runner = schema("shim-runner.schema.json");
    let adapter = schema("shim-adapter.schema.json");
    let decrypt = json!({"type": "request", "id": "c", "op": "decrypt", "format": "coffer",
        "key": "00".repeat(32), "file": "0a0b"});
    assert!(runner.is_valid(&decrypt));
    let mut no_file = decrypt.clone();
    no_file.as_object_mut().unwrap().remove("file");
    assert!(!runner.is_valid(&no_file), "a request without its file");
    let mut upper = decrypt.clone();
    upper["file"] = json!("0A0B");
    assert!(!runner.is_valid(&upper), "the runner sends lowercase hex");
    let mut odd = decrypt.clone();
    odd["file"] = json!("0a0");
    assert!(!runner.is_valid(&odd), "half a byte");
    let mut extra = decrypt.clone();
    extra["salt"] = json!("00");
    assert!(!runner.is_valid(&extra), "a field another request has");

    let refusal = json!({"type": "response", "id": "c", "ok": false, "error": "corrupt"});
    assert!(adapter.is_valid(&refusal));
    let mut bogus = refusal.clone();
    bogus["error"] = json!("bogus");
    assert!(!adapter.is_valid(&bogus), "a class errors.md does not have");
    let mut both = refusal.clone();
    both["key"] = json!("00".repeat(32));
    assert!(!adapter.is_valid(&both), "a refusal carrying a key");
    let nameless = json!({"type": "hello", "protocol": "coffer-shim/1", "capabilities": {}});
    assert!(!adapter.is_valid(&nameless), "a hello without a name");
    let versioned = json!({"type": "hello", "protocol": "coffer-shim/1", "name": "t",
        "version": "1.0", "capabilities": {"decrypt": ["crypt15"]}});
    assert!(adapter.is_valid(&versioned));
}
