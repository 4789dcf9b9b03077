//! The model adapter in a second language (conformance/adapters/coffer_python.py) passes
//! every Coffer case of the client-format suite, and every mutant of it (one per checking
//! step of spec/format.md §7 and §8, tests/doubles/format_mutants.py) fails at least one;
//! likewise every mutant of the independent crypt15 reader (one per step of spec/crypt15.md's
//! reading procedure, tests/doubles/crypt15_mutants.py) fails a case of crypt15.yaml; and
//! the model vault server (tests/doubles/vault_model.py) passes every vault-server case while
//! each of its mutants (one checking step of spec/vault.md skipped or inverted) fails one;
//! likewise the model vault client (tests/doubles/vault_client_model.py) and the client-vault
//! suite: no mutant survives. conformance/MUTANTS.md is the table of which cases kill which mutant,
//! written by this test's run (`COFFER_WRITE_MUTANTS=1` rewrites it) and checked current.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn here() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with `cryptography` and `zstandard` (scripts/test.sh's .venv/vectors), or None
/// when the user opted out by name.
fn python() -> Option<String> {
    if coffer_testkit::opt_out(
        "COFFER_SKIP_PYTHON_VECTORS",
        "the Python model adapter and its mutants",
    ) {
        return None;
    }
    Some(std::env::var("COFFER_VECTORS_PYTHON").expect(
        "COFFER_VECTORS_PYTHON is not set: scripts/test.sh makes .venv/vectors (pip install \
         cryptography zstandard ...) and sets it; or opt out with COFFER_SKIP_PYTHON_VECTORS=1",
    ))
}

/// Runs the Coffer cases of the client-format suite with `client` and returns the ids (without
/// `client.format.`) of the cases that did not pass.
fn failures(client: &str) -> Vec<String> {
    failures_in(client, "client.format.", 60)
}

/// Runs the cases whose ids start with `prefix` (at least `least` of them) with `client` and
/// returns the ids (without `prefix`) of the cases that did not pass.
fn failures_in(client: &str, prefix: &str, least: usize) -> Vec<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer-conformance"));
    command.args(["run", "--filter", prefix, "--client", client]);
    let (ran, failed) = non_passing(command, prefix);
    assert!(ran >= least, "only {ran} cases ran");
    failed
}

/// Runs `command` (a `coffer-conformance run`) with a JSON report: how many cases ran, and
/// the ids (without `prefix`) of those that did not pass.
fn non_passing(mut command: Command, prefix: &str) -> (usize, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = command.arg("--json").arg(&json).output().unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let cases = report["cases"].as_array().expect("cases");
    let failed = cases
        .iter()
        .filter(|c| c["status"] != "pass")
        .map(|c| {
            let id = c["id"].as_str().unwrap();
            id.trim_start_matches(prefix).to_string()
        })
        .collect();
    (cases.len(), failed)
}

