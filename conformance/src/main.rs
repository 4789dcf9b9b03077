//! `coffer-conformance`: run the conformance suites and write reports.

use anyhow::Context;
use clap::{Parser, Subcommand};
use coffer::http::ClientTls;
use coffer_conformance::expected::{glob_match, ExpectedFailures};
use coffer_conformance::http::Vault;
use coffer_conformance::local_vault;
use coffer_conformance::report::Run;
use coffer_conformance::suites;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Check an implementation against Coffer's specs and write reports a CI job can gate on.
///
/// Exit codes: 0 every result as expected, 1 otherwise (a failure, an unexpected pass or a
/// stale expected-failure entry), 2 the harness itself failed.
#[derive(Parser)]
#[command(name = "coffer-conformance", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Parsed once per process, so the size of `Run` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run suites and report. With no target given, runs the defaults: the reference adapter,
    /// and a private SoftHSM2 token (with SoftHSM2's expected failures) if it is installed.
    #[command(
        after_help = "Examples:\n  coffer-conformance run --hsm 'pkcs11:token=t?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin' \\\n      --expected-failures conformance/expected/softhsm2.yaml --junit report.xml\n  coffer-conformance run --hsm URI --list"
    )]
    Run {
        /// The token for the `hsm` suite (pkcs11: URI). Without it the suite is skipped, with
        /// the reason printed.
        #[arg(long, value_name = "URI")]
        hsm: Option<String>,
        /// The client adapter for the client-format suite: `reference` (built in) or a command
        /// line that speaks the shim protocol, split at spaces (e.g. "python3 adapter.py
        /// ARG"). Without it the suite is skipped.
        #[arg(long, value_name = "CMD")]
        client: Option<String>,
        /// The vault server for the vault-server suite (base URL, e.g.
        /// https://vault.example:8443; plain http:// only on loopback unless --insecure-http).
        /// Without it the suite is skipped. The suite registers its own users (random names
        /// starting `conformance-`) and destroys some of them: point it at a test tenant.
        #[arg(long, value_name = "URL")]
        vault: Option<String>,
        /// The tenant bearer token for --vault, read from this file.
        #[arg(long, value_name = "FILE", env = "COFFER_VAULT_TOKEN_FILE")]
        vault_token_file: Option<PathBuf>,
        /// The vault's server identity (bound into every login).
        #[arg(long, value_name = "ID", default_value = "coffer-vault")]
        vault_server_id: String,
        /// Trust only the CA certificates of this PEM file for an https:// --vault (default:
        /// the system's roots).
        #[arg(long, value_name = "FILE")]
        vault_ca: Option<PathBuf>,
        /// The tenant's Ed25519 signing key for user tokens (PKCS#8, as `coffer vault
        /// user-key` writes it), for the vault.auth.user_token_* cases (skipped without it).
        #[arg(long, value_name = "FILE", requires = "vault_user_kid")]
        vault_user_key: Option<PathBuf>,
        /// The key id the vault's configuration gives --vault-user-key.
        #[arg(long, value_name = "KID", requires = "vault_user_key")]
        vault_user_kid: Option<String>,
        /// A token of a second tenant of --vault, read from this file, for the
        /// vault.tenancy.isolated case (skipped without it).
        #[arg(long, value_name = "FILE")]
        vault_other_tenant_token_file: Option<PathBuf>,
        /// The session lifetime --vault is configured with (spec/vault.md §3.2), in seconds,
        /// for the vault.session.expired case, which waits it out (skipped without it).
        #[arg(long, value_name = "SECONDS")]
        vault_session_lifetime: Option<u64>,
        /// A command that kills --vault (as a crash would) and starts it again over the same
        /// store, for the vault.durability.restart case (skipped without it); split at spaces
        /// like --client. The case then waits until the vault answers.
        #[arg(long, value_name = "CMD")]
        vault_restart_command: Option<String>,
        /// The requests per second --vault allows one tenant (spec/vault.md §9), for the
        /// vault.rate.tenant_requests case, which floods it from the second tenant
        /// (--vault-other-tenant-token-file; skipped without both).
        #[arg(long, value_name = "PER_SECOND")]
        vault_tenant_rate: Option<f64>,
        /// The tenant of --vault-token-file (the issuer of user tokens).
        #[arg(long, value_name = "NAME", default_value = "default")]
        vault_tenant: String,
        /// A realm for the realm-server suite (spec/realms.md; base URL). Without it the suite
        /// is skipped. It registers its own users (random names starting `conformance-`).
        #[arg(long, value_name = "URL")]
        realm: Option<String>,
        /// The tenant bearer token for --realm, read from this file.
        #[arg(long, value_name = "FILE", env = "COFFER_REALM_TOKEN_FILE")]
        realm_token_file: Option<PathBuf>,
        /// Trust only the CA certificates of this PEM file for an https:// --realm.
        #[arg(long, value_name = "FILE")]
        realm_ca: Option<PathBuf>,
        /// Allow plain http:// --vault and --realm URLs that are not loopback (the token
        /// then crosses the network in clear; the vault.transport.https case still fails).
        #[arg(long)]
        insecure_http: bool,
        /// The vectors the client suites read (default: the repository's vectors/).
        #[arg(long, value_name = "DIR")]
        vectors: Option<PathBuf>,
        /// Glob + reason YAML; listed failures are expected, stale entries are reported.
        #[arg(long, value_name = "FILE")]
        expected_failures: Option<PathBuf>,
        /// Only cases whose id contains this text, or, with `*` (any run of characters),
        /// matches it whole: `--filter crypt15` or `--filter 'client.format.*.wrong_key'`. A
        /// filter that matches no case is an error (exit 2).
        #[arg(long, value_name = "TEXT|GLOB")]
        filter: Option<String>,
        /// List the cases that would run, and run nothing.
        #[arg(long)]
        list: bool,
        /// Write the JSON report (every case with expected and actual).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write the JUnit XML report.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Write a Markdown summary (the table by suite, and every case that did not pass).
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        /// Write the HTML report: one self-contained page, filterable, no network needed.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Cases run at once in the client-format suite (one adapter process each) and the
        /// vault-server suite. The hsm suite (one token) and the client-vault and
        /// client-realms suites (one runner-played vault or realm set) run one case at a time.
        #[arg(long, short = 'j', value_name = "N", default_value_t = 1)]
        jobs: usize,
        /// Seconds a case may take before it counts as hung.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Time clients decrypting and encrypting standard workloads (chat databases of 1 MiB,
    /// 64 MiB and 1 GiB, and a media blob) through their shim adapters: wall time,
    /// throughput, peak memory and CPU per run, median and spread, against the reference
    /// measured in the same run.
    #[command(
        after_help = "Examples:\n  coffer-conformance bench --peers --json bench.json --html bench.html\n  coffer-conformance bench --quick\n  coffer-conformance bench --client 'mytool=python3 my_adapter.py' --sizes 64MiB"
    )]
    Bench(BenchArgs),
    /// The interop matrix: the client suites against several implementations (the reference
    /// and each --client), one row per implementation and one cell per suite, with a suite an
    /// implementation does not declare shown apart from one it fails. Exit 0 when no cell
    /// has a failure.
    #[command(
        after_help = "Examples:\n  coffer-conformance matrix --peers --html matrix.html\n  coffer-conformance matrix --client 'mytool=python3 my_adapter.py' --markdown matrix.md"
    )]
    Matrix(MatrixArgs),
    /// Serve the shim protocol with the reference implementation (`--client reference`).
    #[command(hide = true)]
    Adapter,
    /// Print how the module and token of a pkcs11: URI name themselves (used by `run`).
    #[command(hide = true)]
    IdentifyHsm {
        #[arg(long)]
        hsm: String,
    },
    /// Run one HSM profile check in this process and print its result (used by `run`).
    #[command(hide = true)]
    CheckOne {
        #[arg(long)]
        hsm: String,
        #[arg(long)]
        id: String,
    },
}

