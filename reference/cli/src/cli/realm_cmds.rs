//! `coffer realms`: K behind a password, split over t-of-n realms (`spec/realms.md`).

use super::failure::{CliResult, Failure};
use super::secrets::{self, write_private};
use super::{key_arg, RealmsClientArgs, RealmsCommand, Report};
use coffer::http::{
    change_password_on_realms, check_url, delete_from_realms, guesses_left, realms_status,
    recover_from_realms, register_with_realms, ClientTls, RealmClient,
};
use coffer::realms::{RealmSet, RealmsFailure};
use coffer::vault::KsfParams;
use coffer::ErrorClass;
use serde::Deserialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// The realms file (`--realms FILE`, JSON): which realms, in registration order, and how.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealmsFile {
    /// How many realms recover K.
    threshold: u8,
    /// Guesses each realm allows between recoveries (default 10).
    limit: Option<u32>,
    /// Argon2id parameters (default: the vault's).
    ksf: Option<String>,
    /// Seconds any one call to a realm may take (default 10).
    timeout_seconds: Option<u64>,
    /// Allow plain http:// to realms that are not on loopback (default false): tokens and
    /// messages then cross the network in clear.
    #[serde(default)]
    insecure_http: bool,
    /// The realms, in index order.
    realms: Vec<RealmEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealmEntry {
    /// The realm's id (what `vault serve --realm-id` says).
    id: String,
    /// Its base URL.
    url: String,
    /// The tenant token's file (relative to the realms file).
    token_file: PathBuf,
    /// Trust only the CA certificates of this PEM file for the realm's https:// URL
    /// (relative to the realms file; default: the system's roots).
    ca_file: Option<PathBuf>,
}

