//! `coffer vault ...`: run a vault server, and the client side of every flow.

use super::data_dir;
use super::failure::{CliResult, Failure};
use super::output::{self, AtomicOutput, Naming};
use super::secrets;
use super::{
    coffer_file, key_arg, BackupClientArgs, BackupCommand, CompressArg, Report, ServeNetworkArgs,
    StoreArgs, VaultClientArgs, VaultCommand, VaultConnectionArgs,
};
use coffer::format::{Compression, WriteOptions};
use coffer::hsm::uri::{self, HsmLocation};
use coffer::hsm::{Hsm, Pkcs11Hsm, SoftHsm};
use coffer::http::{
    admin_router, metered, realm_router_with_readiness, router_with_readiness, serve, serve_until,
    MeteredHsm, MeteredStore, Metrics, Tenants,
};
use coffer::http::{check_url, ClientIdentity, ClientTls, ServeOptions, ServerTls};
use coffer::http::{mint_user_token, new_signing_key, unix_now, UserClaims};
use coffer::http::{recover_from_realms, register_with_realms, RealmClient, VaultClient};
use coffer::http::{Rate, RateLimits};
use coffer::key::RootKey;
use coffer::realms::RealmSet;
use coffer::realms::{EtcdRealmStore, Realm, RealmConfig, RealmStore, SqliteRealmStore};
use coffer::store::{EtcdConfig, EtcdStore, SqliteStore, Store};
use coffer::vault::{KsfFloor, KsfParams, ServerConfig, VaultServer, SERVER_KEY_LEN};
use coffer::ErrorClass;
use serde_json::json;
use std::path::Path;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Runs one `vault` subcommand.
pub(super) fn run(command: &VaultCommand) -> CliResult<Report> {
    match command {
        VaultCommand::Serve {
            listen,
            data,
            ksf,
            server_id,
            user_per_minute,
            tenant_per_second,
            config,
            hsm,
            realm_id,
            store,
            network,
        } => {
            let limits = rate_limits(*user_per_minute, *tenant_per_second)?;
            serve_command(
                listen,
                data,
                ksf,
                server_id,
                limits,
                config.as_deref(),
                hsm.as_deref(),
                realm_id.as_deref(),
                store,
                network,
            )
        }
        VaultCommand::Register {
            client,
            key,
            limit,
            new_password,
        } => {
            secrets::one_reader_of_stdin(key.as_deref(), client.password_file.as_deref())?;
            let root = key_arg::resolve_root(key.as_deref())?;
            let password = secrets::new_password(
                client.password_file.as_deref(),
                &format!("new vault password for {}: ", client.user),
                &client.user,
                new_password.allow_weak_password,
            )?;
            connect(client)?
                .register(&client.user, &password, &root, *limit)
                .map_err(|e| Failure::from_lib("register", e))?;
            Ok(Report {
                text: format!("registered {} with the vault", client.user),
                json: json!({"command": "vault register", "user": client.user, "registered": true}),
            })
        }
        VaultCommand::Recover { client, key_out } => {
            if let Some(path) = key_out.as_deref().filter(|p| *p != Path::new("-")) {
                secrets::writable_new(path)?;
            }
            let password = secrets::password(
                client.password_file.as_deref(),
                &format!("vault password for {}: ", client.user),
            )?;
            let vault = connect(client)?;
            let recovered = vault.recover(&client.user, &password).map_err(|e| {
                with_guesses_left(Failure::from_lib("recover", e), &vault, &client.user)
            })?;
            let grouped = recovered.root.to_grouped();
            match key_out.as_deref() {
                Some(path) if path != Path::new("-") => {
                    secrets::write_private(path, format!("{}\n", grouped.as_str()).as_bytes())?;
                    Ok(Report {
                        text: format!(
                            "recovered the key of {}; written to {}",
                            client.user,
                            path.display()
                        ),
                        json: json!({"command": "vault recover", "user": client.user, "key_file": path}),
                    })
                }
                _ => Ok(Report {
                    text: grouped.as_str().to_owned(),
                    json: json!({"command": "vault recover", "user": client.user, "key": recovered.root.to_hex().as_str()}),
                }),
            }
        }
        VaultCommand::ChangePassword {
            client,
            new_password_file,
            new_password,
        } => {
            secrets::one_reader_of_stdin(
                client.password_file.as_ref().and_then(|p| p.to_str()),
                new_password_file.as_deref(),
            )?;
            let old = secrets::password(
                client.password_file.as_deref(),
                &format!("vault password for {}: ", client.user),
            )?;
            let new = secrets::new_password(
                new_password_file.as_deref(),
                &format!("new vault password for {}: ", client.user),
                &client.user,
                new_password.allow_weak_password,
            )?;
            let vault = connect(client)?;
            let recovered = vault.recover(&client.user, &old).map_err(|e| {
                with_guesses_left(
                    Failure::from_lib("recover with the old password", e),
                    &vault,
                    &client.user,
                )
            })?;
            let version = vault
                .change_password(&client.user, &recovered, &new)
                .map_err(|e| Failure::from_lib("change the password", e))?;
            Ok(Report {
                text: format!(
                    "changed the password of {} (record version {version})",
                    client.user
                ),
                json: json!({"command": "vault change-password", "user": client.user, "version": version}),
            })
        }
        VaultCommand::Status { client } => {
            if client.password_file.is_some() {
                return Err(Failure::usage(
                    "--password-file does not apply: status asks nothing of the password",
                ));
            }
            let status = connect(client)?
                .status(&client.user)
                .map_err(|e| Failure::from_lib("status", e))?;
            let state = status
                .state
                .map(|s| format!("{s:?}").to_lowercase())
                .unwrap_or_else(|| "none".into());
            Ok(Report {
                text: format!(
                    "{}: registered {}, state {state}, guesses left {} of {}",
                    client.user, status.registered, status.guesses_left, status.limit
                ),
                json: json!({
                    "command": "vault status",
                    "user": client.user,
                    "registered": status.registered,
                    "state": status.state,
                    "guesses_left": status.guesses_left,
                    "limit": status.limit,
                }),
            })
        }
        VaultCommand::UserKey { out } => {
            if out.exists() {
                return Err(Failure::new(
                    ErrorClass::Io,
                    format!(
                        "{} exists: a signing key is never overwritten",
                        out.display()
                    ),
                ));
            }
            let (secret, public) =
                new_signing_key().map_err(|e| Failure::new(ErrorClass::Io, e.to_string()))?;
            secrets::write_private(out, &secret)?;
            let public = hex::encode(public);
            Ok(Report {
                text: format!(
                    "signing key written to {} (keep it secret)\npublic key: {public}\n\
                     in the vault's config: user_token_keys = [{{ kid = \"...\", public_key = \"{public}\" }}]",
                    out.display()
                ),
                json: json!({"command": "vault user-key", "signing_key": out, "public_key": public}),
            })
        }
        VaultCommand::UserToken {
            signing_key,
            kid,
            tenant,
            user,
            audience,
            ttl,
        } => {
            let secret =
                Zeroizing::new(std::fs::read(signing_key).map_err(|e| {
                    Failure::io(format!("cannot read {}", signing_key.display()), e)
                })?);
            let now = unix_now();
            let claims = UserClaims {
                iss: tenant.clone(),
                sub: user.clone(),
                aud: audience.clone(),
                iat: now,
                exp: now + ttl,
            };
            let token = mint_user_token(&secret, kid, &claims)
                .map_err(|e| Failure::new(ErrorClass::Malformed, format!("signing: {e}")))?;
            Ok(Report {
                text: token.clone(),
                json: json!({"command": "vault user-token", "token": token, "expires": claims.exp}),
            })
        }
        VaultCommand::Audit {
            vault,
            token_file,
            after,
            limit,
            all,
            connection,
        } => {
            let client = vault_client(vault, token_file.as_deref(), "coffer-vault", connection)?;
            let (mut events, mut position) = (Vec::new(), *after);
            let next = loop {
                let page = client
                    .audit(position, *limit as usize)
                    .map_err(|e| Failure::from_lib("audit", e))?;
                events.extend(page.events);
                match page.next {
                    Some(next) if *all => position = next,
                    other => break other,
                }
            };
            let text = events
                .iter()
                .map(|e| {
                    format!(
                        "{:>8}  epoch {:<8} {}  {:<16} {:<16} {}",
                        e.seq,
                        e.epoch,
                        output::iso8601(e.at),
                        e.user,
                        e.event,
                        e.detail
                    )
                })
                .chain(std::iter::once(format!(
                    "{} events, each chained to the one before it{}",
                    events.len(),
                    next.map(|n| format!("; more after --after {n}"))
                        .unwrap_or_default()
                )))
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Report {
                text,
                json: json!({
                    "command": "vault audit",
                    // Each event as the API gives it, with its time also in ISO 8601.
                    "events": events.iter().map(|e| {
                        let mut event = serde_json::to_value(e).unwrap_or_default();
                        event["time"] = output::iso8601(e.at).into();
                        event
                    }).collect::<Vec<_>>(),
                    "next": next,
                }),
            })
        }
        VaultCommand::Delete { client, admin, yes } => {
            if *admin && client.password_file.is_some() {
                return Err(Failure::usage(
                    "--admin deletes without the password: --password-file does not apply",
                ));
            }
            secrets::confirm_deletion(&client.user, *yes)?;
            let vault = connect(client)?;
            if *admin {
                vault
                    .delete_as_admin(&client.user)
                    .map_err(|e| Failure::from_lib("delete", e))?;
            } else {
                let password = secrets::password(
                    client.password_file.as_deref(),
                    &format!("vault password for {}: ", client.user),
                )?;
                vault.delete(&client.user, &password).map_err(|e| {
                    with_guesses_left(Failure::from_lib("delete", e), &vault, &client.user)
                })?;
            }
            Ok(Report {
                text: format!("deleted the record of {}", client.user),
                json: json!({"command": "vault delete", "user": client.user, "deleted": true}),
            })
        }
    }
}

