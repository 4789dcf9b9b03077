//! `coffer hsm ...`: the master key on a token, the key ceremony, and the profile checks.

use super::failure::{CliResult, Failure};
use super::{HsmCommand, Report};
use coffer::hsm::ceremony::{self, TransportKey, WrappedKey};
use coffer::hsm::check::{self, CheckResult, Level, Verdict};
use coffer::hsm::uri::{self, HsmLocation};
use coffer::hsm::{Export, Hsm, Pkcs11Config, Pkcs11Hsm, SoftHsm, Token};
use coffer::ErrorClass;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// What an `hsm` subcommand produced: a report, or a check run that may not conform.
pub(super) enum Outcome {
    Done(Report),
    Checked { report: Report, conforms: bool },
}

/// Runs one `hsm` subcommand.
pub(super) fn run(command: &HsmCommand) -> CliResult<Outcome> {
    match command {
        HsmCommand::Init { hsm, exportable } => init(hsm, *exportable).map(Outcome::Done),
        HsmCommand::TransportKey { hsm, out } => transport_key(hsm, out).map(Outcome::Done),
        HsmCommand::Trust {
            hsm,
            public_key,
            so_pin_file,
        } => trust(hsm, public_key, so_pin_file.as_deref()).map(Outcome::Done),
        HsmCommand::ExportWrapped {
            hsm,
            transport,
            out,
        } => export_wrapped(hsm, transport, out).map(Outcome::Done),
        HsmCommand::ImportWrapped {
            hsm,
            input,
            exportable,
        } => import_wrapped(hsm, input, *exportable).map(Outcome::Done),
        HsmCommand::Check {
            hsm,
            module,
            token,
            only,
            timeout,
        } => {
            let location = match (hsm, module, token) {
                (Some(uri), _, _) => uri.clone(),
                (None, Some(module), Some(token)) => uri::pkcs11_uri(module, token),
                _ => unreachable!("clap requires --hsm or both --module and --token"),
            };
            match only {
                Some(id) => check_one(&location, id).map(Outcome::Done),
                None => check_all(&location, *timeout),
            }
        }
    }
}

fn hsm_failure(e: coffer::hsm::HsmError) -> Failure {
    Failure::from_lib("HSM", e)
}

fn pkcs11_config(location: &str) -> CliResult<Pkcs11Config> {
    match uri::parse(location).map_err(|e| Failure::from_lib("--hsm", e))? {
        HsmLocation::Pkcs11(config) => Ok(config),
        HsmLocation::Soft(_) => Err(Failure::usage(
            "--hsm: this command needs a pkcs11: URI; the soft backend has no token",
        )),
    }
}

fn open_token_hsm(location: &str) -> CliResult<(Pkcs11Config, Pkcs11Hsm)> {
    let config = pkcs11_config(location)?;
    let hsm = Pkcs11Hsm::open(&config).map_err(hsm_failure)?;
    Ok((config, hsm))
}

fn export_mode(exportable: bool) -> Export {
    if exportable {
        Export::ToTrustedOnly
    } else {
        Export::Never
    }
}

fn init(location: &str, exportable: bool) -> CliResult<Report> {
    match uri::parse(location).map_err(|e| Failure::from_lib("--hsm", e))? {
        HsmLocation::Soft(dir) => {
            if exportable {
                return Err(Failure::new(
                    ErrorClass::Unsupported,
                    "--exportable: the soft backend's key is a file; copy it instead",
                ));
            }
            std::fs::create_dir_all(&dir)
                .map_err(|e| Failure::io(format!("cannot create {}", dir.display()), e))?;
            let hsm = SoftHsm::open_or_create(&dir.join("master.key")).map_err(hsm_failure)?;
            Ok(Report {
                text: format!("master key ready: {}", hsm.describe()),
                json: json!({"command": "hsm init", "backend": "soft", "describe": hsm.describe()}),
            })
        }
        HsmLocation::Pkcs11(config) => {
            let hsm = Pkcs11Hsm::open(&config).map_err(hsm_failure)?;
            let created = hsm.init_key(export_mode(exportable)).map_err(hsm_failure)?;
            let policy = hsm.master_key_policy().map_err(hsm_failure)?;
            let leaves = match policy.and_then(|p| p.extractable) {
                Some(false) => "never leaves the token",
                _ => "leaves the token only wrapped under a trusted key",
            };
            Ok(Report {
                text: format!(
                    "{} the master key {:?} on token {:?}; it {leaves}",
                    if created { "created" } else { "found" },
                    config.key_label,
                    config.token
                ),
                json: json!({"command": "hsm init", "backend": "pkcs11", "created": created,
                    "token": config.token, "key": config.key_label, "policy": policy}),
            })
        }
    }
}

/// A file that must not exist yet, created before the work whose result it will hold (so a
/// taken path fails before any token is touched) and removed again unless
/// [`NewFile::finish`] writes it completely.
struct NewFile<'a> {
    path: &'a Path,
    file: std::fs::File,
    done: bool,
}

impl<'a> NewFile<'a> {
    fn create(path: &'a Path) -> CliResult<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Failure::io(format!("cannot create {}", path.display()), e))?;
        Ok(NewFile {
            path,
            file,
            done: false,
        })
    }

    fn finish(mut self, contents: &[u8]) -> CliResult<()> {
        use std::io::Write;
        self.file
            .write_all(contents)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| Failure::io(format!("cannot write {}", self.path.display()), e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for NewFile<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(self.path);
        }
    }
}

fn read_text(path: &Path) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::io(format!("cannot read {}", path.display()), e))
}

