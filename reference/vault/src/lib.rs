//! Coffer's key vault (`spec/vault.md`): K behind a password with OPAQUE and a durable
//! guess limit.
//!
//! - [`vault`]: the client and server state machines.
//! - [`store`]: where records and guess counts live (SQLite on one host, etcd over sites).
//! - [`hsm`]: the key that seals the vault's secrets (PKCS#11, or in memory for tests).
//! - [`http`]: the vault as an HTTP service, and its client.
//!
//! Keys and error classes come from `coffer-format`.

// The format crate's modules under the names the vault's modules use.
use coffer_format::{error, key};

pub mod hsm;
pub mod http;
mod ids;
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
    /// Fault-injection points of the server (tests only).
    pub use crate::vault::server::FAULT_POINTS;
}
