//! Vault load generator: starts `coffer vault serve` on loopback (real HTTP, real SQLite with
//! synchronous=FULL on disk) once per HSM backend, registers users, then runs N concurrent
//! clients for a fixed time, either sending KE1s (`--mode guesses`: each one a durable guess)
//! or doing whole recoveries (`--mode recoveries`: KE1, the client's check of KE2, KE3, the
//! release opened; the vault runs with cheap KSF parameters so the server is what is
//! measured). Reports operations per second and latency percentiles (HDR histogram) per
//! backend, with ratios to the first backend of the same run, and the ceiling: opaque-ke's
//! `ServerLogin::start` rate on one core, in process. The clients share the machine's cores
//! with the server, so it also reports the server's own CPU time per operation
//! (`/proc/PID/stat`) and the ceiling's cost over it: how close the server itself comes to
//! the ceiling, whatever share of the cores the clients took.
//!
//! `--mode realms` measures threshold recovery (spec/realms.md): whole single-vault
//! recoveries on the first backend and store, then whole 2-of-3 recoveries against three
//! realms (`coffer vault serve --realm-id`, each its own process, SQLite file and master key),
//! every realm asked and unlocked, with the realms' rate as a ratio to the single vault's.
//!
//! Usage: vault-load [--clients 64] [--seconds 10] [--mode guesses|recoveries|realms]
//!        [--backends soft,softhsm2,kryoptic] [--stores sqlite,etcd://host:port,...]
//!        [--transports http,https]
//!        [--coffer target/release/coffer] [--json] [--realms-floor 0.3]
//!
//! Every backend runs on every store; an etcd store gets a fresh key prefix per run.
//!
//! `softhsm2` needs Debian's softhsm2; `kryoptic` needs COFFER_KRYOPTIC_MODULE (the output
//! of scripts/kryoptic.sh). A backend that is asked for and missing is an error.

use coffer::http::{ClientTls, VaultClient};
use coffer::key::RootKey;
use coffer::vault::{KsfFloor, RecoveryClient};
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Users per client: each can take 100 guesses.
const USERS_PER_CLIENT: usize = 16;

/// Load on a vault (or realms) served by `coffer vault serve` on loopback: operations per
/// second and latency percentiles per HSM backend and store, with ratios to the first.
#[derive(Debug, clap::Parser)]
#[command(
    name = "vault-load",
    after_help = "Examples:\n  vault-load --seconds 3 --clients 16 --mode guesses --backends soft,softhsm2\n  \
    vault-load --mode recoveries --stores sqlite,etcd://127.0.0.1:2379\n  \
    vault-load --mode realms --realms-floor 0.3\n\n\
    softhsm2 needs Debian's softhsm2; kryoptic needs COFFER_KRYOPTIC_MODULE (scripts/kryoptic.sh).\n\
    A backend that is asked for and missing is an error."
)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// guesses (KE1s, each a durable guess), recoveries (whole logins) or realms (2-of-3
    /// threshold recoveries against the single vault).
    #[arg(long, value_enum, default_value_t = Mode::Guesses)]
    mode: Mode,
    /// HSM backends, comma-separated: soft, softhsm2, kryoptic.
    #[arg(long, default_value = "soft")]
    backends: String,
    /// Stores, comma-separated: sqlite, etcd://host:port[,host:port...].
    #[arg(long, default_value = "sqlite")]
    stores: String,
    /// Transports, comma-separated: http, https.
    #[arg(long, default_value = "http")]
    transports: String,
    /// The coffer binary that serves.
    #[arg(long, default_value = "target/release/coffer")]
    coffer: String,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// With --mode realms: exit 1 when the realms' rate is below this share of the single
    /// vault's.
    #[arg(long, value_name = "RATIO")]
    realms_floor: Option<f64>,
}

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// KE1s only.
    Guesses,
    /// Whole recoveries.
    Recoveries,
    /// Threshold recoveries over three realms, after the single vault's.
    Realms,
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

