//! The client-format suite through the shim: the reference passes every case; deliberately
//! broken adapters fail exactly the cases meant to catch them; a crash fails one case only.

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

/// Runs the suite with `client` and returns the exit code and the JSON report.
fn run(client: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value) {
    let (code, report, _) = run_md(client, env);
    (code, report)
}

/// [`run`], also returning the Markdown report.
fn run_md(client: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let markdown = dir.path().join("report.md");
    let out = Command::new(exe())
        .args([
            "run",
            "--json",
            json.to_str().unwrap(),
            "--markdown",
            markdown.to_str().unwrap(),
            "--client",
            &client.join(" "),
        ])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let markdown = std::fs::read_to_string(&markdown).unwrap_or_default();
    (out.status.code(), report, markdown)
}

/// The README's conformance results are the runner's own output, and current: the section
/// whose heading contains `heading` holds exactly `markdown`.
fn assert_in_readme(heading: &str, markdown: &str) {
    assert!(
        markdown.contains("| suite |"),
        "no Markdown report: {markdown:?}"
    );
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme
        .split("\n#### ")
        .find(|s| s.lines().next().is_some_and(|h| h.contains(heading)))
        .unwrap_or_else(|| panic!("README.md has no results section for {heading}"));
    let body = section
        .split_once('\n')
        .map(|(_, b)| b.trim())
        .unwrap_or_default();
    let body = body
        .split("<!-- conformance-results:end -->")
        .next()
        .unwrap_or_default()
        .trim();
    // The report's last line is its date, which the README leaves out.
    let undated: Vec<&str> = markdown
        .lines()
        .filter(|l| !l.starts_with(coffer_conformance::report::DATE_LINE))
        .collect();
    assert!(
        markdown.contains(coffer_conformance::report::DATE_LINE),
        "no date"
    );
    assert_eq!(
        body,
        undated.join("\n").trim(),
        "README.md's conformance results for {heading} differ from what the runner reports \
         now; run conformance/results.sh and review the change"
    );
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

/// The decrypt cases whose vector expects `corrupt`.
fn corrupt_cases() -> BTreeSet<String> {
    refusal_cases(Some("corrupt"))
}

/// The decrypt cases whose vector expects the class `only` (or any class).
fn refusal_cases(only: Option<&str>) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for file in ["crypt15.yaml", "format.yaml"] {
        let text = std::fs::read_to_string(coffer_vectors::vectors_dir().join(file)).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        for group in doc["groups"].as_sequence().unwrap() {
            for case in group["cases"].as_sequence().unwrap() {
                let error = case.get("error").and_then(|e| e.as_str());
                if error.is_some()
                    && only.is_none_or(|c| error == Some(c))
                    && group["type"] != "header"
                {
                    ids.insert(format!("client.{}.decrypt", case["id"].as_str().unwrap()));
                }
            }
        }
    }
    ids
}

#[test]
fn the_reference_passes_every_case() {
    let (code, report) = run(&["reference"], &[]);
    assert_eq!(code, Some(0), "{report:#}");
    let cases = report["cases"].as_array().unwrap();
    assert!(cases.len() >= 80, "{} cases", cases.len());
    assert_eq!(ids_with(&report, "pass").len(), cases.len());
}

/// `--jobs 3` runs three adapters at once and reports the same cases in the same order.
#[test]
fn jobs_change_nothing_but_the_time() {
    let client = format!("python3 {} ignore-tag {}", double(), exe());
    let reports: Vec<Value> = ["1", "3"]
        .iter()
        .map(|jobs| {
            let dir = tempfile::tempdir().unwrap();
            let json = dir.path().join("r.json");
            let out = Command::new(exe())
                .args([
                    "run",
                    "--client",
                    &client,
                    "--filter",
                    "client.*.decrypt",
                    "--jobs",
                    jobs,
                ])
                .arg("--json")
                .arg(&json)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1));
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
        })
        .collect();
    assert!(reports[0]["cases"].as_array().unwrap().len() > 40);
    assert_eq!(reports[0]["cases"], reports[1]["cases"]);
}

#[test]
fn a_client_that_ignores_tags_fails_exactly_the_corrupt_cases() {
    let (code, report) = run(&["python3", &double(), "ignore-tag", exe()], &[]);
    assert_eq!(code, Some(1));
    let failed = ids_with(&report, "fail");
    let wanted = corrupt_cases();
    assert!(!wanted.is_empty());
    assert_eq!(failed, wanted);
}

