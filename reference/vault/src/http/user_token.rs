//! Per-user tokens (`spec/vault.md` §9.3): a tenant's front end authenticates its users and
//! signs, for each, a short-lived JWT (EdDSA over Ed25519) naming the tenant (`iss`), the user
//! (`sub`), this server (`aud`) and its lifetime (`iat`, `exp`; at most an hour). The server
//! holds only the tenants' public keys, by key id (`kid`), so a token for one user is useless
//! for another, and a leaked one expires. Verified with jsonwebtoken on aws-lc-rs.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The longest lifetime a user token may claim (`exp − iat`).
pub const MAX_LIFETIME_SECONDS: u64 = 3600;

/// Clock skew allowed on `iat` and `exp`.
const LEEWAY_SECONDS: u64 = 60;

/// The claims of a user token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserClaims {
    /// The tenant.
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// The server identity (a vault's `server_id`, a realm's id).
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
}

/// The tenants' public keys, by key id (unique across tenants).
#[derive(Clone, Default)]
pub(super) struct UserKeys {
    by_kid: HashMap<String, (String, DecodingKey)>,
}

/// Why a tenant's public key was refused.
#[derive(Debug, thiserror::Error)]
#[error("user token key {kid:?}: {why}")]
pub struct KeyError {
    kid: String,
    why: String,
}

impl UserKeys {
    /// Adds `tenant`'s Ed25519 public key (32 bytes) under `kid`.
    pub(super) fn add(
        &mut self,
        tenant: &str,
        kid: &str,
        public_key: &[u8],
    ) -> Result<(), KeyError> {
        let error = |why: &str| KeyError {
            kid: kid.to_owned(),
            why: why.to_owned(),
        };
        if public_key.len() != 32 {
            return Err(error("an Ed25519 public key is 32 bytes"));
        }
        if kid.is_empty() || self.by_kid.contains_key(kid) {
            return Err(error("key ids must be present and unique across tenants"));
        }
        let key = DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(public_key))
            .map_err(|e| error(&e.to_string()))?;
        self.by_kid.insert(kid.to_owned(), (tenant.to_owned(), key));
        Ok(())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    /// The tenants that have a key.
    pub(super) fn tenants(&self) -> impl Iterator<Item = &str> {
        self.by_kid.values().map(|(tenant, _)| tenant.as_str())
    }

    /// Verifies `token` for `audience` at `now`: returns (tenant, user).
    pub(super) fn verify(
        &self,
        token: &str,
        audience: &str,
        now: u64,
    ) -> Result<(String, String), String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("user token: {e}"))?;
        if header.alg != Algorithm::EdDSA {
            return Err("user token: only EdDSA (Ed25519) is accepted".into());
        }
        let kid = header.kid.ok_or("user token: no kid")?;
        let (tenant, key) = self
            .by_kid
            .get(&kid)
            .ok_or_else(|| format!("user token: unknown kid {kid:?}"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_audience(&[audience]);
        validation.set_issuer(&[tenant.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
        // jsonwebtoken checks exp against the system clock; `now` checks the rest.
        let claims = jsonwebtoken::decode::<UserClaims>(token, key, &validation)
            .map_err(|e| format!("user token: {e}"))?
            .claims;
        if claims.exp.saturating_sub(claims.iat) > MAX_LIFETIME_SECONDS {
            return Err(format!(
                "user token: a lifetime over {MAX_LIFETIME_SECONDS} s"
            ));
        }
        if claims.iat > now + LEEWAY_SECONDS || claims.exp + LEEWAY_SECONDS < now {
            return Err("user token: not valid now".into());
        }
        Ok((claims.iss, claims.sub))
    }
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MintError(String);

/// A new Ed25519 signing key: its PKCS#8 document (secret) and its public key.
pub fn new_signing_key() -> Result<(zeroize::Zeroizing<Vec<u8>>, [u8; 32]), MintError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| MintError(e.to_string()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| MintError(e.to_string()))?;
    let mut public = [0u8; 32];
    public.copy_from_slice(pair.public_key().as_ref());
    Ok((zeroize::Zeroizing::new(pkcs8.as_ref().to_vec()), public))
}

/// The public key of a PKCS#8 Ed25519 signing key.
pub fn public_key_of(pkcs8: &[u8]) -> Result<[u8; 32], MintError> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| MintError(e.to_string()))?;
    let mut public = [0u8; 32];
    public.copy_from_slice(pair.public_key().as_ref());
    Ok(public)
}

