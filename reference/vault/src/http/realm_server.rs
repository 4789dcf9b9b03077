//! A realm over HTTP (`spec/realms.md`): the same tenants, rate limits, body limits and
//! error bodies as the vault (`spec/vault.md` §9, §10), around a [`Realm`].

use super::api::*;
use super::rate::RateLimits;
use super::server::{
    blocking, body, fallback, json, user_id, wrong_method, ApiError, App, Shared, Tenants, MAX_BODY,
};
use crate::error::ErrorClass;
use crate::hsm::Hsm;
use crate::realms::{PublicPart, Realm, RealmError, RealmShare, RealmStore};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use zeroize::Zeroizing;

type RealmApp<St, H> = Shared<Realm<St, H>>;
type Raw = Result<Bytes, axum::extract::rejection::BytesRejection>;

fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], ApiError> {
    bytes
        .try_into()
        .map_err(|_| ApiError::new(ErrorClass::Malformed, format!("{what} must be {N} bytes")))
}

fn secret32(b: &SecretB64, what: &str) -> Result<Zeroizing<[u8; 32]>, ApiError> {
    Ok(Zeroizing::new(fixed::<32>(&b.0, what)?))
}

async fn info<St: RealmStore + 'static, H: Hsm + 'static>(
    State(app): State<RealmApp<St, H>>,
    headers: HeaderMap,
) -> Result<Json<RealmInfo>, ApiError> {
    app.tenant(&headers)?;
    Ok(Json(RealmInfo {
        realm_id: app.service.realm_id().to_owned(),
    }))
}

async fn status<St: RealmStore + 'static, H: Hsm + 'static>(
    State(app): State<RealmApp<St, H>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Json<RealmStatusResponse>, ApiError> {
    let tenant = app.tenant_for_user(&headers, &user)?;
    user_id(&user)?;
    let status = blocking(&app, tenant.clone(), move |r| {
        r.status(&tenant, &user).map_err(refusal)
    })
    .await?;
    let guesses_left = status.guesses_left();
    Ok(Json(RealmStatusResponse {
        state: status.state,
        reg_id: status.reg_id.map(hex::encode),
        public: status.public.map(B64),
        guesses: status.guesses,
        limit: status.limit,
        guesses_left,
    }))
}

/// A realm's refusal as an answer: a full session or grant table with `Retry-After`.
fn refusal(e: RealmError) -> ApiError {
    match e {
        RealmError::Busy {
            message,
            retry_after,
        } => ApiError::retry_in(ErrorClass::RateLimited, message, retry_after),
        other => other.into(),
    }
}

async fn register<St: RealmStore + 'static, H: Hsm + 'static>(
    State(app): State<RealmApp<St, H>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    raw: Raw,
) -> Result<Json<RealmRegisterResponse>, ApiError> {
    let tenant = app.tenant_for_user(&headers, &user)?;
    app.user_action(&tenant, &user)?;
    let req: RealmRegisterRequest = json(&body(raw)?)?;
    let share = RealmShare {
        realm_id: req.realm_id,
        index: req.index,
        public: PublicPart::decode(&req.public.0)?,
        key_share: secret32(&req.key_share, "key_share")?,
        secret_share: secret32(&req.secret_share, "secret_share")?,
        tag: secret32(&req.tag, "tag")?,
    };
    let replacing = match &req.grant {
        Some(g) => Some(fixed::<16>(&g.0, "a grant")?),
        None => None,
    };
    let grant = blocking(&app, tenant.clone(), move |r| {
        r.register(&tenant, &user, &share, replacing.as_ref())
            .map_err(refusal)
    })
    .await?;
    Ok(Json(RealmRegisterResponse {
        registered: true,
        grant: B64(grant.to_vec()),
    }))
}

async fn evaluate<St: RealmStore + 'static, H: Hsm + 'static>(
    State(app): State<RealmApp<St, H>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    raw: Raw,
) -> Result<Json<RealmEvaluateResponse>, ApiError> {
    let tenant = app.tenant_for_user(&headers, &user)?;
    app.user_action(&tenant, &user)?;
    let req: RealmEvaluateRequest = json(&body(raw)?)?;
    let answer = blocking(&app, tenant.clone(), move |r| {
        r.evaluate(&tenant, &user, &req.blinded.0).map_err(refusal)
    })
    .await?;
    Ok(Json(RealmEvaluateResponse {
        public: B64(answer.public),
        index: answer.index,
        evaluation: B64(answer.evaluation.to_vec()),
        proof: B64(answer.proof.to_vec()),
        session: B64(answer.session.to_vec()),
    }))
}

async fn unlock<St: RealmStore + 'static, H: Hsm + 'static>(
    State(app): State<RealmApp<St, H>>,
    headers: HeaderMap,
    Path(session): Path<String>,
    raw: Raw,
) -> Result<Json<RealmUnlockResponse>, ApiError> {
    use base64::Engine;
    let caller = app.caller(&headers)?;
    let session = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&session)
        .map_err(|_| ApiError::new(ErrorClass::Malformed, "session ids are base64url"))?;
    let session: [u8; 16] = fixed(&session, "a session id")?;
    let tenant = app.tenant_for_session(caller, &session)?;
    let req: RealmUnlockRequest = json(&body(raw)?)?;
    let release = blocking(&app, tenant.clone(), move |r| {
        r.unlock(&tenant, &session, &req.proof.0).map_err(refusal)
    })
    .await?;
    Ok(Json(RealmUnlockResponse {
        release: B64(release),
    }))
}