/// Runs one `backup` subcommand.
pub(super) fn backup(command: &BackupCommand) -> CliResult<Report> {
    match command {
        BackupCommand::Create {
            client,
            input,
            output,
            force,
            key_out,
            compress,
            new_password,
        } => {
            // Every local mistake is found before the vault is asked anything.
            let output = output::resolve(input, output, Naming::Encrypted("coffer"))?;
            coffer_file::check_readable(input)?;
            let target = AtomicOutput::create_for(input, &output, *force)?;
            if let Some(path) = key_out {
                secrets::writable_new(path)?;
            }
            let keeper = Keeper::of(client)?;
            let password = secrets::new_password(
                client.password_file.as_deref(),
                &format!("new password for {}: ", client.user),
                &client.user,
                new_password.allow_weak_password,
            )?;
            let root = RootKey::generate().map_err(|e| Failure::from_lib("key generation", e))?;
            keeper.register(&client.user, &password, &root)?;
            if let Some(path) = key_out {
                secrets::write_private(
                    path,
                    format!("{}\n", root.to_grouped().as_str()).as_bytes(),
                )?;
            }
            let compression = match compress {
                CompressArg::None => Compression::None,
                CompressArg::Zstd => Compression::ZstdSeekable,
            };
            let report = coffer_file::encrypt_path(
                input,
                &output,
                target,
                compression,
                WriteOptions::default(),
                &root,
            )?;
            Ok(Report {
                text: format!(
                    "{}\nthe key is {} behind your password (user {})",
                    report.text,
                    keeper.describe(),
                    client.user
                ),
                json: json!({"command": "backup create", "user": client.user, "encrypt": report.json, "key_file": key_out}),
            })
        }
        BackupCommand::Restore {
            client,
            input,
            output,
            force,
        } => {
            // Every local mistake is found before a guess is spent.
            let output = output::resolve(input, output, Naming::Decrypted)?;
            coffer_file::check_coffer_input(input)?;
            let target = AtomicOutput::create_for(input, &output, *force)?;
            let keeper = Keeper::of(client)?;
            let password = secrets::password(
                client.password_file.as_deref(),
                &format!("password for {}: ", client.user),
            )?;
            let root = keeper.recover(&client.user, &password)?;
            let (header, summary) = coffer_file::decrypt_path(input, target, &root)?;
            Ok(Report {
                text: format!(
                    "{}: {} bytes restored to {}",
                    input.display(),
                    summary.plaintext_len,
                    output.display()
                ),
                json: json!({
                    "command": "backup restore",
                    "user": client.user,
                    "output": output,
                    "plaintext_bytes": summary.plaintext_len,
                    "content": header.content(),
                }),
            })
        }
    }
}

