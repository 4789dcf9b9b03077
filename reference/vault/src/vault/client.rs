//! The vault client's side of registration and recovery (`spec/vault.md` §3), independent
//! of transport.

use super::envelope::{open_envelope, open_transport, seal_envelope, ENVELOPE_LEN};
use super::randomness::{RngRef, VaultRng};
use super::suite::{KsfFloor, KsfParams, Suite, CONTEXT};
use super::VaultError;
use crate::ids::{RecordId, SessionId};
use crate::key::RootKey;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use rand_core::OsRng;
use zeroize::Zeroizing;

/// Largest Argon2 memory a client accepts from a server (a hostile server must not be able
/// to make the client allocate without bound).
pub const MAX_CLIENT_KSF_KIB: u32 = 1024 * 1024;

fn ksf_from_server(text: &str, floor: &KsfFloor) -> Result<KsfParams, VaultError> {
    let ksf = KsfParams::parse(text)?;
    floor.check(&ksf)?;
    if ksf.m_kib > MAX_CLIENT_KSF_KIB {
        return Err(VaultError::Unsupported(format!(
            "KSF {text}: more memory than this client allows"
        )));
    }
    Ok(ksf)
}

/// Who talks to whom: the identities bound into the OPAQUE exchange (`spec/vault.md` §2).
#[derive(Debug, Clone)]
pub struct Parties {
    /// User id: the client identity.
    pub user: String,
    /// The vault's server identity.
    pub server_id: String,
}

impl Parties {
    fn identifiers(&self) -> Identifiers<'_> {
        Identifiers {
            client: Some(self.user.as_bytes()),
            server: Some(self.server_id.as_bytes()),
        }
    }
}

/// The length of the vault's OPAQUE public key (ristretto255).
pub const SERVER_KEY_LEN: usize = 32;

/// Checks the server's OPAQUE public key against the one the client pinned, if any
/// (`spec/vault.md` §9.1): a server in the path that answers with its own key is refused
/// (`server_auth_failed`) before anything is sent that it could test passwords against.
fn check_pin(pinned: Option<&[u8; SERVER_KEY_LEN]>, got: &[u8]) -> Result<(), VaultError> {
    match pinned {
        Some(pinned) if pinned.as_slice() != got => Err(VaultError::ServerAuth(format!(
            "the vault's OPAQUE key is {}, not the pinned {}",
            hex::encode(got),
            hex::encode(pinned)
        ))),
        _ => Ok(()),
    }
}

/// A registration in progress.
pub struct RegistrationClient {
    state: ClientRegistration<Suite>,
    password: Zeroizing<Vec<u8>>,
    pinned: Option<[u8; SERVER_KEY_LEN]>,
    floor: KsfFloor,
}

impl RegistrationClient {
    /// Blinds the password; returns the `RegistrationRequest` to send.
    pub fn start(password: &[u8]) -> Result<(Self, Vec<u8>), VaultError> {
        Self::start_with(password, &mut OsRng)
    }

    /// [`RegistrationClient::start`] drawing from `rng` (test vectors fix it).
    pub fn start_with(
        password: &[u8],
        rng: &mut dyn VaultRng,
    ) -> Result<(Self, Vec<u8>), VaultError> {
        let start = ClientRegistration::<Suite>::start(&mut RngRef(rng), password)?;
        Ok((
            RegistrationClient {
                state: start.state,
                password: Zeroizing::new(password.to_vec()),
                pinned: None,
                floor: KsfFloor::RECOMMENDED,
            },
            start.message.serialize().to_vec(),
        ))
    }

    /// Refuse a server whose OPAQUE public key is not `key` (with `Some`).
    pub fn pin_server_key(mut self, key: Option<[u8; SERVER_KEY_LEN]>) -> Self {
        self.pinned = key;
        self
    }

    /// Accept key stretching down to `floor` (default [`KsfFloor::RECOMMENDED`]).
    pub fn ksf_floor(mut self, floor: KsfFloor) -> Self {
        self.floor = floor;
        self
    }

    /// Finishes with the server's response: returns the `RegistrationUpload` and the
    /// envelope sealing `root` for record `record_id` at `version`.
    pub fn finish(
        self,
        parties: &Parties,
        response: &[u8],
        ksf: &str,
        record_id: &RecordId,
        version: u32,
        root: &RootKey,
    ) -> Result<(Vec<u8>, Vec<u8>), VaultError> {
        self.finish_with(parties, response, ksf, record_id, version, root, &mut OsRng)
    }

