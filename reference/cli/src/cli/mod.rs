//! Command-line interface: argument parsing, dispatch, and output (text or `--json`).

mod coffer_file;
mod commands;
mod data_dir;
mod failure;
mod hsm_cmds;
mod info;
mod input;
mod key_arg;
mod output;
mod realm_cmds;
mod secrets;
mod unpack;
mod vault_cmds;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   hsm check: a MUST check failed
  2   usage error: bad arguments, or options that do not apply (nothing was done)
  10  wrong_key      the key does not open the file
  11  corrupt        the file was modified or damaged
  12  truncated      the file ends early
  13  trailing_data  bytes follow the end of the backup
  14  unsupported    a feature this version does not support (or a token the HSM profile refuses)
  15  malformed      not a backup (or key) of the expected form
  16  wrong_password     the vault password is wrong (or there is no such record)
  17  no_record          the vault has no record for this user
  18  locked             the record's guesses were used up during this recovery
  19  server_auth_failed the vault's answer does not authenticate
  20  rate_limited       too many requests; try later
  21  unauthorized       the tenant token or session does not allow this
  22  io             a file could not be read or written";

/// Open, inspect and write encrypted chat backups: WhatsApp-compatible crypt15/14/12 and
/// Coffer's own format.
///
/// Coffer reads crypt15, crypt14 and crypt12 backups and writes crypt15; it reads and writes
/// Coffer files (authenticated header + C2SP chunked encryption: truncation detection,
/// random access, parallel decryption). Everything streams with bounded memory. A decrypted
/// file only ever appears at OUTPUT once the backup has authenticated; on any failure OUTPUT
/// is left untouched.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, after_help = EXIT_CODES, propagate_version = true)]
pub(crate) struct Cli {
    /// Print one JSON object on stdout instead of text (errors too: {"ok": false, "error": CLASS, ...}).
    #[arg(long, global = true)]
    json: bool,
    /// More log output on stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines as text, or as one JSON object each (for log collectors).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "COFFER_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or show backup keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Decrypt a Coffer, crypt15, crypt14 or crypt12 backup (the format is read from the bytes).
    #[command(
        after_help = "Examples:\n  coffer decrypt --key encrypted_backup.key msgstore.db.crypt15 -o msgstore.db\n  \
        coffer decrypt --key KEY backup.coffer -o msgstore.db             # all cores when uncompressed\n  \
        coffer decrypt --key KEY backup.coffer --range 4096:8192 -o page  # random access"
    )]
    Decrypt(DecryptArgs),
    /// Encrypt a file (or, as a Coffer file, a whole directory) as a backup.
    #[command(
        after_help = "Examples:\n  coffer encrypt --key encrypted_backup.key msgstore.db -o msgstore.db.crypt15\n  \
        coffer encrypt --key KEY --like old.crypt15 msgstore.db -o new.crypt15\n  \
        coffer encrypt --key KEY --like old.crypt15 --keep-iv msgstore.db -o same.crypt15   # byte-exact copy\n  \
        coffer encrypt --format coffer --key KEY msgstore.db -o backup.coffer\n  \
        coffer encrypt --format coffer --compress none --key KEY Media/ -o media.coffer   # tar of the folder"
    )]
    Encrypt(EncryptArgs),
    /// Authenticate a whole backup without writing any plaintext.
    #[command(after_help = "Example:\n  coffer verify --key KEY backup.coffer && echo intact")]
    Verify(VerifyArgs),
    /// Show a backup's format, header fields and sizes (no key needed).
    Info(InfoArgs),
    /// Keep K behind a password in a key vault (OPAQUE), or run one.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// The vault's master key on an HSM.
    #[command(subcommand)]
    Hsm(HsmCommand),
    /// Password-protected backups end to end: a new key, kept in the vault, encrypting a Coffer file.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Keep K behind a password split over t-of-n independent realms (spec/realms.md), so
    /// that no single vault, host or operator can test a guess offline.
    #[command(
        subcommand,
        after_help = "The realms file (JSON) names the realms in order, with their tokens:\n  \
        {\"threshold\": 2, \"limit\": 10, \"realms\": [\n    \
        {\"id\": \"r1\", \"url\": \"https://r1.example:8443\", \"token_file\": \"r1.token\",\n     \
        \"ca_file\": \"r1-ca.pem\"}, ...]}\n\
        ca_file is optional (default: the system's roots); plain http:// is refused except to\n\
        loopback unless \"insecure_http\": true.\n\
        Run a realm: coffer vault serve --realm-id r1 --data DIR --tls-cert C --tls-key K"
    )]
    Realms(RealmsCommand),
    /// Print a shell completion script for coffer on stdout.
    #[command(
        after_help = "Examples:\n  coffer completions bash > /etc/bash_completion.d/coffer\n  \
        coffer completions zsh > \"${fpath[1]}/_coffer\"\n  \
        coffer completions fish > ~/.config/fish/completions/coffer.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print coffer's man page (roff) on stdout, or write one page per command to a directory.
    #[command(
        after_help = "Examples:\n  coffer man | man -l -\n  coffer man --out-dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write coffer.1, coffer-decrypt.1, ... here instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum RealmsCommand {
    /// Split a 64-digit key over every realm of the file; all must accept.
    Register {
        #[command(flatten)]
        client: RealmsClientArgs,
        /// The key to protect: a key file, or - for standard input (without --key: COFFER_KEY,
        /// else a prompt; never the digits on the command line).
        #[arg(long, short, value_name = "FILE|-")]
        key: Option<String>,
        #[command(flatten)]
        new_password: NewPasswordArgs,
    },
    /// Get the key back from any `threshold` realms (each attempt uses one guess at each).
    Recover {
        #[command(flatten)]
        client: RealmsClientArgs,
        /// Write the 64 digits to this file (mode 0600) instead of printing them.
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
    },
    /// Change the password: recover with the old one (one guess at each realm, then a
    /// reset), then register the same key behind the new one; every realm must answer.
    ChangePassword {
        #[command(flatten)]
        client: RealmsClientArgs,
        /// Read the new password from the first line of this file (- for standard input)
        /// instead of prompting twice.
        #[arg(long, value_name = "FILE|-")]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        new_password: NewPasswordArgs,
    },
    /// What each realm holds for the user, and the guesses left before the key is lost
    /// (asks nothing of the password; counts nothing).
    Status {
        #[command(flatten)]
        client: RealmsClientArgs,
    },
    /// Delete the registration on every realm (the password is proven to each first: one
    /// guess, then a reset).
    Delete {
        #[command(flatten)]
        client: RealmsClientArgs,
        /// Delete without asking to type the user id (needed without a terminal).
        #[arg(long)]
        yes: bool,
    },
}

