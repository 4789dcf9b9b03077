//! One case's result, as every report shows it (spec/conformance.md §4).

use serde::{Deserialize, Serialize};

/// How much a case matters (BCP 14): the same levels as the HSM profile's checks.
pub use coffer::hsm::check::Level;

/// What happened to a case, after the expected-failures file is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It held.
    Pass,
    /// It did not.
    Fail,
    /// It did not, and the expected-failures file says so, with a reason.
    ExpectedFailure,
    /// It held although the expected-failures file says it fails: the entry is stale.
    UnexpectedPass,
    /// The implementation said it does not implement it (never a pass).
    Unimplemented,
    /// Not run; the detail says why.
    Skipped,
}

impl Status {
    /// Whether this result, at `level`, is as expected (what the exit code is about): a
    /// skipped MUST is not (spec/conformance.md §4) unless the expected-failures file gave a
    /// reason, which makes it an expected failure.
    pub fn as_expected(self, level: Level) -> bool {
        match self {
            Status::Pass | Status::ExpectedFailure => true,
            Status::Skipped => level != Level::Must,
            Status::Fail | Status::UnexpectedPass | Status::Unimplemented => false,
        }
    }
}

impl CaseResult {
    /// Whether this result is as expected: [`Status::as_expected`] at the case's level.
    pub fn as_expected(&self) -> bool {
        self.status.as_expected(self.level)
    }
}

/// One case's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseResult {
    /// The suite: `hsm`, `client-format`, `client-vault`, `client-realms`, `vault-server`,
    /// `realm-server`.
    pub suite: String,
    /// Stable id, `role.area.case`.
    pub id: String,
    /// How much it matters.
    pub level: Level,
    /// The outcome.
    pub status: Status,
    /// What the case expects.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// More words: the expected-failure reason, the skip reason, the module's answer.
    pub detail: String,
}
