//! The `client-vault` suite: the runner plays the vault, honest and hostile, on loopback
//! (spec/conformance.md §9), and asks the client adapter to register and recover through
//! the shim. Behind the runner's endpoints is a reference vault holding the records, and a
//! rogue OPAQUE server with the same OPRF seed and the same record but another AKE key pair.
//! Per case the runner answers honestly or tampers: a KE2 under the wrong server key, for
//! another record, replayed, tampered or truncated, costly KSF parameters, a tampered or
//! replayed release, envelopes sealed wrong, and refusals (`locked`, `rate_limited`). The
//! client must fail with the class the spec names, must not send KE3 after a bad KE2, and
//! must not return a key with a refusal.

use crate::case::{CaseResult, Level, Status};
use crate::local_vault::{reference_vault, serve_loopback};
use crate::shim::Adapter;
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use coffer::error::Classify;
use coffer::hsm::SoftHsm;
use coffer::http::api::*;
use coffer::http::status_of;
use coffer::key::RootKey;
use coffer::store::SqliteStore;
use coffer::vault::Parties;
use coffer::vault::{credential_id, CONTEXT};
use coffer::vault::{
    KsfParams, RecoveryClient, RegistrationClient, ServerConfig, Suite, VaultError, VaultServer,
};
use coffer::vault::{RecordId, SessionId};
use opaque_ke::{
    CredentialRequest, Identifiers, RegistrationRequest, RegistrationUpload, ServerLogin,
    ServerLoginParameters, ServerRegistration, ServerSetup,
};
use rand_core::OsRng;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Reference = VaultServer<SqliteStore, SoftHsm>;

const TENANT: &str = "default";
const PASSWORD: &str = "correct horse battery staple";

/// How the runner's vault answers during one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Play {
    /// Forwards to the vault holding the records.
    Honest,
    /// A KE2 from the rogue server: same OPRF seed and record, another AKE key pair.
    WrongServerKey,
    /// KE2 of another user's record (same password).
    OtherRecord,
    /// The KE2's last byte (of the server MAC) flipped.
    TamperedKe2,
    /// A KE2 recorded from an earlier session of the same record.
    ReplayedKe2,
    /// A KE2 cut to 100 bytes.
    TruncatedKe2,
    /// KSF parameters asking for 4 GiB.
    CostlyKsf,
    /// KSF parameters below the floor (8 KiB, one pass): passwords cheap to test offline.
    WeakKsf,
    /// KE1 answered 429 `rate_limited`.
    RateLimited,
    /// KE1 answered 401 `unauthorized` with `WWW-Authenticate` (the token was refused): the
    /// same status as `wrong_password`, another class.
    TokenRefused,
    /// The release with one byte flipped.
    TamperedRelease,
    /// A release recorded from an earlier session.
    ReplayedRelease,
    /// KE3 answered 423 `locked` (destroyed since KE1).
    LockedAtKe3,
}

/// An OPAQUE server that has `alice`'s record and the OPRF seed it was registered under,
/// but not the server key: what a vault whose key was replaced (or an impostor holding a
/// stolen record and seed) would answer.
struct Rogue {
    setup: ServerSetup<Suite>,
    file: ServerRegistration<Suite>,
    server_id: String,
}

impl Rogue {
    /// Registers `alice` (with [`PASSWORD`] and `root`) under a fresh setup, and keeps that
    /// setup's OPRF seed with another key pair. Checks first that the record recovers `root`
    /// under the original setup, so that a failure under the rogue is the key's doing.
    fn new(server_id: &str, root: &RootKey) -> anyhow::Result<Self> {
        let real = ServerSetup::<Suite>::new(&mut OsRng);
        let cred = credential_id(TENANT, "alice");
        let ksf = KsfParams::DEFAULT.name();
        let (client, request) = RegistrationClient::start(PASSWORD.as_bytes())?;
        let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
        let start = ServerRegistration::<Suite>::start(
            &real,
            RegistrationRequest::deserialize(&request)?,
            &cred,
        )?;
        let (upload, _) = client.finish(
            &parties("alice", server_id),
            &start.message.serialize(),
            &ksf,
            &RecordId::from_bytes([0; 16]),
            1,
            root,
        )?;
        let file = ServerRegistration::<Suite>::finish(RegistrationUpload::deserialize(&upload)?);
        let honest = Rogue {
            setup: real.clone(),
            file: file.clone(),
            server_id: server_id.to_owned(),
        };
        let (client, ke1) = RecoveryClient::start(PASSWORD.as_bytes())?;
        let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
        let ke2 = honest.ke2(&ke1)?;
        client
            .finish(&parties("alice", server_id), &ke2, &ksf)
            .context("the rogue's record does not verify under its own key")?;
        // The OPRF seed is the first 64 bytes of a serialized setup (RFC 9807 Nh = 64).
        let mut spliced = ServerSetup::<Suite>::new(&mut OsRng).serialize().to_vec();
        spliced[..64].copy_from_slice(&real.serialize()[..64]);
        Ok(Rogue {
            setup: ServerSetup::deserialize(&spliced)?,
            file,
            server_id: server_id.to_owned(),
        })
    }

