//! What pins each rule (spec/coverage.yaml): every section of crypt15.md, format.md, key.md
//! and vault.md that states a MUST has an entry, no entry names a section without one, every
//! pin exists (a vector id, a conformance case, a test function, a script), and
//! spec/COVERAGE.md, the table made from the file, is current (`COFFER_WRITE_COVERAGE=1`
//! rewrites it).

use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const DOCUMENTS: [&str; 4] = ["crypt15", "format", "key", "vault"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Section number → how many times MUST appears in it (the sentence that defines the key
/// words aside).
fn must_sections(document: &str) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(root().join(format!("spec/{document}.md"))).unwrap();
    let mut section = String::new();
    let mut found = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("##") {
            let title = line.trim_start_matches('#').trim_start();
            let number: String = title
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            section = number.trim_end_matches('.').to_owned();
        }
        let musts = line.matches("MUST").count();
        if musts > 0 && !section.is_empty() && !line.contains("key words") {
            *found.entry(section.clone()).or_insert(0) += musts;
        }
    }
    found
}

/// Every `id:` of the vector files.
fn vector_ids() -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("vectors")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                if let Some(id) = line.trim_start().strip_prefix("- id: ") {
                    ids.insert(id.trim().to_owned());
                }
            }
        }
    }
    ids
}

/// Every case id the runner knows (`coffer-conformance run --list`).
fn case_ids() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_coffer-conformance"))
        .args(["run", "--list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// Why `pin` does not exist, if it does not: a pin is one `kind: what` pair of text.
fn missing(pin: &Value, vectors: &BTreeSet<String>, cases: &BTreeSet<String>) -> Option<String> {
    let pair = pin
        .as_mapping()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
        .and_then(|(k, v)| Some((k.as_str()?, v.as_str()?)));
    let Some((kind, what)) = pair else {
        return Some(format!("{pin:?} is not one `kind: what` pair"));
    };
    let found = match kind {
        "vector" => vectors.contains(what),
        "case" => cases.contains(what),
        "script" => root().join(what).is_file(),
        "test" => what.split_once("::").is_some_and(|(path, name)| {
            std::fs::read_to_string(root().join(path))
                .is_ok_and(|text| text.contains(&format!("fn {name}(")))
        }),
        other => return Some(format!("unknown kind of pin {other:?}")),
    };
    (!found).then(|| format!("{kind}: {what} does not exist"))
}

#[test]
fn every_must_is_pinned_and_the_table_is_current() {
    let coverage: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("spec/coverage.yaml")).unwrap())
            .unwrap();
    let (vectors, cases) = (vector_ids(), case_ids());
    let mut problems = Vec::new();
    let mut table = String::from(
        "# What pins each rule\n\n\
         Made from [`coverage.yaml`](coverage.yaml) by `cargo test -p coffer-conformance \
         --test spec_coverage` with\n`COFFER_WRITE_COVERAGE=1`; the test fails when a section \
         that states a MUST has no entry, when a pin\ndoes not exist, or when this file is not \
         current. A pin fails when the rule is broken: a vector\n(`vectors/`), a conformance \
         case, a test, a script. A gap says what is not pinned, and why.\n",
    );
    let (mut sections, mut pins_total, mut gaps) = (0, 0, 0);
    for document in DOCUMENTS {
        let musts = must_sections(document);
        let entries = coverage[document].as_mapping().cloned().unwrap_or_default();
        let named: BTreeSet<String> = entries
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        for section in musts.keys().filter(|s| !named.contains(*s)) {
            problems.push(format!(
                "{document}.md §{section} states a MUST and has no entry"
            ));
        }
        for section in named.iter().filter(|s| !musts.contains_key(*s)) {
            problems.push(format!("{document}.md §{section} has an entry but no MUST"));
        }
        table +=
            &format!("\n## {document}.md\n\n| § | MUSTs | pinned by | gap |\n|---|---:|---|---|\n");
        let mut ordered: Vec<&String> = musts.keys().collect();
        ordered.sort_by_key(|s| {
            s.split('.')
                .map(|n| n.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        });
        for section in ordered {
            let entry = &entries.get(section.as_str()).cloned().unwrap_or_default();
            let pins = entry["pins"].as_sequence().cloned().unwrap_or_default();
            if pins.is_empty() {
                problems.push(format!("{document}.md §{section}: no pin"));
            }
            let mut shown = Vec::new();
            for pin in &pins {
                if let Some(why) = missing(pin, &vectors, &cases) {
                    problems.push(format!("{document}.md §{section}: {why}"));
                }
                if let Some((kind, what)) = pin.as_mapping().and_then(|m| m.iter().next()) {
                    shown.push(format!(
                        "{} `{}`",
                        kind.as_str().unwrap_or_default(),
                        what.as_str().unwrap_or_default()
                    ));
                }
            }
            let gap = entry["gap"].as_str().unwrap_or("");
            sections += 1;
            pins_total += pins.len();
            gaps += usize::from(!gap.is_empty());
            table += &format!(
                "| {section} | {} | {} | {gap} |\n",
                musts[section],
                shown.join("<br>")
            );
        }
    }
    table +=
        &format!("\n{sections} sections, {pins_total} pins, {gaps} sections with a gap named.\n");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        sections >= 50,
        "only {sections} sections: is the reading broken?"
    );
    let path = root().join("spec/COVERAGE.md");
    if std::env::var("COFFER_WRITE_COVERAGE").as_deref() == Ok("1") {
        std::fs::write(&path, &table).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        table,
        "spec/COVERAGE.md is not current: rerun with COFFER_WRITE_COVERAGE=1 and review"
    );
}