/// The realms and the registration's shape, from the file.
pub(super) fn load(path: &Path) -> CliResult<(Vec<RealmClient>, RealmSet)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::io(format!("cannot read {}", path.display()), e))?;
    let file: RealmsFile = serde_json::from_str(&text)
        .map_err(|e| Failure::new(ErrorClass::Malformed, format!("{}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let timeout = Duration::from_secs(file.timeout_seconds.unwrap_or(10).clamp(1, 300));
    let mut clients = Vec::new();
    for realm in &file.realms {
        let token_path = base.join(&realm.token_file);
        let token = Zeroizing::new(std::fs::read_to_string(&token_path).map_err(|e| {
            Failure::io(
                format!("realm {}: cannot read {}", realm.id, token_path.display()),
                e,
            )
        })?);
        let tls = match &realm.ca_file {
            Some(ca) => ClientTls::with_ca_file(&base.join(ca))
                .map_err(|e| Failure::new(ErrorClass::Io, format!("realm {}: {e}", realm.id)))?,
            None => ClientTls::default(),
        };
        let tls = ClientTls {
            insecure_http: file.insecure_http,
            ..tls
        };
        check_url(&realm.url, tls.insecure_http).map_err(|why| {
            Failure::new(
                ErrorClass::Unsupported,
                format!("realm {}: {why}", realm.id),
            )
        })?;
        clients.push(RealmClient::with_tls(
            &realm.id,
            &realm.url,
            token.trim(),
            timeout,
            &tls,
        ));
    }
    let ksf = match &file.ksf {
        Some(text) => KsfParams::parse(text).map_err(|e| Failure::from_lib("ksf", e))?,
        None => KsfParams::DEFAULT,
    };
    let set = RealmSet {
        realm_ids: file.realms.iter().map(|r| r.id.clone()).collect(),
        threshold: file.threshold,
        limit: file.limit.unwrap_or(10),
        ksf,
    };
    Ok((clients, set))
}

fn password(client: &RealmsClientArgs) -> CliResult<Zeroizing<Vec<u8>>> {
    secrets::password(
        client.password_file.as_deref(),
        &format!("password for {}: ", client.user),
    )
}

/// A failed call to the realms; after a wrong password, with the guesses left (spec/realms.md
/// §12: status is uncounted), so that the user knows how close the key is to being lost.
pub(super) fn failed(
    context: &str,
    failure: RealmsFailure,
    realms: &[RealmClient],
    set: &RealmSet,
    user: &str,
) -> Failure {
    let mut out = Failure::from_lib(context, failure);
    if out.class == ErrorClass::WrongPassword {
        let statuses = realms_status(realms, user);
        let left = guesses_left(&statuses, set.threshold);
        let each: Vec<String> = statuses
            .iter()
            .map(|(realm, s)| match s {
                Ok(s) => format!("{realm}: {}", s.guesses_left()),
                Err(why) => format!("{realm}: unknown ({why})"),
            })
            .collect();
        out.message = if left == 0 {
            format!(
                "{}; no guesses left: the next wrong one destroys the key ({})",
                out.message,
                each.join(", ")
            )
        } else {
            format!(
                "{}; {left} {} left before the key is destroyed ({})",
                out.message,
                if left == 1 { "guess" } else { "guesses" },
                each.join(", ")
            )
        };
    }
    out
}

/// Runs one `realms` subcommand.
pub(super) fn run(command: &RealmsCommand) -> CliResult<Report> {
    match command {
        RealmsCommand::Register {
            client,
            key,
            new_password,
        } => {
            secrets::one_reader_of_stdin(key.as_deref(), client.password_file.as_deref())?;
            let root = key_arg::resolve_root(key.as_deref())?;
            let (realms, set) = load(&client.realms)?;
            let password = secrets::new_password(
                client.password_file.as_deref(),
                &format!("new password for {}: ", client.user),
                &client.user,
                new_password.allow_weak_password,
            )?;
            register_with_realms(&realms, &set, &client.user, &password, &root)
                .map_err(|e| Failure::from_lib("register", e))?;
            Ok(Report {
                text: format!(
                    "registered {} on {} realms: any {} recover the key; each allows {} wrong guesses",
                    client.user,
                    set.realm_ids.len(),
                    set.threshold,
                    set.limit
                ),
                json: json!({
                    "command": "realms register",
                    "user": client.user,
                    "realms": set.realm_ids,
                    "threshold": set.threshold,
                    "limit": set.limit,
                }),
            })
        }
        RealmsCommand::Recover { client, key_out } => {
            if let Some(path) = key_out.as_deref().filter(|p| *p != Path::new("-")) {
                secrets::writable_new(path)?;
            }
            let (realms, set) = load(&client.realms)?;
            let password = password(client)?;
            let (root, problems) = recover_from_realms(&realms, &set, &client.user, &password)
                .map_err(|e| failed("recover", e, &realms, &set, &client.user))?;
            let failed: Vec<String> = problems
                .iter()
                .map(|(realm, why)| format!("{realm}: {why}"))
                .collect();
            let note = if failed.is_empty() {
                String::new()
            } else {
                format!("\nrecovered without: {}", failed.join("; "))
            };
            let grouped = root.to_grouped();
            match key_out.as_deref() {
                Some(path) if path != Path::new("-") => {
                    write_private(path, format!("{}\n", grouped.as_str()).as_bytes())?;
                    Ok(Report {
                        text: format!(
                            "recovered the key of {}; written to {}{note}",
                            client.user,
                            path.display()
                        ),
                        json: json!({"command": "realms recover", "user": client.user, "key_file": path, "failed_realms": failed}),
                    })
                }
                _ => Ok(Report {
                    text: format!("{}{note}", grouped.as_str()),
                    json: json!({"command": "realms recover", "user": client.user, "key": root.to_hex().as_str(), "failed_realms": failed}),
                }),
            }
        }
        RealmsCommand::ChangePassword {
            client,
            new_password_file,
            new_password,
        } => {
            secrets::one_reader_of_stdin(
                client.password_file.as_ref().and_then(|p| p.to_str()),
                new_password_file.as_deref(),
            )?;
            let (realms, set) = load(&client.realms)?;
            let old = password(client)?;
            let new = secrets::new_password(
                new_password_file.as_deref(),
                &format!("new password for {}: ", client.user),
                &client.user,
                new_password.allow_weak_password,
            )?;
            change_password_on_realms(&realms, &set, &client.user, &old, &new)
                .map_err(|e| failed("change the password", e, &realms, &set, &client.user))?;
            Ok(Report {
                text: format!(
                    "changed the password of {} on all {} realms; the key is the same",
                    client.user,
                    set.realm_ids.len()
                ),
                json: json!({"command": "realms change-password", "user": client.user, "realms": set.realm_ids}),
            })
        }
        RealmsCommand::Status { client } => {
            if client.password_file.is_some() {
                return Err(Failure::usage(
                    "--password-file does not apply: status asks nothing of the password",
                ));
            }
            let (realms, set) = load(&client.realms)?;
            let statuses = realms_status(&realms, &client.user);
            let left = guesses_left(&statuses, set.threshold);
            let each: Vec<serde_json::Value> = statuses
                .iter()
                .map(|(realm, s)| match s {
                    Ok(s) => json!({
                        "realm": realm,
                        "state": s.state,
                        "registration": s.reg_id.map(hex::encode),
                        "guesses": s.guesses,
                        "limit": s.limit,
                        "guesses_left": s.guesses_left(),
                    }),
                    Err(why) => json!({"realm": realm, "error": why}),
                })
                .collect();
            let lines: Vec<String> = statuses
                .iter()
                .map(|(realm, s)| match s {
                    Ok(s) => match s.state {
                        Some(state) => format!(
                            "  {realm}: {}, {} of {} guesses used",
                            state.as_str(),
                            s.guesses,
                            s.limit
                        ),
                        None => format!("  {realm}: not registered"),
                    },
                    Err(why) => format!("  {realm}: {why}"),
                })
                .collect();
            Ok(Report {
                text: format!(
                    "{}: {left} wrong guesses left before the key is destroyed (any {} realms recover it)\n{}",
                    client.user,
                    set.threshold,
                    lines.join("\n")
                ),
                json: json!({"command": "realms status", "user": client.user, "guesses_left": left, "realms": each}),
            })
        }
        RealmsCommand::Delete { client, yes } => {
            secrets::confirm_deletion(&client.user, *yes)?;
            let (realms, set) = load(&client.realms)?;
            let password = password(client)?;
            let answers =
                delete_from_realms(&realms, &set, &client.user, &password).map_err(|e| {
                    failed(
                        "delete (the password is proven first)",
                        e,
                        &realms,
                        &set,
                        &client.user,
                    )
                })?;
            let failed: Vec<String> = answers
                .iter()
                .filter_map(|(realm, r)| r.as_ref().err().map(|why| format!("{realm}: {why}")))
                .collect();
            let reached = answers.len() - failed.len();
            // Fewer than n − t + 1 deletions leave t realms that can still recover.
            let needed = set.realm_ids.len() + 1 - set.threshold as usize;
            if reached < needed {
                return Err(Failure::new(
                    ErrorClass::Io,
                    format!(
                        "deleted on {reached} realms, fewer than the {needed} that make the key unrecoverable: {}",
                        failed.join("; ")
                    ),
                ));
            }
            Ok(Report {
                text: format!(
                    "deleted {} on {reached} of {} realms: the key can no longer be recovered",
                    client.user,
                    answers.len()
                ),
                json: json!({"command": "realms delete", "user": client.user, "reached": reached, "failed_realms": failed}),
            })
        }
    }
}