/// Which realms, and who asks.
#[derive(Debug, Args)]
pub(crate) struct RealmsClientArgs {
    /// The realms file (see `coffer realms --help`).
    #[arg(long, value_name = "FILE")]
    realms: PathBuf,
    /// The user id.
    #[arg(long)]
    user: String,
    /// Read the password from the first line of this file (- for standard input) instead
    /// of prompting at the terminal.
    #[arg(long, value_name = "FILE|-")]
    password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate a new random 32-byte key and print its 64 digits.
    New {
        /// Also save it to FILE.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Form of FILE: `java` is WhatsApp's 59-byte encrypted_backup.key, `hex` a text file.
        #[arg(long, value_enum, default_value_t = KeyFileForm::Java, requires = "out")]
        form: KeyFileForm,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the 64 digits of a key file (or of COFFER_KEY, or of a key typed at the prompt)
    /// in groups of four.
    Show {
        /// encrypted_backup.key, a crypt12/14 `key` file, a text file, or - for standard input.
        #[arg(value_name = "FILE|-")]
        key: Option<String>,
    },
}

/// The `vault` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Run a vault server (SQLite store and software HSM in DATA; created on first start).
    #[command(
        after_help = "Example:\n  coffer vault serve --listen 127.0.0.1:8443 --data /var/lib/coffer-vault\n\n\
        The default tenant's token is written to DATA/tenant-default.token (mode 0600)."
    )]
    Serve {
        /// Address to listen on (port 0 picks a free one; the first stdout line says which).
        #[arg(long, default_value = "127.0.0.1:8443", env = "COFFER_VAULT_LISTEN")]
        listen: String,
        /// Directory for the database, the master key file and the tenant token.
        #[arg(long, env = "COFFER_VAULT_DATA")]
        data: PathBuf,
        /// Argon2id parameters for new registrations.
        #[arg(
            long,
            default_value = "argon2id:m=65536,t=3,p=1",
            env = "COFFER_VAULT_KSF"
        )]
        ksf: String,
        /// The server identity bound into every login.
        #[arg(long, default_value = "coffer-vault", env = "COFFER_VAULT_SERVER_ID")]
        server_id: String,
        /// Guesses and registrations per user and minute (up to a minute's worth at once).
        #[arg(long, default_value_t = 30.0)]
        user_per_minute: f64,
        /// Requests per tenant and second.
        #[arg(long, default_value_t = 10_000.0)]
        tenant_per_second: f64,
        /// Configuration file, TOML (name ending .toml) or JSON: tenants and their token
        /// files, server_id, ksf, guess_limit {default,min,max}, rate
        /// {user_per_minute,tenant_per_second}, session_ttl_seconds; what it sets wins over
        /// the flags and their COFFER_VAULT_* variables. Without tenants, the `default`
        /// tenant is created.
        #[arg(long, value_name = "FILE", env = "COFFER_VAULT_CONFIG")]
        config: Option<PathBuf>,
        /// Where the master key is: soft:DIR (default soft:DATA, a key file) or an RFC 7512
        /// URI, e.g. "pkcs11:token=vault?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/coffer/pin"
        /// (the PIN may also come from COFFER_PKCS11_PIN). Create the key first: coffer hsm init.
        #[arg(long, value_name = "URI", env = "COFFER_VAULT_HSM")]
        hsm: Option<String>,
        /// Serve as a realm of a threshold registration (spec/realms.md) named NAME, instead
        /// of a vault: its records in DATA/realm.db (or in etcd with --store, shared by the
        /// realm's nodes), sealed by --hsm. Clients: coffer realms.
        #[arg(long, value_name = "NAME")]
        realm_id: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        network: Box<ServeNetworkArgs>,
    },
    /// Put a 64-digit key behind a password.
    Register {
        #[command(flatten)]
        client: VaultClientArgs,
        /// The key to protect: a key file, or - for standard input (without --key: COFFER_KEY,
        /// else a prompt; never the digits on the command line).
        #[arg(long, short, value_name = "FILE|-")]
        key: Option<String>,
        /// Wrong guesses allowed before the key is destroyed (server bounds apply; default 10).
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        new_password: NewPasswordArgs,
    },
    /// Get the key back with the password (each attempt uses one guess).
    Recover {
        #[command(flatten)]
        client: VaultClientArgs,
        /// Write the 64 digits to this file (mode 0600) instead of printing them.
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
    },
    /// Change the password: a recovery with the old one (one guess), then a new registration
    /// of the same key in the same session.
    ChangePassword {
        #[command(flatten)]
        client: VaultClientArgs,
        /// Read the new password from the first line of this file (- for standard input)
        /// instead of prompting twice.
        #[arg(long, value_name = "FILE|-")]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        new_password: NewPasswordArgs,
    },
    /// Whether a user is registered, and guesses left.
    Status {
        #[command(flatten)]
        client: VaultClientArgs,
    },
    /// Make a tenant's signing key for user tokens: the secret key (PKCS#8, mode 0600) goes
    /// to --out, the public key (for the vault's config, user_token_keys) is printed.
    UserKey {
        /// Where to write the secret signing key (refused if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Sign a user token with a tenant's key (what the tenant's front end does once it has
    /// authenticated the user; for tests and local use). Prints the token.
    UserToken {
        /// The tenant's secret signing key (from `coffer vault user-key`).
        #[arg(long, value_name = "FILE")]
        signing_key: PathBuf,
        /// The key id the vault's config gives that key.
        #[arg(long)]
        kid: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The user the token is for.
        #[arg(long)]
        user: String,
        /// The server it is for: a vault's server id, or a realm's id.
        #[arg(long, default_value = "coffer-vault")]
        audience: String,
        /// Seconds until it expires (at most 3600).
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=3600))]
        ttl: u64,
    },
    /// Read the tenant's audit log (its admin token only): every event is checked against
    /// its chain hash (spec/vault.md §6.2), and an event that does not chain fails the
    /// command (corrupt).
    Audit {
        /// The vault's base URL (or set COFFER_VAULT_URL).
        #[arg(long, env = "COFFER_VAULT_URL")]
        vault: String,
        /// File holding the tenant's admin token (or set COFFER_VAULT_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Start after this position (the `next` a previous page printed).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Events per page (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
        /// Read every page to the end of the log, not only the first.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        connection: VaultConnectionArgs,
    },
    /// Delete a user's record (its key is gone for good): the password is proven first (one
    /// guess, then a reset), or --admin with the tenant's admin token.
    Delete {
        #[command(flatten)]
        client: VaultClientArgs,
        /// Delete without the password, with the tenant's admin token (--token-file or
        /// COFFER_VAULT_TOKEN); an ordinary tenant token is refused.
        #[arg(long)]
        admin: bool,
        /// Delete without asking to type the user id (needed without a terminal).
        #[arg(long)]
        yes: bool,
    },
}

