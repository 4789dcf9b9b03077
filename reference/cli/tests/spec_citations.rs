//! Every `spec/NAME.md §N` cited in the code, scripts and docs names a section that exists:
//! a heading `## N.` (or `### N.M`) in that file. A citation is how a reader goes from code
//! to the rule it follows; a stale one sends them to the wrong rule.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The files a citation may be in: the project's own text, not build output or venvs.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            if !name.starts_with('.') && name != "target" && name != "external" {
                sources(&path, out);
            }
        } else if ["rs", "md", "sh", "py", "yaml", "toml"]
            .iter()
            .any(|ext| name.ends_with(&format!(".{ext}")))
        {
            out.push(path);
        }
    }
}

/// The section numbers of a spec file, from its headings (`## 6. Store`, `### 6.1 Multi-site`).
fn sections(spec: &str) -> BTreeSet<String> {
    spec.lines()
        .filter(|l| l.starts_with("##"))
        .filter_map(|l| {
            let number = l.trim_start_matches('#').trim_start();
            let number: String = number
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.');
            (!number.is_empty()).then(|| number.to_owned())
        })
        .collect()
}

/// `(file, section)` for each `spec/NAME.md §N` in `text` (the name may be in backticks or
/// a link, the section after one space).
fn citations(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("spec/") {
        rest = &rest[at + 5..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let after = &rest[name.len()..];
        let Some(after) = after.strip_prefix(".md") else {
            continue;
        };
        let after = after.trim_start_matches(['`', ')', ']']);
        let Some(after) = after
            .strip_prefix(" §")
            .or_else(|| after.strip_prefix(", §"))
        else {
            continue;
        };
        let section: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let section = section.trim_end_matches('.');
        if !section.is_empty() {
            found.push((name, section.to_owned()));
        }
    }
    found
}

#[test]
fn citations_are_read_as_written() {
    assert_eq!(
        citations("(`spec/vault.md` §6.1), spec/hsm.md §7. and [x](spec/key.md) §2"),
        [
            ("vault".to_owned(), "6.1".to_owned()),
            ("hsm".to_owned(), "7".to_owned()),
            ("key".to_owned(), "2".to_owned())
        ]
    );
    assert!(sections("# T\n## 6. Store\n### 6.1 Multi-site\n## Appendix\n").contains("6.1"));
}

#[test]
fn every_cited_spec_section_exists() {
    let root = root();
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut stale = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (line_no, line) in text.lines().enumerate() {
            for (name, section) in citations(line) {
                checked += 1;
                let spec = root.join("spec").join(format!("{name}.md"));
                let ok = std::fs::read_to_string(&spec)
                    .map(|s| sections(&s).contains(&section))
                    .unwrap_or(false);
                if !ok {
                    stale.push(format!(
                        "{}:{}: spec/{name}.md §{section}",
                        file.strip_prefix(&root).unwrap_or(file).display(),
                        line_no + 1
                    ));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} citations found: is the walk broken?"
    );
    assert!(
        stale.is_empty(),
        "{} citations name no section:\n{}",
        stale.len(),
        stale.join("\n")
    );
}