/// The mutants a double lists with `--list`: one JSON object each (`name`, `step`, `what`).
fn listed(python: &str, double: &Path) -> Vec<Value> {
    let list = Command::new(python)
        .arg(double)
        .arg("--list")
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A table: `heading`, then one row per mutant with the cases `killers` finds for it (at
/// least `least` mutants, `jobs` at a time); a mutant no case kills goes to `survivors`.
fn table(
    heading: &str,
    mutants: &[Value],
    least: usize,
    jobs: usize,
    killers: impl Fn(&str) -> Vec<String> + Sync,
    survivors: &mut Vec<String>,
) -> String {
    assert!(
        mutants.len() >= least,
        "only {} mutants listed",
        mutants.len()
    );
    let found = coffer_conformance::jobs::map(
        mutants,
        jobs,
        || Ok(()),
        |_, mutant| killers(mutant["name"].as_str().unwrap()),
    )
    .unwrap();
    let mut table =
        format!("{heading}\n\n| mutant | step | what it does | killed by |\n|---|---|---|---|\n");
    for (mutant, killers) in mutants.iter().zip(found) {
        if killers.is_empty() {
            survivors.push(mutant["name"].as_str().unwrap().to_string());
        }
        let killers: Vec<_> = killers.iter().map(|id| format!("`{id}`")).collect();
        table += &row(mutant, &killers);
    }
    table
}

/// Whether `row` is the table row `written` with a non-empty subset of its killers: the same
/// mutant, step and text, killed this time by some of the cases listed.
fn killed_by_fewer(row: &str, written: &str) -> bool {
    let split = |line: &str| -> Option<(String, Vec<String>)> {
        let (head, killers) = line.trim_end_matches('|').rsplit_once('|')?;
        let killers = killers
            .split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        Some((head.to_owned(), killers))
    };
    match (split(row), split(written)) {
        (Some((head, now)), Some((was_head, was))) => {
            head == was_head && !now.is_empty() && now.iter().all(|k| was.contains(k))
        }
        _ => false,
    }
}

fn script(relative: &str) -> PathBuf {
    here().join(relative)
}

#[test]
fn the_python_model_passes_every_coffer_case() {
    let Some(python) = python() else { return };
    let model = script("adapters/coffer_python.py");
    let failed = failures(&format!("{python} {}", model.display()));
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "the model adapter failed cases"
    );
}

/// One row of the table: the mutant (its `name`, `step`, `what`) and the cases that kill it.
fn row(mutant: &Value, killers: &[String]) -> String {
    format!(
        "| `{}` | {} | {} | {} |\n",
        mutant["name"].as_str().unwrap(),
        mutant["step"].as_str().unwrap(),
        mutant["what"].as_str().unwrap(),
        killers.join(", ")
    )
}

/// The mutants of the model adapter, run through the client-format suite: one table row each.
fn format_mutants(python: &str, survivors: &mut Vec<String>) -> String {
    let double = script("tests/doubles/format_mutants.py");
    table(
        "## The model adapter (spec/format.md)\n\n\
         Each mutant is `conformance/adapters/coffer_python.py` with one checking step of\n\
         spec/format.md broken (`conformance/tests/doubles/format_mutants.py`), run through the\n\
         `client-format` suite; each case named kills it (the mutant's result differs from the\n\
         vector's). Case ids omit `client.format.` and the `.decrypt` of decryption cases.",
        &listed(python, &double),
        20,
        1,
        |name| {
            failures(&format!("{python} {} {name}", double.display()))
                .iter()
                .map(|id| id.trim_end_matches(".decrypt").to_string())
                .collect()
        },
        survivors,
    )
}

/// The mutants of the independent crypt15 reader, checked against crypt15.yaml (headers,
/// files and invalid files): one table row each.
fn crypt15_mutants(python: &str, survivors: &mut Vec<String>) -> String {
    let out = Command::new(python)
        .arg(script("tests/doubles/crypt15_mutants.py"))
        .arg(here().join("../vectors"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut table = String::from(
        "## The crypt15 reader (spec/crypt15.md)\n\n\
         Each mutant is the independent reader `vectors/tools/check_vectors.py` with one step\n\
         of spec/crypt15.md's reading procedure broken\n\
         (`conformance/tests/doubles/crypt15_mutants.py`), checked against every case of\n\
         `vectors/crypt15.yaml` (headers included, which the shim does not send). Case ids omit\n\
         `crypt15.`.\n\n\
         | mutant | step | what it does | killed by |\n|---|---|---|---|\n",
    );
    let mut count = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mutant: Value = serde_json::from_str(line).unwrap();
        let name = mutant["name"].as_str().unwrap();
        // A mutant that crashes the reader proves nothing about the vectors: not a kill.
        let killers: Vec<String> = mutant["killers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|id| id.as_str())
            .filter(|id| !id.starts_with("(crash"))
            .map(|id| format!("`{}`", id.trim_start_matches("crypt15.")))
            .collect();
        if killers.is_empty() {
            survivors.push(name.to_string());
        }
        table += &row(&mutant, &killers);
        count += 1;
    }
    assert!(count >= 20, "only {count} crypt15 mutants listed");
    table
}

/// The model vault server (tests/doubles/vault_model.py), `mutant` or none, on loopback;
/// killed when dropped.
struct ModelVault {
    child: std::process::Child,
    url: String,
    dir: tempfile::TempDir,
    python: String,
}

impl ModelVault {
    fn start(python: &str, mutant: Option<&str>) -> ModelVault {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let token = |name: &str| {
            let mut random = [0u8; 24];
            getrandom::fill(&mut random).unwrap();
            std::fs::write(dir.path().join(name), hex::encode(random)).unwrap();
            hex::encode(random)
        };
        let (secret, public) = coffer::http::new_signing_key().unwrap();
        std::fs::write(dir.path().join("user.key"), &secret[..]).unwrap();
        let config = serde_json::json!({"session_lifetime": 5, "tenant_rate": 100,
            "state_dir": dir.path(), "tenants": {
            "default": {"token": token("token"), "user_keys": {"model": hex::encode(public)}},
            "other": {"token": token("other.token")},
        }});
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut command = Command::new(python);
        command.arg(script("tests/doubles/vault_model.py"));
        command.arg("--config").arg(&path);
        if let Some(mutant) = mutant {
            command.args(["--mutant", mutant]);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the model vault said {line:?}"))
            .trim()
            .to_string();
        ModelVault {
            child,
            url,
            dir,
            python: python.to_owned(),
        }
    }

    /// The ids (without `vault.`) of the vault-server cases that did not pass.
    fn failures(&self) -> Vec<String> {
        let file = |name: &str| self.dir.path().join(name);
        let mut command = Command::new(env!("CARGO_BIN_EXE_coffer-conformance"));
        command
            .args(["run", "--filter", "vault.", "--vault", &self.url])
            .arg("--vault-token-file")
            .arg(file("token"))
            .arg("--vault-other-tenant-token-file")
            .arg(file("other.token"))
            .arg("--vault-user-key")
            .arg(file("user.key"))
            .args(["--vault-user-kid", "model", "--vault-session-lifetime", "5"])
            .args(["--vault-tenant-rate", "100"])
            .arg("--vault-restart-command")
            .arg(format!(
                "{} {} --restart {}",
                self.python,
                script("tests/doubles/vault_model.py").display(),
                self.dir.path().display()
            ));
        let (ran, failed) = non_passing(command, "vault.");
        assert_eq!(
            ran,
            coffer_conformance::suites::vault_server::case_ids().len()
        );
        failed
    }
}

impl Drop for ModelVault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A restart (--restart) left another process, which run.json names.
        let run = std::fs::read(self.dir.path().join("run.json")).unwrap_or_default();
        if let Ok(run) = serde_json::from_slice::<Value>(&run) {
            let _ = Command::new("kill")
                .args(["-9", &run["pid"].to_string()])
                .status();
        }
    }
}

#[test]
fn the_model_vault_passes_every_vault_server_case() {
    let Some(python) = python() else { return };
    let model = ModelVault::start(&python, None);
    assert_eq!(model.failures(), Vec::<String>::new());
}

/// The mutants of the model vault server, each run through the vault-server suite: one
/// table row each.
fn vault_mutants(python: &str, survivors: &mut Vec<String>) -> String {
    table(
        "## The model vault server (spec/vault.md)\n\n\
         Each mutant is `conformance/tests/doubles/vault_model.py` (a vault server written from\n\
         spec/vault.md and spec/openapi.yaml, in Python) with one checking step of the spec\n\
         skipped or inverted, run through the `vault-server` suite on loopback; each case named\n\
         kills it. Case ids omit `vault.`.",
        &listed(python, &script("tests/doubles/vault_model.py")),
        30,
        // A run mostly waits (a session's lifetime, a stalled connection's timeout).
        4,
        |name| ModelVault::start(python, Some(name)).failures(),
        survivors,
    )
}

#[test]
fn the_model_vault_client_passes_every_client_vault_case() {
    let Some(python) = python() else { return };
    let model = script("tests/doubles/vault_client_model.py");
    let client = format!("{python} {}", model.display());
    assert_eq!(
        failures_in(&client, "client.vault.", 20),
        Vec::<String>::new()
    );
}

/// The mutants of the model vault client, each run through the client-vault suite: one table
/// row each.
fn vault_client_mutants(python: &str, survivors: &mut Vec<String>) -> String {
    let model = script("tests/doubles/vault_client_model.py");
    table(
        "## The model vault client (spec/vault.md)\n\n\
         Each mutant is `conformance/tests/doubles/vault_client_model.py` (a vault client\n\
         written from spec/vault.md, in Python, serving the shim protocol) with one step of the\n\
         client's procedure skipped or inverted, run through the `client-vault` suite; each case\n\
         named kills it. Case ids omit `client.vault.`.",
        &listed(python, &model),
        12,
        1,
        |name| {
            let client = format!("{python} {} --mutant {name}", model.display());
            failures_in(&client, "client.vault.", 20)
        },
        survivors,
    )
}

#[test]
fn no_mutant_survives() {
    let Some(python) = python() else { return };
    let mut survivors = Vec::new();
    let table = format!(
        "# Mutants, and the cases that kill them\n\n\
         Written by `cargo test -p coffer-conformance --test mutants` with\n\
         `COFFER_WRITE_MUTANTS=1`; the test fails when this file is not current, or when a\n\
         mutant survives (no case kills it).\n\n{}\n{}\n{}\n{}",
        format_mutants(&python, &mut survivors),
        crypt15_mutants(&python, &mut survivors),
        vault_mutants(&python, &mut survivors),
        vault_client_mutants(&python, &mut survivors)
    );
    assert_eq!(
        survivors,
        Vec::<String>::new(),
        "mutants that no case kills"
    );
    let path = here().join("MUTANTS.md");
    if std::env::var("COFFER_WRITE_MUTANTS").as_deref() == Ok("1") {
        std::fs::write(&path, &table).unwrap();
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    // The rows that differ, each side's (the tables are too long to show whole). A row whose
    // killers this run are some of those written is current: a case that kills a mutant only
    // when a race goes one way (twelve guesses at once against a Python model on a loaded
    // machine, not all of which arrive in time) does not make the table stale.
    let old: Vec<&str> = written.lines().collect();
    let new: Vec<&str> = table.lines().collect();
    let current = |line: &&str, other: &[&str]| {
        other.contains(line) || other.iter().any(|o| killed_by_fewer(line, o))
    };
    let changed: Vec<String> = (old.iter().filter(|l| !new.iter().any(|n| current(n, &[l]))))
        .map(|l| format!("- {l}"))
        .chain(
            new.iter()
                .filter(|l| !current(l, &old))
                .map(|l| format!("+ {l}")),
        )
        .collect();
    assert!(
        old.len() == new.len() && changed.is_empty(),
        "conformance/MUTANTS.md is not current: rerun with COFFER_WRITE_MUTANTS=1 and review:\n{}",
        changed.join("\n")
    );
}

#[test]
fn a_row_killed_by_fewer_of_its_cases_is_still_current() {
    let written = "| `m` | §1 | skips x | `a`, `b` |";
    assert!(killed_by_fewer("| `m` | §1 | skips x | `a` |", written));
    assert!(
        !killed_by_fewer("| `m` | §1 | skips x | `c` |", written),
        "a new killer"
    );
    assert!(
        !killed_by_fewer("| `m` | §1 | skips x |  |", written),
        "a survivor"
    );
    assert!(
        !killed_by_fewer("| `n` | §1 | skips x | `a` |", written),
        "another mutant"
    );
}