/// How a vault or realm meets the network: TLS, and the bounds on connections (spec/vault.md
/// §9.1).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServeNetworkArgs {
    /// Serve HTTPS with this PEM certificate chain (with --tls-key; both are read again on
    /// SIGHUP and within a second of either file changing). Without it the vault serves plain HTTP, which clients accept on loopback
    /// only.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        env = "COFFER_VAULT_TLS_CERT"
    )]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (PKCS#8, PKCS#1 or SEC1; keep it mode 0600).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        env = "COFFER_VAULT_TLS_KEY"
    )]
    tls_key: Option<PathBuf>,
    /// Ask clients for a certificate and verify it against the CA certificates of this PEM
    /// file: a tenant whose config lists the certificate's SHA-256 (client_cert_sha256) is
    /// then known by it, with no token (spec/vault.md §9). Clients without one still use
    /// tokens.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        env = "COFFER_VAULT_TLS_CLIENT_CA"
    )]
    tls_client_ca: Option<PathBuf>,
    /// Connections open at once; more are closed as they arrive.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Recovery sessions open at once (KE2 sent, KE3 not yet; or verified, awaiting a
    /// password change or deletion), in all; past it a KE1 is refused with rate_limited
    /// before its guess is counted.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions: u32,
    /// Recovery sessions one tenant may hold open at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions_per_tenant: u32,
    /// Seconds for a TLS handshake and for each request's headers (also the longest a
    /// kept-alive connection may sit idle).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    header_timeout: u64,
    /// Seconds from a request's headers to its answer, body included (408 past it).
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    request_timeout: u64,
    /// Serve /healthz, /readyz (store and HSM answer) and /metrics (OpenMetrics text) on
    /// this address, in plain HTTP: keep it where only operators reach, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", env = "COFFER_VAULT_ADMIN_LISTEN")]
    admin_listen: Option<String>,
}

