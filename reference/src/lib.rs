//! Coffer reference implementation.
//!
//! - [`key`]: the 32-byte root key, its 64-digit form, key files, HKDF derivations.
//! - [`crypt15`]: the WhatsApp-compatible backup profile (crypt15 read/write, crypt14/12 read).
//! - [`format`]: the Coffer backup format (authenticated header + C2SP chunked encryption).
//! - [`error`]: the error classes shared by every layer.
//!
//! The library never prints; the `coffer` binary does.

pub mod crypt15;
pub mod error;
pub mod format;
pub mod key;

pub use error::{Classify, ErrorClass};
