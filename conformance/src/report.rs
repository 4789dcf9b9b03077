//! Reports of a run (spec/conformance.md §6): a console table, JSON, JUnit XML.

use crate::case::{CaseResult, Status};
use serde::Serialize;
use std::collections::BTreeMap;

/// A whole run: every case, and what the expected-failures file did not match.
#[derive(Debug, Serialize)]
pub struct Run {
    /// The format of this report.
    pub format: &'static str,
    /// What each suite ran against (module path, URL, adapter).
    pub targets: BTreeMap<String, String>,
    /// Every case.
    pub cases: Vec<CaseResult>,
    /// Expected-failure entries that matched no case.
    pub stale_expected_failures: Vec<String>,
}

impl Run {
    /// Whether every result is as expected and no entry is stale (exit code 0).
    pub fn as_expected(&self) -> bool {
        self.stale_expected_failures.is_empty() && self.cases.iter().all(|c| c.status.as_expected())
    }

    fn count(&self, suite: &str, status: Status) -> usize {
        self.cases
            .iter()
            .filter(|c| c.suite == suite && c.status == status)
            .count()
    }

    /// The console table: one line per suite, then every case that is not as expected.
    pub fn console(&self) -> String {
        let suites: Vec<&str> = {
            let mut s: Vec<&str> = self.cases.iter().map(|c| c.suite.as_str()).collect();
            s.dedup();
            s
        };
        let mut out = format!(
            "{:<14} {:>5} {:>5} {:>9} {:>10} {:>14} {:>8}\n",
            "suite", "pass", "fail", "expected", "unexpected", "unimplemented", "skipped"
        );
        for suite in suites {
            out.push_str(&format!(
                "{:<14} {:>5} {:>5} {:>9} {:>10} {:>14} {:>8}\n",
                suite,
                self.count(suite, Status::Pass),
                self.count(suite, Status::Fail),
                self.count(suite, Status::ExpectedFailure),
                self.count(suite, Status::UnexpectedPass),
                self.count(suite, Status::Unimplemented),
                self.count(suite, Status::Skipped),
            ));
        }
        for case in self.cases.iter().filter(|c| !c.status.as_expected()) {
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
            let failures = cases.iter().filter(|c| !c.status.as_expected()).count();
            let skipped = cases
                .iter()
                .filter(|c| matches!(c.status, Status::Skipped | Status::ExpectedFailure))
                .count();
            out.push_str(&format!(
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n",
                xml(suite),
                cases.len()
            ));
            for case in cases {
                out.push_str(&format!(
                    "    <testcase classname=\"{}\" name=\"{}\">",
                    xml(suite),
                    xml(&case.id)
                ));
                match case.status {
                    Status::Pass => {}
                    Status::Skipped | Status::ExpectedFailure => out.push_str(&format!(
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
            c => c.to_string(),
        })
        .collect()
}
