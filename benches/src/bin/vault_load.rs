//! Vault load generator: starts `coffer vault serve` on loopback (real HTTP, real SQLite with
//! synchronous=FULL on disk) once per HSM backend, registers users, then runs N concurrent
//! clients for a fixed time, either sending KE1s (`--mode guesses`: each one a durable guess)
//! or doing whole recoveries (`--mode recoveries`: KE1, the client's check of KE2, KE3, the
//! release opened; the vault runs with cheap KSF parameters so the server is what is
//! measured). Reports operations per second and latency percentiles (HDR histogram) per
//! backend, with ratios to the first backend of the same run, and the ceiling: opaque-ke's
//! `ServerLogin::start` rate on one core, in process.
//!
//! Usage: vault-load [--clients 64] [--seconds 10] [--mode guesses|recoveries]
//!        [--backends soft,softhsm2,kryoptic] [--stores sqlite,etcd://host:port,...]
//!        [--coffer target/release/coffer] [--json]
//!
//! Every backend runs on every store; an etcd store gets a fresh key prefix per run.
//!
//! `softhsm2` needs Debian's softhsm2; `kryoptic` needs COFFER_KRYOPTIC_MODULE (the output
//! of scripts/kryoptic.sh). A backend that is asked for and missing is an error.

use coffer::http::VaultClient;
use coffer::key::RootKey;
use coffer::vault::RecoveryClient;
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
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

