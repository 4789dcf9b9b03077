//! The WhatsApp-compatible backup profile: streaming decryption of crypt15, crypt14 and
//! crypt12, streaming crypt15 encryption, and header inspection without the key
//! (`spec/crypt15.md`).
//!
//! Decryption writes plaintext before the GCM tag is checked (the tag is at the end of an
//! arbitrarily long file). Callers MUST treat the output as unauthenticated until
//! [`decrypt`] returns `Ok`, and discard it otherwise; the CLI writes to a temporary file and
//! renames it only on success.
//!
//! # Example: a crypt15 backup, written and opened with its 64-digit key
//!
//! ```
//! use coffer_format::crypt15::{self, DecryptOptions, EncryptOptions, HeaderSpec};
//! use coffer_format::key::{BackupKey, RootKey};
//!
//! // The 64 digits as WhatsApp shows them, in groups of four (spaces are ignored).
//! let key = RootKey::parse(&"0123 4567 89ab cdef ".repeat(4))?;
//! let iv = [7u8; 16]; // draw a fresh random IV for every real backup
//! let header = HeaderSpec::new(iv, "2.24.9.80", "11", 1).encode();
//! let database = b"SQLite format 3\0...";
//! let mut backup = Vec::new();
//! crypt15::encrypt(&key, &header, &database[..], &mut backup, &EncryptOptions::default(), &mut |_| {})?;
//!
//! let mut opened = Vec::new();
//! let key = BackupKey::Root(key);
//! crypt15::decrypt(&key, &backup[..], &mut opened, &DecryptOptions::default(), &mut |_| {})?;
//! assert_eq!(opened, database);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod auth_stage;
mod decrypt;
mod encrypt;
pub(crate) mod header;
mod payload;
pub(crate) mod protobuf;

pub use decrypt::{decrypt, DecryptOptions, DecryptSummary, Md5Status};
pub use encrypt::{encrypt, EncryptOptions, EncryptSummary, PayloadEncoding};
pub use header::{
    read_header, with_new_iv, BackupFormat, BackupHeader, BackupPrefix, HeaderSpec, MetaField,
    MetaValue, IV_LEN, KEY_TYPE_NAMES,
};
pub use payload::{InnerKind, PayloadKind};

use crate::error::{Classify, ErrorClass};

/// Default size of the blocks read from the input.
pub const DEFAULT_BLOCK_SIZE: usize = 1 << 20;

/// Errors of the crypt15 profile; each maps to one class.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Crypt15Error {
    /// The key does not open this file.
    #[error("wrong key: {0}")]
    WrongKey(String),
    /// The file was modified or damaged.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// The file ends early.
    #[error("truncated: {0}")]
    Truncated(String),
    /// Bytes follow the end of the backup.
    #[error("trailing data: {0}")]
    TrailingData(String),
    /// A feature or value this implementation does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Not a backup of the expected form.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Reading the input or writing the output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The crypto library failed in a way that is not about the data.
    #[error("crypto library error: {0}")]
    Crypto(String),
}

impl Crypt15Error {
    /// Adapter for `map_err` on I/O results.
    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Crypt15Error {
        move |source| Crypt15Error::Io { context, source }
    }
}

impl From<openssl::error::ErrorStack> for Crypt15Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Crypt15Error::Crypto(e.to_string())
    }
}

impl Classify for Crypt15Error {
    fn class(&self) -> ErrorClass {
        match self {
            Crypt15Error::WrongKey(_) => ErrorClass::WrongKey,
            Crypt15Error::Corrupt(_) => ErrorClass::Corrupt,
            Crypt15Error::Truncated(_) => ErrorClass::Truncated,
            Crypt15Error::TrailingData(_) => ErrorClass::TrailingData,
            Crypt15Error::Unsupported(_) => ErrorClass::Unsupported,
            Crypt15Error::Malformed(_) => ErrorClass::Malformed,
            Crypt15Error::Io { .. } | Crypt15Error::Crypto(_) => ErrorClass::Io,
        }
    }
}
