//! The committed vectors are exactly what the generator writes, conform to their schemas, and
//! hold against the reference implementation; and the checker notices a changed output.

use coffer_vectors::{vectors_dir, write_all, TOPICS};
use serde_yaml::Value;

#[test]
fn committed_files_are_exactly_what_the_generator_writes() {
    let fresh = tempfile::tempdir().unwrap();
    for path in write_all(fresh.path()).unwrap() {
        let relative = path.strip_prefix(fresh.path()).unwrap();
        let committed = vectors_dir().join(relative);
        let committed_bytes = std::fs::read(&committed).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run cargo run -p coffer-vectors -- generate)",
                committed.display()
            )
        });
        assert!(
            committed_bytes == std::fs::read(&path).unwrap(),
            "{} differs from the generator's output: review the change, then run \
             cargo run -p coffer-vectors -- generate",
            committed.display()
        );
    }
}

#[test]
fn every_case_holds_against_the_reference() {
    for topic in TOPICS {
        let text =
            std::fs::read_to_string(vectors_dir().join(format!("{}.yaml", topic.name))).unwrap();
        let failures = (topic.verify)(&text).unwrap();
        assert!(failures.is_empty(), "{}: {failures:#?}", topic.name);
    }
}

fn schema_validator(name: &str) -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(vectors_dir().join("schema").join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn as_json(yaml: &Value) -> serde_json::Value {
    serde_json::to_value(yaml).unwrap()
}

#[test]
fn files_conform_to_their_schemas_which_refuse_unknown_fields() {
    for topic in TOPICS {
        let validator = schema_validator(topic.name);
        let text =
            std::fs::read_to_string(vectors_dir().join(format!("{}.yaml", topic.name))).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&as_json(&doc))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", topic.name);

        // An unknown field at the top, in a group and in a case is each refused.
        let mut top = doc.clone();
        top.as_mapping_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        assert!(
            !validator.is_valid(&as_json(&top)),
            "{}: unknown top-level field",
            topic.name
        );
        let mut group = doc.clone();
        group["groups"][0]
            .as_mapping_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        assert!(
            !validator.is_valid(&as_json(&group)),
            "{}: unknown group field",
            topic.name
        );
        let mut case = doc.clone();
        case["groups"][0]["cases"][0]
            .as_mapping_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        assert!(
            !validator.is_valid(&as_json(&case)),
            "{}: unknown case field",
            topic.name
        );
        let mut result = doc.clone();
        result["groups"][0]["cases"][0]["result"] = "maybe".into();
        assert!(
            !validator.is_valid(&as_json(&result)),
            "{}: bad result",
            topic.name
        );
    }
}

/// SplitMix64: a small seeded generator, so a failing mutation can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every (group, case, step, field) whose value is an expected output.
fn outputs(doc: &Value, fields: &[&str]) -> Vec<(usize, usize, Option<usize>, String)> {
    let mut found = Vec::new();
    for (g, group) in doc["groups"].as_sequence().unwrap().iter().enumerate() {
        for (c, case) in group["cases"].as_sequence().unwrap().iter().enumerate() {
            let kind = group["type"].as_str().unwrap_or_default();
            for entry in fields {
                // "field" in any group, or "group_type:field" in one kind of group.
                let field = match entry.split_once(':') {
                    Some((only, field)) if only == kind => field,
                    Some(_) => continue,
                    None => entry,
                };
                if let Some(step_field) = field.strip_prefix("steps.") {
                    for (i, step) in case["steps"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        if step.get(step_field).is_some_and(|v| !v.is_null()) {
                            found.push((g, c, Some(i), step_field.to_string()));
                        }
                    }
                } else if case.get(field).is_some_and(|v| !v.is_null()) {
                    found.push((g, c, None, field.to_string()));
                }
            }
        }
    }
    found
}