/// SoftHSM2's expected failures, used by the default run.
const SOFTHSM2_EXPECTED: &str = include_str!("../expected/softhsm2.yaml");

/// A private SoftHSM2 token for the default run: its directory (kept for the run) and URI.
/// None when SoftHSM2 is not installed.
fn softhsm2_token() -> anyhow::Result<Option<(tempfile::TempDir, String)>> {
    let module = std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so");
    if !module.exists() {
        return Ok(None);
    }
    let dir = tempfile::tempdir().context("a directory for the SoftHSM2 token")?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    let made = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "coffer-conformance"])
        .args(["--so-pin", "12345678", "--pin", "87654321"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .context("softhsm2-util (Debian package softhsm2)")?;
    anyhow::ensure!(
        made.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    // The check processes inherit it.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let uri = format!(
        "pkcs11:token=coffer-conformance?module-path={}&pin-value=87654321",
        module.display()
    );
    // A master key made as `coffer hsm init` makes it, so that hsm.master.policy checks a
    // real one instead of being skipped.
    let config = match coffer::hsm::uri::parse(&uri)? {
        coffer::hsm::uri::HsmLocation::Pkcs11(config) => config,
        coffer::hsm::uri::HsmLocation::Soft(_) => unreachable!("a pkcs11: URI"),
    };
    coffer::hsm::Pkcs11Hsm::open(&config)
        .and_then(|hsm| hsm.init_key(coffer::hsm::Export::Never))
        .context("making the private token's master key")?;
    Ok(Some((dir, uri)))
}

/// Every case of every suite: (suite, id, level), for `--list` and for stale entries.
fn all_cases(vectors: &std::path::Path) -> anyhow::Result<Vec<(&'static str, String, String)>> {
    let mut all: Vec<(&'static str, String, String)> = coffer::hsm::check::CHECKS
        .iter()
        .map(|c| ("hsm", c.id.to_owned(), level_name(c.level)))
        .collect();
    let must = || "MUST".to_owned();
    all.extend(
        suites::client_format::case_ids(vectors)?
            .into_iter()
            .map(|id| ("client-format", id, must())),
    );
    all.extend(
        suites::client_vault::case_ids()
            .into_iter()
            .map(|id| ("client-vault", id.to_owned(), must())),
    );
    all.extend(
        suites::client_realms::case_ids()
            .into_iter()
            .map(|id| ("client-realms", id.to_owned(), must())),
    );
    all.extend(
        suites::realm_server::case_ids()
            .into_iter()
            .map(|id| ("realm-server", id.to_owned(), must())),
    );
    all.extend(
        suites::vault_server::case_ids()
            .into_iter()
            .map(|(id, level)| ("vault-server", id.to_owned(), level_name(level))),
    );
    Ok(all)
}

/// `bench`'s arguments.
#[derive(clap::Args)]
struct BenchArgs {
    /// Another tool, as NAME=COMMAND (its adapter's command line); repeatable.
    #[arg(long, value_name = "NAME=CMD")]
    client: Vec<String>,
    /// Also time wa-crypt-tools and whatsapp-chat-exporter (installed from PyPI into
    /// .venv/ by conformance/adapters/setup.sh; needs the repository checkout).
    #[arg(long)]
    peers: bool,
    /// Chat database sizes.
    #[arg(long, value_delimiter = ',', default_value = "1MiB,64MiB,1GiB")]
    sizes: Vec<String>,
    /// The media workload's size, or `none`.
    #[arg(long, default_value = "64MiB")]
    media: String,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A quick pass (CI): 1 MiB workloads, one run each.
    #[arg(long)]
    quick: bool,
    /// Where workloads are made and kept (default: target/coffer-bench in the checkout,
    /// or the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Write every measurement as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the chart (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write one HTML page with the chart and the table.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the table as Markdown.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Seconds one run may take.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
}

#[derive(clap::Args)]
struct MatrixArgs {
    /// Another implementation, as NAME=COMMAND (its adapter's command line); repeatable.
    #[arg(long, value_name = "NAME=CMD")]
    client: Vec<String>,
    /// Also wa-crypt-tools and whatsapp-chat-exporter (installed from PyPI into .venv/ by
    /// conformance/adapters/setup.sh; needs the repository checkout).
    #[arg(long)]
    peers: bool,
    /// Write the matrix as one HTML page.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the matrix as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the matrix as a Markdown table.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Cases run at once in the client-format suite.
    #[arg(short, long, default_value_t = 1)]
    jobs: usize,
    /// Seconds a case may take before it counts as hung.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// The implementations of `bench` and `matrix`: the reference, the PyPI peers with `peers`,
/// and each `NAME=COMMAND`.
fn tools(peers: bool, clients: &[String]) -> anyhow::Result<Vec<coffer_conformance::bench::Tool>> {
    use coffer_conformance::bench::Tool;
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let checkout = manifest.parent().unwrap_or(manifest).to_path_buf();
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut tools = vec![Tool {
        name: "coffer".into(),
        argv: vec![exe.display().to_string(), "adapter".into()],
    }];
    if peers {
        let setup = checkout.join("conformance/adapters/setup.sh");
        let venv = |name: &str| -> anyhow::Result<PathBuf> {
            let out = std::process::Command::new("bash")
                .arg(&setup)
                .arg(name)
                .arg(&checkout)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running {}", setup.display()))?;
            anyhow::ensure!(out.status.success(), "{} {name} failed", setup.display());
            Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        };
        let adapters = checkout.join("conformance/adapters");
        let wa = venv("wa-crypt-tools")?;
        tools.push(Tool {
            name: "wa-crypt-tools".into(),
            argv: vec![
                "python3".into(),
                adapters.join("wa_crypt_tools.py").display().to_string(),
                wa.join("bin/wadecrypt").display().to_string(),
            ],
        });
        let wce = venv("whatsapp-chat-exporter")?;
        tools.push(Tool {
            name: "whatsapp-chat-exporter".into(),
            argv: vec![
                wce.join("bin/python").display().to_string(),
                adapters
                    .join("whatsapp_chat_exporter.py")
                    .display()
                    .to_string(),
            ],
        });
    }
    for spec in clients {
        let (name, command) = spec
            .split_once('=')
            .with_context(|| format!("--client {spec:?}: NAME=COMMAND"))?;
        tools.push(Tool {
            name: name.to_owned(),
            argv: command.split_whitespace().map(str::to_owned).collect(),
        });
    }
    Ok(tools)
}

fn matrix(args: MatrixArgs) -> anyhow::Result<bool> {
    use coffer_conformance::matrix::{Matrix, Row};
    let vectors = coffer_vectors::vectors_dir();
    let timeout = Duration::from_secs(args.timeout);
    let mut table = Matrix {
        runner: format!("coffer-conformance {}", env!("CARGO_PKG_VERSION")),
        vectors: vectors_digest(&vectors)?,
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        rows: Vec::new(),
    };
    for tool in tools(args.peers, &args.client)? {
        eprintln!("matrix: {}", tool.name);
        let keep = |_: &str| true;
        let mut cases = suites::client_format::run(&tool.argv, &vectors, keep, timeout, args.jobs)?;
        cases.extend(suites::client_vault::run(&tool.argv, keep, timeout)?);
        cases.extend(suites::client_realms::run(&tool.argv, keep, timeout)?);
        let named = adapter_identity(&tool.argv, timeout);
        table.rows.push(Row::new(&tool.name, &named, &cases));
    }
    println!("{}", table.markdown());
    if let Some(path) = &args.html {
        std::fs::write(path, table.html())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&table)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, table.markdown())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(table
        .rows
        .iter()
        .all(|row| row.cells.values().all(|c| c.fail == 0)))
}

/// `1MiB`, `64MiB`, `1GiB` (or plain bytes).
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("size {text:?}: a number with MiB or GiB"))?;
    let unit = match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => anyhow::bail!("size {text:?}: unknown unit {other:?} (KiB, MiB, GiB)"),
    };
    n.checked_mul(unit)
        .with_context(|| format!("size {text:?} is too large"))
}

