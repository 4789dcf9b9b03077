//! The `hsm` suite: the HSM profile's checks (spec/hsm.md §8) against a PKCS#11 module,
//! each in its own child process (this executable's hidden `check-one`), so a crash fails
//! one case. An optional mechanism the token does not offer is skipped, not failed.

use crate::case::{CaseResult, Status};
use coffer::hsm::check::{self, Grade, Verdict};
use std::path::Path;
use std::time::Duration;

/// Runs every check through `exe check-one --hsm URI --id ID` (which prints the check's
/// result as one JSON line), on the token named by `uri`; the environment (SOFTHSM2_CONF,
/// KRYOPTIC_CONF) is inherited.
pub fn run(exe: &Path, uri: &str, timeout: Duration) -> Vec<CaseResult> {
    check::run_isolated(
        |id| {
            let mut command = std::process::Command::new(exe);
            command.args(["check-one", "--hsm", uri, "--id", id]);
            command
        },
        timeout,
    )
    .into_iter()
    .map(|r| {
        let expected = match r.grade {
            Some(_) => "refused".to_owned(),
            None => "holds".to_owned(),
        };
        let actual = match (r.verdict, r.grade) {
            (Verdict::Pass, Some(Grade::Exact)) => "refused with the profile's code".to_owned(),
            (Verdict::Pass, Some(Grade::OtherRejection)) => "refused with another code".to_owned(),
            (Verdict::Pass, _) => "holds".to_owned(),
            (Verdict::Fail, Some(Grade::WronglyAccepted)) => "accepted".to_owned(),
            (Verdict::Fail, _) => "does not hold".to_owned(),
            (Verdict::Skipped, _) => "not run".to_owned(),
        };
        let optional_mechanism =
            r.level == check::Level::May && r.id.starts_with("hsm.mechanisms.");
        CaseResult {
            suite: "hsm".into(),
            id: r.id,
            level: r.level,
            status: match r.verdict {
                Verdict::Pass => Status::Pass,
                // Optional mechanisms follow what the token reports offering.
                Verdict::Fail if optional_mechanism => Status::Skipped,
                Verdict::Fail => Status::Fail,
                Verdict::Skipped => Status::Skipped,
            },
            expected,
            actual,
            detail: r.detail,
        }
    })
    .collect()
}