fn mutate(value: &Value, rng: &mut Rng) -> Value {
    match value {
        Value::Number(n) => Value::from(n.as_u64().unwrap_or(0) + 1 + rng.below(3) as u64),
        Value::String(s) if coffer_vectors::doc::ERROR_CLASSES.contains(&s.as_str()) => {
            let others: Vec<&&str> = coffer_vectors::doc::ERROR_CLASSES
                .iter()
                .filter(|c| **c != s)
                .collect();
            Value::from(others[rng.below(others.len())].to_string())
        }
        Value::String(s) if s.is_empty() => Value::from("00"),
        Value::String(s) => {
            // Flip one hex digit (one byte of the output changes).
            let mut chars: Vec<char> = s.chars().collect();
            let at = rng.below(chars.len().max(1));
            chars[at] = if chars[at] == '0' { '1' } else { '0' };
            Value::from(chars.into_iter().collect::<String>())
        }
        Value::Bool(b) => Value::Bool(!b),
        Value::Mapping(map) if map.contains_key("repeat") => {
            // A generator rule: one byte more.
            let mut rule = map.clone();
            let length = rule.get("length").and_then(Value::as_u64).unwrap_or(0);
            rule.insert("length".into(), Value::from(length + 1));
            Value::Mapping(rule)
        }
        Value::Mapping(map) => {
            // A map of outputs (e.g. metadata): change one value, or add one to an empty map.
            let mut map = map.clone();
            let first = map.iter().next().map(|(k, v)| (k.clone(), v.clone()));
            match first {
                Some((key, value)) => {
                    let changed = mutate(&value, rng);
                    map.insert(key, changed);
                }
                None => {
                    map.insert("generator".into(), "x".into());
                }
            }
            Value::Mapping(map)
        }
        other => panic!("no mutation for {other:?}"),
    }
}