/// Where a vault keeps its records (spec/vault.md §6).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct StoreArgs {
    /// The store: `sqlite` (DATA/vault.db, the default: one node) or
    /// `etcd://host:port,host:port[/prefix]` (`etcds://` for TLS): several vault nodes sharing
    /// one etcd cluster share every record and guess count (spec/vault.md §6.1).
    #[arg(long, value_name = "URL", default_value = "sqlite")]
    pub store: String,
    /// etcd user (etcd's own authentication); the password comes from --etcd-password-file
    /// or COFFER_ETCD_PASSWORD.
    #[arg(long, value_name = "USER")]
    pub etcd_user: Option<String>,
    /// A file holding the etcd user's password.
    #[arg(long, value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// CA certificate (PEM) of the etcd members, for etcds://.
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM), when the members require one (with --etcd-key).
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// Seconds a store operation may take (a node cut off from the etcd quorum refuses
    /// requests after this long instead of answering from stale state).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub etcd_timeout: u64,
}

/// The `hsm` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum HsmCommand {
    /// Create the master key on the token (sensitive AES-256, made on the token), unless it exists.
    #[command(after_help = "Examples:\n  \
        coffer hsm init --hsm 'pkcs11:token=vault?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/coffer/pin'\n  \
        coffer hsm init --exportable --hsm URI     # for a multi-site vault (see export-wrapped)\n  \
        coffer hsm init --hsm soft:/var/lib/coffer # the software backend (a key file)")]
    Init {
        /// soft:DIR or a pkcs11: URI (see vault serve --help).
        #[arg(long, value_name = "URI")]
        hsm: String,
        /// Let the key leave the token, but only wrapped under a transport key the token's
        /// security officer marked trusted (CKA_EXTRACTABLE and CKA_WRAP_WITH_TRUSTED). Without
        /// it the key can never leave the token (CKA_EXTRACTABLE false): a single-site vault.
        #[arg(long)]
        exportable: bool,
    },
    /// Key ceremony, step 1 (destination token): make an RSA-3072 transport key pair on the token
    /// and write its public half as PEM. The private half never leaves the token.
    #[command(after_help = CEREMONY)]
    TransportKey {
        /// The destination token (pkcs11: URI).
        #[arg(long, value_name = "URI")]
        hsm: String,
        /// Where to write the public key (PEM, SubjectPublicKeyInfo).
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
    },
    /// Key ceremony, step 2 (source token, security officer): store a transport public key as a
    /// trusted wrapping key. Compare the printed SHA-256 with the destination's out of band.
    #[command(after_help = CEREMONY)]
    Trust {
        /// The source token (pkcs11: URI; the user PIN is not needed).
        #[arg(long, value_name = "URI")]
        hsm: String,
        /// The transport public key (PEM) made by `coffer hsm transport-key`.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// File holding the security officer's PIN (otherwise COFFER_PKCS11_SO_PIN).
        #[arg(long, value_name = "FILE")]
        so_pin_file: Option<PathBuf>,
    },
    /// Key ceremony, step 3 (source token): wrap the master key under the trusted transport key.
    #[command(after_help = CEREMONY)]
    ExportWrapped {
        /// The source token (pkcs11: URI).
        #[arg(long, value_name = "URI")]
        hsm: String,
        /// The transport public key (PEM) the security officer trusted.
        #[arg(long, value_name = "FILE")]
        transport: PathBuf,
        /// Where to write the wrapped key (JSON; useless without the destination token).
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
    },
    /// Key ceremony, step 4 (destination token): unwrap the master key onto the token and verify it.
    #[command(after_help = CEREMONY)]
    ImportWrapped {
        /// The destination token (pkcs11: URI); `object=` names the key there.
        #[arg(long, value_name = "URI")]
        hsm: String,
        /// The wrapped key made by `coffer hsm export-wrapped`.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Let the imported key be exported again (to a trusted key only), as with init --exportable.
        #[arg(long)]
        exportable: bool,
    },
    /// Check a PKCS#11 module and token against Coffer's HSM profile (spec/hsm.md).
    ///
    /// Each check runs in its own child process, so a module that crashes or hangs fails that
    /// check and the rest still run. Only session objects are created: the token is left as it
    /// was. Exit code 0 when every MUST check passes, 1 otherwise.
    #[command(
        after_help = "Example:\n  coffer hsm check --hsm 'pkcs11:token=vault?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin'"
    )]
    Check {
        /// The token (pkcs11: URI); or give --module and --token.
        #[arg(long, value_name = "URI", required_unless_present_all = ["module", "token"], conflicts_with_all = ["module", "token"])]
        hsm: Option<String>,
        /// The PKCS#11 module (.so), with --token; the user PIN then comes from COFFER_PKCS11_PIN.
        #[arg(long, value_name = "PATH", requires = "token")]
        module: Option<PathBuf>,
        /// The token's label, with --module.
        #[arg(long, value_name = "LABEL", requires = "module")]
        token: Option<String>,
        /// Run only this check, in this process (ids: hsm.<area>.<case>).
        #[arg(long, value_name = "ID")]
        only: Option<String>,
        /// Seconds a check may take before it counts as hung.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

/// The `backup` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BackupCommand {
    /// New random key K, registered in the vault behind your password; INPUT (a file or a
    /// directory) encrypted with it as a Coffer file.
    #[command(
        after_help = "Examples:\n  coffer backup create --vault http://127.0.0.1:8443 --user alice --token-file t msgstore.db -o backup.coffer\n  \
        coffer backup create --realms realms.json --user alice msgstore.db -o backup.coffer   # K over t-of-n realms"
    )]
    Create {
        #[command(flatten)]
        client: BackupClientArgs,
        /// What to back up.
        input: PathBuf,
        /// The Coffer file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Replace OUTPUT if it exists.
        #[arg(long)]
        force: bool,
        /// Also write the 64 digits to this file (mode 0600), for users who keep the key too.
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
        /// Compression before encryption.
        #[arg(long, value_enum, default_value_t = CompressArg::Zstd)]
        compress: CompressArg,
        #[command(flatten)]
        new_password: NewPasswordArgs,
    },
    /// Recover K from the vault with your password and decrypt a Coffer backup.
    Restore {
        #[command(flatten)]
        client: BackupClientArgs,
        /// The Coffer file.
        input: PathBuf,
        /// Where to write the plaintext (created only once it authenticates).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace OUTPUT if it exists.
        #[arg(long)]
        force: bool,
    },
}

