//! The vault server's state machine (`spec/vault.md` §4-§5), independent of transport.
//! Guesses are counted in the store, durably, before a KE2 is returned.

use super::envelope::{seal_transport, ENVELOPE_LEN};
use super::hsm_watch::{Health, HsmWatch};
use super::randomness::{Randomness, VaultRng};
use super::suite::{credential_id, KsfParams, Suite, CONTEXT};
use super::VaultError;
use crate::hsm::Hsm;
use crate::ids::{RecordId, SessionId};
use crate::open_table::{Expiring, Full, OpenTable};
use crate::store::integrity::Integrity;
use crate::store::{AuditEvent, GuessOutcome, Record, RecordState, Store};
use opaque_ke::{
    CredentialFinalization, CredentialRequest, Identifiers, RegistrationRequest,
    RegistrationUpload, ServerLogin, ServerLoginParameters, ServerRegistration, ServerSetup,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const AAD_SETUP: &[u8] = b"coffer/v1 server setup";
const AAD_RECORD: &[u8] = b"coffer/v1 record";
/// Length of a serialized OPAQUE password file (`ServerRegistration`).
pub const PASSWORD_FILE_LEN: usize = 192;

/// Operator settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The server identity bound into every login (RFC 9807 `server_identity`).
    pub server_id: String,
    /// Guess limit of new records unless the registration asks for another within bounds.
    pub default_limit: u32,
    /// Smallest limit a registration may ask for.
    pub min_limit: u32,
    /// Largest limit a registration may ask for.
    pub max_limit: u32,
    /// KSF parameters given to new registrations (and named in fake responses).
    pub ksf: KsfParams,
    /// How long a recovery session (between KE2 and KE3, and after, for a password change) lives.
    pub session_ttl: Duration,
    /// Test only: a fault point at which the process aborts (crash tests), see [`FAULT_POINTS`].
    pub fault: Option<String>,
    /// Recovery sessions open at once, in all (each a few hundred bytes; more are refused
    /// with `rate_limited` before a guess is counted).
    pub max_sessions: usize,
    /// Recovery sessions one tenant may hold open at once.
    pub max_sessions_per_tenant: usize,
}

/// The most audit events one page of [`VaultServer::audit`] reads from the log.
pub(crate) const AUDIT_SCAN: usize = 10_000;

/// Fault points for crash tests: after a guess is committed (before KE2 is computed), after
/// KE2 is computed (before it is returned), after a verified KE3 reset the count (before the
/// envelope is returned).
pub const FAULT_POINTS: [&str; 3] = ["after_guess_commit", "after_ke2", "after_reset"];

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            server_id: "coffer-vault".into(),
            default_limit: 10,
            min_limit: 1,
            max_limit: 100,
            ksf: KsfParams::DEFAULT,
            session_ttl: Duration::from_secs(300),
            fault: None,
            max_sessions: 100_000,
            max_sessions_per_tenant: 10_000,
        }
    }
}

/// What the holder's tenant may learn about a user (`status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// An active record exists.
    pub registered: bool,
    /// The latest record's state, if any record ever existed.
    pub state: Option<RecordState>,
    /// Guesses left before destruction (0 unless registered).
    pub guesses_left: u32,
    /// The record's limit (0 unless registered).
    pub limit: u32,
}

/// Reply to a registration request.
#[derive(Debug, Clone)]
pub struct RegisterStart {
    /// The id the new record will have (the client binds its envelope to it).
    pub record_id: RecordId,
    /// OPAQUE `RegistrationResponse`.
    pub response: Vec<u8>,
    /// KSF parameters the client must use.
    pub ksf: String,
}

/// Reply to KE1.
#[derive(Debug, Clone)]
pub struct RecoverStart {
    /// Names this recovery in the KE3 request.
    pub session_id: SessionId,
    /// OPAQUE `CredentialResponse` (real or fake: same length).
    pub ke2: Vec<u8>,
    /// KSF parameters of the record (the configured ones for a fake response).
    pub ksf: String,
}

struct Pending {
    record_id: RecordId,
    version: u32,
    tenant: String,
    user: String,
    login: ServerLogin<Suite>,
    envelope: Zeroizing<Vec<u8>>,
    expires: Instant,
}

impl Expiring for Pending {
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn expires(&self) -> Instant {
        self.expires
    }
}

impl Expiring for Verified {
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn expires(&self) -> Instant {
        self.expires
    }
}

