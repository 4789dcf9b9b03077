//! Whole OPAQUE flows between the vault's client and an in-process [`VaultServer`], as the
//! tests and benches run them (the HTTP client does the same over the wire).

use coffer_format::key::RootKey;
use coffer_vault::hsm::Hsm;
use coffer_vault::store::Store;
use coffer_vault::vault::{
    LoginDone, Parties, RecordId, RecoveryClient, RegistrationClient, SessionId, VaultError,
    VaultServer,
};

/// Who logs in to whom: `user` at this server.
pub fn parties<S: Store, H: Hsm>(server: &VaultServer<S, H>, user: &str) -> Parties {
    Parties {
        user: user.into(),
        server_id: server.server_id().into(),
    }
}

/// Registers `root` for `tenant`/`user` under `password` (record version 1), with `limit`
/// guesses or the server's default.
pub fn register<S: Store, H: Hsm>(
    server: &VaultServer<S, H>,
    tenant: &str,
    user: &str,
    password: &[u8],
    root: &RootKey,
    limit: Option<u32>,
) -> Result<RecordId, VaultError> {
    let (client, request) = RegistrationClient::start(password)?;
    let client = client.ksf_floor(coffer_vault::vault::KsfFloor::NONE);
    let start = server.register_start(tenant, user, &request)?;
    let (upload, envelope) = client.finish(
        &parties(server, user),
        &start.response,
        &start.ksf,
        &start.record_id,
        1,
        root,
    )?;
    server.register_finish(tenant, user, start.record_id, &upload, &envelope, limit)?;
    Ok(start.record_id)
}

/// What a successful recovery gives back.
pub struct Recovery {
    /// The root key K.
    pub root: RootKey,
    /// The login's session.
    pub session_id: SessionId,
    /// The client's side of the login (session key, export key).
    pub done: LoginDone,
}

/// A whole recovery: KE1, KE2, KE3 and the release of K; the error where it stopped.
pub fn recover<S: Store, H: Hsm>(
    server: &VaultServer<S, H>,
    tenant: &str,
    user: &str,
    password: &[u8],
) -> Result<Recovery, VaultError> {
    let (client, ke1) = RecoveryClient::start(password)?;
    let client = client.ksf_floor(coffer_vault::vault::KsfFloor::NONE);
    let start = server.recover_start(tenant, user, &ke1)?;
    let done = client.finish(&parties(server, user), &start.ke2, &start.ksf)?;
    let released = server.recover_finish(tenant, &start.session_id, &done.ke3)?;
    let (_, _, root) = done.open(&start.session_id, &released)?;
    Ok(Recovery {
        root,
        session_id: start.session_id,
        done,
    })
}