/// The bench tokens' user PIN in a file (the CLI takes no PIN on its command line).
fn pin_file(dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let path = dir.join("user.pin");
    std::fs::write(&path, "87654321\n").map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// A running vault: its URL, token and process.
struct Served {
    url: String,
    token: String,
    /// The CA of its certificate, when it serves HTTPS.
    ca: Option<std::path::PathBuf>,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// Starts `coffer vault serve` for `backend` (`soft`, `softhsm2`, `kryoptic`), with its own
/// token when it is a PKCS#11 module.
fn serve(coffer: &str, backend: &str, store: &str, https: bool) -> Result<Served, String> {
    serve_as(coffer, backend, store, None, https)
}

/// [`serve`], as the realm `realm_id` when given.
fn serve_as(
    coffer: &str,
    backend: &str,
    store: &str,
    realm_id: Option<&str>,
    https: bool,
) -> Result<Served, String> {
    let dir = tempfile::tempdir_in(".")
        .map_err(|e| format!("temporary directory beside the current one (on disk): {e}"))?;
    let hsm_uri = match backend {
        "soft" => None,
        "softhsm2" => {
            coffer_bench::tokens::softhsm(dir.path())
                .ok_or("softhsm2: no token (apt-get install softhsm2)")?;
            Some(format!(
                "pkcs11:token=bench?module-path={}&pin-source=file:{}",
                coffer::hsm::softhsm2_module().display(),
                pin_file(dir.path())?.display()
            ))
        }
        "kryoptic" => {
            let module = std::env::var("COFFER_KRYOPTIC_MODULE")
                .map_err(|_| "kryoptic: set COFFER_KRYOPTIC_MODULE (scripts/kryoptic.sh)")?;
            coffer_bench::tokens::kryoptic(dir.path()).ok_or("kryoptic: no token")?;
            Some(format!(
                "pkcs11:token=bench?module-path={module}&pin-source=file:{}",
                pin_file(dir.path())?.display()
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
        .args(["--tenant-per-second", "1000000000"])
        // Guesses mode leaves every session open (KE1 without KE3): room for a long run.
        .args([
            "--max-sessions",
            "10000000",
            "--max-sessions-per-tenant",
            "10000000",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped());
    if let Some(uri) = &hsm_uri {
        command.args(["--hsm", uri]);
    }
    if let Some(id) = realm_id {
        command.args(["--realm-id", id]);
    }
    // HTTPS with a private CA (the test kit's), which the clients trust.
    let pki = https.then(|| coffer_testkit::tls::issue(&dir.path().join("pki"), "vault-load"));
    if let Some(pki) = &pki {
        command.arg("--tls-cert").arg(&pki.cert);
        command.arg("--tls-key").arg(&pki.key);
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
        ca: pki.map(|p| p.ca),
        child,
        _dir: dir,
    })
}

/// One client's loop: guesses (KE1s) or whole recoveries, until `stop`.
fn client_loop(
    served: (&str, &str, Option<&std::path::Path>),
    c: usize,
    recoveries: bool,
    stop: &AtomicBool,
    histogram: &Mutex<Histogram<u64>>,
) -> u64 {
    let (url, token, ca) = served;
    let agent = coffer_testkit::tls::agent(ca);
    // The vaults run with cheap KSF parameters (the server is what is measured).
    let client = vault_client(url, token, ca);
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

/// A client of the vault at `url`, trusting `ca` for HTTPS, accepting the cheap KSF the
/// measured vaults use (the server is what is measured).
fn vault_client(url: &str, token: &str, ca: Option<&std::path::Path>) -> VaultClient {
    let tls = match ca {
        Some(ca) => ClientTls::with_ca_file(ca).expect("the vault's CA"),
        None => ClientTls::default(),
    };
    VaultClient::with_tls(url, token, "coffer-vault", &tls).ksf_floor(KsfFloor::NONE)
}

/// Runs the load against one backend; returns its figures.
fn load(
    coffer: &str,
    (backend, store, https): (&str, &str, bool),
    clients: usize,
    seconds: f64,
    recoveries: bool,
) -> serde_json::Value {
    let mut served = serve(coffer, backend, store, https).unwrap_or_else(|e| panic!("{e}"));
    let setup = vault_client(&served.url, &served.token, served.ca.as_deref());
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
    let server = served.child.id();
    let cpu_before = cpu_seconds(server);
    let started = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (stop, histogram) = (&stop, &histogram);
                let target = (
                    served.url.as_str(),
                    served.token.as_str(),
                    served.ca.as_deref(),
                );
                scope.spawn(move || client_loop(target, c, recoveries, stop, histogram))
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("client")).sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = cpu_before
        .zip(cpu_seconds(server))
        .map(|(before, after)| after - before);
    let _ = served.child.kill();
    let _ = served.child.wait();
    let h = histogram.lock().expect("histogram");
    serde_json::json!({
        "backend": backend,
        "store": if store == "sqlite" { "sqlite" } else { "etcd" },
        "transport": if https { "https" } else { "http" },
        "mode": if recoveries { "recoveries" } else { "guesses" },
        "clients": clients,
        "operations": total,
        "seconds": elapsed,
        "per_second": total as f64 / elapsed,
        "p50_ms": h.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": h.max() as f64 / 1000.0,
        "server_cpu_seconds": server_cpu,
        "server_cpu_us_per_operation": server_cpu.map(|cpu| cpu * 1e6 / total.max(1) as f64),
    })
}

/// The CPU time (user and system) process `pid` has used so far, in seconds, its ended
/// threads included (`/proc/PID/stat`), or `None` where there is no such file.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses, which may hold spaces) come the fields from
    // the third, the state; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

/// `getconf CLK_TCK`: the unit of `/proc/PID/stat`'s times (100 on Linux, where it is asked).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// Whole 2-of-3 recoveries against three realms for `seconds`, `clients` at once.
fn load_realms(coffer: &str, clients: usize, seconds: f64) -> serde_json::Value {
    use coffer::http::{recover_from_realms, register_with_realms, RealmClient};
    use coffer::realms::RealmSet;
    let ids = ["realm-1", "realm-2", "realm-3"];
    let mut served: Vec<Served> = ids
        .iter()
        .map(|id| {
            serve_as(coffer, "soft", "sqlite", Some(id), false).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let realms = || -> Vec<RealmClient> {
        ids.iter()
            .zip(&served)
            .map(|(id, s)| RealmClient::new(id, &s.url, &s.token, Duration::from_secs(30)))
            .collect()
    };
    let set = RealmSet {
        realm_ids: ids.iter().map(|s| s.to_string()).collect(),
        threshold: 2,
        limit: 100,
        ksf: coffer::vault::KsfParams::TEST,
    };
    let setup = realms();
    for c in 0..clients {
        for u in 0..USERS_PER_CLIENT {
            register_with_realms(
                &setup,
                &set,
                &format!("load{c}-{u}"),
                b"pw",
                &RootKey::from_bytes([c as u8; 32]),
            )
            .expect("register with the realms");
        }
    }
    let stop = AtomicBool::new(false);
    let histogram =
        Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"));
    let started = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (stop, histogram, set) = (&stop, &histogram, &set);
                let mine = realms();
                scope.spawn(move || {
                    let mut local =
                        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let user = format!("load{c}-{}", n as usize % USERS_PER_CLIENT);
                        let t = Instant::now();
                        let (root, problems) =
                            recover_from_realms(&mine, set, &user, b"pw").expect("recovery");
                        assert_eq!(root.as_bytes(), &[c as u8; 32]);
                        assert!(problems.is_empty(), "{problems:?}");
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
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("client")).sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    for s in &mut served {
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
    let h = histogram.lock().expect("histogram");
    serde_json::json!({
        "backend": "soft",
        "store": "sqlite",
        "mode": "realms 2-of-3",
        "clients": clients,
        "operations": total,
        "seconds": elapsed,
        "per_second": total as f64 / elapsed,
        "p50_ms": h.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": h.max() as f64 / 1000.0,
    })
}

/// A usage error: the message and exit code 2, as clap's own.
fn usage(message: &str) -> ! {
    eprintln!("vault-load: {message}");
    std::process::exit(2)
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let Args {
        clients,
        seconds,
        ref coffer,
        mode,
        ref backends,
        ref stores,
        ref transports,
        json: json_out,
        realms_floor,
    } = args;
    let coffer = coffer.clone();
    let (recoveries, with_realms) = match mode {
        Mode::Guesses => (false, false),
        Mode::Recoveries => (true, false),
        Mode::Realms => (true, true),
    };
    let transports: Vec<bool> = transports
        .split(',')
        .map(|t| match t.trim() {
            "http" => false,
            "https" => true,
            other => usage(&format!("--transports {other}: http or https")),
        })
        .collect();
    if transports.len() > 1 && backends.split(',').any(|b| b.trim() != "soft") {
        // A PKCS#11 module reads its configuration once per process: a second token for the
        // second transport would not be found. Compare transports on the soft backend.
        usage("--transports with more than one transport takes --backends soft only");
    }
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
    if with_realms {
        // The single vault first (the baseline), then the realms, in the same run.
        let backend = backends.split(',').next().unwrap_or("soft").trim();
        runs.push(load(
            &coffer,
            (backend, &store_list[0], false),
            clients,
            seconds,
            true,
        ));
        runs.push(load_realms(&coffer, clients, seconds));
        store_list.clear();
    }
    for store in &store_list {
        for b in backends.split(',') {
            for &https in &transports {
                runs.push(load(
                    &coffer,
                    (b.trim(), store, https),
                    clients,
                    seconds,
                    recoveries,
                ));
            }
        }
    }
    let ceiling = ceiling(2.0);
    let first = runs[0]["per_second"].as_f64().unwrap_or(1.0);
    for run in &mut runs {
        let rate = run["per_second"].as_f64().unwrap_or(0.0);
        run["ratio_to_first_backend"] = serde_json::json!(rate / first);
        run["ratio_to_ceiling"] = serde_json::json!(rate / ceiling);
        // The server's own efficiency, whatever share of the cores the clients took: what
        // one ServerLogin::start costs, over what the server spent per operation.
        if let Some(per_op) = run["server_cpu_us_per_operation"].as_f64() {
            run["ratio_to_ceiling_per_server_core"] = serde_json::json!(1e6 / ceiling / per_op);
        }
    }
    let report = serde_json::json!({
        "runs": runs,
        "ceiling_server_login_start_per_second_one_core": ceiling,
    });
    if json_out {
        println!("{report}");
        floor_holds(&runs, realms_floor);
        return;
    }
    let unit = if recoveries {
        "recoveries"
    } else {
        "durable guesses"
    };
    println!(
        "| backend | store | transport | mode | {unit}/s | p50 | p99 | max | ratio to the first row | ratio to ceiling | server CPU per op | ratio to ceiling per server core |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} | {:.2} | {} | {} |",
            run["backend"].as_str().unwrap_or("?"),
            run["store"].as_str().unwrap_or("?"),
            run["transport"].as_str().unwrap_or("http"),
            run["mode"].as_str().unwrap_or("?"),
            run["per_second"].as_f64().unwrap_or(0.0),
            run["p50_ms"].as_f64().unwrap_or(0.0),
            run["p99_ms"].as_f64().unwrap_or(0.0),
            run["max_ms"].as_f64().unwrap_or(0.0),
            run["ratio_to_first_backend"].as_f64().unwrap_or(0.0),
            run["ratio_to_ceiling"].as_f64().unwrap_or(0.0),
            run["server_cpu_us_per_operation"]
                .as_f64()
                .map_or("-".into(), |us| format!("{us:.0} µs")),
            run["ratio_to_ceiling_per_server_core"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.2}")),
        );
    }
    println!(
        "{clients} clients, {seconds} s per run; ceiling: ServerLogin::start {ceiling:.0}/s on one core, in process ({:.0} µs each); the clients share the cores with the server",
        1e6 / ceiling
    );
    floor_holds(&runs, realms_floor);
}

/// `--realms-floor R`: exits 1 when the realms' rate is below `R` of the single vault's.
fn floor_holds(runs: &[serde_json::Value], floor: Option<f64>) {
    let Some(floor) = floor else {
        return;
    };
    let ratio = runs
        .iter()
        .find(|r| r["mode"] == "realms 2-of-3")
        .and_then(|r| r["ratio_to_first_backend"].as_f64())
        .unwrap_or_else(|| usage("--realms-floor needs --mode realms"));
    if ratio < floor {
        eprintln!("realms: {ratio:.2} of the single vault's rate, below the floor {floor}");
        std::process::exit(1);
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
