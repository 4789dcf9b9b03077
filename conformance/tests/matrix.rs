//! `coffer-conformance matrix`: one row per implementation, one cell per client suite, a
//! suite an implementation does not declare shown apart from one it fails (spec/conformance.md
//! §6.1). Checked with the reference and two deliberately broken adapters.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn the_matrix_tells_passing_failing_and_unsupported_apart() {
    let exe = env!("CARGO_BIN_EXE_coffer-conformance");
    let double = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/doubles/broken_client.py");
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (dir.path().join("m.json"), dir.path().join("m.html"));
    let broken = |mode: &str| format!("{mode}=python3 {} {mode} {exe}", double.display());
    let out = Command::new(exe)
        .args(["matrix", "--client", &broken("crypt15-only")])
        .args(["--client", &broken("ignore-tag")])
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    // A failing cell fails the command.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let matrix: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = matrix["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["coffer", "crypt15-only", "ignore-tag"]);
    let cell = |row: usize, suite: &str| rows[row]["cells"][suite].clone();
    for suite in ["client-format", "client-vault", "client-realms"] {
        let c = cell(0, suite);
        assert!(c["pass"].as_u64().unwrap() > 0, "{suite}: {c}");
        assert_eq!(
            (c["fail"].as_u64(), c["unsupported"].as_u64()),
            (Some(0), Some(0))
        );
    }
    // Declares crypt15 decryption only: the vault and realms suites are unsupported, not
    // failed; client-format is partial.
    for suite in ["client-vault", "client-realms"] {
        let c = cell(1, suite);
        assert_eq!(c["pass"], 0, "{c}");
        assert_eq!(c["fail"], 0, "{c}");
        assert!(c["unsupported"].as_u64().unwrap() > 0, "{c}");
    }
    let partial = cell(1, "client-format");
    assert!(partial["pass"].as_u64().unwrap() > 0 && partial["unsupported"].as_u64().unwrap() > 0);
    assert_eq!(partial["fail"], 0);
    // Accepts what should be refused as corrupt: failures in client-format only.
    assert!(cell(2, "client-format")["fail"].as_u64().unwrap() > 0);
    assert_eq!(cell(2, "client-vault")["fail"], 0);
    let page = std::fs::read_to_string(&html).unwrap();
    for class in [
        "td class=\"pass\"",
        "td class=\"fail\"",
        "td class=\"unsupported\"",
        "td class=\"partial\"",
    ] {
        assert!(page.contains(class), "no {class} in the page");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page needs no network"
    );
    assert!(matrix["runner"]
        .as_str()
        .unwrap()
        .starts_with("coffer-conformance "));
}