async fn remove<St: RealmStore + 'static, H: Hsm + 'static>(
    State(app): State<RealmApp<St, H>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    raw: Raw,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = app.tenant_for_user(&headers, &user)?;
    app.user_action(&tenant, &user)?;
    let req: RealmDeleteRequest = json(&body(raw)?)?;
    let grant: [u8; 16] = fixed(&req.grant.0, "a grant")?;
    let deleted = blocking(&app, tenant.clone(), move |r| {
        Ok(r.delete(&tenant, &user, &grant)?)
    })
    .await?;
    Ok(Json(serde_json::json!({ "deleted": deleted })))
}

/// The router for a realm and its tenants.
pub fn realm_router<St: RealmStore + 'static, H: Hsm + 'static>(
    realm: Realm<St, H>,
    tenants: Tenants,
    limits: RateLimits,
) -> Router {
    realm_router_with_readiness(realm, tenants, limits).0
}

/// [`realm_router`], and the realm's readiness check for `/readyz`.
pub fn realm_router_with_readiness<St: RealmStore + 'static, H: Hsm + 'static>(
    realm: Realm<St, H>,
    tenants: Tenants,
    limits: RateLimits,
) -> (Router, super::Readiness) {
    let app = App::new(realm, tenants, limits);
    let ready = {
        let app = app.clone();
        std::sync::Arc::new(move || app.service.ready().map_err(|e| e.to_string()))
            as super::Readiness
    };
    let router = Router::new()
        .route("/v1/realm", get(info::<St, H>))
        .route("/v1/realm/users/{user}/register", post(register::<St, H>))
        .route("/v1/realm/users/{user}/evaluate", post(evaluate::<St, H>))
        .route("/v1/realm/users/{user}/delete", post(remove::<St, H>))
        .route("/v1/realm/users/{user}/status", get(status::<St, H>))
        .route("/v1/realm/sessions/{session}/unlock", post(unlock::<St, H>))
        .fallback(fallback)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_request(
            super::server::client_cert_header,
        ))
        .layer(axum::middleware::map_response(super::server::server_header))
        .with_state(app);
    (router, ready)
}

impl<St: RealmStore, H: Hsm> super::server::SessionOwner for Realm<St, H> {
    fn session_user(&self, tenant: &str, id: &[u8; 16]) -> Option<String> {
        Realm::session_user(self, tenant, id)
    }
}
