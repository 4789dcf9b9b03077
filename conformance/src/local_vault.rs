//! A vault served on loopback inside the runner: the reference server (`coffer::http`) over
//! any store, with the software HSM, for the default run's `vault-server` suite and for
//! tests (which serve deliberately broken stores through it).

use anyhow::Context;
use coffer::hsm::SoftHsm;
use coffer::http::RateLimits;
use coffer::http::{router, Tenants};
use coffer::http::{serve_until, ServeOptions, ServerTls};
use coffer::store::SqliteStore;
use coffer::store::Store;
use coffer::vault::{ServerConfig, VaultServer};
use std::path::{Path, PathBuf};

/// The session lifetime of the local vault (spec/vault.md §3.2): short, so that the
/// vault.session.expired case waits little.
pub const LOCAL_SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15);

/// The key id of the local vault's user-token key.
pub const LOCAL_KID: &str = "conformance";

/// A running vault, served over HTTPS with a private CA; stopped when dropped.
pub struct LocalVault {
    /// Its base URL, `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA its certificate chains to (what clients pass as `--vault-ca`).
    pub ca: PathBuf,
    /// The signing key (PKCS#8) of the user tokens its tenant may sign, under key id
    /// [`LOCAL_KID`].
    pub user_key: zeroize::Zeroizing<Vec<u8>>,
    /// The tenant token.
    pub token: String,
    /// The token of a second tenant, `other` (for the tenancy case).
    pub other_token: String,
    /// The server identity it binds into logins.
    pub server_id: String,
    runtime: Option<tokio::runtime::Runtime>,
}

/// A running realm (spec/realms.md), served over HTTPS with a private CA; stopped when
/// dropped.
pub struct LocalRealm {
    /// Its base URL.
    pub url: String,
    /// The CA its certificate chains to.
    pub ca: PathBuf,
    /// The tenant token.
    pub token: String,
    _runtime: RuntimeGuard,
}

/// Serves a reference realm named `conformance-realm` over SQLite and the software HSM in
/// `dir`, with one tenant and a random token.
pub fn start_realm(dir: &Path) -> anyhow::Result<LocalRealm> {
    use coffer::realms::{Realm, RealmConfig, SqliteRealmStore};
    std::fs::create_dir_all(dir)?;
    let store = SqliteRealmStore::open(&dir.join("realm.db")).context("the realm's store")?;
    let hsm = SoftHsm::open_or_create(&dir.join("realm.key")).context("the software HSM")?;
    let realm = Realm::open(store, hsm, RealmConfig::new("conformance-realm"))
        .context("opening the realm")?;
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    let token = hex::encode(random);
    let mut tenants = Tenants::default();
    tenants.add(&token, "default");
    let (url, runtime, ca) = serve_loopback_tls(
        coffer::http::realm_router(realm, tenants, RateLimits::default()),
        dir,
    )?;
    Ok(LocalRealm {
        url,
        ca,
        token,
        _runtime: RuntimeGuard(Some(runtime)),
    })
}

/// Stops a loopback server's runtime when dropped.
struct RuntimeGuard(Option<tokio::runtime::Runtime>);

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A SQLite store in `dir` (the embedded default).
pub fn sqlite_store(dir: &Path) -> anyhow::Result<SqliteStore> {
    SqliteStore::open(&dir.join("vault.db")).context("opening the vault's SQLite store")
}

impl LocalVault {
    /// Serves a reference vault over `store`, with its software HSM key in `dir`, the
    /// default configuration and rate limits, and one tenant with a random token.
    pub fn start<S: Store + 'static>(store: S, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(store, dir, false)
    }

    /// [`LocalVault::start`]; with `admin`, its one token is the tenant's admin token (for
    /// tests: a vault whose clients can delete without the password).
    pub fn start_with<S: Store + 'static>(
        store: S,
        dir: &Path,
        admin: bool,
    ) -> anyhow::Result<Self> {
        let hsm = SoftHsm::open_or_create(&dir.join("master.key")).context("the software HSM")?;
        let config = ServerConfig {
            session_ttl: LOCAL_SESSION_LIFETIME,
            ..ServerConfig::default()
        };
        let server_id = config.server_id.clone();
        let vault = VaultServer::open(store, hsm, config).context("opening the vault")?;
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        let token = hex::encode(random);
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        let other_token = hex::encode(random);
        let mut tenants = Tenants::default();
        tenants.add(&other_token, "other");
        if admin {
            tenants.add_admin(&token, "default");
        } else {
            tenants.add(&token, "default");
        }
        let (user_key, public) =
            coffer::http::new_signing_key().map_err(|e| anyhow::anyhow!("a signing key: {e}"))?;
        tenants.add_user_key("default", LOCAL_KID, &public)?;
        tenants.set_audience(&server_id);
        let (url, runtime, ca) =
            serve_loopback_tls(router(vault, tenants, RateLimits::default()), dir)?;
        Ok(LocalVault {
            url,
            ca,
            user_key,
            token,
            other_token,
            server_id,
            runtime: Some(runtime),
        })
    }
}

/// A free loopback port, listened on from a runtime of its own (two workers).
fn loopback_listener() -> anyhow::Result<(
    std::net::SocketAddr,
    tokio::runtime::Runtime,
    tokio::net::TcpListener,
)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding loopback")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    Ok((addr, runtime, listener))
}

/// Serves `app` on a free loopback port from a runtime of its own: returns the base URL and
/// the runtime (dropping it, with `shutdown_background`, stops the server).
pub fn serve_loopback(app: axum::Router) -> anyhow::Result<(String, tokio::runtime::Runtime)> {
    let (addr, runtime, listener) = loopback_listener()?;
    let url = format!("http://{addr}");
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("loopback server: {e}");
        }
    });
    Ok((url, runtime))
}

/// Serves `app` over HTTPS on a free loopback port (the reference's own listener, with its
/// bounds), with a private CA made in `dir`: returns the base URL, the runtime (dropping it
/// stops the server) and the CA's file.
pub fn serve_loopback_tls(
    app: axum::Router,
    dir: &Path,
) -> anyhow::Result<(String, tokio::runtime::Runtime, PathBuf)> {
    let pki = coffer_testkit::tls::issue(&dir.join("pki"), "conformance");
    let tls = ServerTls::load(&pki.cert, &pki.key).context("the loopback certificate")?;
    let (addr, runtime, listener) = loopback_listener()?;
    let url = format!("https://{addr}");
    let options = ServeOptions {
        tls: Some(tls),
        ..ServeOptions::default()
    };
    runtime.spawn(async move {
        if let Err(e) = serve_until(listener, app, options, std::future::pending()).await {
            eprintln!("loopback server: {e}");
        }
    });
    Ok((url, runtime, pki.ca))
}

/// A reference vault (not served) over SQLite and the software HSM, both in `dir`, with the
/// default configuration.
pub fn reference_vault(dir: &Path) -> anyhow::Result<VaultServer<SqliteStore, SoftHsm>> {
    std::fs::create_dir_all(dir)?;
    let hsm = SoftHsm::open_or_create(&dir.join("master.key")).context("the software HSM")?;
    Ok(VaultServer::open(
        sqlite_store(dir)?,
        hsm,
        ServerConfig::default(),
    )?)
}

impl Drop for LocalVault {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
