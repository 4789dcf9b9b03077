//! A blocking client for the vault's HTTP API, running the client side of every flow.

use super::api::*;
use super::tls::ClientTls;
use super::transport::{b64, enc, CallError, Transport};
use crate::ids::{RecordId, SessionId};
use crate::key::RootKey;
use crate::vault::{
    KsfFloor, Parties, RecoveryClient, RegistrationClient, Status, VaultError, SERVER_KEY_LEN,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// A vault at a base URL, for one tenant.
pub struct VaultClient {
    transport: Transport,
    server_id: String,
    server_key: Option<[u8; SERVER_KEY_LEN]>,
    floor: KsfFloor,
}

/// The result of a recovery: K and the verified session (for a password change).
pub struct Recovered {
    /// The root key.
    pub root: RootKey,
    /// The session that verified.
    pub session_id: SessionId,
    /// The record id.
    pub record_id: RecordId,
    /// The record version.
    pub version: u32,
}

fn not_16_bytes() -> VaultError {
    VaultError::Malformed("the server sent an id that is not 16 bytes".into())
}

fn record_id(bytes: &[u8]) -> Result<RecordId, VaultError> {
    RecordId::from_slice(bytes).ok_or_else(not_16_bytes)
}

fn session_id(bytes: &[u8]) -> Result<SessionId, VaultError> {
    SessionId::from_slice(bytes).ok_or_else(not_16_bytes)
}

impl VaultClient {
    /// A client for the vault at `base` (e.g. `https://vault.example:8443`, or plain HTTP
    /// on loopback) with a tenant token, trusting the system's roots.
    pub fn new(base: &str, token: &str, server_id: &str) -> Self {
        Self::with_tls(base, token, server_id, &ClientTls::default())
    }

    /// [`VaultClient::new`] with these TLS settings (a CA file, `--insecure-http`).
    pub fn with_tls(base: &str, token: &str, server_id: &str, tls: &ClientTls) -> Self {
        VaultClient {
            transport: Transport::new(base, token, Duration::from_secs(60), tls),
            server_id: server_id.to_owned(),
            server_key: None,
            floor: KsfFloor::RECOMMENDED,
        }
    }

    /// Refuse a vault whose OPAQUE public key is not `key`, at registration and in every
    /// KE2 (`server_auth_failed`); `vault serve` prints its key.
    pub fn pin_server_key(mut self, key: [u8; SERVER_KEY_LEN]) -> Self {
        self.server_key = Some(key);
        self
    }

    /// Accept a vault's key stretching down to `floor` (default [`KsfFloor::RECOMMENDED`];
    /// [`KsfFloor::NONE`] for tests with cheap parameters).
    pub fn ksf_floor(mut self, floor: KsfFloor) -> Self {
        self.floor = floor;
        self
    }

    fn parties_for(&self, user: &str) -> Parties {
        Parties {
            user: user.to_owned(),
            server_id: self.server_id.clone(),
        }
    }

    fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, VaultError> {
        self.send_bounded(method, path, body, None)
    }

    /// [`VaultClient::send`], with a larger bound on the answer than the default.
    fn send_bounded<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        limit: Option<u64>,
    ) -> Result<T, VaultError> {
        let sent = match limit {
            Some(limit) => self.transport.send_bounded(method, path, body, limit),
            None => self.transport.send(method, path, body),
        };
        sent.map_err(|e| match e {
            CallError::BadAnswer(message) => {
                VaultError::Malformed(format!("the vault's answer: {message}"))
            }
            CallError::Remote(class, message) => VaultError::Remote { class, message },
        })
    }

    /// Registers `root` for `user` behind `password`.
    pub fn register(
        &self,
        user: &str,
        password: &[u8],
        root: &RootKey,
        limit: Option<u32>,
    ) -> Result<(), VaultError> {
        let (client, request) = RegistrationClient::start(password)?;
        let client = client.pin_server_key(self.server_key).ksf_floor(self.floor);
        let start: RegisterStartResponse = self.send(
            "POST",
            &format!("/v1/users/{}/register/start", enc(user)),
            Some(&RegisterStartRequest {
                request: B64(request),
            }),
        )?;
        let record_id = record_id(&start.record_id.0)?;
        let parties = self.parties_for(user);
        let (upload, envelope) =
            client.finish(&parties, &start.response.0, &start.ksf, &record_id, 1, root)?;
        let _: serde_json::Value = self.send(
            "POST",
            &format!("/v1/users/{}/register/finish", enc(user)),
            Some(&RegisterFinishRequest {
                record_id: B64(record_id.as_bytes().to_vec()),
                upload: B64(upload),
                envelope: B64(envelope),
                limit,
            }),
        )?;
        Ok(())
    }

    /// Recovers K with `password`. A wrong password sends no KE3 (the guess is spent).
    pub fn recover(&self, user: &str, password: &[u8]) -> Result<Recovered, VaultError> {
        let (client, ke1) = RecoveryClient::start(password)?;
        let client = client.pin_server_key(self.server_key).ksf_floor(self.floor);
        let start: RecoverStartResponse = self.send(
            "POST",
            &format!("/v1/users/{}/recover/start", enc(user)),
            Some(&RecoverStartRequest { ke1: B64(ke1) }),
        )?;
        let session_id = session_id(&start.session_id.0)?;
        let done = client.finish(&self.parties_for(user), &start.ke2.0, &start.ksf)?;
        let finish: RecoverFinishResponse = self.send(
            "POST",
            &format!("/v1/sessions/{}/finish", b64(session_id.as_bytes())),
            Some(&RecoverFinishRequest {
                ke3: B64(done.ke3.clone()),
            }),
        )?;
        let (record_id, version, root) = done.open(&session_id, &finish.release.0)?;
        Ok(Recovered {
            root,
            session_id,
            record_id,
            version,
        })
    }

    /// Changes the password after a recovery in the same session.
    pub fn change_password(
        &self,
        user: &str,
        recovered: &Recovered,
        new_password: &[u8],
    ) -> Result<u32, VaultError> {
        let session = b64(recovered.session_id.as_bytes());
        let (client, request) = RegistrationClient::start(new_password)?;
        let client = client.pin_server_key(self.server_key).ksf_floor(self.floor);
        let start: RegisterStartResponse = self.send(
            "POST",
            &format!("/v1/sessions/{session}/password/start"),
            Some(&RegisterStartRequest {
                request: B64(request),
            }),
        )?;
        let (upload, envelope) = client.finish(
            &self.parties_for(user),
            &start.response.0,
            &start.ksf,
            &recovered.record_id,
            recovered.version + 1,
            &recovered.root,
        )?;
        let done: PasswordFinishResponse = self.send(
            "POST",
            &format!("/v1/sessions/{session}/password/finish"),
            Some(&PasswordFinishRequest {
                upload: B64(upload),
                envelope: B64(envelope),
            }),
        )?;
        Ok(done.version)
    }

    /// The user's status.
    pub fn status(&self, user: &str) -> Result<Status, VaultError> {
        self.send::<(), Status>("GET", &format!("/v1/users/{}/status", enc(user)), None)
    }

    /// Deletes the user's record with the password: a recovery (one counted guess, then a
    /// reset), then the deletion in the same session (`spec/vault.md` §3.3).
    pub fn delete(&self, user: &str, password: &[u8]) -> Result<(), VaultError> {
        let recovered = self.recover(user, password)?;
        let _: serde_json::Value = self.send(
            "POST",
            &format!(
                "/v1/sessions/{}/delete",
                b64(recovered.session_id.as_bytes())
            ),
            Some(&serde_json::json!({})),
        )?;
        Ok(())
    }

    /// One page of the tenant's audit log after position `after` (the tenant's admin token
    /// only). Every event's chain hash is checked before it is returned: a page with an event
    /// that does not chain is `corrupt`.
    pub fn audit(&self, after: u64, limit: usize) -> Result<AuditPage, VaultError> {
        let page: AuditPage = self.send_bounded::<(), _>(
            "GET",
            &format!("/v1/audit?after={after}&limit={limit}"),
            None,
            Some(super::transport::MAX_AUDIT_ANSWER),
        )?;
        if let Some(bad) = page.events.iter().find(|e| !e.chains()) {
            return Err(VaultError::Store(crate::store::StoreError::Tampered(
                format!("audit event {} does not match its chain hash", bad.seq),
            )));
        }
        Ok(page)
    }

    /// Deletes the user's record without the password: the tenant's admin token only.
    pub fn delete_as_admin(&self, user: &str) -> Result<(), VaultError> {
        let _: serde_json::Value =
            self.send::<(), _>("DELETE", &format!("/v1/users/{}", enc(user)), None)?;
        Ok(())
    }
}