    /// The rogue's server public key (not the vault's).
    fn server_key(&self) -> Vec<u8> {
        self.setup.keypair().public().serialize().to_vec()
    }

    fn ke2(&self, ke1: &[u8]) -> anyhow::Result<Vec<u8>> {
        let params = ServerLoginParameters {
            context: Some(CONTEXT),
            identifiers: Identifiers {
                client: Some(b"alice"),
                server: Some(self.server_id.as_bytes()),
            },
        };
        let start = ServerLogin::start(
            &mut OsRng,
            &self.setup,
            Some(self.file.clone()),
            CredentialRequest::deserialize(ke1)?,
            &credential_id(TENANT, "alice"),
            params,
        )?;
        Ok(start.message.serialize().to_vec())
    }
}

struct Shared {
    records: Reference,
    rogue: Rogue,
    play: Mutex<Play>,
    ke3_seen: AtomicUsize,
    /// An earlier session's KE2 and release for the user `alice`.
    recorded: (Vec<u8>, Vec<u8>),
}

/// An error answered as the vault would.
fn refuse(class: &str, message: &str) -> Response {
    let status = coffer::ErrorClass::from_name(class).map_or(500, status_of);
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(ErrorBody {
            error: class.into(),
            message: message.into(),
        }),
    )
        .into_response();
    if class == "rate_limited" {
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("30"));
    }
    response
}

fn vault_error(e: VaultError) -> Response {
    refuse(e.class().as_str(), &e.to_string())
}

/// A request body, or the reason it is malformed.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

fn session_of(text: &str) -> Option<SessionId> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|b| SessionId::from_slice(&b))
}

fn flip_last(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(b) = bytes.last_mut() {
        *b ^= 1;
    }
    bytes
}

async fn recover_start(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let request: RecoverStartRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return refuse("malformed", &e),
    };
    let play = *shared.play.lock().unwrap_or_else(|p| p.into_inner());
    if play == Play::RateLimited {
        return refuse("rate_limited", "slow down");
    }
    if play == Play::TokenRefused {
        let mut response = refuse("unauthorized", "unknown token");
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    if play == Play::WrongServerKey {
        return match shared.rogue.ke2(&request.ke1.0) {
            Ok(ke2) => Json(RecoverStartResponse {
                session_id: B64(vec![0x5a; 16]),
                ke2: B64(ke2),
                ksf: KsfParams::DEFAULT.name(),
            })
            .into_response(),
            Err(e) => refuse("malformed", &e.to_string()),
        };
    }
    let as_user = match play {
        Play::OtherRecord => "bob",
        _ => user.as_str(),
    };
    let start = match shared
        .records
        .recover_start(TENANT, as_user, &request.ke1.0)
    {
        Ok(s) => s,
        Err(e) => return vault_error(e),
    };
    let (ke2, ksf) = match play {
        Play::TamperedKe2 => (flip_last(start.ke2), start.ksf),
        Play::ReplayedKe2 => (shared.recorded.0.clone(), start.ksf),
        Play::TruncatedKe2 => (start.ke2[..100].to_vec(), start.ksf),
        Play::CostlyKsf => (start.ke2, "argon2id:m=4194304,t=3,p=1".to_owned()),
        Play::WeakKsf => (start.ke2, "argon2id:m=8,t=1,p=1".to_owned()),
        _ => (start.ke2, start.ksf),
    };
    Json(RecoverStartResponse {
        session_id: B64(start.session_id.as_bytes().to_vec()),
        ke2: B64(ke2),
        ksf,
    })
    .into_response()
}