/// A full session table as an error: nothing was counted.
fn busy(why: Full) -> VaultError {
    let (whose, seconds) = match why {
        Full::Tenant(s) => ("this tenant", s),
        Full::Server(s) => ("this vault", s),
    };
    VaultError::Busy {
        message: format!("too many open recovery sessions for {whose}; retry in {seconds} s"),
        retry_after: seconds,
    }
}

#[derive(Clone)]
struct Verified {
    record_id: RecordId,
    version: u32,
    tenant: String,
    user: String,
    expires: Instant,
}

/// The vault: a store, an HSM and the OPAQUE server setup.
pub struct VaultServer<S: Store, H: Hsm> {
    store: S,
    hsm: H,
    setup: ServerSetup<Suite>,
    config: ServerConfig,
    pending: Mutex<OpenTable<Pending>>,
    verified: Mutex<OpenTable<Verified>>,
    randomness: Randomness,
    /// The sealed server setup, which the HSM opens to show it answers.
    sealed_setup: Vec<u8>,
    /// Whether the HSM answers: failed or stuck calls make a KE1 check it, or refuse, before
    /// it counts a guess (`spec/vault.md` §3.2 step 2).
    hsm_watch: HsmWatch,
}

/// The refusal while an HSM call is stuck: `io`, like any HSM failure.
fn stalled(stuck: Duration) -> VaultError {
    crate::hsm::HsmError::Backend(format!(
        "the HSM has not answered a call for {} s",
        stuck.as_secs()
    ))
    .into()
}

fn record_aad(record_id: &RecordId, version: u32) -> Vec<u8> {
    [
        AAD_RECORD,
        record_id.as_bytes().as_slice(),
        &version.to_be_bytes(),
    ]
    .concat()
}

impl<S: Store, H: Hsm> VaultServer<S, H> {
    /// Loads the sealed server setup, creating and sealing a fresh one on first start.
    pub fn open(store: S, hsm: H, config: ServerConfig) -> Result<Self, VaultError> {
        Self::open_with(store, hsm, config, Randomness::Os)
    }

    /// [`VaultServer::open`] drawing every random value (server setup, record and session
    /// ids, OPAQUE nonces and keyshares, transport nonces) from `rng`, one at a time: for
    /// deterministic test vectors only.
    pub fn open_with_rng(
        store: S,
        hsm: H,
        config: ServerConfig,
        rng: Box<dyn VaultRng>,
    ) -> Result<Self, VaultError> {
        Self::open_with(store, hsm, config, Randomness::Fixed(Mutex::new(rng)))
    }

    fn open_with(
        store: S,
        hsm: H,
        config: ServerConfig,
        randomness: Randomness,
    ) -> Result<Self, VaultError> {
        let sealed = match store.server_setup()? {
            Some(s) => s,
            None => {
                let fresh = randomness.with(|rng| ServerSetup::<Suite>::new(rng));
                let sealed = hsm.seal(AAD_SETUP, &fresh.serialize())?;
                store.init_server_setup(&sealed)?
            }
        };
        let bytes = hsm.unseal(AAD_SETUP, &sealed)?;
        let setup =
            ServerSetup::<Suite>::deserialize(&bytes).map_err(|e| malformed("ServerSetup", e))?;
        // Every row, the sum of their tags and the audit chain are checked before the first
        // request (spec/vault.md §6.2).
        let summary = store.bind(Arc::new(Integrity::from_setup(&bytes)))?;
        tracing::info!(
            epoch = summary.epoch,
            records = summary.records,
            audit_events = summary.events,
            "store checked: every record and audit event verifies"
        );
        let (total, per_tenant) = (config.max_sessions, config.max_sessions_per_tenant);
        Ok(VaultServer {
            store,
            hsm,
            setup,
            config,
            pending: Mutex::new(OpenTable::new(total, per_tenant)),
            verified: Mutex::new(OpenTable::new(total, per_tenant)),
            randomness,
            sealed_setup: sealed,
            hsm_watch: HsmWatch::default(),
        })
    }

    /// Whether the store and the HSM answer: the sealed server setup is read from the store
    /// and opened by the HSM (`/readyz`, spec/vault.md §9.2).
    pub fn ready(&self) -> Result<(), VaultError> {
        if let Health::Stalled(stuck) = self.hsm_watch.health() {
            return Err(stalled(stuck));
        }
        let sealed = self
            .store
            .server_setup()?
            .ok_or_else(|| VaultError::Malformed("the store holds no server setup".into()))?;
        self.hsm_watch
            .call(|| self.hsm.unseal(AAD_SETUP, &sealed))?;
        Ok(())
    }