/// Where `backup create` keeps K and `backup restore` gets it back.
enum Keeper {
    Vault(VaultClient),
    Realms(Vec<RealmClient>, RealmSet),
}

impl Keeper {
    fn of(args: &BackupClientArgs) -> CliResult<Self> {
        // COFFER_VAULT_URL when neither is given (read here: as a clap default it would
        // conflict with --realms).
        let from_env = std::env::var("COFFER_VAULT_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let vault = args
            .vault
            .clone()
            .or(from_env.filter(|_| args.realms.is_none()));
        match (&vault, &args.realms) {
            (Some(vault), None) => Ok(Keeper::Vault(vault_client(
                vault,
                args.token_file.as_deref(),
                &args.server_id,
                &args.connection,
            )?)),
            (None, Some(file)) => {
                let (realms, set) = super::realm_cmds::load(file)?;
                Ok(Keeper::Realms(realms, set))
            }
            _ => Err(Failure::usage(
                "say where the key is kept: --vault URL (or COFFER_VAULT_URL) or --realms FILE",
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Keeper::Vault(_) => "in the vault".into(),
            Keeper::Realms(_, set) => format!(
                "split over {} realms ({} recover it)",
                set.realm_ids.len(),
                set.threshold
            ),
        }
    }

    fn register(&self, user: &str, password: &[u8], root: &RootKey) -> CliResult<()> {
        match self {
            Keeper::Vault(vault) => vault
                .register(user, password, root, None)
                .map_err(|e| Failure::from_lib("register the new key", e)),
            Keeper::Realms(realms, set) => register_with_realms(realms, set, user, password, root)
                .map_err(|e| Failure::from_lib("register the new key", e)),
        }
    }

    fn recover(&self, user: &str, password: &[u8]) -> CliResult<RootKey> {
        match self {
            Keeper::Vault(vault) => vault.recover(user, password).map(|r| r.root).map_err(|e| {
                with_guesses_left(Failure::from_lib("recover the key", e), vault, user)
            }),
            Keeper::Realms(realms, set) => recover_from_realms(realms, set, user, password)
                .map(|(root, _)| root)
                .map_err(|e| super::realm_cmds::failed("recover the key", e, realms, set, user)),
        }
    }
}

fn connect(client: &VaultClientArgs) -> CliResult<VaultClient> {
    vault_client(
        &client.vault,
        client.token_file.as_deref(),
        &client.server_id,
        &client.connection,
    )
}

fn vault_client(
    vault: &str,
    token_file: Option<&Path>,
    server_id: &str,
    connection: &VaultConnectionArgs,
) -> CliResult<VaultClient> {
    let tls = match &connection.ca {
        Some(path) => ClientTls::with_ca_file(path)
            .map_err(|e| Failure::new(ErrorClass::Io, format!("--ca: {e}")))?,
        None => ClientTls::default(),
    };
    let identity = match (&connection.client_cert, &connection.client_key) {
        (Some(cert), Some(key)) => Some(
            ClientIdentity::load(cert, key)
                .map_err(|e| Failure::new(ErrorClass::Io, format!("--client-cert: {e}")))?,
        ),
        _ => None,
    };
    let tls = ClientTls {
        insecure_http: connection.insecure_http,
        identity,
        ..tls
    };
    check_url(vault, tls.insecure_http)
        .map_err(|why| Failure::new(ErrorClass::Unsupported, why))?;
    let server_key = match &connection.server_key {
        Some(text) => Some(server_key(text)?),
        None => None,
    };
    let token = match token_file {
        Some(path) => Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Failure::io(format!("cannot read {}", path.display()), e))?,
        ),
        None => match std::env::var("COFFER_VAULT_TOKEN") {
            Ok(token) => Zeroizing::new(token),
            // A tenant known by its client certificate sends no token.
            Err(_) if tls.identity.is_some() => Zeroizing::new(String::new()),
            Err(_) => {
                return Err(Failure::new(
                    ErrorClass::Unauthorized,
                    "no tenant token: pass --token-file, set COFFER_VAULT_TOKEN, or present a \
                     client certificate (--client-cert)",
                ))
            }
        },
    };
    let mut client = VaultClient::with_tls(vault, token.trim(), server_id, &tls);
    if connection.allow_weak_ksf {
        client = client.ksf_floor(KsfFloor::NONE);
    }
    Ok(match server_key {
        Some(key) => client.pin_server_key(key),
        None => client,
    })
}

/// `--server-key`: 64 hex digits (spaces allowed).
fn server_key(text: &str) -> CliResult<[u8; SERVER_KEY_LEN]> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut key = [0u8; SERVER_KEY_LEN];
    hex::decode_to_slice(&digits, &mut key).map_err(|_| {
        Failure::usage(format!(
            "--server-key: expected {} hex digits",
            2 * SERVER_KEY_LEN
        ))
    })?;
    Ok(key)
}