async fn recover_finish(
    State(shared): State<Arc<Shared>>,
    Path(session): Path<String>,
    body: Bytes,
) -> Response {
    shared.ke3_seen.fetch_add(1, Ordering::SeqCst);
    let request: RecoverFinishRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return refuse("malformed", &e),
    };
    let Some(session) = session_of(&session) else {
        return refuse("malformed", "session ids are 16 bytes, base64url");
    };
    let play = *shared.play.lock().unwrap_or_else(|p| p.into_inner());
    if play == Play::LockedAtKe3 {
        return refuse("locked", "the record was destroyed since KE1");
    }
    let release = match shared
        .records
        .recover_finish(TENANT, &session, &request.ke3.0)
    {
        Ok(r) => r,
        Err(e) => return vault_error(e),
    };
    let release = match play {
        Play::TamperedRelease => {
            let mut r = release;
            let middle = r.len() / 2;
            r[middle] ^= 0x40;
            r
        }
        Play::ReplayedRelease => shared.recorded.1.clone(),
        _ => release,
    };
    Json(RecoverFinishResponse {
        release: B64(release),
    })
    .into_response()
}

async fn register_start(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let request: RegisterStartRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return refuse("malformed", &e),
    };
    match shared
        .records
        .register_start(TENANT, &user, &request.request.0)
    {
        Ok(s) => Json(RegisterStartResponse {
            record_id: B64(s.record_id.as_bytes().to_vec()),
            response: B64(s.response),
            ksf: s.ksf,
        })
        .into_response(),
        Err(e) => vault_error(e),
    }
}

async fn register_finish(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let request: RegisterFinishRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return refuse("malformed", &e),
    };
    let Some(record_id) = RecordId::from_slice(&request.record_id.0) else {
        return refuse("malformed", "record ids are 16 bytes");
    };
    match shared.records.register_finish(
        TENANT,
        &user,
        record_id,
        &request.upload.0,
        &request.envelope.0,
        request.limit,
    ) {
        Ok(()) => Json(json!({"registered": true})).into_response(),
        Err(e) => vault_error(e),
    }
}

fn parties(user: &str, server_id: &str) -> Parties {
    Parties {
        user: user.into(),
        server_id: server_id.into(),
    }
}

/// How a record is registered on the runner's vaults.
#[derive(Clone, Copy)]
enum Envelope {
    Honest,
    /// One byte of the sealed K flipped.
    Tampered,
    /// Sealed for version 2 while the record is version 1.
    OtherVersion,
}

fn register(
    server: &Reference,
    server_id: &str,
    user: &str,
    password: &str,
    root: &RootKey,
    envelope_kind: Envelope,
) -> anyhow::Result<()> {
    let (client, request) = RegistrationClient::start(password.as_bytes())?;
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let start = server.register_start(TENANT, user, &request)?;
    let version = match envelope_kind {
        Envelope::OtherVersion => 2,
        _ => 1,
    };
    let (upload, mut envelope) = client.finish(
        &parties(user, server_id),
        &start.response,
        &start.ksf,
        &start.record_id,
        version,
        root,
    )?;
    if let Envelope::Tampered = envelope_kind {
        envelope[20] ^= 1;
    }
    server.register_finish(TENANT, user, start.record_id, &upload, &envelope, Some(100))?;
    Ok(())
}