    /// Ok when the HSM answers, as far as the watch knows: after a failure it is asked again
    /// (it opens the sealed server setup); while a call is stuck it is not.
    fn hsm_answers(&self) -> Result<(), VaultError> {
        match self.hsm_watch.health() {
            Health::Answering => Ok(()),
            Health::Stalled(stuck) => Err(stalled(stuck)),
            Health::Failed => {
                self.hsm_watch
                    .call(|| self.hsm.unseal(AAD_SETUP, &self.sealed_setup))?;
                Ok(())
            }
        }
    }

    /// The vault's OPAQUE public key: clients pin it (`spec/vault.md` §9.1). Not secret.
    pub fn server_key(&self) -> [u8; super::SERVER_KEY_LEN] {
        let mut key = [0u8; super::SERVER_KEY_LEN];
        key.copy_from_slice(&self.setup.keypair().public().serialize());
        key
    }

    fn random_id(&self) -> Result<[u8; 16], VaultError> {
        let mut id = [0u8; 16];
        self.randomness.fill(&mut id)?;
        Ok(id)
    }

    /// Dies on the spot at `point` if the crash-test configuration asks for it.
    fn fault(&self, point: &str) {
        if self.config.fault.as_deref() == Some(point) {
            tracing::warn!(point, "fault injection: SIGKILL");
            // SIGKILL, as a crash or an operator's kill -9 would: no cleanup runs.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            std::process::abort();
        }
    }

    /// The store (for status pages and tests).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The server identity bound into every login (public: clients need it as
    /// [`Parties::server_id`](crate::vault::Parties)).
    pub fn server_id(&self) -> &str {
        &self.config.server_id
    }