fn transport_key(location: &str, out: &Path) -> CliResult<Report> {
    let file = NewFile::create(out)?;
    let (config, hsm) = open_token_hsm(location)?;
    let transport = ceremony::create_transport_key(&hsm).map_err(hsm_failure)?;
    file.finish(transport.pem.as_bytes())?;
    let fingerprint = hex::encode(transport.fingerprint);
    Ok(Report {
        text: format!(
            "transport key made on token {:?}; public half in {}\nSHA-256 {fingerprint}\n\
             (the source token's security officer checks this value before coffer hsm trust)",
            config.token,
            out.display()
        ),
        json: json!({"command": "hsm transport-key", "token": config.token,
            "public_key": out, "sha256": fingerprint}),
    })
}

fn trust(location: &str, public_key: &Path, so_pin_file: Option<&Path>) -> CliResult<Report> {
    let config = uri::parse_token(location).map_err(|e| Failure::from_lib("--hsm", e))?;
    let so_pin = match so_pin_file {
        Some(file) => {
            uri::read_pin_file(file).map_err(|e| Failure::from_lib("--so-pin-file", e))?
        }
        None => Zeroizing::new(std::env::var("COFFER_PKCS11_SO_PIN").map_err(|_| {
            Failure::usage(
                "no security officer PIN: give --so-pin-file or set COFFER_PKCS11_SO_PIN",
            )
        })?),
    };
    let transport = TransportKey::from_pem(&read_text(public_key)?)
        .map_err(|e| Failure::from_lib(&public_key.display().to_string(), e))?;
    let token = Token::open(&config.module, &config.token).map_err(hsm_failure)?;
    let created =
        ceremony::trust_transport_key(&token, &so_pin, &transport).map_err(hsm_failure)?;
    let fingerprint = hex::encode(transport.fingerprint);
    Ok(Report {
        text: format!(
            "{} trusted transport key on token {:?}\nSHA-256 {fingerprint}\n\
             (compare with the value the destination printed)",
            if created {
                "stored the"
            } else {
                "already had this"
            },
            config.token
        ),
        json: json!({"command": "hsm trust", "token": config.token, "created": created,
            "sha256": fingerprint}),
    })
}

fn export_wrapped(location: &str, transport: &Path, out: &Path) -> CliResult<Report> {
    let transport = TransportKey::from_pem(&read_text(transport)?)
        .map_err(|e| Failure::from_lib("--transport", e))?;
    let file = NewFile::create(out)?;
    let (config, hsm) = open_token_hsm(location)?;
    let wrapped = ceremony::export_wrapped(&hsm, &transport).map_err(hsm_failure)?;
    let text = serde_json::to_string_pretty(&wrapped)
        .map_err(|e| Failure::new(ErrorClass::Io, e.to_string()))?;
    file.finish(text.as_bytes())?;
    Ok(Report {
        text: format!(
            "master key {:?} of token {:?} wrapped with {} into {}",
            config.key_label,
            config.token,
            wrapped.mechanism,
            out.display()
        ),
        json: json!({"command": "hsm export-wrapped", "token": config.token,
            "key": config.key_label, "mechanism": wrapped.mechanism, "out": out}),
    })
}

fn import_wrapped(location: &str, input: &Path, exportable: bool) -> CliResult<Report> {
    let (config, hsm) = open_token_hsm(location)?;
    let file: WrappedKey = serde_json::from_str(&read_text(input)?).map_err(|e| {
        Failure::new(
            ErrorClass::Malformed,
            format!("{}: not a wrapped-key file: {e}", input.display()),
        )
    })?;
    ceremony::import_wrapped(&hsm, &file, export_mode(exportable)).map_err(hsm_failure)?;
    Ok(Report {
        text: format!(
            "master key imported on token {:?} as {:?} and verified (it opens the source's check value)",
            config.token, config.key_label
        ),
        json: json!({"command": "hsm import-wrapped", "token": config.token,
            "key": config.key_label, "mechanism": file.mechanism, "verified": true}),
    })
}

fn check_one(location: &str, id: &str) -> CliResult<Report> {
    let config = pkcs11_config(location)?;
    let result = check::run_one(id, &config).map_err(hsm_failure)?;
    Ok(Report {
        text: format!("{result:?}"),
        json: serde_json::to_value(&result)
            .map_err(|e| Failure::new(ErrorClass::Io, e.to_string()))?,
    })
}

fn check_all(location: &str, timeout: u64) -> CliResult<Outcome> {
    let config = pkcs11_config(location)?;
    let exe =
        std::env::current_exe().map_err(|e| Failure::io("cannot find the coffer executable", e))?;
    let results = check::run_isolated(
        |id| {
            let mut command = std::process::Command::new(&exe);
            command.args(["--json", "hsm", "check", "--hsm", location, "--only", id]);
            command
        },
        Duration::from_secs(timeout),
    );
    let conforms = results
        .iter()
        .all(|r| r.level != Level::Must || r.verdict != Verdict::Fail);
    let text = check_table(&config, &results, conforms);
    Ok(Outcome::Checked {
        report: Report {
            text,
            json: json!({"command": "hsm check", "module": config.module, "token": config.token,
                "conforms": conforms, "checks": results}),
        },
        conforms,
    })
}

fn check_table(config: &Pkcs11Config, results: &[CheckResult], conforms: bool) -> String {
    let mut text = format!(
        "HSM profile checks: module {}, token {:?}\n",
        config.module.display(),
        config.token
    );
    for r in results {
        let verdict = match r.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "skip",
        };
        let level = match r.level {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        };
        text.push_str(&format!(
            "  {verdict:<4}  {level:<6}  {:<36}  {}\n",
            r.id, r.detail
        ));
    }
    let count = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
    text.push_str(&format!(
        "{} passed, {} failed, {} skipped: {}",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Skipped),
        if conforms {
            "every MUST check holds"
        } else {
            "the token does NOT conform (a MUST check failed)"
        }
    ));
    text
}
