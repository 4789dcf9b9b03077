//! The vault's HTTP server (axum on tokio). Each request is authenticated by its tenant's
//! bearer token; vault work (SQLite commits, OPAQUE) runs on the blocking pool.

use super::api::*;
use super::rate::{Limiter, RateLimits};
use super::status_of;
use crate::error::{Classify, ErrorClass};
use crate::hsm::Hsm;
use crate::store::Store;
use crate::vault::{VaultError, VaultServer};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use super::user_token::{unix_now, KeyError, UserKeys};
use crate::ids::{RecordId, SessionId};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Largest request body accepted (the largest message is about 400 bytes of base64).
pub const MAX_BODY: usize = 8 * 1024;
/// Longest user id accepted, in bytes.
pub const MAX_USER_ID: usize = 256;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    class: ErrorClass,
    message: String,
    status: Option<StatusCode>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ApiError {
            class,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// A refusal the caller may retry in `seconds` (a `Retry-After` header).
    pub(super) fn retry_in(class: ErrorClass, message: impl Into<String>, seconds: u64) -> Self {
        ApiError {
            retry_after: Some(seconds.max(1)),
            ..ApiError::new(class, message)
        }
    }
}

/// The request body, or a JSON error for one that is too large or unreadable.
pub(super) fn body(
    b: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    b.map_err(|rejection| ApiError {
        class: ErrorClass::Malformed,
        message: format!("request body: {rejection}"),
        status: Some(rejection.status()),
        retry_after: None,
    })
}

impl<E: Classify + std::fmt::Display> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::new(e.class(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(status_of(self.class)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        if status.is_server_error() {
            tracing::error!(class = %self.class, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: self.class.as_str().to_owned(),
            message: self.message,
        };
        let mut response = (status, Json(body)).into_response();
        // For the metrics layer: the class, never the message.
        response.extensions_mut().insert(self.class);
        if status == StatusCode::UNAUTHORIZED && self.class == ErrorClass::Unauthorized {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert("retry-after", value);
            }
        }
        response
    }
}

/// A missing or unknown token: class `unauthorized`, HTTP 401 (RFC 9110 §11.6.1).
fn unauthenticated(message: &str) -> ApiError {
    ApiError {
        class: ErrorClass::Unauthorized,
        message: message.to_owned(),
        status: Some(StatusCode::UNAUTHORIZED),
        retry_after: None,
    }
}

/// Tenants: bearer token → tenant name, and whether the token is the tenant's admin token;
/// and the tenants' public keys for per-user tokens (`spec/vault.md` §9.3).
#[derive(Clone, Default)]
pub struct Tenants {
    tokens: Vec<(Vec<u8>, String, bool)>,
    /// Client certificates (SHA-256 of the leaf) that authenticate a tenant.
    client_certs: Vec<([u8; 32], String)>,
    user_keys: UserKeys,
    audience: String,
}

/// Who is calling: a tenant, with its admin token, its ordinary one, or a user token that
/// names the one user it may act for.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub(super) tenant: String,
    pub(super) admin: bool,
    pub(super) user: Option<String>,
}

/// What a service knows of its sessions: whose they are.
pub(super) trait SessionOwner {
    /// The user of `tenant` whose session `id` is (pending or verified), if it is known.
    fn session_user(&self, tenant: &str, id: &[u8; 16]) -> Option<String>;
}

impl<S: Store, H: Hsm> SessionOwner for VaultServer<S, H> {
    fn session_user(&self, tenant: &str, id: &[u8; 16]) -> Option<String> {
        VaultServer::session_user(self, tenant, &SessionId::from_bytes(*id))
    }
}

fn not_yours() -> ApiError {
    ApiError::new(
        ErrorClass::Unauthorized,
        "this user token is for another user",
    )
}

impl Tenants {
    /// How many tenants are configured.
    pub(super) fn count(&self) -> usize {
        let mut names: Vec<&str> = self.tokens.iter().map(|(_, t, _)| t.as_str()).collect();
        names.extend(self.user_keys.tenants());
        names.sort_unstable();
        names.dedup();
        names.len()
    }

    /// Adds a tenant's token (what its front end uses for its users' flows).
    pub fn add(&mut self, token: &str, tenant: &str) {
        self.tokens
            .push((token.as_bytes().to_vec(), tenant.to_owned(), false));
    }

