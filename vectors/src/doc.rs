//! The shape shared by every vector file: a header that says what the file tests and how to
//! apply it, then groups of cases. Each topic defines its own group and case types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `schema` value of every file written by this generator.
pub const SCHEMA_VERSION: &str = "coffer-vectors/1";

/// A vector file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VectorFile<G> {
    /// Always `coffer-vectors/1`.
    pub schema: String,
    /// The topic: `keys`, `kdf`, `crypt15`, `format`, ...
    pub topic: String,
    /// What the file tests, in one paragraph.
    pub description: String,
    /// How an implementation applies the cases.
    pub how_to_apply: String,
    /// The normative documents the expectations come from.
    pub sources: Vec<String>,
    /// Every flag used by a case, explained once.
    pub notes: BTreeMap<String, String>,
    /// How many cases the file holds.
    pub number_of_cases: usize,
    /// The groups of cases.
    pub groups: Vec<G>,
}

/// What a case expects of an implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// MUST be accepted, with exactly the outputs given.
    Valid,
    /// MUST be rejected, with the error class given.
    Invalid,
    /// MAY be accepted or rejected; if accepted, the outputs given are the right ones.
    Acceptable,
}

/// The error classes of `spec/errors.md` that vectors use.
pub const ERROR_CLASSES: &[&str] = &[
    "wrong_key",
    "corrupt",
    "truncated",
    "trailing_data",
    "unsupported",
    "malformed",
    "wrong_password",
    "no_record",
    "locked",
    "server_auth_failed",
    "rate_limited",
    "unauthorized",
    "io",
];

/// Binary data in a case: hex for anything written out, or a generator rule for large,
/// repetitive inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Data {
    /// Lowercase hex.
    Hex(String),
    /// `pattern` (hex) repeated and cut to `length` bytes.
    Rule(RepeatRule),
}

/// `pattern` repeated and cut to `length` bytes: `{repeat: "00", length: 3}` is `000000`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatRule {
    /// The pattern, in lowercase hex (at least one byte).
    pub repeat: String,
    /// Length of the result in bytes.
    pub length: u64,
}

impl Data {
    /// Small data, written out.
    pub fn hex(bytes: &[u8]) -> Self {
        Data::Hex(hex::encode(bytes))
    }

    /// `length` bytes of the 256-byte counting pattern 00 01 .. ff (it makes swapped or
    /// shifted chunks visible).
    pub fn counting(length: u64) -> Self {
        Data::Rule(RepeatRule {
            repeat: (0..=255u8).map(|b| format!("{b:02x}")).collect(),
            length,
        })
    }

    /// The bytes this stands for.
    pub fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            Data::Hex(text) => Ok(hex::decode(text)?),
            Data::Rule(rule) => {
                let pattern = hex::decode(&rule.repeat)?;
                anyhow::ensure!(!pattern.is_empty(), "an empty repeat pattern");
                anyhow::ensure!(rule.length <= 1 << 30, "a rule longer than 1 GiB");
                Ok(pattern
                    .iter()
                    .copied()
                    .cycle()
                    .take(rule.length as usize)
                    .collect())
            }
        }
    }
}

/// Counts the cases of groups with a `cases` list.
pub fn count<G>(groups: &[G], cases: impl Fn(&G) -> usize) -> usize {
    groups.iter().map(cases).sum()
}

/// A value's text cut to 100 characters, for failure messages about large outputs.
fn shorten(text: String) -> String {
    match text.char_indices().nth(100) {
        Some((at, _)) => format!("{}... ({} characters)", &text[..at], text.chars().count()),
        None => text,
    }
}

/// Collects the failures of a check run: each names the case and what differed.
#[derive(Debug, Default)]
pub struct Failures(pub Vec<String>);

impl Failures {
    /// Records a failure of case `id`.
    pub fn add(&mut self, id: &str, what: impl std::fmt::Display) {
        self.0.push(format!("{id}: {what}"));
    }

    /// Compares an expected and an actual value.
    pub fn expect_eq<T: PartialEq + std::fmt::Debug>(
        &mut self,
        id: &str,
        field: &str,
        expected: &T,
        actual: &T,
    ) {
        if expected != actual {
            self.add(
                id,
                format!(
                    "{field}: expected {}, got {}",
                    shorten(format!("{expected:?}")),
                    shorten(format!("{actual:?}"))
                ),
            );
        }
    }

    /// Checks the outcome of a case: a valid case must succeed (its outputs are checked by the
    /// caller), an invalid case must fail with exactly `error`.
    pub fn expect_outcome<T>(
        &mut self,
        id: &str,
        result: Outcome,
        error: Option<&str>,
        actual: &Result<T, String>,
    ) -> bool {
        match (result, actual) {
            (Outcome::Valid | Outcome::Acceptable, Ok(_)) => true,
            (Outcome::Valid, Err(class)) => {
                self.add(id, format!("valid, but rejected as {class}"));
                false
            }
            (Outcome::Acceptable, Err(_)) => false,
            (Outcome::Invalid, Ok(_)) => {
                self.add(id, "invalid, but accepted");
                false
            }
            (Outcome::Invalid, Err(class)) => {
                match error {
                    Some(expected) if expected == class => {}
                    Some(expected) => self.add(id, format!("expected {expected}, got {class}")),
                    None => self.add(id, "an invalid case without an error class"),
                }
                false
            }
        }
    }
}
