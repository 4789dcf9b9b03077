//! The interop matrix (spec/conformance.md §6.1): client implementations × client suites,
//! one cell per pair, with a suite an implementation does not declare shown apart from one it
//! fails, as the QUIC interop runner shows its results.

use crate::case::{CaseResult, Status};
use crate::report::cell;
use serde::Serialize;
use std::collections::BTreeMap;

/// The client suites, in column order.
pub const SUITES: [&str; 3] = ["client-format", "client-vault", "client-realms"];

/// One implementation's results in one suite.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Cell {
    /// Cases that passed (expected failures included: the expected-failures file said so).
    pub pass: usize,
    /// Cases failed, or passed against an expected failure.
    pub fail: usize,
    /// Cases the implementation answered `unimplemented`.
    pub unimplemented: usize,
    /// Cases not run because the adapter does not declare their operation or format.
    pub unsupported: usize,
}

impl Cell {
    /// Counts `cases` (all of one suite).
    fn of<'a>(cases: impl Iterator<Item = &'a CaseResult>) -> Self {
        let mut cell = Cell::default();
        for case in cases {
            match case.status {
                Status::Pass | Status::ExpectedFailure => cell.pass += 1,
                Status::Fail | Status::UnexpectedPass => cell.fail += 1,
                Status::Unimplemented => cell.unimplemented += 1,
                Status::Skipped => cell.unsupported += 1,
            }
        }
        cell
    }

    /// The cell's verdict: `unsupported` (nothing declared), `pass` (every case run passed and
    /// none was left out), `partial` (no failure, some cases left out or unimplemented),
    /// `fail`.
    pub fn verdict(&self) -> &'static str {
        let run = self.pass + self.fail + self.unimplemented;
        if run == 0 {
            "unsupported"
        } else if self.fail > 0 {
            "fail"
        } else if self.unimplemented > 0 || self.unsupported > 0 {
            "partial"
        } else {
            "pass"
        }
    }

    fn text(&self) -> String {
        match self.verdict() {
            "unsupported" => "unsupported".to_owned(),
            _ => {
                let mut text = format!("{}/{}", self.pass, self.pass + self.fail);
                if self.unimplemented > 0 {
                    text += &format!(", {} unimplemented", self.unimplemented);
                }
                if self.unsupported > 0 {
                    text += &format!(", {} not declared", self.unsupported);
                }
                text
            }
        }
    }
}

/// One implementation: its name, how it names itself, and a cell per suite.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The name given on the command line.
    pub name: String,
    /// How its adapter names itself (hello `name` and `version`).
    pub implementation: String,
    /// Suite → cell.
    pub cells: BTreeMap<String, Cell>,
}

impl Row {
    /// A row from the results of one implementation's run of the client suites.
    pub fn new(name: &str, implementation: &str, cases: &[CaseResult]) -> Self {
        let cells = SUITES
            .iter()
            .map(|suite| {
                let cell = Cell::of(cases.iter().filter(|c| c.suite == *suite));
                (suite.to_string(), cell)
            })
            .collect();
        Row {
            name: name.to_owned(),
            implementation: implementation.to_owned(),
            cells,
        }
    }
}

/// The whole matrix, with who made it and when (as every report, §6).
#[derive(Debug, Serialize)]
pub struct Matrix {
    /// The runner: `coffer-conformance VERSION`.
    pub runner: String,
    /// The vectors the suites read.
    pub vectors: String,
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    /// One row per implementation, in the order given.
    pub rows: Vec<Row>,
}

impl Matrix {
    /// The matrix as a Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = format!("| implementation | {} |\n|---|", SUITES.join(" | "));
        out += &"---|".repeat(SUITES.len());
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = SUITES
                .iter()
                .map(|s| {
                    let cell = &row.cells[*s];
                    match cell.verdict() {
                        "unsupported" => cell.text(),
                        verdict => format!("{verdict} {}", cell.text()),
                    }
                })
                .collect();
            out += &format!(
                "| {} ({}) | {} |\n",
                cell(&row.name),
                cell(&row.implementation),
                cells.join(" | ")
            );
        }
        out += &format!(
            "\nRunner `{}`, vectors `{}`, {}.\n",
            self.runner, self.vectors, self.date
        );
        out
    }

    /// One self-contained HTML page: a row per implementation, a column per suite, each
    /// cell coloured by its verdict.
    pub fn html(&self) -> String {
        let esc = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let head: String = SUITES.iter().map(|s| format!("<th>{s}</th>")).collect();
        let mut rows = String::new();
        for row in &self.rows {
            rows += &format!(
                "<tr><th>{}<br><small>{}</small></th>",
                esc(&row.name),
                esc(&row.implementation)
            );
            for suite in SUITES {
                let cell = &row.cells[suite];
                rows += &format!(
                    "<td class=\"{}\" title=\"{} passed, {} failed, {} unimplemented, {} not declared\">{}</td>",
                    cell.verdict(),
                    cell.pass,
                    cell.fail,
                    cell.unimplemented,
                    cell.unsupported,
                    esc(&cell.text())
                );
            }
            rows += "</tr>\n";
        }
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Coffer interop matrix</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #bbb; padding: 0.4em 0.8em; text-align: center; }}
td.pass {{ background: #c9efc9; }} td.fail {{ background: #f6c6c6; }}
td.partial {{ background: #eee3b6; }} td.unsupported {{ background: #e4e4e4; color: #666; }}
</style></head><body>
<h1>Coffer interop matrix</h1>
<p>{} · vectors {} · {}</p>
<p>Green: every case passed. Red: a case failed. Yellow: no failure, but cases not declared
or unimplemented. Grey: the implementation does not declare the suite's operations.</p>
<table id="matrix"><tr><th>implementation</th>{head}</tr>
{rows}</table>
</body></html>
"#,
            esc(&self.runner),
            esc(&self.vectors),
            esc(&self.date)
        )
    }
}
