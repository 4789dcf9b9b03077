//! Coffer reference implementation, in one library: the formats of `coffer-format` and the
//! key vault of `coffer-vault`, under one name. The `coffer` command-line tool is built on
//! it. Depend on `coffer-format` alone to open or write backups without the vault's
//! dependencies (async runtime, HTTP, SQLite, etcd, PKCS#11).

pub use coffer_format::{crypt15, error, format, key, Classify, ErrorClass};
pub use coffer_vault::{hsm, http, realms, store, vault};

/// Not API: the layers below both crates' public surfaces, for Coffer's own vectors,
/// conformance runner, fuzzers and tests.
#[doc(hidden)]
pub mod internal {
    pub use coffer_format::internal::*;
    pub use coffer_vault::internal::*;
}
