//! Reports of a run (spec/conformance.md §6): console, JSON, JUnit XML, HTML, Markdown.

use crate::case::{CaseResult, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` of every JSON report (its schema: `conformance/schema/report.schema.json`).
pub const FORMAT: &str = "coffer-conformance/2";

/// A whole run: what was tested, by what and when, every case, and what the
/// expected-failures file did not match.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The format of this report: [`FORMAT`].
    pub format: String,
    /// The runner: `coffer-conformance VERSION`.
    pub runner: String,
    /// The vectors the client suites read: their schema and a digest of the files.
    pub vectors: String,
    /// When the run started: RFC 3339, UTC, to the second.
    pub date: String,
    /// What each suite ran against (module path, URL, adapter).
    pub targets: BTreeMap<String, String>,
    /// The implementation under test per suite, as it names itself: an adapter's hello
    /// (`name` and `version`), a server's `Server` header, a module's `C_GetInfo`.
    pub implementations: BTreeMap<String, String>,
    /// Every case.
    pub cases: Vec<CaseResult>,
    /// Expected-failure entries that matched no case.
    pub stale_expected_failures: Vec<String>,
}

impl Run {
    /// Whether every result is as expected and no entry is stale (exit code 0).
    pub fn as_expected(&self) -> bool {
        self.stale_expected_failures.is_empty() && self.cases.iter().all(CaseResult::as_expected)
    }

    fn count(&self, suite: &str, status: Status) -> usize {
        self.cases
            .iter()
            .filter(|c| c.suite == suite && c.status == status)
            .count()
    }

    /// One row per suite, in run order: pass, fail, expected failure, unexpected pass,
    /// unimplemented, skipped.
    fn summary(&self) -> Vec<(&str, [usize; 6])> {
        let mut suites: Vec<&str> = self.cases.iter().map(|c| c.suite.as_str()).collect();
        suites.dedup();
        suites
            .into_iter()
            .map(|suite| {
                let counts = [
                    Status::Pass,
                    Status::Fail,
                    Status::ExpectedFailure,
                    Status::UnexpectedPass,
                    Status::Unimplemented,
                    Status::Skipped,
                ]
                .map(|status| self.count(suite, status));
                (suite, counts)
            })
            .collect()
    }

    /// Who ran what, when: the runner, the vectors and the date on one line, then one line
    /// per suite with the implementation under test.
    fn provenance_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{} · vectors {} · {}",
            self.runner, self.vectors, self.date
        )];
        for (suite, what) in &self.implementations {
            lines.push(format!("{suite}: {what}"));
        }
        lines
    }

    /// The console table, after who ran what and when: one line per suite, then every case
    /// that is not as expected.
    pub fn console(&self) -> String {
        let mut out = self.provenance_lines().join("\n") + "\n";
        out += &format!(
            "{:<14} {:>5} {:>5} {:>9} {:>10} {:>14} {:>8}\n",
            "suite", "pass", "fail", "expected", "unexpected", "unimplemented", "skipped"
        );
        for (suite, [pass, fail, expected, unexpected, unimplemented, skipped]) in self.summary() {
            out.push_str(&format!(
                "{suite:<14} {pass:>5} {fail:>5} {expected:>9} {unexpected:>10} {unimplemented:>14} {skipped:>8}\n"
            ));
        }
        for case in self.cases.iter().filter(|c| !c.as_expected()) {
            out.push_str(&format!(
                "{:?} {} [{:?}]: expected {}, got {} ({})\n",
                case.status, case.id, case.level, case.expected, case.actual, case.detail
            ));
        }
        for glob in &self.stale_expected_failures {
            out.push_str(&format!("stale expected-failure entry: {glob}\n"));
        }
        out.push_str(if self.as_expected() {
            "every result is as expected"
        } else {
            "NOT every result is as expected"
        });
        out
    }

    /// The JUnit XML report: one testsuite per suite, one testcase per case.
    pub fn junit(&self) -> String {
        let mut by_suite: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
        for case in &self.cases {
            by_suite.entry(case.suite.as_str()).or_default().push(case);
        }
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"coffer-conformance\">\n");
        for (suite, cases) in by_suite {
            let failures = cases.iter().filter(|c| !c.as_expected()).count();
            let skipped = cases.iter().filter(|c| skipped_in_junit(c)).count();
            out.push_str(&format!(
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n",
                xml(suite),
                cases.len()
            ));
            out.push_str("    <properties>\n");
            let properties = [
                ("implementation", self.implementations.get(suite)),
                ("target", self.targets.get(suite)),
                ("runner", Some(&self.runner)),
                ("vectors", Some(&self.vectors)),
                ("date", Some(&self.date)),
            ];
            for (name, value) in properties {
                if let Some(value) = value {
                    out.push_str(&format!(
                        "      <property name=\"{name}\" value=\"{}\"/>\n",
                        xml(value)
                    ));
                }
            }
            out.push_str("    </properties>\n");
            for case in cases {
                out.push_str(&format!(
                    "    <testcase classname=\"{}\" name=\"{}\">",
                    xml(suite),
                    xml(&case.id)
                ));
                match case.status {
                    Status::Pass => {}
                    _ if skipped_in_junit(case) => out.push_str(&format!(
                        "<skipped message=\"{}\"/>",
                        xml(&format!("{:?}: {}", case.status, case.detail))
                    )),
                    _ => out.push_str(&format!(
                        "<failure message=\"{}\" type=\"{:?}\">{}</failure>",
                        xml(&format!("expected {}, got {}", case.expected, case.actual)),
                        case.status,
                        xml(&case.detail)
                    )),
                }
                out.push_str("</testcase>\n");
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }
}

/// JUnit's `skipped`: an expected failure, or a skip that is as expected (a skipped MUST is
/// a failure).
fn skipped_in_junit(case: &CaseResult) -> bool {
    case.status == Status::ExpectedFailure || (case.status == Status::Skipped && case.as_expected())
}

/// `text` as one Markdown table cell: pipes escaped, newlines folded.
pub(crate) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// How the Markdown report's last line starts (the date follows), so that a README that
/// quotes the report can leave it out.
pub const DATE_LINE: &str = "Run at ";

impl Run {
    /// A Markdown summary for READMEs and CI job pages: the implementations under test, the
    /// table by suite, then every case that did not pass (and was not skipped) with what it
    /// expected and what happened, and last the runner, the vectors and the date. It names no
    /// path, and the time only on its last line ([`DATE_LINE`]), so the same results give the
    /// same text above it.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for (suite, what) in &self.implementations {
            out.push_str(&format!("- {suite}: {}\n", cell(what)));
        }
        if !self.implementations.is_empty() {
            out.push('\n');
        }
        out.push_str(
            "| suite | pass | fail | expected failure | unexpected pass | unimplemented | skipped |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for (suite, counts) in self.summary() {
            let cells: Vec<String> = counts.iter().map(usize::to_string).collect();
            out.push_str(&format!("| {suite} | {} |\n", cells.join(" | ")));
        }
        let notable: Vec<&CaseResult> = self
            .cases
            .iter()
            .filter(|c| !matches!(c.status, Status::Pass | Status::Skipped))
            .collect();
        if !notable.is_empty() {
            out.push_str("\n| case | status | expected | actual |\n|---|---|---|---|\n");
            for c in notable {
                let status = serde_json::to_value(c.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "| `{}` | {status} | {} | {} |\n",
                    c.id,
                    cell(&c.expected),
                    cell(&c.actual)
                ));
            }
        }
        // Skipped MUST cases fail the gate; one line per reason keeps the table readable.
        let mut not_run: BTreeMap<&str, usize> = BTreeMap::new();
        for c in self
            .cases
            .iter()
            .filter(|c| c.status == Status::Skipped && !c.as_expected())
        {
            *not_run.entry(c.detail.as_str()).or_default() += 1;
        }
        if !not_run.is_empty() {
            out.push_str("\nMUST cases not run (each fails the gate unless an expected-failures entry names it):\n\n");
            for (why, n) in not_run {
                out.push_str(&format!(
                    "- {n} {}: {}\n",
                    if n == 1 { "case" } else { "cases" },
                    cell(why)
                ));
            }
        }
        for stale in &self.stale_expected_failures {
            out.push_str(&format!("\nStale expected-failure entry: `{stale}`\n"));
        }
        out.push_str(&format!(
            "\nRunner `{}`, vectors `{}`.\n\n{DATE_LINE}{}.\n",
            self.runner, self.vectors, self.date
        ));
        out
    }

    /// The HTML report: one self-contained page (no network) with the summary per suite and
    /// every case, filterable by text and status.
    pub fn html(&self) -> String {
        let mut rows = String::new();
        for c in &self.cases {
            let status = serde_json::to_value(c.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let level = serde_json::to_value(c.level)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            rows.push_str(&format!(
                "<tr class=\"{status}\" data-status=\"{status}\"><td>{}</td><td>{}</td><td>{level}</td><td class=\"s\">{status}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                xml(&c.suite), xml(&c.id), xml(&c.expected), xml(&c.actual), xml(&c.detail)
            ));
        }
        let mut summary = String::new();
        for (suite, counts) in self.summary() {
            let cells: String = counts.iter().map(|n| format!("<td>{n}</td>")).collect();
            summary.push_str(&format!("<tr><td>{}</td>{cells}</tr>\n", xml(suite)));
        }
        let verdict = if self.as_expected() {
            "<p class=\"ok\">Every result is as expected.</p>"
        } else {
            "<p class=\"bad\">NOT every result is as expected.</p>"
        };
        let provenance: String = self
            .provenance_lines()
            .iter()
            .map(|line| format!("<li>{}</li>", xml(line)))
            .collect();
        let stale: String = self
            .stale_expected_failures
            .iter()
            .map(|g| format!("<li>stale expected-failure entry: {}</li>", xml(g)))
            .collect();
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Coffer conformance report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ border: 1px solid #bbb; padding: 0.2em 0.5em; font-size: 0.9em; vertical-align: top; }}
tr.fail .s, tr.unexpected_pass .s, tr.unimplemented .s {{ background: #f6c6c6; }}
tr.pass .s {{ background: #c9efc9; }}
tr.expected_failure .s, tr.skipped .s {{ background: #eee3b6; }}
p.ok, p.bad {{ font-weight: bold; font-size: 1.2em; padding: 0.6em 1em; border-radius: 4px; }}
p.ok {{ color: #176d17; background: #c9efc9; }} p.bad {{ color: #a11; background: #f6c6c6; }}
</style></head><body>
<h1>Coffer conformance report</h1>
<ul id="provenance">{provenance}</ul>
{verdict}
<table id="summary"><tr><th>suite</th><th>pass</th><th>fail</th><th>expected failure</th><th>unexpected pass</th><th>unimplemented</th><th>skipped</th></tr>
{summary}</table>
<ul>{stale}</ul>
<p><input id="q" placeholder="filter by text" size="40">
<label><input type="checkbox" class="st" value="pass" checked> pass</label>
<label><input type="checkbox" class="st" value="fail" checked> fail</label>
<label><input type="checkbox" class="st" value="expected_failure" checked> expected failure</label>
<label><input type="checkbox" class="st" value="unexpected_pass" checked> unexpected pass</label>
<label><input type="checkbox" class="st" value="unimplemented" checked> unimplemented</label>
<label><input type="checkbox" class="st" value="skipped" checked> skipped</label></p>
<table id="cases"><tr><th>suite</th><th>case</th><th>level</th><th>status</th><th>expected</th><th>actual</th><th>detail</th></tr>
{rows}</table>
<script>
function apply() {{
  var q = document.getElementById('q').value.toLowerCase();
  var on = {{}};
  document.querySelectorAll('input.st').forEach(function (b) {{ on[b.value] = b.checked; }});
  document.querySelectorAll('#cases tr[data-status]').forEach(function (r) {{
    r.style.display = (on[r.dataset.status] && r.textContent.toLowerCase().indexOf(q) >= 0) ? '' : 'none';
  }});
}}
document.getElementById('q').addEventListener('input', apply);
document.querySelectorAll('input.st').forEach(function (b) {{ b.addEventListener('change', apply); }});
</script>
</body></html>
"#
        )
    }
}

/// Escapes text for an XML attribute or element.
fn xml(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => " ".into(),
            // Not characters XML allows.
            '\u{FFFE}' | '\u{FFFF}' => " ".into(),
            c => c.to_string(),
        })
        .collect()
}
