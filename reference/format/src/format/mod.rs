//! The Coffer backup format (`spec/format.md`): an authenticated header, a body in
//! c2sp.org/chunked-encryption (Cobblestone-256) with the header bound in as context, and a
//! footer that records the file length.
//!
//! - [`encrypt`], [`decrypt`], [`open`]: Coffer files as streaming [`Writer`] / [`Reader`],
//!   with optional zstd.
//! - [`Header`], [`inspect`]: the header, its metadata ([`tag`]), read without the key.
//! - [`RandomAccess`]: `read_at` that authenticates only the chunks it touches; [`ByteRange`]:
//!   the `START:END` a reader asks it for.
//! - [`decrypt_parallel`], [`decrypt_parallel_at`]: multi-threaded decryption with output
//!   identical to the streaming reader.
//!
//! The layers below (C2SP alone, its `Write`/`Read` adapters, header encoding) are not API;
//! the vectors and tests reach them through the hidden `coffer_format::internal`.
//!
//! Readers release plaintext only chunk by chunk after each chunk authenticates; a failed
//! file keeps failing. A valid prefix may have been released before a later chunk fails,
//! so callers that need all-or-nothing (the CLI does) write to a temporary file.

mod aead;
mod batching;
mod byte_range;
pub(crate) mod cobblestone;
mod encrypt_at;
mod file;
mod frame_reader;
mod frame_writer;
pub(crate) mod header;
mod parallel;
mod parallel_frames;
pub(crate) mod parallel_seal;
mod pool;
mod random_access;
mod seek_table;
pub(crate) mod stream;
mod wiped;
mod write_at;

pub use aead::{aead_choice, AeadChoice, Backend};
pub use batching::Parallelism;
pub use byte_range::{ByteRange, RangeError};
pub use encrypt_at::encrypt_parallel_at;
pub use file::{decrypt, encrypt, open, FileSummary, Reader, WriteOptions, Writer, READ_BUFFER};
pub use frame_reader::ZSTD_WINDOW_LOG_MAX;
pub use frame_writer::DEFAULT_FRAME_LEN;
pub use header::{
    check_footer, inspect, tag, Compression, Content, FooterState, Header, HeaderInfo, MetaValue,
    FOOTER_LEN, MAX_HEADER_LEN,
};
pub use parallel::{decrypt_parallel, decrypt_parallel_at};
pub use random_access::{RandomAccess, ReadAt};
pub use seek_table::MAX_FRAME_LEN;
pub use write_at::{Discard, WriteAt};

use crate::error::{Classify, ErrorClass};
use std::io;

/// True when `bytes` start like a Coffer file (its 8-byte magic).
pub fn looks_like_coffer(bytes: &[u8]) -> bool {
    bytes.len() >= header::MAGIC.len() && bytes[..header::MAGIC.len()] == header::MAGIC
}

/// Everything that can go wrong reading or writing the Coffer format; each maps to one class.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input does not start with the Coffer magic.
    #[error("not a Coffer file (the magic bytes do not match)")]
    NotCoffer,
    /// The header is structurally invalid.
    #[error("malformed header: {0}")]
    Malformed(String),
    /// A version, suite, compression, flag or critical field this reader does not know.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The unkeyed header check failed: the header, salt or commitment bytes were damaged.
    #[error("the header is damaged (its check value does not match)")]
    HeaderDamaged,
    /// The key id does not match the key: the file was made with another key.
    #[error("wrong key: this file was encrypted under a different key")]
    WrongKey,
    /// C2SP only: the commitment does not match (wrong key or context, or a damaged prefix).
    #[error("the key commitment does not match (wrong key or context)")]
    Commitment,
    /// The key id matches but the commitment does not: the file was tampered with.
    #[error("corrupt: the key matches but the key commitment does not (header tampered)")]
    Tampered,
    /// A chunk failed authentication.
    #[error("chunk {index} failed authentication")]
    ChunkAuth {
        /// The chunk number.
        index: u64,
        /// The chunk was the short block at the end of the input.
        at_end: bool,
    },
    /// The file is damaged in a way the other variants do not name (footer, compressed frame).
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// A reader that already failed, failing again the same way.
    #[error("{message}")]
    Failed {
        /// The class of the first failure.
        class: ErrorClass,
        /// Its message.
        message: String,
    },
    /// The file or message ends early.
    #[error("truncated: {0}")]
    Truncated(String),
    /// Bytes follow the end of a complete message.
    #[error("trailing data after the final chunk (chunk {index})")]
    TrailingData {
        /// Index of the valid final chunk that more bytes follow.
        index: u64,
    },
    /// More than 2^38 chunks.
    #[error("the message exceeds 2^38 chunks (4 PiB)")]
    TooLong,
    /// The C2SP input key has the wrong length.
    #[error("the key must be 32 bytes, got {0}")]
    KeySize(usize),
    /// The authenticated plaintext is not a valid compressed stream.
    #[error("corrupt: the authenticated payload does not decompress: {0}")]
    Decompress(String),
    /// The crypto library failed in a way that is not about the data.
    #[error("crypto library error: {0}")]
    Crypto(String),
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
}

impl FormatError {
    /// Wraps this error in an `io::Error` (for `Read`/`Write` impls) so that
    /// [`FormatError::from_io`] can recover it.
    pub fn into_io(self) -> io::Error {
        match self {
            FormatError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    /// Recovers a `FormatError` carried in an `io::Error`, or wraps a real I/O error.
    pub fn from_io(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<FormatError>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(fe) = inner.downcast::<FormatError>() {
                    return *fe;
                }
            }
            return FormatError::Crypto("lost error detail".into());
        }
        FormatError::Io(e)
    }
}

impl Classify for FormatError {
    fn class(&self) -> ErrorClass {
        match self {
            FormatError::NotCoffer | FormatError::Malformed(_) | FormatError::KeySize(_) => {
                ErrorClass::Malformed
            }
            FormatError::Unsupported(_) | FormatError::TooLong => ErrorClass::Unsupported,
            FormatError::HeaderDamaged
            | FormatError::Tampered
            | FormatError::ChunkAuth { .. }
            | FormatError::Corrupt(_)
            | FormatError::Decompress(_) => ErrorClass::Corrupt,
            FormatError::WrongKey | FormatError::Commitment => ErrorClass::WrongKey,
            FormatError::Truncated(_) => ErrorClass::Truncated,
            FormatError::TrailingData { .. } => ErrorClass::TrailingData,
            FormatError::Crypto(_) | FormatError::Io(_) => ErrorClass::Io,
            FormatError::Failed { class, .. } => *class,
        }
    }
}