const CEREMONY: &str = "\
The key ceremony moves the master key to a second token without it ever being in the clear:
  destination$ coffer hsm transport-key --hsm URI_B --out transport.pem
  source (SO)$ coffer hsm trust --hsm URI_A --public-key transport.pem --so-pin-file so.pin
  source$      coffer hsm export-wrapped --hsm URI_A --transport transport.pem --out master.wrapped
  destination$ coffer hsm import-wrapped --hsm URI_B --in master.wrapped
The source key must have been made with `coffer hsm init --exportable`. Both officers compare
the transport key's SHA-256 (printed by transport-key and trust) over a trusted channel.";

/// Where the vault is and who asks.
#[derive(Debug, Args)]
pub(crate) struct VaultClientArgs {
    /// The vault's base URL, e.g. https://vault.example:8443 (plain http:// only to
    /// loopback, unless --insecure-http). Or set COFFER_VAULT_URL.
    #[arg(long, env = "COFFER_VAULT_URL")]
    vault: String,
    /// The user id within the tenant.
    #[arg(long)]
    user: String,
    /// File holding the tenant token (or set COFFER_VAULT_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Read the password from the first line of this file (- for standard input) instead
    /// of prompting at the terminal.
    #[arg(long, value_name = "FILE|-")]
    password_file: Option<PathBuf>,
    /// The vault's server identity.
    #[arg(long, default_value = "coffer-vault")]
    server_id: String,
    #[command(flatten)]
    connection: VaultConnectionArgs,
}

