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

/// The requests per second the local vault allows one tenant (burst twice that): low, so
/// that the vault.rate.tenant_requests case can exceed it from the other tenant.
pub const LOCAL_TENANT_RATE: f64 = 100.0;

/// The local vault's rate limits: the reference's, but [`LOCAL_TENANT_RATE`] per tenant.
fn local_rate_limits() -> RateLimits {
    RateLimits {
        tenant: coffer::http::Rate {
            per_second: LOCAL_TENANT_RATE,
            burst: 2.0 * LOCAL_TENANT_RATE,
        },
        ..RateLimits::default()
    }
}

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
    addr: std::net::SocketAddr,
    /// The certificate chain and key it serves.
    pki: (PathBuf, PathBuf),
    /// Builds the server anew over the same files (None: the store was given, not opened
    /// here), for [`LocalVault::restart`].
    reopen: Option<Reopen>,
    runtime: std::sync::Mutex<RuntimeGuard>,
}

type Reopen = Box<dyn Fn() -> anyhow::Result<axum::Router> + Send + Sync>;

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
        let access = Access::new(admin)?;
        let app = router(
            open_vault(store, dir)?,
            access.tenants.clone(),
            local_rate_limits(),
        );
        Self::serve(app, dir, access, None)
    }

    /// [`LocalVault::start`] over a SQLite store in `dir` that it opens itself, so that it
    /// can [restart](LocalVault::restart) over the same files.
    pub fn start_sqlite(dir: &Path) -> anyhow::Result<Self> {
        let access = Access::new(false)?;
        let (tenants, files) = (access.tenants.clone(), dir.to_owned());
        let reopen: Reopen = Box::new(move || {
            let vault = open_vault(sqlite_store(&files)?, &files)?;
            Ok(router(vault, tenants.clone(), local_rate_limits()))
        });
        let app = reopen()?;
        Self::serve(app, dir, access, Some(reopen))
    }

    fn serve(
        app: axum::Router,
        dir: &Path,
        access: Access,
        reopen: Option<Reopen>,
    ) -> anyhow::Result<Self> {
        let pki = coffer_testkit::tls::issue(&dir.join("pki"), "conformance");
        let (runtime, listener) = listen("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        serve_tls(&runtime, listener, app, &pki.cert, &pki.key)?;
        Ok(LocalVault {
            url: format!("https://{addr}"),
            ca: pki.ca,
            user_key: access.user_key,
            token: access.token,
            other_token: access.other_token,
            server_id: access.server_id,
            addr,
            pki: (pki.cert, pki.key),
            reopen,
            runtime: std::sync::Mutex::new(RuntimeGuard(Some(runtime))),
        })
    }

    /// Stops the vault at once (open connections and requests are dropped, sessions are
    /// lost) and serves it again on the same address over the same store and HSM key:
    /// what a restart shows of what it had acknowledged. Only a vault from
    /// [`LocalVault::start_sqlite`] can restart.
    pub fn restart(&self) -> anyhow::Result<()> {
        let reopen = self
            .reopen
            .as_ref()
            .context("this local vault was given its store: it cannot reopen it")?;
        let mut running = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        *running = RuntimeGuard(None); // the old server stops here
        let app = reopen()?;
        let (runtime, listener) = listen(self.addr)?;
        serve_tls(&runtime, listener, app, &self.pki.0, &self.pki.1)?;
        *running = RuntimeGuard(Some(runtime));
        Ok(())
    }
}

/// Who may use a local vault: tenants `default` (a random token, or admin token, and a user
/// key) and `other`.
struct Access {
    tenants: Tenants,
    token: String,
    other_token: String,
    user_key: zeroize::Zeroizing<Vec<u8>>,
    server_id: String,
}

impl Access {
    fn new(admin: bool) -> anyhow::Result<Self> {
        let server_id = ServerConfig::default().server_id;
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
        Ok(Access {
            tenants,
            token,
            other_token,
            user_key,
            server_id,
        })
    }
}

/// The reference vault over `store`, with the software HSM key in `dir`, the default
/// configuration but a session lifetime of [`LOCAL_SESSION_LIFETIME`].
fn open_vault<S: Store + 'static>(store: S, dir: &Path) -> anyhow::Result<VaultServer<S, SoftHsm>> {
    let hsm = SoftHsm::open_or_create(&dir.join("master.key")).context("the software HSM")?;
    let config = ServerConfig {
        session_ttl: LOCAL_SESSION_LIFETIME,
        ..ServerConfig::default()
    };
    VaultServer::open(store, hsm, config).context("opening the vault")
}

/// A runtime of its own (two workers) and a listener on `addr` (port 0: a free one), with
/// SO_REUSEADDR so that a restart can listen again where connections are closing.
fn listen(
    addr: std::net::SocketAddr,
) -> anyhow::Result<(tokio::runtime::Runtime, tokio::net::TcpListener)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let listener = {
        let _guard = runtime.enter();
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket
            .bind(addr)
            .with_context(|| format!("binding {addr}"))?;
        socket.listen(1024)?
    };
    Ok((runtime, listener))
}

/// Serves `app` over HTTPS (the reference's own listener, with its bounds) on `listener`
/// from `runtime`.
fn serve_tls(
    runtime: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<()> {
    let tls = ServerTls::load(cert, key).context("the loopback certificate")?;
    let options = ServeOptions {
        tls: Some(tls),
        ..ServeOptions::default()
    };
    runtime.spawn(async move {
        if let Err(e) = serve_until(listener, app, options, std::future::pending()).await {
            eprintln!("loopback server: {e}");
        }
    });
    Ok(())
}

/// Serves `app` on a free loopback port from a runtime of its own: returns the base URL and
/// the runtime (dropping it, with `shutdown_background`, stops the server).
pub fn serve_loopback(app: axum::Router) -> anyhow::Result<(String, tokio::runtime::Runtime)> {
    let (runtime, listener) = listen("127.0.0.1:0".parse()?)?;
    let url = format!("http://{}", listener.local_addr()?);
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
    let (runtime, listener) = listen("127.0.0.1:0".parse()?)?;
    let url = format!("https://{}", listener.local_addr()?);
    serve_tls(&runtime, listener, app, &pki.cert, &pki.key)?;
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
