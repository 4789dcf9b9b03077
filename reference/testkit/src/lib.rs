//! What Coffer's tests, benches and conformance runs share: real PKCS#11 tokens
//! ([`tokens`]: SoftHSM2 and kryoptic), a real etcd cluster ([`etcd`]), whole vault flows
//! in process ([`flows`]), a private CA for TLS on loopback ([`tls`]), and the one way a prerequisite may be skipped ([`opt_out`]). Not published; a
//! dev-dependency, and the conformance runner's source of a private CA for its own HTTPS.

pub mod etcd;
pub mod flows;
pub mod tls;
pub mod tokens;

/// The `coffer` binary of this build, beside the running test (as cargo lays them out:
/// `target/<profile>/deps/<test>` and `target/<profile>/coffer`). Cargo builds it for the
/// integration tests of the `coffer` package.
pub fn coffer_exe() -> std::path::PathBuf {
    let mut dir = std::env::current_exe().expect("the test's own path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let exe = dir.join("coffer");
    assert!(
        exe.exists(),
        "{} is missing: run the tests of the coffer package (cargo test -p coffer)",
        exe.display()
    );
    exe
}

/// Whether the user opted out of the tests that need `what` by setting `var=1`; the skip is
/// printed, so a skipped suite is never silent. Anything other than `1` means "run them":
/// a missing prerequisite then fails with instructions instead of passing.
pub fn opt_out(var: &str, what: &str) -> bool {
    if std::env::var(var).as_deref() == Ok("1") {
        eprintln!("SKIPPED: {what} ({var}=1)");
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_1_opts_out() {
        // Names no other test or user sets.
        std::env::set_var("COFFER_TESTKIT_PROBE_A", "1");
        std::env::set_var("COFFER_TESTKIT_PROBE_B", "yes");
        assert!(super::opt_out("COFFER_TESTKIT_PROBE_A", "probe"));
        assert!(!super::opt_out("COFFER_TESTKIT_PROBE_B", "probe"));
        assert!(!super::opt_out("COFFER_TESTKIT_PROBE_UNSET", "probe"));
    }
}