/// How the client reaches a vault: whom it trusts (spec/vault.md §9.1).
#[derive(Debug, Args, Clone)]
pub(crate) struct VaultConnectionArgs {
    /// Trust only the CA certificates in this PEM file for https:// (default: the system's
    /// roots).
    #[arg(long, value_name = "FILE", env = "COFFER_VAULT_CA")]
    ca: Option<PathBuf>,
    /// Allow plain http:// to a host that is not loopback: the token, and every message,
    /// then cross the network in clear.
    #[arg(long)]
    insecure_http: bool,
    /// The vault's OPAQUE public key (64 hex digits, as `vault serve` prints it): a vault
    /// that answers with another key is refused (server_auth_failed) at registration and at
    /// every recovery.
    #[arg(long, value_name = "HEX", env = "COFFER_VAULT_SERVER_KEY")]
    server_key: Option<String>,
    /// Present this PEM client certificate (with --client-key): for a tenant the vault knows
    /// by its certificate, which then needs no token.
    #[arg(
        long,
        value_name = "FILE",
        requires = "client_key",
        env = "COFFER_VAULT_CLIENT_CERT"
    )]
    client_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "client_cert",
        env = "COFFER_VAULT_CLIENT_KEY"
    )]
    client_key: Option<PathBuf>,
    /// Accept a vault's Argon2id parameters below the floor (19 MiB, 2 passes): only for
    /// test vaults with cheap parameters. Or set COFFER_ALLOW_WEAK_KSF=1.
    #[arg(long, env = "COFFER_ALLOW_WEAK_KSF", value_parser = clap::builder::FalseyValueParser::new())]
    allow_weak_ksf: bool,
}

/// How a new password is taken (spec/vault.md §7: the password is what stands between a
/// stolen vault state and the key).
#[derive(Debug, Args, Clone)]
pub(crate) struct NewPasswordArgs {
    /// Accept a new password that zxcvbn estimates easy to guess (score below 3 of 4). Or
    /// set COFFER_ALLOW_WEAK_PASSWORD=1.
    #[arg(long, env = "COFFER_ALLOW_WEAK_PASSWORD", value_parser = clap::builder::FalseyValueParser::new())]
    allow_weak_password: bool,
}

/// Where a backup's key is kept: one vault, or t-of-n realms.
#[derive(Debug, Args)]
pub(crate) struct BackupClientArgs {
    /// The vault's base URL, e.g. https://vault.example:8443 (or --realms). Without either,
    /// COFFER_VAULT_URL.
    #[arg(long, conflicts_with = "realms")]
    vault: Option<String>,
    /// A realms file: the key split over t-of-n realms instead of one vault (see
    /// `coffer realms --help`).
    #[arg(long, value_name = "FILE")]
    realms: Option<PathBuf>,
    /// The user id.
    #[arg(long)]
    user: String,
    /// File holding the vault's tenant token (or set COFFER_VAULT_TOKEN); realms name theirs
    /// in the realms file.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Read the password from the first line of this file (- for standard input) instead
    /// of prompting at the terminal.
    #[arg(long, value_name = "FILE|-")]
    password_file: Option<PathBuf>,
    /// The vault's server identity.
    #[arg(long, default_value = "coffer-vault")]
    server_id: String,
    #[command(flatten)]
    connection: VaultConnectionArgs,
}