    /// Adds a tenant's admin token: everything the tenant token allows, and deleting a user's
    /// record without proof of the password (`spec/vault.md` §9).
    pub fn add_admin(&mut self, token: &str, tenant: &str) {
        self.tokens
            .push((token.as_bytes().to_vec(), tenant.to_owned(), true));
    }

    /// A client certificate (the SHA-256 of its DER, verified against the server's
    /// `--tls-client-ca`) that authenticates `tenant` as its ordinary token does.
    pub fn add_client_cert(&mut self, sha256: [u8; 32], tenant: &str) {
        self.client_certs.push((sha256, tenant.to_owned()));
    }

    /// Accepts user tokens that `tenant` signs with the Ed25519 key `public_key` (32 bytes)
    /// under key id `kid` (unique across tenants).
    pub fn add_user_key(
        &mut self,
        tenant: &str,
        kid: &str,
        public_key: &[u8],
    ) -> Result<(), KeyError> {
        self.user_keys.add(tenant, kid, public_key)
    }

    /// The audience user tokens must name: this server's identity (a vault's server id, a
    /// realm's id).
    pub fn set_audience(&mut self, audience: &str) {
        self.audience = audience.to_owned();
    }

    /// The caller whose token the request carries (every token compared, in constant time).
    pub(super) fn of(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = bearer else {
            return self
                .by_client_cert(headers)
                .ok_or_else(|| unauthenticated("a tenant bearer token is required"));
        };
        if token.contains('.') && !self.user_keys.is_empty() {
            let (tenant, user) = self
                .user_keys
                .verify(token, &self.audience, unix_now())
                .map_err(|why| unauthenticated(&why))?;
            return Ok(Caller {
                tenant,
                admin: false,
                user: Some(user),
            });
        }
        let mut found = None;
        for (known, tenant, admin) in &self.tokens {
            if known.len() == token.len() && bool::from(known.as_slice().ct_eq(token.as_bytes())) {
                found = Some(Caller {
                    tenant: tenant.clone(),
                    admin: *admin,
                    user: None,
                });
            }
        }
        found.ok_or_else(|| unauthenticated("unknown tenant token"))
    }

    /// The tenant whose client certificate the connection presented, if one is configured.
    fn by_client_cert(&self, headers: &HeaderMap) -> Option<Caller> {
        let presented = headers.get(CLIENT_CERT_HEADER)?.to_str().ok()?;
        let mut fingerprint = [0u8; 32];
        hex::decode_to_slice(presented, &mut fingerprint).ok()?;
        self.client_certs
            .iter()
            .find(|(known, _)| *known == fingerprint)
            .map(|(_, tenant)| Caller {
                tenant: tenant.clone(),
                admin: false,
                user: None,
            })
    }
}

/// The header the router sets from the listener's [`ClientCert`](super::ClientCert), after
/// removing any a client sent: only a verified handshake can put it there.
const CLIENT_CERT_HEADER: &str = "x-coffer-client-cert";

/// Removes a client's own [`CLIENT_CERT_HEADER`] and sets it from the connection's verified
/// certificate, if any. Part of every vault and realm router.
pub(super) async fn client_cert_header(
    mut request: axum::extract::Request,
) -> axum::extract::Request {
    request.headers_mut().remove(CLIENT_CERT_HEADER);
    if let Some(super::ClientCert(fingerprint)) = request.extensions().get().copied() {
        if let Ok(value) = axum::http::HeaderValue::from_str(&hex::encode(fingerprint)) {
            request.headers_mut().insert(CLIENT_CERT_HEADER, value);
        }
    }
    request
}

/// How the server names itself in every answer (`Server`, spec/vault.md §10), so that a
/// conformance report can say what it tested.
pub(super) const SERVER_NAME: &str = concat!("coffer/", env!("CARGO_PKG_VERSION"));

/// Sets [`SERVER_NAME`] on a response. Part of every vault and realm router.
pub(super) async fn server_header(
    mut response: axum::response::Response,
) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::SERVER,
        axum::http::HeaderValue::from_static(SERVER_NAME),
    );
    response
}