/// One direct recovery (no HTTP): returns K, the KE2 and the release.
fn recover(
    server: &Reference,
    server_id: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<(RootKey, Vec<u8>, Vec<u8>)> {
    let (client, ke1) = RecoveryClient::start(password.as_bytes())?;
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let start = server.recover_start(TENANT, user, &ke1)?;
    let done = client.finish(&parties(user, server_id), &start.ke2, &start.ksf)?;
    let release = server.recover_finish(TENANT, &start.session_id, &done.ke3)?;
    let (_, _, root) = done.open(&start.session_id, &release)?;
    Ok((root, start.ke2, release))
}

/// The runner's vault, served on loopback; stopped when dropped.
pub struct PlayedVault {
    url: String,
    server_id: String,
    shared: Arc<Shared>,
    alice: RootKey,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl PlayedVault {
    /// Sets up both reference vaults and their records, and serves them.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("a directory for the runner's vault")?;
        let records = reference_vault(dir.path())?;
        let server_id = ServerConfig::default().server_id;
        let alice = RootKey::generate()?;
        register(
            &records,
            &server_id,
            "alice",
            PASSWORD,
            &alice,
            Envelope::Honest,
        )?;
        let bob = RootKey::generate()?;
        register(
            &records,
            &server_id,
            "bob",
            PASSWORD,
            &bob,
            Envelope::Honest,
        )?;
        register(
            &records,
            &server_id,
            "carol",
            PASSWORD,
            &alice,
            Envelope::Tampered,
        )?;
        register(
            &records,
            &server_id,
            "dave",
            PASSWORD,
            &alice,
            Envelope::OtherVersion,
        )?;
        let (_, ke2, release) = recover(&records, &server_id, "alice", PASSWORD)?;
        let shared = Arc::new(Shared {
            rogue: Rogue::new(&server_id, &alice)?,
            records,
            play: Mutex::new(Play::Honest),
            ke3_seen: AtomicUsize::new(0),
            recorded: (ke2, release),
        });
        let app = Router::new()
            .route("/v1/users/{user}/recover/start", post(recover_start))
            .route("/v1/sessions/{session}/finish", post(recover_finish))
            .route("/v1/users/{user}/register/start", post(register_start))
            .route("/v1/users/{user}/register/finish", post(register_finish))
            .with_state(shared.clone());
        let (url, runtime) = serve_loopback(app)?;
        Ok(PlayedVault {
            url,
            server_id,
            shared,
            alice,
            runtime: Some(runtime),
            _dir: dir,
        })
    }

    fn set(&self, play: Play) {
        *self.shared.play.lock().unwrap_or_else(|p| p.into_inner()) = play;
        self.shared.ke3_seen.store(0, Ordering::SeqCst);
    }
}

impl Drop for PlayedVault {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What a case must get back.
enum Want {
    /// K of `alice`.
    Key,
    /// Refused with this class; `no_ke3`: no KE3 may have been sent.
    Refused { class: &'static str, no_ke3: bool },
    /// Registered; the runner then recovers the key directly.
    Registered,
    /// Refused with this class before anything was stored: the user has no record after.
    RefusedNothingStored { class: &'static str },
}

struct Case {
    id: &'static str,
    play: Play,
    /// The vault key the client is told to pin, if any.
    pin: Pin,
    /// The URL the client is given.
    target: Target,
    user: &'static str,
    op: &'static str,
    want: Want,
    expected: &'static str,
}

/// The `server_key` of a request (spec/conformance.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pin {
    /// None given.
    None,
    /// The key of the vault holding the records.
    Vault,
    /// Another vault's key.
    Other,
}

/// Where the client is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The runner's vault.
    Played,
    /// `http://` to a host that is not loopback: a client must refuse it before connecting.
    PlainRemote,
}

const fn refused(class: &'static str, no_ke3: bool) -> Want {
    Want::Refused { class, no_ke3 }
}

const CASES: &[Case] = &[
    Case {
        id: "client.vault.recover.honest",
        play: Play::Honest,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: Want::Key,
        expected: "K recovered",
    },
    Case {
        id: "client.vault.recover.wrong_password",
        play: Play::Honest,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "wrong_password",
        want: refused("wrong_password", true),
        expected: "wrong_password, no KE3",
    },
    Case {
        id: "client.vault.recover.wrong_server_key",
        play: Play::WrongServerKey,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("wrong_password", true),
        expected: "wrong_password, no KE3",
    },
    Case {
        id: "client.vault.recover.ke2_other_record",
        play: Play::OtherRecord,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("wrong_password", true),
        expected: "wrong_password, no KE3",
    },
    Case {
        id: "client.vault.recover.tampered_ke2",
        play: Play::TamperedKe2,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("wrong_password", true),
        expected: "wrong_password, no KE3",
    },
    Case {
        id: "client.vault.recover.replayed_ke2",
        play: Play::ReplayedKe2,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("wrong_password", true),
        expected: "wrong_password, no KE3",
    },
    Case {
        id: "client.vault.recover.truncated_ke2",
        play: Play::TruncatedKe2,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("malformed", true),
        expected: "malformed, no KE3",
    },
    Case {
        id: "client.vault.recover.costly_ksf",
        play: Play::CostlyKsf,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("unsupported", true),
        expected: "unsupported before any work, no KE3",
    },
    Case {
        id: "client.vault.recover.weak_ksf",
        play: Play::WeakKsf,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("unsupported", true),
        expected: "unsupported (below the floor), no KE3",
    },
    Case {
        id: "client.vault.recover.rate_limited",
        play: Play::RateLimited,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("rate_limited", true),
        expected: "rate_limited",
    },
    Case {
        id: "client.vault.recover.token_refused",
        play: Play::TokenRefused,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("unauthorized", true),
        expected: "unauthorized (the body's class, not the 401's usual wrong_password), no KE3",
    },
    Case {
        id: "client.vault.recover.tampered_release",
        play: Play::TamperedRelease,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("server_auth_failed", false),
        expected: "server_auth_failed",
    },
    Case {
        id: "client.vault.recover.replayed_release",
        play: Play::ReplayedRelease,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("server_auth_failed", false),
        expected: "server_auth_failed",
    },
    Case {
        id: "client.vault.recover.tampered_envelope",
        play: Play::Honest,
        pin: Pin::None,
        target: Target::Played,
        user: "carol",
        op: "vault_recover",
        want: refused("server_auth_failed", false),
        expected: "server_auth_failed",
    },
    Case {
        id: "client.vault.recover.envelope_other_version",
        play: Play::Honest,
        pin: Pin::None,
        target: Target::Played,
        user: "dave",
        op: "vault_recover",
        want: refused("server_auth_failed", false),
        expected: "server_auth_failed",
    },
    Case {
        id: "client.vault.recover.locked",
        play: Play::LockedAtKe3,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("locked", false),
        expected: "locked",
    },
    Case {
        id: "client.vault.register.honest",
        play: Play::Honest,
        pin: Pin::None,
        target: Target::Played,
        user: "erin",
        op: "vault_register",
        want: Want::Registered,
        expected: "registered; K recovers",
    },
    Case {
        id: "client.vault.register.over_active",
        play: Play::Honest,
        pin: Pin::None,
        target: Target::Played,
        user: "alice",
        op: "vault_register",
        want: refused("unauthorized", true),
        expected: "unauthorized",
    },
    Case {
        id: "client.vault.recover.pinned_honest",
        play: Play::Honest,
        pin: Pin::Vault,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: Want::Key,
        expected: "K recovered (the pinned key is the vault's)",
    },
    Case {
        id: "client.vault.recover.pinned_key_mismatch",
        play: Play::Honest,
        pin: Pin::Other,
        target: Target::Played,
        user: "alice",
        op: "vault_recover",
        want: refused("server_auth_failed", true),
        expected: "server_auth_failed (the vault's key is not the pinned one), no KE3",
    },
    Case {
        id: "client.vault.register.pinned_key_mismatch",
        play: Play::Honest,
        pin: Pin::Other,
        target: Target::Played,
        user: "frank",
        op: "vault_register",
        want: Want::RefusedNothingStored {
            class: "server_auth_failed",
        },
        expected: "server_auth_failed before the upload: frank has no record",
    },
    Case {
        id: "client.vault.transport.plain_http_refused",
        play: Play::Honest,
        pin: Pin::None,
        target: Target::PlainRemote,
        user: "alice",
        op: "vault_recover",
        want: refused("unsupported", true),
        expected: "unsupported before connecting (plain http:// off loopback)",
    },
];

/// The ids of every case (for `--list`).
pub fn case_ids() -> Vec<&'static str> {
    CASES.iter().map(|c| c.id).collect()
}

/// Runs every case that `keep` selects against the client adapter `argv`.
pub fn run(
    argv: &[String],
    keep: impl Fn(&str) -> bool,
    timeout: Duration,
) -> anyhow::Result<Vec<CaseResult>> {
    let cases: Vec<&Case> = CASES.iter().filter(|c| keep(c.id)).collect();
    if cases.is_empty() {
        return Ok(Vec::new());
    }
    let mut adapter = Adapter::start(argv, timeout)?;
    let declared = adapter.hello["capabilities"]["vault_client"] == true;
    let vault = if declared {
        Some(PlayedVault::start()?)
    } else {
        None
    };
    let mut results = Vec::new();
    for case in cases {
        let result = |status, actual: String, detail: String| CaseResult {
            suite: "client-vault".into(),
            id: case.id.into(),
            level: Level::Must,
            status,
            expected: case.expected.into(),
            actual,
            detail,
        };
        let Some(vault) = &vault else {
            results.push(result(
                Status::Skipped,
                "not run".into(),
                "the adapter does not declare vault_client".into(),
            ));
            continue;
        };
        let (status, actual, detail) = run_case(&mut adapter, vault, case, timeout);
        results.push(result(status, actual, detail));
    }
    Ok(results)
}

fn run_case(
    adapter: &mut Adapter,
    vault: &PlayedVault,
    case: &Case,
    timeout: Duration,
) -> (Status, String, String) {
    vault.set(case.play);
    let erin = RootKey::generate().ok();
    let (op, password) = match case.op {
        "wrong_password" => ("vault_recover", "not the password"),
        other => (other, PASSWORD),
    };
    let url = match case.target {
        Target::Played => vault.url.clone(),
        // A reserved name (RFC 6761): never loopback, and it resolves nowhere.
        Target::PlainRemote => "http://vault.invalid:8443".to_owned(),
    };
    let mut request = json!({"op": op, "url": url, "token": "runner-played-vault",
        "server_id": vault.server_id, "user": case.user, "password": password});
    match case.pin {
        Pin::None => {}
        Pin::Vault => request["server_key"] = json!(hex::encode(vault.shared.records.server_key())),
        Pin::Other => request["server_key"] = json!(hex::encode(vault.shared.rogue.server_key())),
    }
    if op == "vault_register" {
        let key = match (&case.want, &erin) {
            (Want::Registered, Some(k)) => k.to_hex().to_string(),
            _ => vault.alice.to_hex().to_string(),
        };
        request["key"] = json!(key);
    }
    let answer = match adapter.request(case.id, request, timeout) {
        Ok(a) => a,
        Err(e) => return (Status::Fail, "no answer".into(), e.to_string()),
    };
    let ke3s = vault.shared.ke3_seen.load(Ordering::SeqCst);
    let detail = answer["detail"].as_str().unwrap_or_default().to_owned();
    if answer["unimplemented"] == true {
        return (Status::Unimplemented, "unimplemented".into(), detail);
    }
    let ok = answer["ok"] == true;
    let class = answer["error"].as_str().unwrap_or("?");
    let got = if ok {
        "accepted".to_owned()
    } else {
        format!("refused as {class}")
    };
    match &case.want {
        Want::Key => {
            let key = answer["key"].as_str().unwrap_or_default();
            if ok && key.eq_ignore_ascii_case(&vault.alice.to_hex()) {
                (Status::Pass, "K recovered".into(), detail)
            } else if ok {
                (Status::Fail, "another key".into(), detail)
            } else {
                (Status::Fail, got, detail)
            }
        }
        Want::Registered => {
            if !ok {
                return (Status::Fail, got, detail);
            }
            match (
                recover(&vault.shared.records, &vault.server_id, case.user, PASSWORD),
                &erin,
            ) {
                (Ok((root, _, _)), Some(k)) if root.as_bytes() == k.as_bytes() => (
                    Status::Pass,
                    "registered; the runner recovers K".into(),
                    detail,
                ),
                (Ok(_), _) => (Status::Fail, "registered another key".into(), detail),
                (Err(e), _) => (
                    Status::Fail,
                    "registered, but the runner cannot recover".into(),
                    e.to_string(),
                ),
            }
        }
        Want::RefusedNothingStored { class: want } => {
            let stored = vault
                .shared
                .records
                .status(TENANT, case.user)
                .map(|s| s.registered)
                .unwrap_or(false);
            if stored {
                (
                    Status::Fail,
                    format!("{got}, but a record was stored"),
                    detail,
                )
            } else if !ok && class == *want {
                (Status::Pass, got, detail)
            } else {
                (Status::Fail, got, detail)
            }
        }
        Want::Refused {
            class: want,
            no_ke3,
        } => {
            if *no_ke3 && ke3s > 0 {
                (Status::Fail, format!("{got}, after sending KE3"), detail)
            } else if !ok && class == *want {
                (Status::Pass, got, detail)
            } else {
                (Status::Fail, got, detail)
            }
        }
    }
}
