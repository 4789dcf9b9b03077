//! The reports of one run that has every kind of result (failures from a deliberately broken
//! client, an expected failure, an unexpected pass, a stale entry, skips): the JUnit file
//! validates against the common JUnit XML schema (xmllint), the JSON report against its
//! schema and round-trips, and the HTML page renders in headless Chromium with its summary.

use coffer_conformance::report::Run;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Reports {
    _dir: tempfile::TempDir,
    json: PathBuf,
    junit: PathBuf,
    html: PathBuf,
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One run, shared by the tests of this file.
fn reports() -> &'static Reports {
    static REPORTS: OnceLock<Reports> = OnceLock::new();
    REPORTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let expected = dir.path().join("expected.yaml");
        std::fs::write(
            &expected,
            "client.crypt15.invalid.tag_flipped.decrypt: the double ignores tags\n\
             client.crypt15.file.short_text.decrypt: listed although it passes\n\
             client.nothing.matches.this: a stale entry\n",
        )
        .unwrap();
        let client = format!(
            "python3 {} ignore-tag {}",
            manifest().join("tests/doubles/broken_client.py").display(),
            env!("CARGO_BIN_EXE_coffer-conformance")
        );
        let (json, junit, html) = (
            dir.path().join("r.json"),
            dir.path().join("r.xml"),
            dir.path().join("r.html"),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_coffer-conformance"))
            .args(["run", "--client", &client, "--expected-failures"])
            .arg(&expected)
            .arg("--json")
            .arg(&json)
            .arg("--junit")
            .arg(&junit)
            .arg("--html")
            .arg(&html)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Reports {
            _dir: dir,
            json,
            junit,
            html,
        }
    })
}

fn statuses(report: &Value) -> std::collections::BTreeSet<String> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_json_report_validates_against_its_schema_and_round_trips() {
    let text = std::fs::read_to_string(&reports().json).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    for status in ["pass", "fail", "expected_failure", "unexpected_pass"] {
        assert!(statuses(&report).contains(status), "no {status} case");
    }
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(manifest().join("schema/report.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // It round-trips through the runner's own type, field for field.
    let run: Run = serde_json::from_value(report.clone()).unwrap();
    assert_eq!(serde_json::to_value(&run).unwrap(), report);
    // The schema bites: an unknown field, a status of no meaning.
    let mut extra = report.clone();
    extra["cases"][0]["note"] = "x".into();
    assert!(!validator.is_valid(&extra));
    let mut bad = report;
    bad["cases"][0]["status"] = "passed".into();
    assert!(!validator.is_valid(&bad));
}

fn xmllint(file: &Path) -> std::process::Output {
    Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(manifest().join("schema/junit.xsd"))
        .arg(file)
        .output()
        .expect("xmllint (Debian package libxml2-utils; scripts/test.sh installs it)")
}

#[test]
fn the_junit_report_validates_against_the_junit_schema() {
    let out = xmllint(&reports().junit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = std::fs::read_to_string(&reports().junit).unwrap();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&reports().json).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap().len();
    assert_eq!(xml.matches("<testcase ").count(), cases);
    // The validation bites: the same file without a required attribute is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, xml.replacen(" tests=\"", " testz=\"", 2)).unwrap();
    assert!(!xmllint(&broken).status.success());
}

/// The HTML page opened in headless Chromium (Debian `chromium`; opt out with
/// COFFER_SKIP_CHROMIUM=1): the DOM after its script ran holds the verdict and the summary,
/// and a screenshot shows the verdict banner in its colour at the top of the page.
#[test]
fn the_html_report_renders_in_headless_chromium() {
    if coffer_testkit::opt_out("COFFER_SKIP_CHROMIUM", "headless Chromium") {
        return;
    }
    let html = &reports().html;
    let url = format!("file://{}", html.display());
    let chromium = |args: &[&str]| {
        Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
            .args(args)
            .arg(&url)
            .output()
            .expect("chromium (Debian package chromium; scripts/test.sh installs it, or opt out with COFFER_SKIP_CHROMIUM=1)")
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("NOT every result is as expected"));
    assert!(dom.contains("<table id=\"summary\">") && dom.contains("<td>client-format</td>"));

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-report.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,600",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1200, 600));
    let channels = frame.line_size / frame.width as usize;
    // The "NOT every result is as expected" banner: background #f6c6c6, near the top.
    let banner = (0..200usize)
        .flat_map(|y| (0..frame.width as usize).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let at = y * frame.line_size + x * channels;
            let px = &pixels[at..at + 3];
            px.iter()
                .zip([0xf6u8, 0xc6, 0xc6])
                .all(|(a, b)| a.abs_diff(b) <= 3)
        })
        .count();
    assert!(
        banner > 5_000,
        "{banner} banner pixels in the top 200 rows of {}",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.display());
}
