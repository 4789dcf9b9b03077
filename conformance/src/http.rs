//! Raw HTTP against a vault (spec/openapi.yaml), for the `vault-server` suite: every reply
//! is kept whole (status, error class, headers) so that cases can grade it, including the
//! malformed requests an ordinary client would never send.

use coffer::http::{check_url, ClientTls};
use serde_json::Value;
use std::time::Duration;

/// A vault's base URL and a tenant token.
#[derive(Clone)]
pub struct Vault {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// The methods the vault's API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST (with a body).
    Post,
    /// DELETE.
    Delete,
}

/// One reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status (0 when no reply came; `transport` says why).
    pub status: u16,
    /// The JSON body, or Null.
    pub body: Value,
    /// `Retry-After`, if sent.
    pub retry_after: Option<String>,
    /// `WWW-Authenticate`, if sent.
    pub www_authenticate: Option<String>,
    /// `Server`, if sent: how the server names itself.
    pub server: Option<String>,
    /// `Allow`, if sent (with a 405).
    pub allow: Option<String>,
    /// A transport failure (no HTTP reply).
    pub transport: Option<String>,
}

impl Reply {
    /// No HTTP reply: `why` says what happened instead.
    pub fn no_reply(why: &str) -> Self {
        Reply {
            status: 0,
            body: Value::Null,
            retry_after: None,
            www_authenticate: None,
            server: None,
            allow: None,
            transport: Some(why.to_owned()),
        }
    }

    /// The error class of an error body, or "".
    pub fn class(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }

    /// A base64url field of a success body.
    pub fn bytes(&self, field: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        let text = self.body[field].as_str()?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()
    }

    /// A short description: `200`, or `401 wrong_password`, or the transport failure.
    pub fn describe(&self) -> String {
        match (&self.transport, self.class()) {
            (Some(t), _) => format!("no reply ({t})"),
            (None, "") => self.status.to_string(),
            (None, class) => format!("{} {class}", self.status),
        }
    }
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Percent-encodes a path segment.
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Vault {
    /// A vault at `base` (e.g. `https://vault.example:8443`, or plain HTTP on loopback) for
    /// the tenant of `token`, trusting the roots of `tls`.
    pub fn new(
        base: &str,
        token: &str,
        timeout: Duration,
        tls: &ClientTls,
    ) -> anyhow::Result<Self> {
        let https = check_url(base, tls.insecure_http).map_err(|why| anyhow::anyhow!(why))?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            // A server may close a kept-alive connection that waits (spec/vault.md §9.1), and
            // a POST sent on one it closed is not retried: reuse only fresh connections.
            .max_idle_age(Duration::from_secs(2));
        let config = if https {
            config.tls_config(tls.ureq_config().map_err(|why| anyhow::anyhow!(why))?)
        } else {
            config
        };
        Ok(Vault {
            base: base.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            agent: config.build().into(),
        })
    }

    /// The `host:port` of the base URL (the scheme's default port if none is given).
    pub fn authority(&self) -> String {
        let (scheme, rest) = self.base.split_once("://").unwrap_or(("http", &self.base));
        let authority = rest.split('/').next().unwrap_or_default();
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        if has_port {
            authority.to_owned()
        } else if scheme.eq_ignore_ascii_case("https") {
            format!("{authority}:443")
        } else {
            format!("{authority}:80")
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The tenant token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Sends `method path` with a raw body and the given token (None: no Authorization).
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        token: Option<&str>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let sent = match method {
            Method::Post => {
                let mut request = self.agent.post(&url).content_type("application/json");
                if let Some(a) = &auth {
                    request = request.header("authorization", a);
                }
                request.send(body.unwrap_or_default())
            }
            Method::Delete => {
                let mut request = self.agent.delete(&url);
                if let Some(a) = &auth {
                    request = request.header("authorization", a);
                }
                request.call()
            }
            Method::Get => {
                let mut request = self.agent.get(&url);
                if let Some(a) = &auth {
                    request = request.header("authorization", a);
                }
                request.call()
            }
        };
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Reply::no_reply(&e.to_string()),
        };
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header("retry-after");
        let www_authenticate = header("www-authenticate");
        let server = header("server");
        let allow = header("allow");
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        Reply {
            status,
            body,
            retry_after,
            www_authenticate,
            server,
            allow,
            transport: None,
        }
    }

    /// POSTs a JSON body with the tenant token.
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.raw(
            Method::Post,
            path,
            Some(body.to_string().as_bytes()),
            Some(&self.token),
        )
    }

    /// GETs with the tenant token.
    pub fn get(&self, path: &str) -> Reply {
        self.raw(Method::Get, path, None, Some(&self.token))
    }

    /// DELETEs with the tenant token.
    pub fn delete(&self, path: &str) -> Reply {
        self.raw(Method::Delete, path, None, Some(&self.token))
    }
}