/// The default tenant's token, created on first start.
fn default_token(data: &Path) -> CliResult<(String, std::path::PathBuf)> {
    let path = data.join("tenant-default.token");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok((text.trim().to_owned(), path));
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| Failure::new(ErrorClass::Io, format!("OS random: {e}")))?;
    let token = hex::encode(raw);
    secrets::write_private(&path, format!("{token}\n").as_bytes())?;
    Ok((token, path))
}

/// `vault serve --config FILE` (JSON; every field optional, unknown fields refused).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeConfig {
    server_id: Option<String>,
    ksf: Option<String>,
    guess_limit: Option<LimitConfig>,
    rate: Option<RateConfig>,
    session_ttl_seconds: Option<u64>,
    tenants: Option<Vec<TenantConfig>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitConfig {
    default: u32,
    min: u32,
    max: u32,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RateConfig {
    user_per_minute: f64,
    tenant_per_second: f64,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantConfig {
    name: String,
    /// The tenant's shared token (its front end acts for any of its users with it).
    /// Relative paths are relative to the config file.
    token_file: Option<PathBuf>,
    /// The tenant's admin token, which may also delete records without the password.
    admin_token_file: Option<PathBuf>,
    /// Public keys of the tenant's user tokens (spec/vault.md §9.3).
    user_token_keys: Option<Vec<UserKeyConfig>>,
    /// SHA-256 (64 hex digits) of client certificates that authenticate the tenant as its
    /// token does (with `--tls-client-ca`).
    client_cert_sha256: Option<Vec<String>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserKeyConfig {
    /// The key id user tokens name in their header.
    kid: String,
    /// The Ed25519 public key, 64 hex digits (as `coffer vault user-key` prints it).
    public_key: String,
}

/// The rate limits of `--user-per-minute` / `--tenant-per-second` (or the config), refusing rates that are not positive finite numbers.
pub(super) fn rate_limits(user_per_minute: f64, tenant_per_second: f64) -> CliResult<RateLimits> {
    for (name, rate) in [
        ("user_per_minute", user_per_minute),
        ("tenant_per_second", tenant_per_second),
    ] {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Failure::usage(format!(
                "{name} must be a positive number, not {rate}"
            )));
        }
    }
    Ok(RateLimits {
        tenant: Rate {
            per_second: tenant_per_second,
            burst: tenant_per_second * 2.0,
        },
        user: Rate {
            per_second: user_per_minute / 60.0,
            burst: user_per_minute.max(1.0),
        },
    })
}

/// The configuration file: TOML when its name ends in `.toml`, JSON otherwise.
fn load_config(path: &Path) -> CliResult<ServeConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::io(format!("cannot read {}", path.display()), e))?;
    let malformed = |e: &dyn std::fmt::Display| {
        Failure::new(ErrorClass::Malformed, format!("{}: {e}", path.display()))
    };
    let config: ServeConfig = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| malformed(&e))?
    } else {
        serde_json::from_str(&text).map_err(|e| malformed(&e))?
    };
    // A bad rate in the file is the file's fault (malformed), not the command line's.
    if let Some(rate) = &config.rate {
        rate_limits(rate.user_per_minute, rate.tenant_per_second)
            .map_err(|e| malformed(&e.message))?;
    }
    Ok(config)
}

