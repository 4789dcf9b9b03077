//! The `client-format` suite: every decrypt and encrypt case of `vectors/crypt15.yaml` and
//! `vectors/format.yaml`, sent to a client adapter through the shim, for the formats it
//! declares. Case ids are `client.<vector id>.<op>`.

use crate::case::{CaseResult, Level, Status};
use crate::shim::Adapter;
use coffer_vectors::crypt15::{Crypt15File, Crypt15Group};
use coffer_vectors::format::{apply, FormatFile, FormatGroup};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// One request to send, and what must come back.
struct Planned {
    id: String,
    op: &'static str,
    format: &'static str,
    request: Value,
    expect: Expect,
}

/// What a case expects: `Ok(field, hex)`, an answer carrying this; `Err(class)`, a refusal
/// of this class with no output.
pub type Expect = Result<(&'static str, String), String>;

/// The request field a case's key goes in: `key_file` for a key file's bytes, else `key`.
fn key_field(flags: &[String]) -> &'static str {
    if flags.iter().any(|f| f == "KeyFile") {
        "key_file"
    } else {
        "key"
    }
}

fn plan(vectors: &Path) -> anyhow::Result<Vec<Planned>> {
    let mut plans = Vec::new();
    let crypt15: Crypt15File =
        serde_yaml::from_str(&std::fs::read_to_string(vectors.join("crypt15.yaml"))?)?;
    for group in &crypt15.groups {
        match group {
            Crypt15Group::File { cases, .. } => {
                for case in cases {
                    plans.push(Planned {
                        id: format!("client.{}.decrypt", case.id),
                        op: "decrypt",
                        format: "crypt15",
                        request: json!({"key": case.key, "file": hex::encode(case.file.bytes()?)}),
                        expect: Ok(("plaintext", hex::encode(case.plaintext.bytes()?))),
                    });
                    plans.push(Planned {
                        id: format!("client.{}.encrypt", case.id),
                        op: "encrypt",
                        format: "crypt15",
                        request: json!({"key": case.key, "header": case.header,
                            "payload": hex::encode(case.payload.bytes()?), "md5": case.md5}),
                        expect: Ok(("file", hex::encode(case.file.bytes()?))),
                    });
                }
            }
            Crypt15Group::InvalidFile { cases, .. } => {
                for case in cases {
                    let key = key_field(&case.flags);
                    plans.push(Planned {
                        id: format!("client.{}.decrypt", case.id),
                        op: "decrypt",
                        format: "crypt15",
                        request: json!({key: case.key, "file": hex::encode(case.file.bytes()?)}),
                        expect: Err(case.error.clone()),
                    });
                }
            }
            Crypt15Group::LegacyFile { cases, .. } => {
                for case in cases {
                    let key = key_field(&case.flags);
                    let expect = match (&case.plaintext, &case.error) {
                        (Some(plaintext), _) => Ok(("plaintext", hex::encode(plaintext.bytes()?))),
                        (None, Some(error)) => Err(error.clone()),
                        (None, None) => anyhow::bail!("{}: neither plaintext nor error", case.id),
                    };
                    plans.push(Planned {
                        id: format!("client.{}.decrypt", case.id),
                        op: "decrypt",
                        format: if case.format == "crypt12" {
                            "crypt12"
                        } else {
                            "crypt14"
                        },
                        request: json!({key: case.key, "file": hex::encode(case.file.bytes()?)}),
                        expect,
                    });
                }
            }
            Crypt15Group::Header { .. } => {}
        }
    }
    let format: FormatFile =
        serde_yaml::from_str(&std::fs::read_to_string(vectors.join("format.yaml"))?)?;
    let mut files = BTreeMap::new();
    for group in &format.groups {
        match group {
            FormatGroup::CofferFile { cases, .. } => {
                for case in cases {
                    let file = case.file.bytes()?;
                    plans.push(Planned {
                        id: format!("client.{}.decrypt", case.id),
                        op: "decrypt",
                        format: "coffer",
                        request: json!({"key": case.key, "file": hex::encode(&file)}),
                        expect: Ok(("plaintext", hex::encode(case.plaintext.bytes()?))),
                    });
                    plans.push(Planned {
                        id: format!("client.{}.encrypt", case.id),
                        op: "encrypt",
                        format: "coffer",
                        request: json!({"key": case.key, "salt": case.salt, "header": case.header,
                            "payload": hex::encode(case.payload.bytes()?)}),
                        expect: Ok(("file", hex::encode(&file))),
                    });
                    files.insert(case.id.clone(), file);
                }
            }
            FormatGroup::InvalidCofferFile { cases, .. } => {
                for case in cases {
                    let file = match (&case.file, &case.base) {
                        (Some(data), _) => data.bytes()?,
                        (None, Some(base)) => apply(
                            files
                                .get(base)
                                .ok_or_else(|| anyhow::anyhow!("no base {base}"))?,
                            &case.edits,
                        )?,
                        (None, None) => anyhow::bail!("{}: no file", case.id),
                    };
                    plans.push(Planned {
                        id: format!("client.{}.decrypt", case.id),
                        op: "decrypt",
                        format: "coffer",
                        request: json!({"key": case.key, "file": hex::encode(file)}),
                        expect: Err(case.error.clone()),
                    });
                }
            }
        }
    }
    Ok(plans)
}