#[test]
fn the_checker_notices_one_changed_output() {
    let seed = std::env::var("COFFER_VECTORS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("mutation seed {seed} (replay with COFFER_VECTORS_SEED={seed})");
    let mut rng = Rng(seed);
    for topic in TOPICS {
        let text =
            std::fs::read_to_string(vectors_dir().join(format!("{}.yaml", topic.name))).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let candidates = outputs(&doc, topic.outputs);
        assert!(
            !candidates.is_empty(),
            "{}: no outputs to mutate",
            topic.name
        );
        for _ in 0..25 {
            let (g, c, step, field) = &candidates[rng.below(candidates.len())];
            let mut mutated = doc.clone();
            let case = &mut mutated["groups"][*g]["cases"][*c];
            let slot = match step {
                Some(i) => &mut case["steps"][*i][field.as_str()],
                None => &mut case[field.as_str()],
            };
            let before = slot.clone();
            *slot = mutate(&before, &mut rng);
            let after = slot.clone();
            // A change the schema refuses (an entry added to an empty map of outputs) is
            // noticed too.
            let failures = (topic.verify)(&serde_yaml::to_string(&mutated).unwrap())
                .unwrap_or_else(|e| vec![format!("refused: {e}")]);
            assert!(
                !failures.is_empty(),
                "{}: changing {field} (step {step:?}) of case {} from {before:?} to {after:?} went unnoticed (seed {seed})",
                topic.name,
                doc["groups"][*g]["cases"][*c]["id"].as_str().unwrap_or("?"),
            );
        }
    }
}

/// The Python reader (vectors/tools/check_vectors.py: pyyaml, cryptography and PyKCS11) agrees
/// with every case, and notices a changed output too. scripts/test.sh makes its venv and sets
/// COFFER_VECTORS_PYTHON; opt out by name only with COFFER_SKIP_PYTHON_VECTORS=1.
#[test]
fn an_independent_python_reader_agrees() {
    if coffer_testkit::opt_out(
        "COFFER_SKIP_PYTHON_VECTORS",
        "the Python reader of the vectors",
    ) {
        return;
    }
    let python = std::env::var("COFFER_VECTORS_PYTHON").expect(
        "COFFER_VECTORS_PYTHON is not set: scripts/test.sh makes .venv/vectors (pip install \
         pyyaml cryptography PyKCS11) and sets it; or opt out with COFFER_SKIP_PYTHON_VECTORS=1",
    );
    let script = vectors_dir().join("tools/check_vectors.py");
    let files: Vec<_> = coffer_vectors::PYTHON_CHECKED
        .iter()
        .map(|name| vectors_dir().join(format!("{name}.yaml")))
        .collect();
    // hsm.yaml's token blobs and key wraps also go through a SoftHSM2 token (PyKCS11).
    let module = coffer_testkit::tokens::Module::SoftHsm2.path();
    let python_with_token = || {
        let mut command = std::process::Command::new(&python);
        if let Some(module) = &module {
            command.env("COFFER_VECTORS_PKCS11_MODULE", module);
        }
        command
    };
    let out = python_with_token()
        .arg(&script)
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(" 0 failures"), "{report}");
    if module.is_some() {
        assert!(
            !report.contains("no COFFER_VECTORS_PKCS11_MODULE"),
            "{report}"
        );
    }

    // One changed expectation per file, in a copy: the reader must fail each time.
    let dir = tempfile::tempdir().unwrap();
    let changes = [
        ("kdf", "okm: ", None),
        ("crypt15", "error: corrupt", Some("error: truncated")),
        ("format", "released: 16384", Some("released: 0")),
        ("keys", "position: 9", Some("position: 8")),
        ("realms", "evaluation: ", None),
        ("realms", "outcome: locked", Some("outcome: no_record")),
        ("realms", "realm-c: 2\n", Some("realm-c: 1\n")),
        ("vault", "ke2: ", None),
        ("vault", "outcome: wrong_password", Some("outcome: ok")),
        ("vault", "guesses_left: 10", Some("guesses_left: 9")),
        ("hsm", "sealed: 0203", None),
        ("hsm", "error: corrupt", Some("error: malformed")),
        ("hsm", "wrapped: 28c9", None),
    ];
    for (name, needle, replacement) in changes {
        let text = std::fs::read_to_string(vectors_dir().join(format!("{name}.yaml"))).unwrap();
        let at = text
            .find(needle)
            .unwrap_or_else(|| panic!("{name}: no {needle:?}"));
        let changed = match replacement {
            Some(r) => text.replacen(needle, r, 1),
            None => {
                let digit = at + needle.len();
                let mut bytes = text.clone().into_bytes();
                bytes[digit] = if bytes[digit] == b'0' { b'1' } else { b'0' };
                String::from_utf8(bytes).unwrap()
            }
        };
        let copy = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&copy, changed).unwrap();
        let out = python_with_token()
            .arg(&script)
            .arg(&copy)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {needle:?} changed, yet: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Every flag a case uses is explained in the file's notes, every note is used, ids are
/// unique and start with the topic, and number_of_cases is right.
#[test]
fn flags_notes_ids_and_counts_agree() {
    for topic in TOPICS {
        let text =
            std::fs::read_to_string(vectors_dir().join(format!("{}.yaml", topic.name))).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let notes: std::collections::BTreeSet<String> = doc["notes"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        let mut used = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        let mut count = 0;
        for group in doc["groups"].as_sequence().unwrap() {
            for case in group["cases"].as_sequence().unwrap() {
                count += 1;
                let id = case["id"].as_str().unwrap();
                assert!(id.starts_with(&format!("{}.", topic.name)), "{id}");
                assert!(ids.insert(id.to_owned()), "{id} appears twice");
                for flag in case["flags"].as_sequence().unwrap() {
                    let flag = flag.as_str().unwrap();
                    assert!(
                        notes.contains(flag),
                        "{id}: flag {flag} is not explained in the notes"
                    );
                    used.insert(flag.to_owned());
                }
                let invalid = case["result"].as_str() == Some("invalid");
                let has_error = case.get("error").is_some_and(|e| !e.is_null())
                    || case["steps"].as_sequence().is_some();
                assert!(
                    !invalid || has_error,
                    "{id}: an invalid case names no error class"
                );
            }
        }
        let unused: Vec<_> = notes.difference(&used).collect();
        assert!(
            unused.is_empty(),
            "{}: notes no case uses: {unused:?}",
            topic.name
        );
        assert_eq!(
            doc["number_of_cases"].as_u64(),
            Some(count),
            "{}",
            topic.name
        );
    }
}
