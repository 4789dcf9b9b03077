//! One JSON-over-HTTP round trip to a vault or realm: bearer token, bounded answer, the
//! error body turned back into its class.

use super::api::ErrorBody;
use super::tls::{check_url, ClientTls};
use crate::error::ErrorClass;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Largest answer read, but for audit pages.
const MAX_ANSWER: u64 = 64 * 1024;
/// Largest audit page read: up to 1000 events (`spec/vault.md` §9) of at most a few KiB
/// each (ids, names, hashes). 64 KiB held about 250, so a full page failed as `io`.
pub(crate) const MAX_AUDIT_ANSWER: u64 = 4 << 20;

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The server's answer is not the JSON expected.
    BadAnswer(String),
    /// The server answered with an error body, or could not be reached (class `io`).
    Remote(ErrorClass, String),
}

/// A server at a base URL, with a tenant token.
pub(crate) struct Transport {
    base: String,
    token: String,
    /// The agent, or why this URL may not be used (checked once, reported at every call).
    agent: Result<ureq::Agent, String>,
}

impl Transport {
    /// `base` like `https://vault.example:8443` (or `http://127.0.0.1:8443`); every call
    /// gives up after `timeout`. `tls` says whom to trust and whether plain HTTP may leave
    /// the machine (`spec/vault.md` §9.1).
    pub(crate) fn new(base: &str, token: &str, timeout: Duration, tls: &ClientTls) -> Self {
        let agent = check_url(base, tls.insecure_http).and_then(|https| {
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout));
            let config = if https {
                config.tls_config(tls.ureq_config()?)
            } else {
                config
            };
            Ok(config.build().into())
        });
        Transport {
            base: base.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            agent,
        }
    }

    fn answer<T: DeserializeOwned>(
        mut response: ureq::http::Response<ureq::Body>,
        limit: u64,
    ) -> Result<T, CallError> {
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| CallError::Remote(ErrorClass::Io, format!("reading the answer: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                CallError::BadAnswer(format!("the answer is not the expected JSON: {e}"))
            });
        }
        let error: ErrorBody = serde_json::from_slice(&body).map_err(|_| {
            CallError::Remote(
                ErrorClass::Io,
                format!("HTTP {status} without an error body"),
            )
        })?;
        Err(CallError::Remote(
            ErrorClass::from_name(&error.error).unwrap_or(ErrorClass::Io),
            error.message,
        ))
    }

    /// `method path` with an optional JSON body; the answer as `T`, or its class and message.
    pub(crate) fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CallError> {
        self.send_bounded(method, path, body, MAX_ANSWER)
    }

    /// [`Transport::send`], reading an answer of at most `limit` bytes.
    pub(crate) fn send_bounded<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        limit: u64,
    ) -> Result<T, CallError> {
        let agent = self
            .agent
            .as_ref()
            .map_err(|why| CallError::Remote(ErrorClass::Unsupported, why.clone()))?;
        let url = format!("{}{path}", self.base);
        let io = |e: ureq::Error| CallError::Remote(ErrorClass::Io, format!("{url}: {e}"));
        let response = match (method, body) {
            ("POST", Some(b)) => self.authorized(agent.post(&url)).send_json(b).map_err(io)?,
            ("DELETE", _) => self.authorized(agent.delete(&url)).call().map_err(io)?,
            _ => self.authorized(agent.get(&url)).call().map_err(io)?,
        };
        Self::answer(response, limit)
    }

    /// The request with the bearer token; without one (a tenant known by its client
    /// certificate) it carries none.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if self.token.is_empty() {
            request
        } else {
            request.header("authorization", &format!("Bearer {}", self.token))
        }
    }
}

/// A URL path segment, percent-encoded (RFC 3986 unreserved characters kept).
pub(crate) fn enc(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Bytes as base64url without padding (ids in paths).
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