    /// [`RegistrationClient::finish`] drawing from `rng` (OPAQUE's envelope nonce, then the
    /// Coffer envelope's nonce).
    #[allow(clippy::too_many_arguments)]
    pub fn finish_with(
        self,
        parties: &Parties,
        response: &[u8],
        ksf: &str,
        record_id: &RecordId,
        version: u32,
        root: &RootKey,
        rng: &mut dyn VaultRng,
    ) -> Result<(Vec<u8>, Vec<u8>), VaultError> {
        let argon = ksf_from_server(ksf, &self.floor)?.argon2()?;
        let response = RegistrationResponse::<Suite>::deserialize(response)
            .map_err(|e| malformed("RegistrationResponse", e))?;
        let params = ClientRegistrationFinishParameters::new(parties.identifiers(), Some(&argon));
        let done = self
            .state
            .finish(&mut RngRef(rng), &self.password, response, params)?;
        check_pin(self.pinned.as_ref(), &done.server_s_pk.serialize())?;
        let envelope = seal_envelope(&done.export_key, record_id, version, root.as_bytes(), rng)?;
        debug_assert_eq!(envelope.len(), ENVELOPE_LEN);
        Ok((done.message.serialize().to_vec(), envelope))
    }
}

/// A recovery in progress.
pub struct RecoveryClient {
    state: ClientLogin<Suite>,
    password: Zeroizing<Vec<u8>>,
    pinned: Option<[u8; SERVER_KEY_LEN]>,
    floor: KsfFloor,
}

/// A login that verified the server: what the client keeps until the envelope arrives.
pub struct LoginDone {
    /// The `CredentialFinalization` to send.
    pub ke3: Vec<u8>,
    session_key: Zeroizing<Vec<u8>>,
    export_key: Zeroizing<Vec<u8>>,
}

impl RecoveryClient {
    /// Blinds the password; returns KE1.
    pub fn start(password: &[u8]) -> Result<(Self, Vec<u8>), VaultError> {
        Self::start_with(password, &mut OsRng)
    }

    /// [`RecoveryClient::start`] drawing from `rng` (test vectors fix it).
    pub fn start_with(
        password: &[u8],
        rng: &mut dyn VaultRng,
    ) -> Result<(Self, Vec<u8>), VaultError> {
        let start = ClientLogin::<Suite>::start(&mut RngRef(rng), password)?;
        Ok((
            RecoveryClient {
                state: start.state,
                password: Zeroizing::new(password.to_vec()),
                pinned: None,
                floor: KsfFloor::RECOMMENDED,
            },
            start.message.serialize().to_vec(),
        ))
    }

    /// Refuse a KE2 from a server whose OPAQUE public key is not `key` (with `Some`).
    pub fn pin_server_key(mut self, key: Option<[u8; SERVER_KEY_LEN]>) -> Self {
        self.pinned = key;
        self
    }

    /// Accept key stretching down to `floor` (default [`KsfFloor::RECOMMENDED`]).
    pub fn ksf_floor(mut self, floor: KsfFloor) -> Self {
        self.floor = floor;
        self
    }

    /// Checks KE2. A wrong password (or a fake KE2 for a user without record, or a KE2
    /// from another server) is `WrongPassword`; no KE3 is produced then.
    pub fn finish(self, parties: &Parties, ke2: &[u8], ksf: &str) -> Result<LoginDone, VaultError> {
        let argon = ksf_from_server(ksf, &self.floor)?.argon2()?;
        let ke2 = CredentialResponse::<Suite>::deserialize(ke2)
            .map_err(|e| malformed("CredentialResponse", e))?;
        let params =
            ClientLoginFinishParameters::new(Some(CONTEXT), parties.identifiers(), Some(&argon));
        let done = self.state.finish(&mut OsRng, &self.password, ke2, params)?;
        check_pin(self.pinned.as_ref(), &done.server_s_pk.serialize())?;
        Ok(LoginDone {
            ke3: done.message.serialize().to_vec(),
            session_key: Zeroizing::new(done.session_key.to_vec()),
            export_key: Zeroizing::new(done.export_key.to_vec()),
        })
    }
}

impl LoginDone {
    /// Opens what the vault released after KE3: returns the record id, its version and K.
    pub fn open(
        &self,
        session_id: &SessionId,
        released: &[u8],
    ) -> Result<(RecordId, u32, RootKey), VaultError> {
        let payload = open_transport(&self.session_key, session_id, released)?;
        if payload.len() != 16 + 4 + ENVELOPE_LEN {
            return Err(VaultError::ServerAuth(
                "the released payload has the wrong size".into(),
            ));
        }
        let record_id = RecordId::from_slice(&payload[..16])
            .ok_or_else(|| VaultError::ServerAuth("the released payload is too short".into()))?;
        let version = u32::from_be_bytes([payload[16], payload[17], payload[18], payload[19]]);
        let k = open_envelope(&self.export_key, &record_id, version, &payload[20..])?;
        Ok((record_id, version, RootKey::from_bytes(*k)))
    }

    /// The export key (to seal a new envelope in a password change).
    pub fn export_key(&self) -> &[u8] {
        &self.export_key
    }

    /// The session key (for test vectors; the release is opened with it).
    pub fn session_key(&self) -> &[u8] {
        &self.session_key
    }
}

/// A message that does not parse is malformed, whatever opaque-ke calls the reason.
fn malformed(what: &str, e: opaque_ke::errors::ProtocolError) -> VaultError {
    VaultError::Malformed(format!("{what}: {e}"))
}