/// Backup formats `coffer encrypt` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// WhatsApp-compatible crypt15.
    Crypt15,
    /// Coffer's own format (spec/format.md).
    Coffer,
}

/// Compression before encryption in the Coffer format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressArg {
    /// Store as is: the file reveals only the plaintext's length.
    None,
    /// Zstandard in independent 2 MiB frames with a seek table (see --zstd-level): --range
    /// decompresses only the frames it needs, and decryption runs on every core.
    Zstd,
}

/// Key file forms `coffer key new` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyFileForm {
    /// 59-byte Java-serialized byte[] (WhatsApp's encrypted_backup.key).
    Java,
    /// 64 hex digits in groups of four, one line.
    Hex,
}

#[derive(Debug, Args, Clone)]
struct KeyArg {
    /// The key file (encrypted_backup.key, `key` for crypt12/14, or a text file of 64 hex
    /// digits), or `-` to read the key from standard input. Without --key: COFFER_KEY (the 64
    /// digits), else a prompt. The digits themselves are refused here: the command line is
    /// visible to every user of the machine.
    #[arg(long, short, value_name = "FILE|-")]
    key: Option<String>,
}

#[derive(Debug, Args, Clone)]
struct DecryptArgs {
    #[command(flatten)]
    key: KeyArg,
    /// The backup to decrypt.
    input: PathBuf,
    /// Where to write the plaintext (created only once the backup authenticates): a file; a
    /// directory (DIR/NAME, NAME the input's without .crypt15, .crypt14, .crypt12 or
    /// .coffer); or - for standard output, written only once all of it authenticated.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "OUTPUT",
        required_unless_present = "extract"
    )]
    output_arg: Option<PathBuf>,
    /// Coffer folder backups: unpack the tar into DIR (new, or empty) once the whole backup
    /// authenticated; entries that would land outside DIR (absolute paths, .., links out of
    /// DIR), device files and duplicates are refused, and nothing is left on failure.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["output_arg", "range", "raw", "force"])]
    extract: Option<PathBuf>,
    /// OUTPUT as resolved (set by the command, not by the user).
    #[arg(skip)]
    output: PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
    /// crypt15/14/12: write the decrypted payload as is (the zlib stream) instead of inflating it.
    #[arg(long)]
    raw: bool,
    /// Coffer: only plaintext bytes START..END (END exclusive, either may be omitted), read by
    /// random access: only the chunks in the range are decrypted, and of a zstd file only the
    /// 2 MiB frames that hold it are decompressed. Not for one-frame zstd files (format 0.3).
    #[arg(long, value_name = "START:END")]
    range: Option<String>,
    /// Coffer: decryption threads (0 = one per core, the default; 1 = streaming on this
    /// thread).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    key: KeyArg,
    /// The backup to authenticate.
    input: PathBuf,
    /// Coffer: threads (0 = one per core, the default).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Args, Clone)]
struct EncryptArgs {
    #[command(flatten)]
    key: KeyArg,
    /// The file to encrypt (e.g. msgstore.db), or with --format coffer a directory (packed as tar).
    input: PathBuf,
    /// Where to write the backup (created only when complete).
    #[arg(short, long)]
    output: PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
    /// Backup format to write.
    #[arg(long, value_enum, default_value_t = FormatArg::Crypt15)]
    format: FormatArg,
    /// Coffer: compression before encryption (zstd, the default, is smaller; none allows
    /// --range and parallel decryption).
    #[arg(long, value_enum)]
    compress: Option<CompressArg>,
    /// Coffer: zstd level 1-19 (default 3).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=19))]
    zstd_level: Option<i32>,
    /// Coffer: threads that seal chunks, or compress with zstd (0 = one per core, the
    /// default). The file is the same byte for byte whatever the number.
    #[arg(long)]
    threads: Option<usize>,
    /// Copy the header (app version, phone digits, feature flags...) from this backup.
    #[arg(long, value_name = "FILE")]
    like: Option<PathBuf>,
    /// With --like, also reuse its IV: reproduces that file byte for byte from the same plaintext.
    /// Never use it for different plaintext: reusing an IV under the same key breaks AES-GCM.
    #[arg(long, requires = "like")]
    keep_iv: bool,
    /// The IV as 32 hex digits (default: random). For test vectors; never reuse one.
    #[arg(long, value_name = "HEX", conflicts_with = "keep_iv")]
    iv: Option<String>,
    /// crypt15 header: WhatsApp version that "wrote" the backup (default 2.22.5.13).
    #[arg(long, conflicts_with = "like")]
    app_version: Option<String>,
    /// crypt15 header: the last two digits of the phone number (default 00).
    #[arg(long, conflicts_with = "like")]
    jid_suffix: Option<String>,
    /// crypt15 header: backup version (default 0).
    #[arg(long, conflicts_with = "like")]
    backup_version: Option<u64>,
    /// crypt15: zlib compression level 0-9 (default 1, as WhatsApp writes).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=9))]
    level: Option<u32>,
    /// Store INPUT without compression (older multi-file backups: a ZIP stored as is).
    #[arg(long, conflicts_with = "level")]
    stored: bool,
    /// Omit the MD5 trailer (older multi-file backups have none; only with --stored).
    #[arg(long, requires = "stored")]
    no_md5: bool,
}