/// A service (a vault or a realm) behind the HTTP layer's gate: tenants, rate limits and a
/// fair pool for the blocking work.
pub(super) struct App<V> {
    pub(super) service: V,
    /// Service work runs at most this many at a time, first come first served (a fair
    /// semaphore): more threads than cores only adds tail latency.
    workers: tokio::sync::Semaphore,
    /// Each tenant's share of the workers (`spec/vault.md` §9.1): with more than one tenant,
    /// one tenant holds at most three quarters of them, so a flood from one leaves room for
    /// the others; its further requests wait behind its own.
    shares: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
    share: usize,
    tenants: Tenants,
    tenant_rate: Limiter,
    user_rate: Limiter,
}

pub(super) fn limited(wait: std::time::Duration, what: &str) -> ApiError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError {
        class: ErrorClass::RateLimited,
        message: format!("too many requests for this {what}; retry in {seconds} s"),
        status: None,
        retry_after: Some(seconds.max(1)),
    }
}

impl<V> App<V> {
    /// `service` behind `tenants` and `limits`, with [`App::cpu_workers`] workers.
    pub(super) fn new(service: V, tenants: Tenants, limits: RateLimits) -> Arc<Self> {
        Self::with_workers(service, tenants, limits, Self::cpu_workers())
    }

    /// Two workers per core: enough to keep the cores busy while some wait on a disk.
    pub(super) fn cpu_workers() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
    }

    /// `service` with `workers` workers.
    pub(super) fn with_workers(
        service: V,
        tenants: Tenants,
        limits: RateLimits,
        workers: usize,
    ) -> Arc<Self> {
        let share = if tenants.count() > 1 {
            (workers * 3 / 4).max(1)
        } else {
            workers
        };
        Arc::new(App {
            service,
            workers: tokio::sync::Semaphore::new(workers),
            shares: Default::default(),
            share,
            tenants,
            tenant_rate: Limiter::new(limits.tenant),
            user_rate: Limiter::new(limits.user),
        })
    }

    /// The request's tenant, after its token and its rate limit.
    pub(super) fn tenant(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        Ok(self.caller(headers)?.tenant)
    }

    /// The request's caller, after its token and its tenant's rate limit.
    pub(super) fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let caller = self.tenants.of(headers)?;
        self.tenant_rate
            .take(&caller.tenant)
            .map_err(|w| limited(w, "tenant"))?;
        Ok(caller)
    }

    /// The request's tenant, for a request about `user`: a user token must name that user.
    pub(super) fn tenant_for_user(
        &self,
        headers: &HeaderMap,
        user: &str,
    ) -> Result<String, ApiError> {
        let caller = self.caller(headers)?;
        match &caller.user {
            Some(named) if named != user => Err(not_yours()),
            _ => Ok(caller.tenant),
        }
    }

    /// The caller's tenant, for a request about session `id`: a user token must name the
    /// session's user (an unknown session is left to the service to refuse). The caller is
    /// authenticated first ([`App::caller`]), before the session id is read.
    pub(super) fn tenant_for_session(
        &self,
        caller: Caller,
        id: &[u8; 16],
    ) -> Result<String, ApiError>
    where
        V: SessionOwner,
    {
        if let Some(named) = &caller.user {
            if let Some(owner) = self.service.session_user(&caller.tenant, id) {
                if &owner != named {
                    return Err(not_yours());
                }
            }
        }
        Ok(caller.tenant)
    }

    /// A user's guess or registration, under the per-user limit.
    pub(super) fn user_action(&self, tenant: &str, user: &str) -> Result<(), ApiError> {
        user_id(user)?;
        self.user_rate
            .take(&format!("{tenant}\0{user}"))
            .map_err(|w| limited(w, "user"))
    }
}

/// An [`App`] as the handlers share it.
pub(super) type Shared<V> = Arc<App<V>>;
type VaultApp<S, H> = Shared<VaultServer<S, H>>;

pub(super) fn json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorClass::Malformed, format!("request body: {e}")))
}

pub(super) fn user_id(user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.len() > MAX_USER_ID || user.contains('\0') {
        return Err(ApiError::new(
            ErrorClass::Malformed,
            format!("user ids are 1..={MAX_USER_ID} bytes without NUL"),
        ));
    }
    Ok(())
}

