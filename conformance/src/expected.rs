//! The expected-failures file: YAML, case glob → reason (spec/conformance.md §5). A case it
//! names that fails is an expected failure; one that passes is an unexpected pass; an entry
//! that names no case of the run is stale.

use crate::case::{CaseResult, Status};
use std::collections::BTreeMap;

/// Parsed entries, in file order.
#[derive(Debug, Default)]
pub struct ExpectedFailures {
    entries: Vec<(String, String)>,
}

/// Why an expected-failures file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExpectedError {
    /// Not a YAML map of strings.
    #[error("expected-failures file: {0}")]
    Parse(String),
    /// An entry without a reason.
    #[error("expected-failures file: {0:?} has no reason")]
    NoReason(String),
}

impl ExpectedFailures {
    /// Parses `glob: reason` lines (a YAML map); every reason must be non-empty.
    pub fn parse(text: &str) -> Result<Self, ExpectedError> {
        let map: Option<serde_yaml::Mapping> =
            serde_yaml::from_str(text).map_err(|e| ExpectedError::Parse(e.to_string()))?;
        let mut entries = Vec::new();
        for (glob, reason) in map.unwrap_or_default() {
            let glob = glob
                .as_str()
                .ok_or_else(|| ExpectedError::Parse("a key is not a string".into()))?
                .to_owned();
            let reason = reason.as_str().unwrap_or_default().trim().to_owned();
            if reason.is_empty() {
                return Err(ExpectedError::NoReason(glob));
            }
            entries.push((glob, reason));
        }
        Ok(ExpectedFailures { entries })
    }

    /// Applies the entries to `results`; returns the stale globs (matching no case).
    pub fn apply(&self, results: &mut [CaseResult]) -> Vec<String> {
        let mut used: BTreeMap<&str, bool> = self
            .entries
            .iter()
            .map(|(g, _)| (g.as_str(), false))
            .collect();
        for result in results.iter_mut() {
            let Some((glob, reason)) = self.entries.iter().find(|(g, _)| glob_match(g, &result.id))
            else {
                continue;
            };
            used.insert(glob.as_str(), true);
            match result.status {
                Status::Fail => {
                    result.status = Status::ExpectedFailure;
                    result.detail = format!("{reason} ({})", result.detail);
                }
                Status::Pass => {
                    result.status = Status::UnexpectedPass;
                    result.detail =
                        format!("listed as an expected failure ({reason}), but it passed");
                }
                // A MUST not run does not pass; listed, it is a known gap with its reason.
                Status::Skipped if result.level == crate::case::Level::Must => {
                    result.status = Status::ExpectedFailure;
                    result.detail = format!("{reason} (not run: {})", result.detail);
                }
                _ => {}
            }
        }
        used.into_iter()
            .filter(|(_, u)| !u)
            .map(|(g, _)| g.to_owned())
            .collect()
    }
}

/// `*` matches any run of characters (dots included); everything else is literal.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("hsm.gcm.*", "hsm.gcm.bad_tag_rejected"));
        assert!(glob_match("*.empty_iv_*", "hsm.gcm.empty_iv_rejected"));
        assert!(glob_match("hsm.key.value_refused", "hsm.key.value_refused"));
        assert!(!glob_match("hsm.gcm.*", "hsm.wrap.untrusted_refused"));
        assert!(!glob_match("hsm.*.x", "hsm.gcm.y"));
    }

    #[test]
    fn a_reason_is_mandatory() {
        assert!(matches!(
            ExpectedFailures::parse("hsm.gcm.*: ''"),
            Err(ExpectedError::NoReason(_))
        ));
        assert!(matches!(
            ExpectedFailures::parse("[1, 2]"),
            Err(ExpectedError::Parse(_))
        ));
        assert!(ExpectedFailures::parse("hsm.x: because").is_ok());
    }
}