/// Opens the etcd store the arguments name.
fn etcd_store(args: &StoreArgs) -> CliResult<EtcdStore> {
    let mut config = EtcdConfig::parse(&args.store).map_err(|e| Failure::from_lib("store", e))?;
    config.deadline = std::time::Duration::from_secs(args.etcd_timeout.max(1));
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| Failure::io(format!("cannot read {}", path.display()), e))
    };
    if let Some(user) = &args.etcd_user {
        let password = match (
            &args.etcd_password_file,
            std::env::var("COFFER_ETCD_PASSWORD"),
        ) {
            (Some(path), _) => String::from_utf8_lossy(&read(path)?).trim().to_owned(),
            (None, Ok(p)) => p,
            (None, Err(_)) => {
                return Err(Failure::usage(
                    "--etcd-user needs --etcd-password-file or COFFER_ETCD_PASSWORD",
                ))
            }
        };
        config.user = Some((user.clone(), password));
    }
    if let Some(ca) = &args.etcd_ca {
        config.ca_pem = Some(read(ca)?);
    }
    if let (Some(cert), Some(key)) = (&args.etcd_cert, &args.etcd_key) {
        config.client_pem = Some((read(cert)?, read(key)?));
    }
    let credentials =
        args.etcd_user.is_some() || args.etcd_cert.is_some() || args.etcd_ca.is_some();
    if args.store.starts_with("etcd://") && credentials {
        return Err(Failure::usage(
            "etcd:// is plain TCP: use etcds:// with --etcd-ca for credentials and certificates \
             (they would otherwise travel in the clear, or be ignored)",
        ));
    }
    if args.store.starts_with("etcds://") && config.ca_pem.is_none() {
        return Err(Failure::usage(
            "etcds:// needs --etcd-ca (the CA that signs the members' certificates)",
        ));
    }
    EtcdStore::connect(&config).map_err(|e| Failure::from_lib("store", e))
}