    /// Context and identities of a login: the client identity is the user id, the server
    /// identity the configured server id (`spec/vault.md` §2).
    fn login_params<'a>(&'a self, user: &'a str) -> ServerLoginParameters<'a, 'a> {
        ServerLoginParameters {
            context: Some(CONTEXT),
            identifiers: Identifiers {
                client: Some(user.as_bytes()),
                server: Some(self.config.server_id.as_bytes()),
            },
        }
    }

    /// Registration, step 1: the OPRF evaluation for a new record.
    pub fn register_start(
        &self,
        tenant: &str,
        user: &str,
        request: &[u8],
    ) -> Result<RegisterStart, VaultError> {
        if self
            .store
            .latest(tenant, user)?
            .is_some_and(|r| r.state == RecordState::Active)
        {
            return Err(VaultError::Unauthorized(
                "this user already has a record: change its password after a recovery, or delete it".into(),
            ));
        }
        let request = RegistrationRequest::<Suite>::deserialize(request)
            .map_err(|e| malformed("RegistrationRequest", e))?;
        let cred = credential_id(tenant, user);
        let start = ServerRegistration::<Suite>::start(&self.setup, request, &cred)?;
        Ok(RegisterStart {
            record_id: RecordId::from_bytes(self.random_id()?),
            response: start.message.serialize().to_vec(),
            ksf: self.config.ksf.name(),
        })
    }

    /// Registration, step 2: store the password file and the client's envelope, sealed.
    pub fn register_finish(
        &self,
        tenant: &str,
        user: &str,
        record_id: RecordId,
        upload: &[u8],
        envelope: &[u8],
        limit: Option<u32>,
    ) -> Result<(), VaultError> {
        let limit = limit.unwrap_or(self.config.default_limit);
        if !(self.config.min_limit..=self.config.max_limit).contains(&limit) {
            return Err(VaultError::Unsupported(format!(
                "guess limit {limit} outside {}..={}",
                self.config.min_limit, self.config.max_limit
            )));
        }
        if envelope.len() != ENVELOPE_LEN {
            return Err(VaultError::Malformed(format!(
                "envelope of {} bytes, expected {ENVELOPE_LEN}",
                envelope.len()
            )));
        }
        let upload = RegistrationUpload::<Suite>::deserialize(upload)
            .map_err(|e| malformed("RegistrationUpload", e))?;
        let file = ServerRegistration::<Suite>::finish(upload).serialize();
        let secret = Zeroizing::new([&file[..], envelope].concat());
        let sealed = self.hsm.seal(&record_aad(&record_id, 1), &secret)?;
        self.store.insert(&Record {
            record_id,
            tenant: tenant.into(),
            user: user.into(),
            version: 1,
            state: RecordState::Active,
            guesses: 0,
            limit,
            ksf: self.config.ksf.name(),
            sealed: Some(sealed),
        })?;
        Ok(())
    }

    /// Recovery, KE1 → KE2. The guess is committed to the store before the KE2 exists.
    /// Unknown, deleted and destroyed users get a fake KE2 (RFC 9807 §10.9).
    pub fn recover_start(
        &self,
        tenant: &str,
        user: &str,
        ke1: &[u8],
    ) -> Result<RecoverStart, VaultError> {
        let ke1 = CredentialRequest::<Suite>::deserialize(ke1)
            .map_err(|e| malformed("CredentialRequest", e))?;
        let cred = credential_id(tenant, user);
        let session_id = SessionId::from_bytes(self.random_id()?);
        // Room for the session is made before the guess is counted, so that a full table
        // costs nobody a guess (a burst may pass the cap by at most the number of workers).
        self.pending
            .lock()
            .map_err(|_| VaultError::Internal("session lock".into()))?
            .room_for(tenant, Instant::now())
            .map_err(busy)?;
        // An HSM known to fail is checked first, one stuck is not waited for: while it is down
        // a KE1 is refused as `io` without costing a guess, so that clients retrying through
        // an outage do not use up (and destroy) the records they are trying to open.
        self.hsm_answers()?;
        let record = match self.store.count_guess(tenant, user)? {
            GuessOutcome::Counted(r) => Some(r),
            GuessOutcome::Destroyed | GuessOutcome::Absent => None,
        };
        let Some(record) = record else {
            let fake = self.randomness.with(|rng| {
                ServerLogin::start(rng, &self.setup, None, ke1, &cred, self.login_params(user))
            })?;
            return Ok(RecoverStart {
                session_id,
                ke2: fake.message.serialize().to_vec(),
                ksf: self.config.ksf.name(),
            });
        };
        self.fault("after_guess_commit");
        let sealed = record
            .sealed
            .as_deref()
            .ok_or_else(|| VaultError::Internal("active record without secrets".into()))?;
        let secret = self.hsm_watch.call(|| {
            self.hsm
                .unseal(&record_aad(&record.record_id, record.version), sealed)
        })?;
        if secret.len() != PASSWORD_FILE_LEN + ENVELOPE_LEN {
            return Err(VaultError::Internal(
                "sealed record of the wrong size".into(),
            ));
        }
        let file = ServerRegistration::<Suite>::deserialize(&secret[..PASSWORD_FILE_LEN])
            .map_err(|e| malformed("ServerRegistration", e))?;
        let start = self.randomness.with(|rng| {
            ServerLogin::start(
                rng,
                &self.setup,
                Some(file),
                ke1,
                &cred,
                self.login_params(user),
            )
        })?;
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| VaultError::Internal("session lock".into()))?;
        pending.insert(
            *session_id.as_bytes(),
            Pending {
                record_id: record.record_id,
                version: record.version,
                tenant: tenant.into(),
                user: user.into(),
                login: start.state,
                envelope: Zeroizing::new(secret[PASSWORD_FILE_LEN..].to_vec()),
                expires: Instant::now() + self.config.session_ttl,
            },
        );
        self.fault("after_ke2");
        Ok(RecoverStart {
            session_id,
            ke2: start.message.serialize().to_vec(),
            ksf: record.ksf,
        })
    }

    /// Recovery, KE3 → the envelope, encrypted under the session key. A session is used once.
    pub fn recover_finish(
        &self,
        tenant: &str,
        session_id: &SessionId,
        ke3: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let ke3 = CredentialFinalization::<Suite>::deserialize(ke3)
            .map_err(|e| malformed("CredentialFinalization", e))?;
        let pending = {
            let mut map = self
                .pending
                .lock()
                .map_err(|_| VaultError::Internal("session lock".into()))?;
            // Another tenant's KE3 leaves the session to its own tenant's client.
            map.take_for(session_id.as_bytes(), tenant)
        };
        // Unknown, expired, already used, fake, or another tenant's: all the same answer as a
        // wrong password.
        let Some(p) = pending.filter(|p| p.expires > Instant::now()) else {
            return Err(VaultError::WrongPassword);
        };
        let finished = match p.login.finish(ke3, self.login_params(&p.user)) {
            Ok(f) => f,
            Err(_) => {
                self.store
                    .failed_at_limit(&p.tenant, &p.user, &p.record_id)?;
                return Err(VaultError::WrongPassword);
            }
        };
        if !self
            .store
            .recovered(&p.tenant, &p.user, &p.record_id, p.version)?
        {
            // Destroyed or changed since KE1.
            return Err(VaultError::Locked);
        }
        self.fault("after_reset");
        let payload = Zeroizing::new(
            [
                p.record_id.as_bytes().as_slice(),
                &p.version.to_be_bytes(),
                &p.envelope[..],
            ]
            .concat(),
        );
        let released = self
            .randomness
            .with(|rng| seal_transport(&finished.session_key, session_id, &payload, rng))?;
        let mut verified = self
            .verified
            .lock()
            .map_err(|_| VaultError::Internal("session lock".into()))?;
        verified.insert(
            *session_id.as_bytes(),
            Verified {
                record_id: p.record_id,
                version: p.version,
                tenant: p.tenant,
                user: p.user,
                expires: Instant::now() + self.config.session_ttl,
            },
        );
        Ok(released)
    }

    fn verified_session(
        &self,
        tenant: &str,
        session_id: &SessionId,
        take: bool,
    ) -> Result<Verified, VaultError> {
        let mut map = self
            .verified
            .lock()
            .map_err(|_| VaultError::Internal("session lock".into()))?;
        let found = if take {
            map.take_for(session_id.as_bytes(), tenant)
        } else {
            map.peek(session_id.as_bytes()).cloned()
        };
        found
            .filter(|v| v.expires > Instant::now() && v.tenant == tenant)
            .ok_or_else(|| {
                VaultError::Unauthorized(
                    "a password change or a deletion needs a successful recovery in this session"
                        .into(),
                )
            })
    }

    /// Deletes the record a verified recovery of this session opened (`spec/vault.md` §3.3):
    /// the holder proves the password (one counted guess, then a reset) and deletes. `locked`
    /// if the record changed since.
    pub fn delete_after_recovery(
        &self,
        tenant: &str,
        session_id: &SessionId,
    ) -> Result<(), VaultError> {
        let v = self.verified_session(tenant, session_id, true)?;
        match self.store.latest(&v.tenant, &v.user)? {
            Some(r)
                if r.state == RecordState::Active
                    && r.record_id == v.record_id
                    && r.version == v.version =>
            {
                self.delete(&v.tenant, &v.user)
            }
            _ => Err(VaultError::Locked),
        }
    }

    /// The user of `tenant` whose session `id` is, pending or verified (for the HTTP layer's
    /// check that a user token names the session's user).
    pub fn session_user(&self, tenant: &str, id: &SessionId) -> Option<String> {
        let pending = self.pending.lock().ok()?;
        if let Some(p) = pending.peek(id.as_bytes()).filter(|p| p.tenant == tenant) {
            return Some(p.user.clone());
        }
        drop(pending);
        let verified = self.verified.lock().ok()?;
        verified
            .peek(id.as_bytes())
            .filter(|v| v.tenant == tenant)
            .map(|v| v.user.clone())
    }

    /// Password change, step 1 (after a verified recovery in the same session).
    pub fn change_password_start(
        &self,
        tenant: &str,
        session_id: &SessionId,
        request: &[u8],
    ) -> Result<RegisterStart, VaultError> {
        let v = self.verified_session(tenant, session_id, false)?;
        let request = RegistrationRequest::<Suite>::deserialize(request)
            .map_err(|e| malformed("RegistrationRequest", e))?;
        let cred = credential_id(&v.tenant, &v.user);
        let start = ServerRegistration::<Suite>::start(&self.setup, request, &cred)?;
        Ok(RegisterStart {
            record_id: v.record_id,
            response: start.message.serialize().to_vec(),
            ksf: self.config.ksf.name(),
        })
    }

    /// Password change, step 2: new password file and envelope (bound to version + 1).
    pub fn change_password_finish(
        &self,
        tenant: &str,
        session_id: &SessionId,
        upload: &[u8],
        envelope: &[u8],
    ) -> Result<u32, VaultError> {
        if envelope.len() != ENVELOPE_LEN {
            return Err(VaultError::Malformed(format!(
                "envelope of {} bytes, expected {ENVELOPE_LEN}",
                envelope.len()
            )));
        }
        let upload = RegistrationUpload::<Suite>::deserialize(upload)
            .map_err(|e| malformed("RegistrationUpload", e))?;
        let v = self.verified_session(tenant, session_id, true)?;
        let file = ServerRegistration::<Suite>::finish(upload).serialize();
        let secret = Zeroizing::new([&file[..], envelope].concat());
        let sealed = self
            .hsm
            .seal(&record_aad(&v.record_id, v.version + 1), &secret)?;
        if !self.store.replace(&v.record_id, v.version, &sealed)? {
            return Err(VaultError::Locked);
        }
        Ok(v.version + 1)
    }

    /// What the tenant may know about a user.
    pub fn status(&self, tenant: &str, user: &str) -> Result<Status, VaultError> {
        Ok(match self.store.latest(tenant, user)? {
            Some(r) if r.state == RecordState::Active => Status {
                registered: true,
                state: Some(r.state),
                guesses_left: r.limit.saturating_sub(r.guesses),
                limit: r.limit,
            },
            other => Status {
                registered: false,
                state: other.map(|r| r.state),
                guesses_left: 0,
                limit: 0,
            },
        })
    }

    /// One page of `tenant`'s audit events after position `after`, at most `limit` of them
    /// from at most 10,000 events of the whole log (`spec/vault.md` §9), and the
    /// position the next page starts after (`None` at the end of the log).
    pub fn audit(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<AuditEvent>, Option<u64>), VaultError> {
        const PAGE: usize = 1000;
        let mut found = Vec::new();
        let (mut position, mut scanned) = (after, 0);
        while found.len() < limit && scanned < AUDIT_SCAN {
            let page = self.store.audit(position, PAGE.min(AUDIT_SCAN - scanned))?;
            let full = page.len() == PAGE.min(AUDIT_SCAN - scanned);
            for event in page {
                scanned += 1;
                position = event.seq;
                if event.tenant == tenant {
                    found.push(event);
                    if found.len() == limit {
                        return Ok((found, Some(position)));
                    }
                }
            }
            if !full {
                return Ok((found, None));
            }
        }
        Ok((found, Some(position)))
    }

    /// Deletes the user's record (its secrets are erased), without proof of the password: for
    /// the tenant's administrator (HTTP: the admin token) and operators.
    pub fn delete(&self, tenant: &str, user: &str) -> Result<(), VaultError> {
        if self.store.delete(tenant, user)? {
            Ok(())
        } else {
            Err(VaultError::NoRecord)
        }
    }
}