fn record_id(bytes: &[u8]) -> Result<RecordId, ApiError> {
    RecordId::from_slice(bytes)
        .ok_or_else(|| ApiError::new(ErrorClass::Malformed, "record_id must be 16 bytes"))
}

fn session_id(text: &str) -> Result<SessionId, ApiError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| ApiError::new(ErrorClass::Malformed, "session ids are base64url"))?;
    SessionId::from_slice(&bytes)
        .ok_or_else(|| ApiError::new(ErrorClass::Malformed, "a session id must be 16 bytes"))
}

/// Runs service work on the blocking pool, a permit of the fair semaphore held.
pub(super) async fn blocking<V, T>(
    app: &Shared<V>,
    tenant: String,
    f: impl FnOnce(&V) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError>
where
    V: Send + Sync + 'static,
    T: Send + 'static,
{
    let closed = |e: tokio::sync::AcquireError| {
        ApiError::new(ErrorClass::Io, format!("worker pool closed: {e}"))
    };
    let share = {
        let mut shares = app
            .shares
            .lock()
            .map_err(|_| ApiError::new(ErrorClass::Io, "worker shares lock poisoned"))?;
        // Tenants are configured, so the map has at most one entry per tenant.
        Arc::clone(
            shares
                .entry(tenant)
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(app.share))),
        )
    };
    let _own = share.acquire().await.map_err(closed)?;
    let _permit = app.workers.acquire().await.map_err(closed)?;
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || f(&app.service))
        .await
        .map_err(|e| ApiError::new(ErrorClass::Io, format!("worker failed: {e}")))?
}

async fn register_start<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    raw: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<RegisterStartResponse>, ApiError> {
    let tenant = app.tenant_for_user(&headers, &user)?;
    app.user_action(&tenant, &user)?;
    let req: RegisterStartRequest = json(&body(raw)?)?;
    let out = blocking(&app, tenant.clone(), move |v| {
        Ok(v.register_start(&tenant, &user, &req.request.0)?)
    })
    .await?;
    Ok(Json(RegisterStartResponse {
        record_id: B64(out.record_id.as_bytes().to_vec()),
        response: B64(out.response),
        ksf: out.ksf,
    }))
}

async fn register_finish<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    raw: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = app.tenant_for_user(&headers, &user)?;
    user_id(&user)?;
    let req: RegisterFinishRequest = json(&body(raw)?)?;
    let record_id = record_id(&req.record_id.0)?;
    blocking(&app, tenant.clone(), move |v| {
        Ok(v.register_finish(
            &tenant,
            &user,
            record_id,
            &req.upload.0,
            &req.envelope.0,
            req.limit,
        )?)
    })
    .await?;
    Ok(Json(serde_json::json!({"registered": true})))
}

async fn recover_start<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    raw: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<RecoverStartResponse>, ApiError> {
    let tenant = app.tenant_for_user(&headers, &user)?;
    app.user_action(&tenant, &user)?;
    let req: RecoverStartRequest = json(&body(raw)?)?;
    let out = blocking(&app, tenant.clone(), move |v| {
        v.recover_start(&tenant, &user, &req.ke1.0)
            .map_err(vault_refusal)
    })
    .await?;
    Ok(Json(RecoverStartResponse {
        session_id: B64(out.session_id.as_bytes().to_vec()),
        ke2: B64(out.ke2),
        ksf: out.ksf,
    }))
}

async fn recover_finish<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    Path(session): Path<String>,
    raw: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<RecoverFinishResponse>, ApiError> {
    let caller = app.caller(&headers)?;
    let session = session_id(&session)?;
    let tenant = app.tenant_for_session(caller, session.as_bytes())?;
    let req: RecoverFinishRequest = json(&body(raw)?)?;
    let release = blocking(&app, tenant.clone(), move |v| {
        Ok(v.recover_finish(&tenant, &session, &req.ke3.0)?)
    })
    .await?;
    Ok(Json(RecoverFinishResponse {
        release: B64(release),
    }))
}