#[allow(clippy::too_many_arguments)]
fn serve_command(
    listen: &str,
    data: &Path,
    ksf: &str,
    server_id: &str,
    limits: RateLimits,
    config_file: Option<&Path>,
    hsm_uri: Option<&str>,
    realm_id: Option<&str>,
    store_args: &StoreArgs,
    network: &ServeNetworkArgs,
) -> CliResult<Report> {
    // The ports first: a vault that cannot listen writes nothing.
    let listener = bind(listen)?;
    let admin_listener = network.admin_listen.as_deref().map(bind).transpose()?;
    let tls = match (&network.tls_cert, &network.tls_key) {
        (Some(cert), Some(key)) => Some(
            ServerTls::load_with_client_ca(cert, key, network.tls_client_ca.as_deref())
                .map_err(|e| Failure::new(ErrorClass::Io, format!("TLS: {e}")))?,
        ),
        _ => None,
    };
    let location = match hsm_uri {
        Some(text) => uri::parse(text).map_err(|e| Failure::from_lib("--hsm", e))?,
        None => HsmLocation::Soft(data.to_owned()),
    };
    let claimed = data_dir::claim(data, &location)?;
    let file = match config_file {
        Some(path) => load_config(path)?,
        None => ServeConfig::default(),
    };
    let ksf = KsfParams::parse(file.ksf.as_deref().unwrap_or(ksf))
        .map_err(|e| Failure::from_lib("KSF", e))?;
    let limits = match &file.rate {
        Some(r) => rate_limits(r.user_per_minute, r.tenant_per_second)?,
        None => limits,
    };
    let mut config = ServerConfig {
        ksf,
        max_sessions: network.max_sessions as usize,
        max_sessions_per_tenant: network.max_sessions_per_tenant as usize,
        server_id: file
            .server_id
            .clone()
            .unwrap_or_else(|| server_id.to_owned()),
        // Crash tests only (spec/vault.md §10): abort at a named point. Debug builds only:
        // a release build ignores the variable, so no deployment can be made to crash by it.
        fault: if cfg!(debug_assertions) {
            std::env::var("COFFER_VAULT_FAULT").ok()
        } else {
            None
        },
        ..ServerConfig::default()
    };
    if let Some(l) = &file.guess_limit {
        if !(1..=l.max).contains(&l.min) || !(l.min..=l.max).contains(&l.default) {
            return Err(Failure::new(
                ErrorClass::Malformed,
                "guess_limit needs 1 <= min <= default <= max",
            ));
        }
        (config.default_limit, config.min_limit, config.max_limit) = (l.default, l.min, l.max);
    }
    if let Some(ttl) = file.session_ttl_seconds {
        config.session_ttl = std::time::Duration::from_secs(ttl.clamp(10, 3600));
    }
    let mut tenants = Tenants::default();
    let mut announced = Vec::new();
    match file.tenants.as_deref() {
        Some(list) if !list.is_empty() => {
            let base = config_file.and_then(Path::parent).unwrap_or(Path::new("."));
            let read_token = |name: &str, file: &Path| -> CliResult<(Zeroizing<String>, PathBuf)> {
                let path = if file.is_absolute() {
                    file.to_owned()
                } else {
                    base.join(file)
                };
                let token = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                    Failure::io(format!("tenant {name}: cannot read {}", path.display()), e)
                })?);
                if token.trim().len() < 32 {
                    return Err(Failure::new(
                        ErrorClass::Malformed,
                        format!("tenant {name}: tokens must have at least 32 characters"),
                    ));
                }
                Ok((token, path))
            };
            for t in list {
                let keys = t.user_token_keys.as_deref().unwrap_or_default();
                let certs = t.client_cert_sha256.as_deref().unwrap_or_default();
                if t.token_file.is_none()
                    && t.admin_token_file.is_none()
                    && keys.is_empty()
                    && certs.is_empty()
                {
                    return Err(Failure::new(
                        ErrorClass::Malformed,
                        format!(
                            "tenant {}: needs a token_file, an admin_token_file, user_token_keys \
                             or client_cert_sha256",
                            t.name
                        ),
                    ));
                }
                if !certs.is_empty() && network.tls_client_ca.is_none() {
                    return Err(Failure::new(
                        ErrorClass::Malformed,
                        format!(
                            "tenant {}: client_cert_sha256 needs --tls-client-ca (and TLS)",
                            t.name
                        ),
                    ));
                }
                for cert in certs {
                    let mut sha256 = [0u8; 32];
                    hex::decode_to_slice(cert.trim(), &mut sha256).map_err(|_| {
                        Failure::new(
                            ErrorClass::Malformed,
                            format!(
                                "tenant {}: client_cert_sha256 {cert:?}: not 64 hex digits",
                                t.name
                            ),
                        )
                    })?;
                    tenants.add_client_cert(sha256, &t.name);
                }
                for key in keys {
                    let public = hex::decode(key.public_key.trim()).map_err(|_| {
                        Failure::new(
                            ErrorClass::Malformed,
                            format!("tenant {}: key {}: not hex", t.name, key.kid),
                        )
                    })?;
                    tenants
                        .add_user_key(&t.name, &key.kid, &public)
                        .map_err(|e| {
                            Failure::new(ErrorClass::Malformed, format!("tenant {}: {e}", t.name))
                        })?;
                }
                let path = match &t.token_file {
                    Some(file) => {
                        let (token, path) = read_token(&t.name, file)?;
                        tenants.add(token.trim(), &t.name);
                        Some(path)
                    }
                    None => None,
                };
                let admin = match &t.admin_token_file {
                    Some(file) => {
                        let (admin, admin_path) = read_token(&t.name, file)?;
                        tenants.add_admin(admin.trim(), &t.name);
                        Some(admin_path)
                    }
                    None => None,
                };
                announced
                    .push(json!({"tenant": t.name, "token_file": path, "admin_token_file": admin}));
            }
        }
        _ => {
            let (token, token_path) = default_token(data)?;
            tenants.add(&token, "default");
            announced.push(json!({"tenant": "default", "token_file": token_path}));
        }
    }
    // User tokens name this server: a realm by its id, a vault by its server id.
    tenants.set_audience(realm_id.unwrap_or(&config.server_id));
    let served = Served {
        listener,
        admin_listener,
        _claimed: claimed,
        data,
        store: if store_args.store == "sqlite" {
            format!("sqlite:{}", data.join("vault.db").display())
        } else {
            store_args.store.clone()
        },
        tenants,
        announced,
        limits,
        options: ServeOptions {
            tls,
            max_connections: network.max_connections as usize,
            header_read_timeout: std::time::Duration::from_secs(network.header_timeout),
            request_timeout: std::time::Duration::from_secs(network.request_timeout),
        },
    };
    if let Some(realm_id) = realm_id {
        // Several nodes of one realm may share an etcd cluster, as a vault's nodes do; the
        // realm's prefix should be its own (etcd://hosts/realm-name).
        let store: Box<dyn RealmStore> = if store_args.store == "sqlite" {
            Box::new(
                SqliteRealmStore::open(&data.join("realm.db"))
                    .map_err(|e| Failure::from_lib("store", e))?,
            )
        } else {
            Box::new(EtcdRealmStore::new(etcd_store(store_args)?))
        };
        let realm = RealmConfig {
            ksf: config.ksf,
            max_limit: config.max_limit,
            ..RealmConfig::new(realm_id)
        };
        let served = Served {
            store: if store_args.store == "sqlite" {
                format!("sqlite:{}", data.join("realm.db").display())
            } else {
                store_args.store.clone()
            },
            ..served
        };
        return serve_on::<SqliteStore>(Service::Realm(store, realm), location, served);
    }
    if store_args.store == "sqlite" {
        let store =
            SqliteStore::open(&data.join("vault.db")).map_err(|e| Failure::from_lib("store", e))?;
        serve_on(Service::Vault(store, config), location, served)
    } else {
        serve_on(
            Service::Vault(etcd_store(store_args)?, config),
            location,
            served,
        )
    }
}

