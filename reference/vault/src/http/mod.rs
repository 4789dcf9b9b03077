//! The vault over HTTP/JSON (`spec/vault.md` §10): an axum server around
//! [`crate::vault::VaultServer`] and a blocking client. Binary fields are base64url without
//! padding; errors are `{"error": CLASS, "message": ...}` with a status that fits the class.

pub mod api;
mod client;
mod listener;
mod metrics;
mod rate;
mod realm_client;
mod realm_server;
mod server;
mod tls;
mod transport;
mod user_token;

pub use client::{Recovered, VaultClient};
pub use listener::{serve, serve_until, ServeOptions};
pub use metrics::{admin_router, metered, MeteredHsm, MeteredStore, Metrics, Readiness};
pub use rate::{Limiter, Rate, RateLimits};
pub use realm_client::{
    change_password_on_realms, delete_from_realms, guesses_left, realms_status,
    recover_from_realms, register_with_realms, PerRealm, Problems, RealmClient,
};
pub use realm_server::{realm_router, realm_router_with_readiness};
pub use server::{router, router_with_readiness, ApiError, Tenants, MAX_BODY, MAX_USER_ID};
pub use tls::{
    check_url, read_certificates, ClientCert, ClientIdentity, ClientTls, ServerTls, TlsError,
};
pub use user_token::{
    mint as mint_user_token, new_signing_key, public_key_of, unix_now, KeyError, MintError,
    UserClaims, MAX_LIFETIME_SECONDS,
};

use crate::error::ErrorClass;

/// The HTTP status a class is answered with.
pub fn status_of(class: ErrorClass) -> u16 {
    match class {
        ErrorClass::Malformed
        | ErrorClass::WrongKey
        | ErrorClass::Truncated
        | ErrorClass::TrailingData => 400,
        ErrorClass::WrongPassword => 401,
        ErrorClass::Unauthorized | ErrorClass::ServerAuthFailed => 403,
        ErrorClass::NoRecord => 404,
        ErrorClass::Unsupported => 422,
        ErrorClass::Locked => 423,
        ErrorClass::RateLimited => 429,
        ErrorClass::Corrupt | ErrorClass::Io => 500,
    }
}