/// A message that does not parse is malformed, whatever opaque-ke calls the reason.
fn malformed(what: &str, e: opaque_ke::errors::ProtocolError) -> VaultError {
    VaultError::Malformed(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};
    use crate::hsm::SoftHsm;
    use crate::key::RootKey;
    use crate::store::{RecordState, SqliteStore};
    use crate::vault::{Parties, RecoveryClient, RegistrationClient};

    type Server = VaultServer<SqliteStore, SoftHsm>;

    fn server(dir: &std::path::Path) -> Server {
        let config = ServerConfig {
            ksf: KsfParams::TEST,
            ..ServerConfig::default()
        };
        let store = SqliteStore::open(&dir.join("vault.db")).unwrap();
        let hsm = SoftHsm::open_or_create(&dir.join("master.key")).unwrap();
        VaultServer::open(store, hsm, config).unwrap()
    }

    /// A vault whose session table holds `total` sessions, `per_tenant` per tenant.
    fn capped(dir: &std::path::Path, total: usize, per_tenant: usize) -> Server {
        let config = ServerConfig {
            ksf: KsfParams::TEST,
            max_sessions: total,
            max_sessions_per_tenant: per_tenant,
            ..ServerConfig::default()
        };
        let store = SqliteStore::open(&dir.join("vault.db")).unwrap();
        let hsm = SoftHsm::open_or_create(&dir.join("master.key")).unwrap();
        VaultServer::open(store, hsm, config).unwrap()
    }

    /// spec/vault.md §9.1 (3): open recovery sessions are capped per tenant and in all, and
    /// a request past a cap is refused before its guess is counted.
    #[test]
    fn full_session_tables_refuse_before_counting() {
        let dir = tempfile::tempdir().unwrap();
        let server = capped(dir.path(), 3, 2);
        register(&server, "alice", b"pw", None);
        let ke1 = || RecoveryClient::start(b"pw").unwrap().1;
        for _ in 0..2 {
            server.recover_start("t", "alice", &ke1()).unwrap();
        }
        let refused = server.recover_start("t", "alice", &ke1()).unwrap_err();
        assert!(matches!(refused, VaultError::Busy { retry_after, .. } if retry_after > 0));
        assert_eq!(refused.class(), ErrorClass::RateLimited);
        assert_eq!(
            server.status("t", "alice").unwrap().guesses_left,
            8,
            "not counted"
        );
        // Another tenant still has room (an unknown user: a fake answer, which stores no
        // session); once the vault as a whole is full, it is refused too, fakes alike.
        server.recover_start("u", "nobody", &ke1()).unwrap();
        register(&server, "carol", b"pw", None);
        let refused = server.recover_start("t", "carol", &ke1()).unwrap_err();
        assert!(refused.to_string().contains("this tenant"), "{refused}");
        let dir = tempfile::tempdir().unwrap();
        let server = capped(dir.path(), 2, 2);
        register(&server, "alice", b"pw", None);
        for _ in 0..2 {
            server.recover_start("t", "alice", &ke1()).unwrap();
        }
        let refused = server.recover_start("u", "nobody", &ke1()).unwrap_err();
        assert!(refused.to_string().contains("this vault"), "{refused}");
    }

    fn parties(server: &Server, user: &str) -> Parties {
        Parties {
            user: user.into(),
            server_id: server.server_id().into(),
        }
    }

    fn register(server: &Server, user: &str, password: &[u8], limit: Option<u32>) -> RootKey {
        let root = RootKey::generate().unwrap();
        let (client, request) = RegistrationClient::start(password).unwrap();
        let client = client.ksf_floor(crate::vault::KsfFloor::NONE);
        let start = server.register_start("t", user, &request).unwrap();
        let (upload, envelope) = client
            .finish(
                &parties(server, user),
                &start.response,
                &start.ksf,
                &start.record_id,
                1,
                &root,
            )
            .unwrap();
        server
            .register_finish("t", user, start.record_id, &upload, &envelope, limit)
            .unwrap();
        root
    }

    /// A whole recovery with `password`: K, or the server's (or client's) error.
    fn recover(server: &Server, user: &str, password: &[u8]) -> Result<RootKey, VaultError> {
        let (client, ke1) = RecoveryClient::start(password)?;
        let client = client.ksf_floor(crate::vault::KsfFloor::NONE);
        let start = server.recover_start("t", user, &ke1)?;
        let done = client.finish(&parties(server, user), &start.ke2, &start.ksf)?;
        let released = server.recover_finish("t", &start.session_id, &done.ke3)?;
        Ok(done.open(&start.session_id, &released)?.2)
    }

    fn guesses(server: &Server, user: &str) -> (u32, RecordState) {
        let r = server.store().latest("t", user).unwrap().unwrap();
        (r.guesses, r.state)
    }

    #[test]
    fn the_right_password_gives_back_k_and_resets_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path());
        let root = register(&server, "alice", b"right", None);
        assert!(matches!(
            recover(&server, "alice", b"wrong"),
            Err(VaultError::WrongPassword)
        ));
        assert_eq!(guesses(&server, "alice"), (1, RecordState::Active));
        assert_eq!(recover(&server, "alice", b"right").unwrap(), root);
        assert_eq!(guesses(&server, "alice"), (0, RecordState::Active));
    }

    #[test]
    fn a_guess_is_counted_before_ke2_exists() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path());
        register(&server, "bob", b"right", None);
        // KE1 alone, never finished: the count has already moved.
        let (_, ke1) = RecoveryClient::start(b"anything").unwrap();
        server.recover_start("t", "bob", &ke1).unwrap();
        assert_eq!(guesses(&server, "bob").0, 1);
    }

    #[test]
    fn the_limit_destroys_the_record_and_nothing_brings_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path());
        register(&server, "carol", b"right", Some(2));
        for _ in 0..2 {
            let failed = recover(&server, "carol", b"wrong");
            assert!(
                matches!(failed, Err(VaultError::WrongPassword)),
                "{failed:?}"
            );
        }
        // Both guesses used; the client saw the wrong password and sent no KE3 (spec/vault.md §3.2 step 3),
        // so the record waits, spent, for the next KE1 (§4.2).
        assert_eq!(guesses(&server, "carol"), (2, RecordState::Active));
        // That KE1 destroys it, even with the right password: a fake KE2, no K.
        let failed = recover(&server, "carol", b"right");
        assert!(
            matches!(failed, Err(VaultError::WrongPassword)),
            "{failed:?}"
        );
        assert_eq!(guesses(&server, "carol"), (2, RecordState::Destroyed));
        assert_eq!(
            server.status("t", "carol").unwrap().state,
            Some(RecordState::Destroyed)
        );
    }

    #[test]
    fn a_limit_outside_the_configured_range_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path());
        let (client, request) = RegistrationClient::start(b"pw").unwrap();
        let client = client.ksf_floor(crate::vault::KsfFloor::NONE);
        let start = server.register_start("t", "dave", &request).unwrap();
        let (upload, envelope) = client
            .finish(
                &parties(&server, "dave"),
                &start.response,
                &start.ksf,
                &start.record_id,
                1,
                &RootKey::generate().unwrap(),
            )
            .unwrap();
        let refused =
            server.register_finish("t", "dave", start.record_id, &upload, &envelope, Some(0));
        assert!(
            matches!(refused, Err(VaultError::Unsupported(_))),
            "{refused:?}"
        );
        assert!(server.store().latest("t", "dave").unwrap().is_none());
    }

    #[test]
    fn a_session_is_used_once_and_unknown_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path());
        register(&server, "erin", b"pw", None);
        let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
        let client = client.ksf_floor(crate::vault::KsfFloor::NONE);
        let start = server.recover_start("t", "erin", &ke1).unwrap();
        let done = client
            .finish(&parties(&server, "erin"), &start.ke2, &start.ksf)
            .unwrap();
        server
            .recover_finish("t", &start.session_id, &done.ke3)
            .unwrap();
        let replayed = server.recover_finish("t", &start.session_id, &done.ke3);
        // spec/vault.md §3.2 step 4: a used session answers as a failed KE3.
        assert!(
            matches!(replayed, Err(VaultError::WrongPassword)),
            "a replayed KE3: {replayed:?}"
        );
        let unknown = server.recover_finish("t", &SessionId::from_bytes([0; 16]), &done.ke3);
        assert!(
            matches!(unknown, Err(VaultError::WrongPassword)),
            "{unknown:?}"
        );
    }

    #[test]
    fn another_tenant_sees_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path());
        register(&server, "frank", b"pw", None);
        let (_, ke1) = RecoveryClient::start(b"pw").unwrap();
        // A fake KE2 (no enumeration), and nothing counted anywhere.
        server.recover_start("other", "frank", &ke1).unwrap();
        assert_eq!(guesses(&server, "frank").0, 0);
        assert!(server.store().latest("other", "frank").unwrap().is_none());
    }

    /// The insider the realms remove (spec/realms.md §9): with one vault's store file and
    /// master key, and its own code that answers KE1 without counting, a 4-digit PIN falls in
    /// at most 10^4 offline logins, and the store never sees a guess.
    #[test]
    fn an_insider_with_one_vaults_state_finds_a_4_digit_pin_offline() {
        let dir = tempfile::tempdir().unwrap();
        drop({
            let honest = server(dir.path());
            register(&honest, "hank", b"4711", None);
            honest
        });
        // The stolen files, opened by the attacker.
        let stolen = server(dir.path());
        let record = stolen.store().latest("t", "hank").unwrap().unwrap();
        let secret = stolen
            .hsm
            .unseal(
                &record_aad(&record.record_id, record.version),
                record.sealed.as_deref().unwrap(),
            )
            .unwrap();
        let cred = credential_id("t", "hank");
        let found = (0..10_000u32).map(|pin| format!("{pin:04}")).find(|pin| {
            let file =
                ServerRegistration::<Suite>::deserialize(&secret[..PASSWORD_FILE_LEN]).unwrap();
            let (client, ke1) = RecoveryClient::start(pin.as_bytes()).unwrap();
            let client = client.ksf_floor(crate::vault::KsfFloor::NONE);
            let ke1 = CredentialRequest::<Suite>::deserialize(&ke1).unwrap();
            let ke2 = ServerLogin::start(
                &mut rand_core::OsRng,
                &stolen.setup,
                Some(file),
                ke1,
                &cred,
                stolen.login_params("hank"),
            )
            .unwrap()
            .message
            .serialize();
            client
                .finish(&parties(&stolen, "hank"), &ke2, &record.ksf)
                .is_ok()
        });
        assert_eq!(found.as_deref(), Some("4711"));
        assert_eq!(
            guesses(&stolen, "hank"),
            (0, RecordState::Active),
            "nothing counted"
        );
    }
}
