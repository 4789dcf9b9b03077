//! `vault-load` answers `--help` without side effects (it once started a load run and
//! panicked), and refuses bad values as usage errors.

use std::process::Command;

#[test]
fn help_starts_nothing_and_bad_values_are_usage_errors() {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vault-load"))
        .arg("--help")
        .env("PATH", "") // it could not start a vault even if it tried
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Usage: vault-load") && help.contains("--realms-floor"),
        "{help}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    for bad in [["--mode", "nope"], ["--clients", "many"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_vault-load"))
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vault-load"))
        .args(["--transports", "http,https", "--backends", "soft,softhsm2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