/// A running vault: its URL, token and process.
struct Served {
    url: String,
    token: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// Starts `coffer vault serve` for `backend` (`soft`, `softhsm2`, `kryoptic`), with its own
/// token when it is a PKCS#11 module.
fn serve(coffer: &str, backend: &str, store: &str) -> Result<Served, String> {
    let dir = tempfile::tempdir_in(".")
        .map_err(|e| format!("temporary directory beside the current one (on disk): {e}"))?;
    let hsm_uri = match backend {
        "soft" => None,
        "softhsm2" => {
            coffer_bench::tokens::softhsm(dir.path())
                .ok_or("softhsm2: no token (apt-get install softhsm2)")?;
            Some(format!(
                "pkcs11:token=bench?module-path={}&pin-value=87654321",
                coffer::hsm::softhsm2_module().display()
            ))
        }
        "kryoptic" => {
            let module = std::env::var("COFFER_KRYOPTIC_MODULE")
                .map_err(|_| "kryoptic: set COFFER_KRYOPTIC_MODULE (scripts/kryoptic.sh)")?;
            coffer_bench::tokens::kryoptic(dir.path()).ok_or("kryoptic: no token")?;
            Some(format!(
                "pkcs11:token=bench?module-path={module}&pin-value=87654321"
            ))
        }
        other => {
            return Err(format!(
                "unknown backend {other} (soft, softhsm2, kryoptic)"
            ))
        }
    };
    let mut command = Command::new(coffer);
    command
        .args(["vault", "serve", "--listen", "127.0.0.1:0"])
        .args(["--ksf", "argon2id:m=256,t=1,p=1"])
        .args(["--user-per-minute", "1000000000"])
        .args(["--tenant-per-second", "1000000000", "--data"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped());
    if let Some(uri) = &hsm_uri {
        command.args(["--hsm", uri]);
    }
    if store != "sqlite" {
        // A fresh prefix: each run registers its own users.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let hosts = store.split('/').take(3).collect::<Vec<_>>().join("/");
        let prefix = format!("vault-load-{}-{nanos}", std::process::id());
        command.args(["--store", &format!("{hosts}/{prefix}")]);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("{coffer}: {e} (build it with cargo build --release -p coffer)"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let first: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("{backend}: vault did not start: {e}"))?;
    let url = first["listening"].as_str().ok_or("no URL")?.to_owned();
    let token = std::fs::read_to_string(first["token_file"].as_str().ok_or("no token file")?)
        .map_err(|e| e.to_string())?;
    Ok(Served {
        url,
        token: token.trim().to_owned(),
        child,
        _dir: dir,
    })
}

/// One client's loop: guesses (KE1s) or whole recoveries, until `stop`.
fn client_loop(
    served: (&str, &str),
    c: usize,
    recoveries: bool,
    stop: &AtomicBool,
    histogram: &Mutex<Histogram<u64>>,
) -> u64 {
    let (url, token) = served;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let client = VaultClient::new(url, token, "coffer-vault");
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let paths: Vec<String> = (0..USERS_PER_CLIENT)
        .map(|u| format!("{url}/v1/users/load{c}-{u}/recover/start"))
        .collect();
    let (_, ke1) = RecoveryClient::start(b"pw").expect("KE1");
    let body = serde_json::json!({"ke1": base64_url(&ke1)}).to_string();
    let mut n = 0u64;
    // Guesses stay under each record's limit; recoveries reset it.
    while !stop.load(Ordering::Relaxed) && (recoveries || n < 95 * USERS_PER_CLIENT as u64) {
        let user = n as usize % USERS_PER_CLIENT;
        let t = Instant::now();
        if recoveries {
            client
                .recover(&format!("load{c}-{user}"), b"pw")
                .expect("recovery");
        } else {
            let mut resp = agent
                .post(&paths[user])
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .send(body.as_bytes())
                .expect("request");
            let _ = resp.body_mut().read_to_vec();
            assert_eq!(resp.status().as_u16(), 200);
        }
        local
            .record(t.elapsed().as_micros() as u64)
            .expect("latency in range");
        n += 1;
    }
    histogram
        .lock()
        .expect("histogram")
        .add(local)
        .expect("merge");
    n
}

/// Runs the load against one backend; returns its figures.
fn load(
    coffer: &str,
    (backend, store): (&str, &str),
    clients: usize,
    seconds: f64,
    recoveries: bool,
) -> serde_json::Value {
    let mut served = serve(coffer, backend, store).unwrap_or_else(|e| panic!("{e}"));
    let setup = VaultClient::new(&served.url, &served.token, "coffer-vault");
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
    let stop = AtomicBool::new(false);
    let histogram =
        Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"));
    let started = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (stop, histogram) = (&stop, &histogram);
                let target = (served.url.as_str(), served.token.as_str());
                scope.spawn(move || client_loop(target, c, recoveries, stop, histogram))
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("client")).sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let _ = served.child.kill();
    let _ = served.child.wait();
    let h = histogram.lock().expect("histogram");
    serde_json::json!({
        "backend": backend,
        "store": if store == "sqlite" { "sqlite" } else { "etcd" },
        "mode": if recoveries { "recoveries" } else { "guesses" },
        "clients": clients,
        "operations": total,
        "seconds": elapsed,
        "per_second": total as f64 / elapsed,
        "p50_ms": h.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": h.max() as f64 / 1000.0,
    })
}

fn main() {
    let clients: usize = arg("--clients", "64").parse().expect("--clients N");
    let seconds: f64 = arg("--seconds", "10").parse().expect("--seconds S");
    let coffer = arg("--coffer", "target/release/coffer");
    let recoveries = match arg("--mode", "guesses").as_str() {
        "guesses" => false,
        "recoveries" => true,
        other => panic!("--mode {other}: guesses or recoveries"),
    };
    let backends = arg("--backends", "soft");
    let stores = arg("--stores", "sqlite");
    let json_out = std::env::args().any(|a| a == "--json");
    // Store URLs hold commas (etcd members): split the list at "sqlite" and "etcd" starts.
    let mut store_list: Vec<String> = Vec::new();
    for part in stores.split(',') {
        if part == "sqlite" || part.starts_with("etcd") || store_list.is_empty() {
            store_list.push(part.to_owned());
        } else if let Some(last) = store_list.last_mut() {
            last.push(',');
            last.push_str(part);
        }
    }
    let mut runs: Vec<serde_json::Value> = Vec::new();
    for store in &store_list {
        for b in backends.split(',') {
            runs.push(load(
                &coffer,
                (b.trim(), store),
                clients,
                seconds,
                recoveries,
            ));
        }
    }
    let ceiling = ceiling(2.0);
    let first = runs[0]["per_second"].as_f64().unwrap_or(1.0);
    for run in &mut runs {
        let rate = run["per_second"].as_f64().unwrap_or(0.0);
        run["ratio_to_first_backend"] = serde_json::json!(rate / first);
        run["ratio_to_ceiling"] = serde_json::json!(rate / ceiling);
    }
    let report = serde_json::json!({
        "runs": runs,
        "ceiling_server_login_start_per_second_one_core": ceiling,
    });
    if json_out {
        println!("{report}");
        return;
    }
    let unit = if recoveries {
        "recoveries"
    } else {
        "durable guesses"
    };
    println!(
        "| backend | store | {unit}/s | p50 | p99 | max | ratio to the first row | ratio to ceiling |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        println!(
            "| {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} | {:.2} |",
            run["backend"].as_str().unwrap_or("?"),
            run["store"].as_str().unwrap_or("?"),
            run["per_second"].as_f64().unwrap_or(0.0),
            run["p50_ms"].as_f64().unwrap_or(0.0),
            run["p99_ms"].as_f64().unwrap_or(0.0),
            run["max_ms"].as_f64().unwrap_or(0.0),
            run["ratio_to_first_backend"].as_f64().unwrap_or(0.0),
            run["ratio_to_ceiling"].as_f64().unwrap_or(0.0),
        );
    }
    println!(
        "{clients} clients, {seconds} s per run; ceiling: ServerLogin::start {ceiling:.0}/s on one core, in process"
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