#[test]
fn a_decryptor_that_writes_before_authenticating_fails_every_refusal() {
    let (code, report) = run(&["python3", &double(), "output-before-auth", exe()], &[]);
    assert_eq!(code, Some(1));
    let wanted = refusal_cases(None);
    assert!(wanted.len() > corrupt_cases().len());
    assert_eq!(ids_with(&report, "fail"), wanted);
    for case in report["cases"].as_array().unwrap() {
        if case["status"] == "fail" {
            assert!(
                case["actual"]
                    .as_str()
                    .unwrap()
                    .contains("returned 16 bytes of output"),
                "{case}"
            );
        }
    }
}

/// Runs the double in `mode`, which misbehaves once on one case: exactly that case fails,
/// with `detail` in its report, and the run goes on (the adapter is started again).
fn one_case_fails_and_the_run_goes_on(mode: &str, detail: &str) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("done");
    let victim = "client.crypt15.file.short_text.decrypt";
    let (code, report) = run(
        &["python3", &double(), mode, exe(), victim],
        &[("CRASH_MARKER", marker.to_str().unwrap())],
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        ids_with(&report, "fail"),
        BTreeSet::from([victim.to_owned()])
    );
    let case = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == victim)
        .unwrap();
    assert!(case["detail"].as_str().unwrap().contains(detail), "{case}");
    assert!(marker.exists());
}

#[test]
fn a_line_past_the_limit_fails_one_case_and_the_run_goes_on() {
    one_case_fails_and_the_run_goes_on("huge-line", "a line longer than 67108864 bytes");
}

#[test]
fn a_crashing_adapter_fails_one_case_and_the_run_goes_on() {
    one_case_fails_and_the_run_goes_on("crash-once", "crashed");
}