async fn password_start<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    Path(session): Path<String>,
    raw: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<RegisterStartResponse>, ApiError> {
    let caller = app.caller(&headers)?;
    let session = session_id(&session)?;
    let tenant = app.tenant_for_session(caller, session.as_bytes())?;
    let req: RegisterStartRequest = json(&body(raw)?)?;
    let out = blocking(&app, tenant.clone(), move |v| {
        Ok(v.change_password_start(&tenant, &session, &req.request.0)?)
    })
    .await?;
    Ok(Json(RegisterStartResponse {
        record_id: B64(out.record_id.as_bytes().to_vec()),
        response: B64(out.response),
        ksf: out.ksf,
    }))
}

async fn password_finish<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    Path(session): Path<String>,
    raw: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<PasswordFinishResponse>, ApiError> {
    let caller = app.caller(&headers)?;
    let session = session_id(&session)?;
    let tenant = app.tenant_for_session(caller, session.as_bytes())?;
    let req: PasswordFinishRequest = json(&body(raw)?)?;
    let version = blocking(&app, tenant.clone(), move |v| {
        Ok(v.change_password_finish(&tenant, &session, &req.upload.0, &req.envelope.0)?)
    })
    .await?;
    Ok(Json(PasswordFinishResponse { version }))
}

async fn status<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Json<crate::vault::Status>, ApiError> {
    let tenant = app.tenant_for_user(&headers, &user)?;
    user_id(&user)?;
    Ok(Json(
        blocking(&app, tenant.clone(), move |v| Ok(v.status(&tenant, &user)?)).await?,
    ))
}

/// `GET /v1/audit?after=SEQ&limit=N`: the tenant's own audit events with their place in the
/// chain, for its admin token only (`spec/vault.md` §9).
async fn audit<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<AuditPage>, ApiError> {
    let caller = app.caller(&headers)?;
    if !caller.admin {
        return Err(ApiError::new(
            ErrorClass::Unauthorized,
            "the audit log needs the tenant's admin token",
        ));
    }
    let (after, limit) = audit_query(query.as_deref().unwrap_or(""))?;
    let tenant = caller.tenant;
    let (events, next) = blocking(&app, tenant.clone(), move |v| {
        Ok(v.audit(&tenant, after, limit)?)
    })
    .await?;
    Ok(Json(AuditPage { events, next }))
}

/// `after` (default 0) and `limit` (default 100, 1..=1000) of an audit query.
fn audit_query(query: &str) -> Result<(u64, usize), ApiError> {
    let bad = |why: String| ApiError::new(ErrorClass::Malformed, why);
    let (mut after, mut limit) = (0u64, 100usize);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "after" => {
                after = value
                    .parse()
                    .map_err(|_| bad(format!("after={value}: not a position")))?
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad(format!("limit={value}: not in 1..=1000")))?
            }
            other => return Err(bad(format!("unknown query parameter {other:?}"))),
        }
    }
    Ok((after, limit))
}

/// `DELETE /v1/users/{user}`: the tenant's administrator only (its admin token); a user
/// deletes through a recovery (`POST /v1/sessions/{session}/delete`).
async fn remove<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = app.caller(&headers)?;
    user_id(&user)?;
    if !caller.admin {
        return Err(ApiError::new(
            ErrorClass::Unauthorized,
            "deleting a record needs the password (a recovery, then POST \
             /v1/sessions/{session}/delete) or the tenant's admin token",
        ));
    }
    let tenant = caller.tenant;
    blocking(&app, tenant.clone(), move |v| Ok(v.delete(&tenant, &user)?)).await?;
    Ok(Json(serde_json::json!({"deleted": true})))
}

/// `POST /v1/sessions/{session}/delete`: after a verified recovery in the same session.
async fn remove_after_recovery<S: Store + 'static, H: Hsm + 'static>(
    State(app): State<VaultApp<S, H>>,
    headers: HeaderMap,
    Path(session): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = app.caller(&headers)?;
    let session = session_id(&session)?;
    let tenant = app.tenant_for_session(caller, session.as_bytes())?;
    blocking(&app, tenant.clone(), move |v| {
        Ok(v.delete_after_recovery(&tenant, &session)?)
    })
    .await?;
    Ok(Json(serde_json::json!({"deleted": true})))
}

