//! Coffer's backup formats, for whoever opens or writes a backup: no async runtime, no
//! network.
//!
//! - [`key`]: the 32-byte root key, its 64-digit form, key files, HKDF derivations.
//! - [`crypt15`]: the WhatsApp-compatible backup profile (crypt15 read/write, crypt14/12 read).
//! - [`format`](mod@format): the Coffer backup format (authenticated header + C2SP chunked encryption).
//! - [`error`]: the error classes shared by every layer (`spec/errors.md`).
//!
//! The library never prints.

pub mod crypt15;
pub mod error;
pub mod format;
pub mod key;
mod read_full;

pub use error::{Classify, ErrorClass};