/// An adapter that declares crypt15 decryption only: its other cases are skipped, not
/// passed, and since they are MUST cases the run is not as expected (exit 1) until an
/// expected-failures file says why each is not run; then it is (exit 0).
#[test]
fn undeclared_formats_are_skipped_not_passed() {
    let (code, report) = run(&["python3", &double(), "crypt15-only", exe()], &[]);
    assert_eq!(
        code,
        Some(1),
        "skipped MUST cases fail the gate: {report:#}"
    );
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("expected.yaml");
    std::fs::write(
        &expected,
        "client.format.*: this client reads crypt15 only\n\
         client.vault.*: no vault client\n\
         client.realms.*: no realms client\n\
         client.crypt15.legacy.*: it reads crypt15 only, not crypt14 or crypt12\n\
         client.*.encrypt: it does not write backups\n",
    )
    .unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new(exe())
        .args(["run", "--client"])
        .arg(format!("python3 {} crypt15-only {}", double(), exe()))
        .arg("--expected-failures")
        .arg(&expected)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{listed:#}");
    let excused = ids_with(&listed, "expected_failure");
    assert_eq!(excused, ids_with(&report, "skipped"));
    for case in listed["cases"].as_array().unwrap() {
        if case["status"] == "expected_failure" {
            assert!(
                case["detail"].as_str().unwrap().contains("(not run: "),
                "{case}"
            );
        }
    }
    let skipped = ids_with(&report, "skipped");
    assert!(skipped.iter().all(|id| id.starts_with("client.format.")
        || id.starts_with("client.vault.")
        || id.starts_with("client.realms.")
        || id.starts_with("client.crypt15.legacy.")
        || id.ends_with(".encrypt")));
    assert!(skipped.iter().any(|id| id.starts_with("client.format.")));
    assert!(ids_with(&report, "pass")
        .iter()
        .all(|id| id.starts_with("client.crypt15.") && id.ends_with(".decrypt")));
}

/// `--filter` without `*` is a substring; one that matches no case is a harness error
/// (exit 2), never a green run that tested nothing.
#[test]
fn a_filter_that_matches_nothing_fails_and_substrings_match() {
    for filter in [
        "nomatch*",
        "no-such-case",
        "client.crypt15.file.short_text.decrypt.x",
    ] {
        let out = Command::new(exe())
            .args(["run", "--client", "reference", "--filter", filter])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{filter}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("matches no case"),
            "{filter}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(exe())
        .args(["run", "--list", "--filter", "short_text"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.lines().count() >= 2, "{listed}");
    assert!(listed.lines().all(|l| l.contains("short_text")), "{listed}");
}

/// wa-crypt-tools 0.1.0 from PyPI (scripts/test.sh installs it; COFFER_WA_CRYPT_TOOLS names
/// its bin directory; opt out with COFFER_SKIP_INTEROP=1) through its adapter: it decrypts
/// every valid crypt15 file, and accepts the damaged ones (its wadecrypt exits 0 and writes
/// output for a wrong key or a flipped tag), which the suite reports as failures; likewise
/// every valid crypt14 and crypt12 file given with its `key` file, and every damaged one.
#[test]
fn wa_crypt_tools_through_its_adapter() {
    if coffer_testkit::opt_out("COFFER_SKIP_INTEROP", "wa-crypt-tools") {
        return;
    }
    let bin = std::env::var("COFFER_WA_CRYPT_TOOLS").expect(
        "COFFER_WA_CRYPT_TOOLS is not set: scripts/test.sh installs wa-crypt-tools in .venv and sets it; \
         or opt out with COFFER_SKIP_INTEROP=1",
    );
    let wadecrypt = Path::new(&bin).join("wadecrypt");
    let adapter = Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/wa_crypt_tools.py");
    let (code, report, markdown) = run_md(
        &[
            "python3",
            adapter.to_str().unwrap(),
            wadecrypt.to_str().unwrap(),
        ],
        &[],
    );
    assert_in_readme("wa-crypt-tools 0.1.0", &markdown);
    assert_eq!(code, Some(1));
    let passed = ids_with(&report, "pass");
    let legacy = |ids: &[&str]| -> BTreeSet<String> {
        ids.iter()
            .map(|id| format!("client.crypt15.legacy.{id}.decrypt"))
            .collect()
    };
    let valid: BTreeSet<String> = ids_with(&report, "pass")
        .into_iter()
        .filter(|id| id.starts_with("client.crypt15.file."))
        .collect();
    assert_eq!(valid.len(), 7, "every valid crypt15 file decrypts");
    let valid_legacy = legacy(&[
        "crypt14_key_file",
        "crypt14_stored_no_md5",
        "crypt12_key_file",
        "crypt12_footer_edited",
    ]);
    assert_eq!(
        passed,
        valid.union(&valid_legacy).cloned().collect(),
        "only valid files pass"
    );
    let failed = ids_with(&report, "fail");
    assert!(failed.contains("client.crypt15.invalid.wrong_key.decrypt"));
    assert!(failed.contains("client.crypt15.invalid.tag_flipped.decrypt"));
    let damaged_legacy = legacy(&[
        "crypt14_other_salts",
        "crypt12_other_salts",
        "crypt12_cipher_version",
        "crypt12_cut",
        "crypt12_appended",
        "crypt14_tag_flipped",
    ]);
    assert!(
        failed.is_superset(&damaged_legacy),
        "it accepts every damaged crypt14 and crypt12 file: {failed:?}"
    );
    let key_files: BTreeSet<String> = [
        "legacy_key_file",
        "legacy_key_file_cut",
        "legacy_key_file_header_cut",
    ]
    .iter()
    .map(|id| format!("client.crypt15.invalid.{id}.decrypt"))
    .collect();
    let bare_aes_keys = legacy(&[
        "crypt14_aes_key",
        "crypt12_aes_key",
        "crypt12_wrong_aes_key",
    ]);
    assert_eq!(
        ids_with(&report, "unimplemented"),
        key_files.union(&bare_aes_keys).cloned().collect(),
        "its adapter takes no key file for crypt15 and no bare AES key for crypt14 and crypt12"
    );
}

/// whatsapp-chat-exporter 0.13.1 from PyPI (installed by conformance/adapters/setup.sh from
/// scripts/test.sh, which sets COFFER_WHATSAPP_CHAT_EXPORTER to its venv's python; opt out
/// with COFFER_SKIP_INTEROP=1) through its adapter. Its results, asserted exactly: it ignores
/// the MD5 and reports every GCM failure as a wrong key, assumes a 16-byte MD5 trailer and a
/// SQLite payload, so it refuses valid files that are not SQLite or carry no MD5.
#[test]
fn whatsapp_chat_exporter_through_its_adapter() {
    if coffer_testkit::opt_out("COFFER_SKIP_INTEROP", "whatsapp-chat-exporter") {
        return;
    }
    let python = std::env::var("COFFER_WHATSAPP_CHAT_EXPORTER").expect(
        "COFFER_WHATSAPP_CHAT_EXPORTER is not set: scripts/test.sh installs whatsapp-chat-exporter \
         with conformance/adapters/setup.sh and sets it; or opt out with COFFER_SKIP_INTEROP=1",
    );
    let adapter = Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/whatsapp_chat_exporter.py");
    let (code, report, markdown) = run_md(&[&python, adapter.to_str().unwrap()], &[]);
    assert_in_readme("whatsapp-chat-exporter 0.13.1", &markdown);
    assert_eq!(code, Some(1));
    let passed = ids_with(&report, "pass");
    let want: BTreeSet<String> = [
        "file.sqlite_page",
        "invalid.wrong_key",
        "invalid.legacy_key_file",
        "invalid.legacy_key_file_header_cut",
        "invalid.cut_in_ciphertext",
        "invalid.header_only",
        "invalid.empty",
        "invalid.authentic_broken_zlib",
    ]
    .iter()
    .map(|id| format!("client.crypt15.{id}.decrypt"))
    .collect();
    assert_eq!(passed, want);
    let failed = ids_with(&report, "fail");
    assert_eq!(failed.len(), 16, "{failed:#?}");
    // It reads the body before it checks the key's kind (crypt15.md §4).
    assert!(failed.contains("client.crypt15.invalid.legacy_key_file_cut.decrypt"));
    assert!(failed
        .iter()
        .all(|id| id.starts_with("client.crypt15.") && id.ends_with(".decrypt")));
    assert!(ids_with(&report, "unimplemented").is_empty());
    let flipped = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "client.crypt15.invalid.tag_flipped.decrypt")
        .unwrap();
    assert_eq!(flipped["actual"], "refused as wrong_key", "{flipped}");
}

/// The HTML report is one self-contained page: every case, the summary, the filter, and no
/// external resource.
#[test]
fn the_html_report_holds_every_case_and_needs_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let json = dir.path().join("report.json");
    let out = Command::new(exe())
        .args([
            "run",
            "--client",
            &format!("python3 {} ignore-tag {}", double(), exe()),
        ])
        .args([
            "--html",
            html.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let page = std::fs::read_to_string(&html).unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for case in report["cases"].as_array().unwrap() {
        assert!(page.contains(case["id"].as_str().unwrap()), "{case}");
    }
    assert_eq!(
        page.matches("<tr class=").count(),
        report["cases"].as_array().unwrap().len()
    );
    assert!(page.contains("NOT every result is as expected"));
    assert!(page.contains("id=\"q\"") && page.contains("<script>"));
    // Case details may quote a loopback URL as text; what must not occur is a reference the
    // browser would load.
    for external in ["=\"http", "='http", "url(", "@import", "src=", "<link"] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
}

/// With no arguments: the reference adapter and, SoftHSM2 being installed by scripts/test.sh,
/// a private token with SoftHSM2's committed expected failures; every result as expected.
#[test]
fn the_default_run_checks_the_reference_its_own_vault_and_softhsm2() {
    let dir = tempfile::tempdir().unwrap();
    let markdown = dir.path().join("report.md");
    let out = Command::new(exe())
        .args(["run", "--markdown"])
        .arg(&markdown)
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{console}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Who ran what, and when (spec/conformance.md §6).
    let version = env!("CARGO_PKG_VERSION");
    let first = console.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "coffer-conformance {version} · vectors coffer-vectors/1 sha256:"
        )),
        "{console}"
    );
    assert!(console.contains(&format!("\nclient-format: coffer (reference) {version}\n")));
    assert!(console.contains(&format!("\nvault-server: coffer/{version}\n")));
    assert!(console.contains(&format!("\nrealm-server: coffer/{version}\n")));
    assert!(console.contains("client-format    126"), "{console}");
    assert!(console.contains("client-vault      22"), "{console}");
    assert!(console.contains("vault-server      43"), "{console}");
    if std::env::var("COFFER_SKIP_SOFTHSM").as_deref() != Ok("1") {
        assert!(console.lines().any(|l| l.starts_with("hsm ")), "{console}");
        assert!(
            console.contains("\nhsm: Implementation of PKCS11 ") && console.contains("SoftHSM"),
            "{console}"
        );
    }
    assert!(console.contains("every result is as expected"));
    if std::env::var("COFFER_SKIP_SOFTHSM").as_deref() != Ok("1") {
        assert_in_readme(
            "The reference implementation",
            &std::fs::read_to_string(&markdown).unwrap(),
        );
    }
}