/// What a `vault serve` process serves.
enum Service<S> {
    /// A vault (spec/vault.md) on store `S`.
    Vault(S, ServerConfig),
    /// A realm (spec/realms.md).
    Realm(Box<dyn RealmStore>, RealmConfig),
}

/// Serves with `store` and the HSM at `location`.
fn serve_on<S: Store + 'static>(
    service: Service<S>,
    location: HsmLocation,
    served: Served<'_>,
) -> CliResult<Report> {
    match location {
        HsmLocation::Soft(dir) => {
            let hsm = SoftHsm::open_or_create(&dir.join("master.key"))
                .map_err(|e| Failure::from_lib("HSM", e))?;
            run_server(service, hsm, served)
        }
        HsmLocation::Pkcs11(pkcs11) => {
            let hsm = Pkcs11Hsm::open(&pkcs11).map_err(|e| Failure::from_lib("HSM", e))?;
            run_server(service, hsm, served)
        }
    }
}

/// Binds `at` (before anything is written: a vault that cannot listen leaves no files).
fn bind(at: &str) -> CliResult<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(at)
        .map_err(|e| Failure::io(format!("cannot listen on {at}"), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::io(format!("cannot listen on {at}"), e))?;
    Ok(listener)
}

/// Where and for whom a vault is served.
struct Served<'a> {
    listener: std::net::TcpListener,
    admin_listener: Option<std::net::TcpListener>,
    /// The data directory's lock, held while serving.
    _claimed: data_dir::Claimed,
    data: &'a Path,
    store: String,
    tenants: Tenants,
    announced: Vec<serde_json::Value>,
    limits: RateLimits,
    options: ServeOptions,
}

