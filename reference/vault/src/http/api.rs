//! Request and response bodies of the vault's HTTP API.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Binary data as base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B64(pub Vec<u8>);

impl Serialize for B64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map(B64)
            .map_err(|e| serde::de::Error::custom(format!("not base64url: {e}")))
    }
}

/// `POST /v1/users/{user}/register/start`, and the password-change start.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterStartRequest {
    /// OPAQUE `RegistrationRequest`.
    pub request: B64,
}

/// Reply to a registration start.
#[derive(Debug, Serialize, Deserialize)]
pub struct RegisterStartResponse {
    /// Id of the record to be.
    pub record_id: B64,
    /// OPAQUE `RegistrationResponse`.
    pub response: B64,
    /// KSF parameters, e.g. `argon2id:m=65536,t=3,p=1`.
    pub ksf: String,
}

/// `POST /v1/users/{user}/register/finish`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinishRequest {
    /// From the start reply.
    pub record_id: B64,
    /// OPAQUE `RegistrationUpload`.
    pub upload: B64,
    /// K sealed under the export key (60 bytes).
    pub envelope: B64,
    /// Guess limit (operator bounds apply).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `POST /v1/users/{user}/recover/start`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverStartRequest {
    /// KE1.
    pub ke1: B64,
}

/// Reply to KE1.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecoverStartResponse {
    /// Names the session in the KE3 request.
    pub session_id: B64,
    /// KE2.
    pub ke2: B64,
    /// KSF parameters.
    pub ksf: String,
}

/// `POST /v1/sessions/{session}/finish`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverFinishRequest {
    /// KE3.
    pub ke3: B64,
}

/// Reply to KE3.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecoverFinishResponse {
    /// `record_id ‖ version ‖ envelope` sealed under the session key.
    pub release: B64,
}

/// `POST /v1/sessions/{session}/password/finish`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordFinishRequest {
    /// OPAQUE `RegistrationUpload` for the new password.
    pub upload: B64,
    /// K sealed under the new export key, for version + 1.
    pub envelope: B64,
}

/// Reply to a password change.
#[derive(Debug, Serialize, Deserialize)]
pub struct PasswordFinishResponse {
    /// The record's new version.
    pub version: u32,
}

/// An error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error class.
    pub error: String,
    /// A readable message.
    pub message: String,
}

/// Secret binary data as base64url, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretB64(pub zeroize::Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SecretB64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretB64(<redacted>)")
    }
}

impl Serialize for SecretB64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(&self.0[..]))
    }
}

impl<'de> Deserialize<'de> for SecretB64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map(|b| SecretB64(zeroize::Zeroizing::new(b)))
            .map_err(|e| serde::de::Error::custom(format!("not base64url: {e}")))
    }
}

/// `GET /v1/realm`: who this realm is.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmInfo {
    /// The realm's id (`spec/realms.md` §1).
    pub realm_id: String,
}

/// `GET /v1/realm/users/{user}/status`: what the realm holds for the user, uncounted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmStatusResponse {
    /// `active`, `destroyed`, `deleted`, or absent when the user never registered here.
    pub state: Option<crate::store::RecordState>,
    /// The registration the record belongs to (hex).
    pub reg_id: Option<String>,
    /// Its public part (with the Argon2id parameters a client needs for phase 1).
    pub public: Option<B64>,
    /// Evaluations counted since the last unlock.
    pub guesses: u32,
    /// Evaluations allowed.
    pub limit: u32,
    /// Evaluations left before the record is destroyed (0 unless active).
    pub guesses_left: u32,
}

/// `POST /v1/realm/users/{user}/register`: one realm's share of a registration.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmRegisterRequest {
    /// The realm the share is for.
    pub realm_id: String,
    /// Its Shamir index.
    pub index: u8,
    /// The public part.
    pub public: B64,
    /// `k_i`.
    pub key_share: SecretB64,
    /// `s_i`.
    pub secret_share: SecretB64,
    /// `tag_i`.
    pub tag: SecretB64,
    /// To replace an active registration: a session this realm unlocked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<B64>,
}

/// `POST /v1/realm/users/{user}/evaluate`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmEvaluateRequest {
    /// The blinded element `M`.
    pub blinded: B64,
}

/// The answer to [`RealmEvaluateRequest`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmEvaluateResponse {
    /// The public part.
    pub public: B64,
    /// The realm's index.
    pub index: u8,
    /// `Z_i`.
    pub evaluation: B64,
    /// The DLEQ proof.
    pub proof: B64,
    /// The session for phase 2.
    pub session: B64,
}

/// `POST /v1/realm/sessions/{session}/unlock`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmUnlockRequest {
    /// `HMAC(tag_i, "coffer-realms-v1 unlock" ‖ session)`.
    pub proof: B64,
}

/// The answer to [`RealmUnlockRequest`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmUnlockResponse {
    /// `s_i`, sealed to the tag.
    pub release: B64,
}

/// The answer to [`RealmRegisterRequest`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmRegisterResponse {
    /// Always true.
    pub registered: bool,
    /// Deletes this registration within the session lifetime (a half-finished one).
    pub grant: B64,
}

/// `POST /v1/realm/users/{user}/delete`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmDeleteRequest {
    /// A session this realm unlocked, or the grant of a registration.
    pub grant: B64,
}

/// Reply to `GET /v1/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    /// The tenant's events, oldest first.
    pub events: Vec<crate::store::AuditEvent>,
    /// Where the next page starts (`after`), or `None` at the end of the log.
    pub next: Option<u64>,
}