/// The ids of every case (for `--list`).
pub fn case_ids(vectors: &Path) -> anyhow::Result<Vec<String>> {
    Ok(plan(vectors)?.into_iter().map(|p| p.id).collect())
}

/// Runs every case that `keep` selects against the adapter `argv`, on `jobs` adapter
/// processes at once.
pub fn run(
    argv: &[String],
    vectors: &Path,
    keep: impl Fn(&str) -> bool,
    timeout: Duration,
    jobs: usize,
) -> anyhow::Result<Vec<CaseResult>> {
    let plans: Vec<Planned> = plan(vectors)?.into_iter().filter(|p| keep(&p.id)).collect();
    crate::jobs::map(
        &plans,
        jobs,
        || Ok(Adapter::start(argv, timeout)?),
        |adapter, p| run_one(adapter, p, timeout),
    )
}

fn run_one(adapter: &mut Adapter, p: &Planned, timeout: Duration) -> CaseResult {
    let expected = match &p.expect {
        Ok((field, _)) => format!("{field} as in the vector"),
        Err(class) => format!("refused as {class}"),
    };
    let result = |status, actual: String, detail: String| CaseResult {
        suite: "client-format".into(),
        id: p.id.clone(),
        level: Level::Must,
        status,
        expected: expected.clone(),
        actual,
        detail,
    };
    if !adapter.supports(p.op, p.format) {
        return result(
            Status::Skipped,
            "not run".into(),
            format!("the adapter does not declare {} {}", p.op, p.format),
        );
    }
    let mut request = p.request.clone();
    request["op"] = json!(p.op);
    request["format"] = json!(p.format);
    let answer = match adapter.request(&p.id, request, timeout) {
        Ok(a) => a,
        Err(e) => return result(Status::Fail, "no answer".into(), e.to_string()),
    };
    let (status, actual) = judge(&p.expect, &answer);
    let detail = answer["detail"].as_str().unwrap_or_default().to_owned();
    result(status, actual, detail)
}

/// The verdict on an adapter's `answer` (any JSON it sent, however hostile) and what it said,
/// in words for the report.
pub fn judge(expect: &Expect, answer: &Value) -> (Status, String) {
    if answer["unimplemented"] == true {
        (Status::Unimplemented, "unimplemented".to_owned())
    } else {
        match (expect, answer["ok"] == true) {
            (Ok((field, want)), true) => {
                let got = answer[*field].as_str().unwrap_or_default();
                if got == want {
                    (Status::Pass, format!("{field} as in the vector"))
                } else {
                    (
                        Status::Fail,
                        format!("another {field} ({} bytes)", got.len() / 2),
                    )
                }
            }
            (Ok(_), false) => (
                Status::Fail,
                format!("refused as {}", answer["error"].as_str().unwrap_or("?")),
            ),
            (Err(_), true) => (Status::Fail, "accepted".into()),
            (Err(_), false) if answer["plaintext"].as_str().is_some_and(|p| !p.is_empty()) => (
                Status::Fail,
                format!(
                    "refused as {}, but returned {} bytes of output",
                    answer["error"].as_str().unwrap_or("?"),
                    answer["plaintext"].as_str().map_or(0, |p| p.len() / 2)
                ),
            ),
            (Err(class), false) => {
                let got = answer["error"].as_str().unwrap_or("?");
                if got == class {
                    (Status::Pass, format!("refused as {got}"))
                } else {
                    (Status::Fail, format!("refused as {got}"))
                }
            }
        }
    }
}
