//! `coffer-conformance bench --quick` (what CI runs so the bench cannot rot): every operation
//! the reference declares is timed and its output checked; a tool whose output is wrong is
//! reported as such, not timed as a success; the chart and page are written.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn bench(extra: &[&str]) -> (Option<i32>, Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_coffer-conformance"))
        .args(["bench", "--quick", "--workdir"])
        .arg(dir.path().join("work"))
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(dir.path().join("bench.svg"))
        .arg("--html")
        .arg(dir.path().join("bench.html"))
        .args(extra)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report, dir)
}

#[test]
fn the_quick_bench_times_and_checks_every_reference_operation() {
    let double = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/doubles/broken_client.py");
    let broken = format!(
        "broken=python3 {} bad-output {}",
        double.display(),
        env!("CARGO_BIN_EXE_coffer-conformance")
    );
    let (code, report, dir) = bench(&["--client", &broken]);
    assert_eq!(code, Some(0), "{report:#}");
    let measurements = report["measurements"].as_array().unwrap();
    let of =
        |tool: &str| -> Vec<&Value> { measurements.iter().filter(|m| m["tool"] == tool).collect() };
    // Two workloads (chat database, media) x crypt15 and Coffer x decrypt and encrypt.
    assert_eq!(of("coffer").len(), 8);
    for m in of("coffer") {
        assert_eq!(m["outcome"], "ok", "{m}");
        assert!(m["mib_per_s"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{m}");
        assert!(m["cpu_seconds"].as_f64().unwrap() > 0.0, "{m}");
    }
    // The double forwards to the reference, then damages what it decrypted.
    for m in of("broken") {
        let expected = if m["op"] == "decrypt" {
            "wrong output"
        } else {
            "ok"
        };
        assert_eq!(m["outcome"], expected, "{m}");
    }
    let svg = std::fs::read_to_string(dir.path().join("bench.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.matches("<rect").count() >= 16,
        "{svg}"
    );
    let page = std::fs::read_to_string(dir.path().join("bench.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("sqlite-1MiB"));
    // Workloads are kept and reused: the second run makes nothing.
    let plain: Vec<_> = std::fs::read_dir(dir.path().join("work/workloads"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "plain"))
        .collect();
    assert_eq!(plain.len(), 2);
}

/// `--peers`: wa-crypt-tools and whatsapp-chat-exporter (installed by scripts/test.sh through
/// conformance/adapters/setup.sh; opt out with COFFER_SKIP_INTEROP=1) through their adapters.
#[test]
fn the_quick_bench_times_the_peers() {
    if coffer_testkit::opt_out("COFFER_SKIP_INTEROP", "peers in the bench") {
        return;
    }
    let (code, report, _dir) = bench(&["--peers"]);
    assert_eq!(code, Some(0), "{report:#}");
    let find = |tool: &str, workload: &str, op: &str| -> Value {
        report["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["tool"] == tool && m["workload"] == workload && m["op"] == op)
            .cloned()
            .unwrap_or_else(|| panic!("no {tool} {workload} {op}: {report:#}"))
    };
    for tool in ["wa-crypt-tools", "whatsapp-chat-exporter"] {
        let m = find(tool, "sqlite-1MiB", "decrypt");
        assert_eq!(m["outcome"], "ok", "{m}");
        assert!(m["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{m}");
    }
    assert_eq!(
        find("wa-crypt-tools", "sqlite-1MiB", "encrypt")["outcome"],
        "ok"
    );
    // whatsapp-chat-exporter takes only SQLite payloads.
    assert_eq!(
        find("whatsapp-chat-exporter", "media-1MiB", "decrypt")["outcome"],
        "refused as unsupported"
    );
}