#[derive(Debug, Args)]
struct InfoArgs {
    /// The backup to inspect.
    input: PathBuf,
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    // Human-readable lines. (Plain comments: doc comments would put clap's help for every
    // command into its long layout.)
    Text,
    // One JSON object per line.
    Json,
}

fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "coffer=debug",
        _ => "coffer=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
}

/// Parses the command line; a usage error under `--json` is one JSON object too (exit 2).
fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|error| {
        use clap::error::ErrorKind;
        let informational = matches!(
            error.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        if !informational && std::env::args_os().any(|a| a == "--json") {
            let detail = error.render().to_string();
            let message = detail
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned();
            print_line(
                &serde_json::json!({"ok": false, "error": "usage", "message": message, "detail": detail})
                    .to_string(),
            );
            return ExitCode::from(failure::USAGE_EXIT);
        }
        let _ = error.print();
        ExitCode::from(if informational { 0 } else { failure::USAGE_EXIT })
    })
}

/// Runs the CLI and returns the process exit code.
pub(crate) fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(cli.verbose, cli.log_format);
    // A secret in the process's arguments is readable by every user of the machine.
    let result = match secrets::none_on_the_command_line() {
        Err(failure) => Err(failure),
        Ok(()) => match cli.command {
            Command::Key(KeyCommand::New { out, form, force }) => {
                commands::key_new(out.as_deref(), form, force)
            }
            Command::Key(KeyCommand::Show { key }) => commands::key_show(key.as_deref()),
            Command::Decrypt(args) => commands::decrypt(&args),
            Command::Encrypt(args) => commands::encrypt(&args),
            Command::Verify(args) => commands::verify(&args),
            Command::Info(args) => info::run(&args.input),
            Command::Vault(command) => vault_cmds::run(&command),
            Command::Backup(command) => vault_cmds::backup(&command),
            Command::Realms(command) => realm_cmds::run(&command),
            Command::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "coffer",
                    &mut std::io::stdout(),
                );
                return ExitCode::SUCCESS;
            }
            Command::Man { out_dir } => commands::man(out_dir.as_deref()),
            Command::Hsm(command) => match hsm_cmds::run(&command) {
                Ok(hsm_cmds::Outcome::Done(report)) => Ok(report),
                Ok(hsm_cmds::Outcome::Checked { report, conforms }) => {
                    print_line(&if cli.json {
                        report.json.to_string()
                    } else {
                        report.text
                    });
                    return ExitCode::from(if conforms { 0 } else { 1 });
                }
                Err(failure) => Err(failure),
            },
        },
    };
    // With `-o -` the output is stdout: the report goes to stderr then.
    let emit = |line: &str| {
        if output::report_to_stderr() {
            eprintln!("{line}");
        } else {
            print_line(line);
        }
    };
    match result {
        Ok(report) => {
            if cli.json {
                let mut value = report.json;
                if let Some(object) = value.as_object_mut() {
                    object.insert("ok".into(), true.into());
                }
                emit(&value.to_string());
            } else if !report.text.is_empty() {
                emit(&report.text);
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            tracing::debug!(class = %failure.class, "command failed");
            if cli.json {
                let body = serde_json::json!({"ok": false, "error": failure.error_name(), "message": failure.message});
                print_line(&body.to_string());
            } else {
                eprintln!("coffer: {} ({})", failure.message, failure.error_name());
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Writes a line to stdout; a closed pipe (`coffer ... | head`) is not an error worth a panic.
pub(crate) fn print_line(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// What a successful command reports: a text form and a JSON form.
pub(crate) struct Report {
    pub text: String,
    pub json: serde_json::Value,
}