fn run_server<S: Store + 'static, H: Hsm + 'static>(
    service: Service<S>,
    hsm: H,
    served: Served<'_>,
) -> CliResult<Report> {
    let Served {
        listener,
        admin_listener,
        _claimed,
        data,
        store: store_name,
        tenants,
        announced,
        limits,
        options,
    } = served;
    let metrics = Metrics::new();
    let hsm = MeteredHsm::new(hsm, metrics.clone());
    let sealing = hsm.describe();
    tracing::info!(hsm = %sealing, "sealing with");
    let ((app, ready), mode, realm_id, server_key) = match service {
        Service::Vault(store, config) => {
            let store = MeteredStore::new(store, metrics.clone());
            let vault =
                VaultServer::open(store, hsm, config).map_err(|e| Failure::from_lib("vault", e))?;
            let key = hex::encode(vault.server_key());
            let served = router_with_readiness(vault, tenants, limits);
            (served, "vault", None, Some(key))
        }
        Service::Realm(store, config) => {
            let id = config.realm_id.clone();
            let realm =
                Realm::open(store, hsm, config).map_err(|e| Failure::from_lib("realm", e))?;
            let served = realm_router_with_readiness(realm, tenants, limits);
            (served, "realm", Some(id), None)
        }
    };
    let app = metered(app, metrics.clone());
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::io("cannot start the async runtime", e))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| Failure::io("cannot listen", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::io("local address", e))?;
        let admin = match admin_listener {
            Some(admin) => {
                let admin = tokio::net::TcpListener::from_std(admin)
                    .map_err(|e| Failure::io("cannot listen", e))?;
                let admin_addr = admin
                    .local_addr()
                    .map_err(|e| Failure::io("local address", e))?;
                let routes = admin_router(metrics.clone(), ready);
                tokio::spawn(async move {
                    let stop = std::future::pending();
                    if let Err(e) = serve_until(admin, routes, ServeOptions::default(), stop).await
                    {
                        tracing::error!(error = %e, "admin endpoints stopped");
                    }
                });
                Some(format!("http://{admin_addr}"))
            }
            None => None,
        };
        // One line for people and scripts: where it listens and where the tokens are.
        let first = &announced[0];
        super::print_line(
            &json!({
                "listening": format!("{scheme}://{addr}"),
                "server_key": server_key,
                "admin": admin,
                "tenant": first["tenant"],
                "token_file": first["token_file"],
                "tenants": announced,
                "data": data,
                "store": store_name,
                "hsm": sealing,
                "mode": mode,
                "realm_id": realm_id,
            })
            .to_string(),
        );
        tracing::info!(%addr, mode, "serving");
        serve(listener, app, options)
            .await
            .map_err(|e| Failure::io("server", e))
    })?;
    Ok(Report {
        text: "vault stopped".into(),
        json: json!({"command": "vault serve", "stopped": true}),
    })
}

/// After `wrong_password`, how many guesses the record has left (or that it is gone), from
/// the vault's status (uncounted): the user must know how close the key is to being lost.
fn with_guesses_left(mut failure: Failure, vault: &VaultClient, user: &str) -> Failure {
    if failure.class != ErrorClass::WrongPassword {
        return failure;
    }
    let note = match vault.status(user) {
        Ok(status) if status.state == Some(coffer::store::RecordState::Active) => {
            match status.guesses_left {
                // The vault destroys the record at its next login, right password or not.
                0 => "no guesses left: the key can no longer be recovered".to_owned(),
                1 => "1 guess left before the key is destroyed".to_owned(),
                n => format!("{n} guesses left before the key is destroyed"),
            }
        }
        Ok(status) if status.state == Some(coffer::store::RecordState::Destroyed) => {
            "that was the last guess: the vault has destroyed the key".to_owned()
        }
        Ok(_) => format!("the vault holds no key for {user}"),
        Err(e) => format!("guesses left unknown ({e})"),
    };
    failure.message = format!("{}; {note}", failure.message);
    failure
}