/// A vault's refusal as an answer: a full session table with `Retry-After`.
fn vault_refusal(e: VaultError) -> ApiError {
    match e {
        VaultError::Busy {
            message,
            retry_after,
        } => ApiError::retry_in(ErrorClass::RateLimited, message, retry_after),
        other => other.into(),
    }
}

pub(super) async fn fallback() -> ApiError {
    ApiError::new(
        ErrorClass::Malformed,
        "no such endpoint (see spec/openapi.yaml)",
    )
}

/// A known path asked with another method: 405, with the error body every refusal has
/// (`spec/vault.md` §10).
pub(super) async fn wrong_method() -> ApiError {
    ApiError {
        class: ErrorClass::Malformed,
        message: "this endpoint does not take that method (see spec/openapi.yaml)".into(),
        status: Some(StatusCode::METHOD_NOT_ALLOWED),
        retry_after: None,
    }
}

/// The router for a vault and its tenants.
pub fn router<S: Store + 'static, H: Hsm + 'static>(
    vault: VaultServer<S, H>,
    tenants: Tenants,
    limits: RateLimits,
) -> Router {
    router_with_readiness(vault, tenants, limits).0
}

/// [`router`], and the vault's readiness check for `/readyz` (its store and HSM answer).
pub fn router_with_readiness<S: Store + 'static, H: Hsm + 'static>(
    vault: VaultServer<S, H>,
    tenants: Tenants,
    limits: RateLimits,
) -> (Router, super::Readiness) {
    // Calls that wait on a remote store hold a worker without using a core.
    let workers = App::<()>::cpu_workers() + vault.store().calls_waiting_on_network();
    let app = App::with_workers(vault, tenants, limits, workers);
    let ready = {
        let app = app.clone();
        Arc::new(move || app.service.ready().map_err(|e| e.to_string())) as super::Readiness
    };
    let router = Router::new()
        .route(
            "/v1/users/{user}/register/start",
            post(register_start::<S, H>),
        )
        .route(
            "/v1/users/{user}/register/finish",
            post(register_finish::<S, H>),
        )
        .route(
            "/v1/users/{user}/recover/start",
            post(recover_start::<S, H>),
        )
        .route("/v1/users/{user}/status", get(status::<S, H>))
        .route("/v1/users/{user}", delete(remove::<S, H>))
        .route("/v1/audit", get(audit::<S, H>))
        .route(
            "/v1/sessions/{session}/delete",
            post(remove_after_recovery::<S, H>),
        )
        .route(
            "/v1/sessions/{session}/finish",
            post(recover_finish::<S, H>),
        )
        .route(
            "/v1/sessions/{session}/password/start",
            post(password_start::<S, H>),
        )
        .route(
            "/v1/sessions/{session}/password/finish",
            post(password_finish::<S, H>),
        )
        .fallback(fallback)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_request(client_cert_header))
        .layer(axum::middleware::map_response(server_header))
        .with_state(app);
    (router, ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn two_tenants() -> Tenants {
        let mut tenants = Tenants::default();
        tenants.add(&"a".repeat(32), "flood");
        tenants.add(&"b".repeat(32), "quiet");
        tenants
    }

    /// spec/vault.md §9.1: a tenant that fills the queue with slow work leaves a worker for
    /// another tenant, whose request then runs at once instead of behind the flood.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_tenants_flood_leaves_workers_for_another() {
        let app = App::with_workers((), two_tenants(), RateLimits::default(), 4);
        let slow = Duration::from_millis(1000);
        let flood: Vec<_> = (0..9)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    blocking(&app, "flood".into(), move |_| {
                        std::thread::sleep(slow);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        blocking(&app, "quiet".into(), |_| Ok(())).await.unwrap();
        let waited = start.elapsed();
        assert!(waited < slow / 2, "the quiet tenant waited {waited:?}");
        for f in flood {
            f.await.unwrap().unwrap();
        }
    }

    /// With one tenant, the whole pool is its own.
    #[test]
    fn a_single_tenant_gets_every_worker() {
        let mut one = Tenants::default();
        one.add(&"a".repeat(32), "only");
        let app = App::with_workers((), one, RateLimits::default(), 4);
        assert_eq!(app.share, 4);
        assert_eq!(
            App::with_workers((), two_tenants(), RateLimits::default(), 4).share,
            3
        );
    }
}