/// Signs a user token (what a tenant's front end does after authenticating the user).
pub fn mint(pkcs8: &[u8], kid: &str, claims: &UserClaims) -> Result<String, MintError> {
    if claims.exp.saturating_sub(claims.iat) > MAX_LIFETIME_SECONDS {
        return Err(MintError(format!(
            "a lifetime over {MAX_LIFETIME_SECONDS} s is refused by servers"
        )));
    }
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(pkcs8))
        .map_err(|e| MintError(e.to_string()))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (zeroize::Zeroizing<Vec<u8>>, UserKeys) {
        let (secret, public) = new_signing_key().unwrap();
        let mut keys = UserKeys::default();
        keys.add("acme", "k1", &public).unwrap();
        (secret, keys)
    }

    fn claims(now: u64) -> UserClaims {
        UserClaims {
            iss: "acme".into(),
            sub: "alice".into(),
            aud: "coffer-vault".into(),
            iat: now,
            exp: now + 600,
        }
    }

    #[test]
    fn a_token_names_its_tenant_and_user_and_nothing_else_passes() {
        let (secret, keys) = keys();
        let now = unix_now();
        let token = mint(&secret, "k1", &claims(now)).unwrap();
        assert_eq!(
            keys.verify(&token, "coffer-vault", now).unwrap(),
            ("acme".to_owned(), "alice".to_owned())
        );
        // Another audience, another kid, another key, a changed byte, expiry, a long life.
        let refused = |token: &str, audience: &str| keys.verify(token, audience, now).unwrap_err();
        let why = refused(&token, "other-vault");
        assert!(why.contains("InvalidAudience"), "{why}");
        let other = mint(&secret, "k2", &claims(now)).unwrap();
        let why = refused(&other, "coffer-vault");
        assert!(why.contains("unknown kid"), "{why}");
        let (stranger, _) = new_signing_key().unwrap();
        let forged = mint(&stranger, "k1", &claims(now)).unwrap();
        let why = refused(&forged, "coffer-vault");
        assert!(why.contains("InvalidSignature"), "{why}");
        let mut tampered = token.clone().into_bytes();
        let at = tampered.iter().position(|&b| b == b'.').unwrap() + 5;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let why = refused(std::str::from_utf8(&tampered).unwrap(), "coffer-vault");
        assert!(why.starts_with("user token: "), "{why}");
        let old = UserClaims {
            iat: now - 7200,
            exp: now - 3700,
            ..claims(now)
        };
        let expired = mint(&secret, "k1", &old).unwrap();
        let why = refused(&expired, "coffer-vault");
        assert!(why.contains("ExpiredSignature"), "{why}");
        let long = UserClaims {
            exp: now + 2 * MAX_LIFETIME_SECONDS,
            ..claims(now)
        };
        let why = mint(&secret, "k1", &long).unwrap_err().to_string();
        assert!(why.contains("lifetime"), "{why}");
        let other_tenant = UserClaims {
            iss: "globex".into(),
            ..claims(now)
        };
        let token = mint(&secret, "k1", &other_tenant).unwrap();
        let why = refused(&token, "coffer-vault");
        assert!(
            why.contains("InvalidIssuer"),
            "iss must be the key's tenant: {why}"
        );
        // An HMAC token made with the public key as secret (the classic confusion) fails.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(now),
            &EncodingKey::from_secret(b"anything").unwrap(),
        )
        .unwrap();
        let why = refused(&hs, "coffer-vault");
        assert!(why.contains("only EdDSA"), "{why}");
    }
}