fn bench(args: BenchArgs) -> anyhow::Result<bool> {
    use coffer_conformance::bench::{self, chart, workloads};
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let checkout = manifest.parent().unwrap_or(manifest).to_path_buf();
    let (sizes, media, runs) = if args.quick {
        (vec![1 << 20], Some(1 << 20), 1)
    } else {
        let sizes = args
            .sizes
            .iter()
            .map(|s| parse_size(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let media = match args.media.as_str() {
            "none" => None,
            m => Some(parse_size(m)?),
        };
        (sizes, media, args.runs.max(1))
    };
    let tools = tools(args.peers, &args.client)?;
    let workdir = args.workdir.unwrap_or_else(|| {
        let target = checkout.join("target");
        if target.is_dir() {
            target.join("coffer-bench")
        } else {
            std::env::temp_dir().join("coffer-bench")
        }
    });
    let say = |line: &str| eprintln!("bench: {line}");
    let workloads = workloads::prepare(&workdir.join("workloads"), &sizes, media, &say)?;
    let options = bench::Options {
        runs,
        timeout: Duration::from_secs(args.timeout),
        scratch: workdir.join("scratch"),
    };
    let report = bench::run(&tools, &workloads, &options, &say)?;
    println!("{}", report.table(false));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, chart::svg(&report).map_err(anyhow::Error::msg)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, chart::html(&report).map_err(anyhow::Error::msg)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, report.table(true))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // The reference must have done everything it declares; other tools' refusals are results.
    Ok(report
        .measurements
        .iter()
        .filter(|m| m.tool == "coffer")
        .all(|m| m.ok()))
}

/// A level as the reports spell it (`MUST`, `SHOULD`, `MAY`).
fn level_name(level: coffer_conformance::case::Level) -> String {
    serde_json::to_value(level)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("coffer-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    match Cli::parse().command {
        Command::IdentifyHsm { hsm } => {
            let config = match coffer::hsm::uri::parse(&hsm)? {
                coffer::hsm::uri::HsmLocation::Pkcs11(c) => c,
                coffer::hsm::uri::HsmLocation::Soft(_) => anyhow::bail!("--hsm: a pkcs11: URI"),
            };
            let token = coffer::hsm::Token::open(&config.module, &config.token)?;
            println!("{}", token.identity()?);
            Ok(true)
        }
        Command::CheckOne { hsm, id } => {
            let config = match coffer::hsm::uri::parse(&hsm)? {
                coffer::hsm::uri::HsmLocation::Pkcs11(c) => c,
                coffer::hsm::uri::HsmLocation::Soft(_) => anyhow::bail!("--hsm: a pkcs11: URI"),
            };
            let result = coffer::hsm::check::run_one(&id, &config)?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(true)
        }
        Command::Bench(args) => bench(args),
        Command::Matrix(args) => matrix(args),
        Command::Adapter => {
            coffer_conformance::adapter::serve()?;
            Ok(true)
        }
        Command::Run {
            client,
            vectors,
            hsm,
            vault,
            vault_token_file,
            vault_server_id,
            vault_ca,
            vault_user_key,
            vault_other_tenant_token_file,
            vault_user_kid,
            vault_tenant,
            vault_session_lifetime,
            vault_restart_command,
            vault_tenant_rate,
            realm,
            realm_token_file,
            realm_ca,
            insecure_http,
            expected_failures,
            filter,
            list,
            json,
            junit,
            html,
            markdown,
            jobs,
            timeout,
        } => {
            // With no target at all: the embedded defaults (the reference adapter, and a
            // private SoftHSM2 token with SoftHSM2's committed expected failures if installed).
            let defaults =
                client.is_none() && hsm.is_none() && vault.is_none() && realm.is_none() && !list;
            let mut default_token = None;
            let (client, hsm) = if defaults {
                match softhsm2_token()? {
                    Some((dir, uri)) => {
                        default_token = Some(dir);
                        (Some("reference".to_owned()), Some(uri))
                    }
                    None => {
                        eprintln!(
                            "hsm: skipped (SoftHSM2 is not installed: apt-get install softhsm2)"
                        );
                        (Some("reference".to_owned()), None)
                    }
                }
            } else {
                (client, hsm)
            };
            // The default run serves a reference vault of its own on loopback.
            let mut local_vault = None;
            let mut vault = match (vault, defaults) {
                (Some(url), _) => {
                    let path = vault_token_file
                        .context("--vault needs --vault-token-file (or COFFER_VAULT_TOKEN_FILE)")?;
                    let token = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let signer = match (&vault_user_key, vault_user_kid) {
                        (Some(key), Some(kid)) => Some(suites::vault_server::UserSigner {
                            key: zeroize::Zeroizing::new(
                                std::fs::read(key)
                                    .with_context(|| format!("reading {}", key.display()))?,
                            ),
                            kid,
                            tenant: vault_tenant.clone(),
                        }),
                        _ => None,
                    };
                    let other = match &vault_other_tenant_token_file {
                        Some(path) => Some(
                            std::fs::read_to_string(path)
                                .with_context(|| format!("reading {}", path.display()))?
                                .trim()
                                .to_owned(),
                        ),
                        None => None,
                    };
                    Some(VaultTarget {
                        url,
                        token: token.trim().to_owned(),
                        server_id: vault_server_id,
                        ca: vault_ca,
                        signer,
                        other,
                        lifetime: vault_session_lifetime.map(Duration::from_secs),
                        restart: vault_restart_command.map(restart_command),
                        tenant_rate: vault_tenant_rate,
                    })
                }
                (None, true) => {
                    let dir = tempfile::tempdir().context("a directory for the local vault")?;
                    let served =
                        std::sync::Arc::new(local_vault::LocalVault::start_sqlite(dir.path())?);
                    let signer = suites::vault_server::UserSigner {
                        key: served.user_key.clone(),
                        kid: local_vault::LOCAL_KID.to_owned(),
                        tenant: "default".to_owned(),
                    };
                    let restarted = served.clone();
                    let target = VaultTarget {
                        url: served.url.clone(),
                        token: served.token.clone(),
                        server_id: served.server_id.clone(),
                        ca: Some(served.ca.clone()),
                        signer: Some(signer),
                        other: Some(served.other_token.clone()),
                        lifetime: Some(local_vault::LOCAL_SESSION_LIFETIME),
                        restart: Some(Box::new(move || {
                            restarted.restart().map_err(|e| format!("{e:#}"))
                        })),
                        tenant_rate: Some(local_vault::LOCAL_TENANT_RATE),
                    };
                    local_vault = Some((served, dir));
                    Some(target)
                }
                (None, false) => None,
            };
            // The default run serves a reference realm of its own too.
            let mut local_realm = None;
            let realm = match (realm, defaults) {
                (Some(url), _) => {
                    let path = realm_token_file
                        .context("--realm needs --realm-token-file (or COFFER_REALM_TOKEN_FILE)")?;
                    let token = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Some((url, token.trim().to_owned(), realm_ca))
                }
                (None, true) => {
                    let dir = tempfile::tempdir().context("a directory for the local realm")?;
                    let served = local_vault::start_realm(dir.path())?;
                    let target = (
                        served.url.clone(),
                        served.token.clone(),
                        Some(served.ca.clone()),
                    );
                    local_realm = Some((served, dir));
                    Some(target)
                }
                (None, false) => None,
            };
            let expected = match &expected_failures {
                Some(path) => ExpectedFailures::parse(
                    &std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )?,
                None if default_token.is_some() => ExpectedFailures::parse(SOFTHSM2_EXPECTED)?,
                None => ExpectedFailures::default(),
            };
            let keep = |id: &str| filter.as_deref().is_none_or(|f| filter_match(f, id));
            let vectors = vectors.unwrap_or_else(coffer_vectors::vectors_dir);
            let catalogue = all_cases(&vectors)?;
            if let Some(f) = &filter {
                // A gate that ran nothing must not pass.
                anyhow::ensure!(
                    catalogue.iter().any(|(_, id, _)| keep(id)),
                    "--filter {f:?} matches no case (`--list` shows the ids)"
                );
            }
            if list {
                for (suite, id, level) in catalogue.iter().filter(|(_, id, _)| keep(id)) {
                    println!("{suite} {id} [{level}]");
                }
                return Ok(true);
            }
            let mut targets = BTreeMap::new();
            let mut implementations = BTreeMap::new();
            let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let vectors_digest = vectors_digest(&vectors)?;
            let mut cases = Vec::new();
            match &client {
                Some(command) => {
                    let argv: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
                    let argv = if argv.len() == 1 && argv[0] == "reference" {
                        let exe = std::env::current_exe().context("finding this executable")?;
                        vec![exe.display().to_string(), "adapter".to_owned()]
                    } else {
                        argv.clone()
                    };
                    let named = adapter_identity(&argv, Duration::from_secs(timeout));
                    for suite in ["client-format", "client-vault", "client-realms"] {
                        targets.insert(suite.to_owned(), argv.join(" "));
                        implementations.insert(suite.to_owned(), named.clone());
                    }
                    cases.extend(suites::client_format::run(
                        &argv,
                        &vectors,
                        keep,
                        Duration::from_secs(timeout),
                        jobs,
                    )?);
                    cases.extend(suites::client_vault::run(
                        &argv,
                        keep,
                        Duration::from_secs(timeout),
                    )?);
                    cases.extend(suites::client_realms::run(
                        &argv,
                        keep,
                        Duration::from_secs(timeout),
                    )?);
                }
                None => {
                    eprintln!(
                        "client-format, client-vault, client-realms: skipped (no --client adapter given)"
                    )
                }
            }
            match &hsm {
                Some(uri) => {
                    targets.insert("hsm".to_owned(), uri.clone());
                    let exe = std::env::current_exe().context("finding this executable")?;
                    implementations.insert(
                        "hsm".to_owned(),
                        hsm_identity(&exe, uri, Duration::from_secs(timeout)),
                    );
                    cases.extend(
                        suites::hsm::run(&exe, uri, Duration::from_secs(timeout))
                            .into_iter()
                            .filter(|c| keep(&c.id)),
                    );
                }
                // The default run has said why already.
                None if defaults => {}
                None => eprintln!("hsm: skipped (no --hsm URI given)"),
            }
            match vault.take() {
                Some(VaultTarget {
                    url,
                    token,
                    server_id,
                    ca,
                    signer,
                    other,
                    lifetime,
                    restart,
                    tenant_rate,
                }) => {
                    let shown = match &local_vault {
                        Some(_) => format!("{url} (the reference vault, served by this run)"),
                        None => url.clone(),
                    };
                    targets.insert("vault-server".to_owned(), shown);
                    let tls = client_tls(ca.as_deref(), insecure_http)?;
                    let server = Vault::new(&url, &token, Duration::from_secs(timeout), &tls)?;
                    implementations.insert("vault-server".to_owned(), server_identity(&server));
                    let mut ctx = suites::vault_server::Ctx::new(
                        server,
                        &server_id,
                        Duration::from_secs(timeout),
                    )?;
                    if let Some(signer) = signer {
                        ctx = ctx.with_user_signer(signer);
                    }
                    if let Some(lifetime) = lifetime {
                        ctx = ctx.with_session_lifetime(lifetime);
                    }
                    if let Some(restart) = restart {
                        ctx = ctx.with_restart(restart);
                    }
                    if let Some(rate) = tenant_rate {
                        ctx = ctx.with_tenant_rate(rate);
                    }
                    if let Some(other) = other {
                        ctx = ctx.with_other_tenant(Vault::new(
                            &url,
                            &other,
                            Duration::from_secs(timeout),
                            &tls,
                        )?);
                    }
                    cases.extend(suites::vault_server::run(&ctx, keep, jobs)?);
                }
                None => eprintln!("vault-server: skipped (no --vault URL given)"),
            }
            match &realm {
                Some((url, token, ca)) => {
                    let shown = match &local_realm {
                        Some(_) => format!("{url} (the reference realm, served by this run)"),
                        None => url.clone(),
                    };
                    targets.insert("realm-server".to_owned(), shown);
                    let tls = client_tls(ca.as_deref(), insecure_http)?;
                    let server = Vault::new(url, token, Duration::from_secs(timeout), &tls)?;
                    implementations.insert("realm-server".to_owned(), server_identity(&server));
                    let ctx = suites::realm_server::Ctx::new(server)?;
                    cases.extend(suites::realm_server::run(&ctx, keep, jobs)?);
                }
                None => eprintln!("realm-server: skipped (no --realm URL given)"),
            }
            drop(local_vault);
            drop(local_realm);
            let mut stale = expected.apply(&mut cases);
            if filter.is_some() {
                // An entry for a case the filter left out is not stale; one that names no
                // case at all is (spec/conformance.md §4).
                stale.retain(|glob| !catalogue.iter().any(|(_, id, _)| glob_match(glob, id)));
            }
            let run = Run {
                format: coffer_conformance::report::FORMAT.to_owned(),
                runner: format!("coffer-conformance {}", env!("CARGO_PKG_VERSION")),
                vectors: vectors_digest,
                date,
                targets,
                implementations,
                cases,
                stale_expected_failures: stale,
            };
            println!("{}", run.console());
            if let Some(path) = &json {
                std::fs::write(path, serde_json::to_string_pretty(&run)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &html {
                std::fs::write(path, run.html())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &markdown {
                std::fs::write(path, run.markdown())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &junit {
                std::fs::write(path, run.junit())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(run.as_expected())
        }
    }
}

/// The vectors as a report names them: their schema and the first 16 hex digits of a SHA-256
/// over every `*.yaml` of `dir`, by name, in name order.
fn vectors_digest(dir: &std::path::Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    names.sort();
    let mut hash = Sha256::new();
    for path in &names {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        hash.update(path.file_name().unwrap_or_default().as_encoded_bytes());
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(&bytes);
    }
    Ok(format!(
        "{} sha256:{}",
        coffer_vectors::doc::SCHEMA_VERSION,
        &hex::encode(hash.finalize())[..16]
    ))
}

/// How a client adapter names itself in its hello: `name version`.
fn adapter_identity(argv: &[String], timeout: Duration) -> String {
    match coffer_conformance::shim::Adapter::start(argv, timeout) {
        Ok(adapter) => {
            let text = |field: &str| adapter.hello[field].as_str().map(str::to_owned);
            match (text("name"), text("version")) {
                (Some(name), Some(version)) => format!("{name} {version}"),
                (Some(name), None) => format!("{name} (no version in its hello)"),
                _ => "unnamed (no name in its hello)".to_owned(),
            }
        }
        Err(e) => format!("unknown (the adapter did not start: {e})"),
    }
}

/// How a vault or realm names itself: the `Server` header of an answer.
fn server_identity(server: &Vault) -> String {
    let reply = server.get("/v1/users/conformance-identify/status");
    match (reply.server, reply.transport) {
        (Some(name), _) => name,
        (None, Some(why)) => format!("unknown (no answer: {why})"),
        (None, None) => "unknown (no Server header)".to_owned(),
    }
}

/// How a PKCS#11 module and token name themselves, asked in a child process (as the checks
/// are) so that a module that hangs or crashes costs only this line.
fn hsm_identity(exe: &std::path::Path, uri: &str, timeout: Duration) -> String {
    use std::io::Read;
    let child = std::process::Command::new(exe)
        .args(["identify-hsm", "--hsm", uri])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return "unknown (could not start the identification)".to_owned();
    };
    // Read while it runs, so that a chatty module cannot fill the pipe and hang it.
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.take(64 * 1024).read_to_string(&mut text);
        }
        text
    });
    let until = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = reader.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => text.lines().next().unwrap_or_default().trim().to_owned(),
        Some(s) => format!("unknown (the identification failed: {s})"),
        None => "unknown (the module did not answer in time)".to_owned(),
    }
}

/// `--filter`: a glob when it has a `*`, else a substring of the id.
fn filter_match(filter: &str, id: &str) -> bool {
    if filter.contains('*') {
        glob_match(filter, id)
    } else {
        id.contains(filter)
    }
}

/// Whom the runner trusts for an https:// target: the CA file given, or the system's roots.
fn client_tls(ca: Option<&std::path::Path>, insecure_http: bool) -> anyhow::Result<ClientTls> {
    let tls = match ca {
        Some(path) => ClientTls::with_ca_file(path)?,
        None => ClientTls::default(),
    };
    Ok(ClientTls {
        insecure_http,
        ..tls
    })
}

/// The vault the `vault-server` suite checks, and what the run knows of it.
struct VaultTarget {
    url: String,
    token: String,
    server_id: String,
    ca: Option<PathBuf>,
    signer: Option<suites::vault_server::UserSigner>,
    other: Option<String>,
    lifetime: Option<Duration>,
    restart: Option<suites::vault_server::Restart>,
    tenant_rate: Option<f64>,
}

/// `--vault-restart-command`: runs the command (split at spaces) and requires its success.
fn restart_command(command: String) -> suites::vault_server::Restart {
    Box::new(move || {
        let mut words = command.split_whitespace();
        let program = words.next().ok_or("an empty --vault-restart-command")?;
        let out = std::process::Command::new(program)
            .args(words)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("{command}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{command}: {}; {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    })
}
