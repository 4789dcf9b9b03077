//! Vault load generator: starts `coffer vault serve` on loopback (real HTTP, real SQLite with
//! synchronous=FULL on disk), registers users, then runs N concurrent clients sending KE1s
//! (each one a durable guess) for a fixed time. Reports guesses per second and latency
//! percentiles (HDR histogram), and in the same run the ceiling: opaque-ke's
//! `ServerLogin::start` rate on one core, in process.
//!
//! Usage: vault-load [--clients 64] [--seconds 10] [--coffer target/release/coffer] [--json]

use coffer::http::client::VaultClient;
use coffer::key::RootKey;
use coffer::vault::RecoveryClient;
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Users per client: each can take 100 guesses.
const USERS_PER_CLIENT: usize = 16;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// `ServerLogin::start` calls per second on one thread, with a real password file.
fn ceiling(seconds: f64) -> f64 {
    use coffer::vault::Suite;
    use opaque_ke::*;
    let mut rng = rand_core::OsRng;
    let setup = ServerSetup::<Suite>::new(&mut rng);
    let argon = coffer::vault::KsfParams::TEST.argon2().unwrap();
    let reg = ClientRegistration::<Suite>::start(&mut rng, b"pw").unwrap();
    let resp = ServerRegistration::<Suite>::start(&setup, reg.message, b"id").unwrap();
    let fin = reg
        .state
        .finish(
            &mut rng,
            b"pw",
            resp.message,
            ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&argon)),
        )
        .unwrap();
    let file = ServerRegistration::<Suite>::finish(fin.message).serialize();
    let ke1 = ClientLogin::<Suite>::start(&mut rng, b"pw")
        .unwrap()
        .message
        .serialize();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        let pf = ServerRegistration::<Suite>::deserialize(&file).unwrap();
        let req = CredentialRequest::<Suite>::deserialize(&ke1).unwrap();
        let _ = ServerLogin::start(
            &mut rng,
            &setup,
            Some(pf),
            req,
            b"id",
            ServerLoginParameters::default(),
        )
        .unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let clients: usize = arg("--clients", "64").parse().expect("--clients N");
    let seconds: f64 = arg("--seconds", "10").parse().expect("--seconds S");
    let coffer = arg("--coffer", "target/release/coffer");
    let json_out = std::env::args().any(|a| a == "--json");
    let dir =
        tempfile::tempdir_in(".").expect("temporary directory beside the current one (on disk)");
    let mut child = Command::new(&coffer)
        .args([
            "vault",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ksf",
            "argon2id:m=256,t=1,p=1",
        ])
        .args([
            "--user-per-minute",
            "1000000000",
            "--tenant-per-second",
            "1000000000",
            "--data",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{coffer}: {e} (build it with cargo build --release -p coffer)")
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = first["listening"].as_str().unwrap().to_owned();
    let token = std::fs::read_to_string(first["token_file"].as_str().unwrap()).unwrap();

    // Each client cycles over its own users (limit 100 each, the operator maximum), so every
    // KE1 is a real, counted guess.
    let setup = VaultClient::new(&url, &token, "coffer-vault");
    for c in 0..clients {
        for u in 0..USERS_PER_CLIENT {
            setup
                .register(
                    &format!("load{c}-{u}"),
                    b"pw",
                    &RootKey::from_bytes([c as u8; 32]),
                    Some(100),
                )
                .expect("register");
        }
    }
    let (_, ke1) = RecoveryClient::start(b"pw").unwrap();
    let body = serde_json::json!({"ke1": base64_url(&ke1)}).to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, histogram, url, token, body) = (
                Arc::clone(&stop),
                Arc::clone(&histogram),
                url.clone(),
                token.clone(),
                body.clone(),
            );
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let paths: Vec<String> = (0..USERS_PER_CLIENT)
                    .map(|u| format!("{url}/v1/users/load{c}-{u}/recover/start"))
                    .collect();
                let mut n = 0u64;
                // Stay under each record's limit.
                while !stop.load(Ordering::Relaxed) && n < 95 * USERS_PER_CLIENT as u64 {
                    let path = &paths[n as usize % USERS_PER_CLIENT];
                    let t = Instant::now();
                    let mut resp = agent
                        .post(path)
                        .header("authorization", format!("Bearer {}", token.trim()))
                        .header("content-type", "application/json")
                        .send(body.as_bytes())
                        .expect("request");
                    let _ = resp.body_mut().read_to_vec();
                    assert_eq!(resp.status().as_u16(), 200);
                    local.record(t.elapsed().as_micros() as u64).unwrap();
                    n += 1;
                }
                histogram.lock().unwrap().add(local).unwrap();
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let rate = total as f64 / elapsed;
    let h = histogram.lock().unwrap();
    let ceiling = ceiling(2.0);
    let report = serde_json::json!({
        "clients": clients,
        "guesses": total,
        "seconds": elapsed,
        "guesses_per_second": rate,
        "p50_ms": h.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": h.max() as f64 / 1000.0,
        "ceiling_server_login_start_per_second_one_core": ceiling,
        "ratio_to_ceiling": rate / ceiling,
    });
    if json_out {
        println!("{report}");
    } else {
        println!(
            "{total} durable guesses in {elapsed:.1} s from {clients} clients: {rate:.0}/s, p50 {:.1} ms, p99 {:.1} ms; \
             ServerLogin::start ceiling {ceiling:.0}/s per core (ratio {:.2})",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            rate / ceiling
        );
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
