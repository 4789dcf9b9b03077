//! The vault's HSM stops answering (spec/vault.md §9.2): `coffer vault serve` on a SoftHSM2
//! token whose directory is taken away while the vault runs. Every request that needs the
//! master key fails as `io` within its bound, `/readyz` says not ready, no guess is counted
//! for a request refused that way, and once the token is back the vault serves again with
//! every count exact. Opt out with COFFER_SKIP_SOFTHSM=1.

use coffer::http::VaultClient;
use coffer::key::RootKey;
use coffer::vault::KsfFloor;
use coffer::{Classify, ErrorClass};
use coffer_testkit::tokens::{self, Module};
use coffer_testkit::Served;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

struct Vault {
    _served: Served,
    /// The admin endpoints (`/readyz`).
    admin: String,
    client: VaultClient,
}

fn serve(data: &Path, token: &tokens::TestToken) -> Vault {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
    token.apply(&mut command);
    let served = Served::start(
        command
            .args(["vault", "serve", "--listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args([
                "--ksf",
                "argon2id:m=256,t=1,p=1",
                "--hsm",
                &token.uri,
                "--data",
            ])
            .arg(data)
            .env_remove("COFFER_VAULT_FAULT")
            .stderr(Stdio::null()),
    );
    let client =
        VaultClient::new(served.url(), &served.token(), "coffer-vault").ksf_floor(KsfFloor::NONE);
    let admin = served.first["admin"]
        .as_str()
        .expect("--admin-listen")
        .to_owned();
    Vault {
        _served: served,
        admin,
        client,
    }
}

/// `/readyz`: its status code.
fn ready(vault: &Vault) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    agent
        .get(format!("{}/readyz", vault.admin))
        .call()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn an_hsm_that_stops_answering_fails_requests_as_io_and_counts_stay_exact() {
    if coffer_testkit::opt_out("COFFER_SKIP_SOFTHSM", "SoftHSM2") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = tokens::create(Module::SoftHsm2, &dir.path().join("hsm"), "vault")
        .expect("SoftHSM2 was not opted out");
    let init = token.coffer(&["hsm", "init", "--hsm", &token.uri]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let data = dir.path().join("data");
    let vault = serve(&data, &token);
    let root = RootKey::from_bytes([3; 32]);
    vault.client.register("ada", b"right", &root, None).unwrap();
    for _ in 0..2 {
        let e = vault.client.recover("ada", b"wrong").err().unwrap();
        assert_eq!(e.class(), ErrorClass::WrongPassword, "{e}");
    }
    assert_eq!(ready(&vault), 200);

    // The token's directory goes away under the running vault.
    let tokens_dir = dir.path().join("hsm/softhsm-tokens");
    let away = dir.path().join("hsm/away");
    std::fs::rename(&tokens_dir, &away).unwrap();
    std::fs::create_dir(&tokens_dir).unwrap();
    let gone = Instant::now();
    for attempt in 0..5 {
        let started = Instant::now();
        let e = vault
            .client
            .recover("ada", b"right")
            .err()
            .expect("no HSM, no KE2");
        assert_eq!(e.class(), ErrorClass::Io, "attempt {attempt}: {e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(ready(&vault), 503, "/readyz with the HSM gone");
    // The first KE1 found the HSM failing after its guess was counted; the four after it
    // were refused before counting (spec/vault.md §3.2 step 2).
    let status = vault.client.status("ada").unwrap();
    assert_eq!(
        status.guesses_left, 7,
        "10 - 2 wrong - 1 that met the failure"
    );

    // The token comes back. SoftHSM2 reads its token directory only when the module is
    // initialised, so this vault stays unready (and still counts nothing) until it is
    // restarted; restarted, it serves with every count as it was.
    std::fs::remove_dir(&tokens_dir).unwrap();
    std::fs::rename(&away, &tokens_dir).unwrap();
    let e = vault
        .client
        .recover("ada", b"right")
        .err()
        .expect("the module is not reloaded");
    assert_eq!(e.class(), ErrorClass::Io, "{e}");
    assert_eq!(ready(&vault), 503);
    assert_eq!(vault.client.status("ada").unwrap().guesses_left, 7);
    drop(vault);
    let back = Instant::now();
    let vault = serve(&data, &token);
    assert_eq!(ready(&vault), 200, "/readyz after the restart");
    assert_eq!(vault.client.status("ada").unwrap().guesses_left, 7);
    let recovered = vault.client.recover("ada", b"right").map(|r| r.root);
    let recovered = recovered.unwrap_or_else(|e| panic!("after the restart: {e}"));
    assert_eq!(recovered.as_bytes(), root.as_bytes());
    assert_eq!(vault.client.status("ada").unwrap().guesses_left, 10);
    eprintln!(
        "HSM gone: injected once for {} ms; 6 requests refused as io (each within 5 s), 1 guess \
         counted (the first, which met the failure), 0 lost; /readyz 503 until a restart, then \
         200; served again {} ms after the restart began",
        (back - gone).as_millis(),
        back.elapsed().as_millis()
    );
}
