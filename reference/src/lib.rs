//! Coffer reference implementation.
//!
//! - [`key`]: the 32-byte root key, its 64-digit form, key files, HKDF derivations.
//! - [`crypt15`]: the WhatsApp-compatible backup profile (crypt15 read/write, crypt14/12 read).
//! - [`format`]: the Coffer backup format (authenticated header + C2SP chunked encryption).
//! - [`vault`]: the OPAQUE key vault (client and server state machines), over a
//!   [`store`] (SQLite) and an [`hsm`] that seals the vault's secrets.
//! - [`error`]: the error classes shared by every layer.
//!
//! The library never prints; the `coffer` binary does.

pub mod crypt15;
pub mod error;
pub mod format;
pub mod hsm;
pub mod http;
pub mod key;
pub mod store;
pub mod vault;

pub use error::{Classify, ErrorClass};
