//! Coffer's key vault (`spec/vault.md`): K behind a password with OPAQUE and a durable
//! guess limit.
//!
//! - [`vault`]: the client and server state machines.
//! - [`store`]: where records and guess counts live (SQLite on one host, etcd over sites).
//! - [`hsm`]: the key that seals the vault's secrets (PKCS#11, or in memory for tests).
//! - [`http`]: the vault as an HTTP service, and its client.
//! - [`realms`]: threshold recovery across independent vaults (`spec/realms.md`).
//!
//! Keys and error classes come from `coffer-format`.
//!
//! # Example: K behind a password, in process
//!
//! ```
//! use coffer_format::key::RootKey;
//! use coffer_vault::hsm::SoftHsm;
//! use coffer_vault::store::SqliteStore;
//! use coffer_vault::vault::{
//!     KsfFloor, KsfParams, Parties, RecoveryClient, RegistrationClient, ServerConfig,
//!     VaultServer,
//! };
//!
//! // Cheap key stretching, for the example: clients refuse it unless told by name.
//! let dir = tempfile::tempdir()?;
//! let config = ServerConfig { ksf: KsfParams::TEST, ..ServerConfig::default() };
//! let store = SqliteStore::open(&dir.path().join("vault.db"))?;
//! let hsm = SoftHsm::open_or_create(&dir.path().join("master.key"))?;
//! let vault = VaultServer::open(store, hsm, config)?;
//! let parties = Parties { user: "alice".into(), server_id: vault.server_id().into() };
//!
//! // Registration: the client's messages go to the vault; the vault never sees the password.
//! let root = RootKey::generate()?;
//! let (client, request) = RegistrationClient::start(b"correct horse")?;
//! let client = client.ksf_floor(KsfFloor::NONE);
//! let start = vault.register_start("tenant", "alice", &request)?;
//! let (upload, envelope) =
//!     client.finish(&parties, &start.response, &start.ksf, &start.record_id, 1, &root)?;
//! vault.register_finish("tenant", "alice", start.record_id, &upload, &envelope, None)?;
//!
//! // Recovery: each KE1 is counted durably before the vault answers.
//! let (client, ke1) = RecoveryClient::start(b"correct horse")?;
//! let client = client.ksf_floor(KsfFloor::NONE);
//! let ke2 = vault.recover_start("tenant", "alice", &ke1)?;
//! let done = client.finish(&parties, &ke2.ke2, &ke2.ksf)?;
//! let released = vault.recover_finish("tenant", &ke2.session_id, &done.ke3)?;
//! let (_, _, k) = done.open(&ke2.session_id, &released)?;
//! assert_eq!(k, root);
//!
//! // A wrong password fails at the client, and the guess has been counted.
//! let (client, ke1) = RecoveryClient::start(b"wrong")?;
//! let client = client.ksf_floor(KsfFloor::NONE);
//! let ke2 = vault.recover_start("tenant", "alice", &ke1)?;
//! assert!(client.finish(&parties, &ke2.ke2, &ke2.ksf).is_err());
//! let status = vault.status("tenant", "alice")?;
//! assert_eq!((status.guesses_left, status.limit), (9, 10));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The format crate's modules under the names the vault's modules use.
use coffer_format::{error, key};

pub mod hsm;
pub mod http;
mod ids;
mod open_table;
pub mod realms;
pub mod store;
pub mod vault;

/// Not API: what Coffer's own vectors, conformance runner and tests reach below the public
/// surface (fixed randomness, envelope sealing, fault points). May change in any release.
#[doc(hidden)]
pub mod internal {
    /// Envelope and transport sealing of the vault's records.
    pub mod envelope {
        pub use crate::vault::envelope::*;
    }
    /// Injected randomness, for vectors with fixed transcripts.
    pub mod randomness {
        pub use crate::vault::randomness::*;
    }
    /// The realms' hash functions, for their vectors, and release sealing, for hostile realms.
    pub mod realm_hashes {
        pub use crate::realms::hashes::*;
    }
    /// Fault-injection points of the server (tests only).
    pub use crate::vault::server::FAULT_POINTS;
}
