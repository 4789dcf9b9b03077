//! Coffer's backup formats, for whoever opens or writes a backup: no async runtime, no
//! network.
//!
//! - [`key`]: the 32-byte root key, its 64-digit form, key files, HKDF derivations.
//! - [`crypt15`]: the WhatsApp-compatible backup profile (crypt15 read/write, crypt14/12 read).
//! - [`format`](mod@format): the Coffer backup format (authenticated header + C2SP chunked encryption).
//! - [`error`]: the error classes shared by every layer (`spec/errors.md`).
//!
//! The library never prints.
//!
//! # Example: a Coffer file, written and read back
//!
//! ```
//! use coffer_format::format::{self, Compression, Header, WriteOptions};
//! use coffer_format::key::RootKey;
//!
//! let key = RootKey::parse(&"a5".repeat(32))?;
//! let plaintext = b"SQLite format 3\0 and the rest of the chat database";
//! let header = Header::new(Compression::Zstd, vec![]);
//! let (file, _) = format::encrypt(&key, header, &mut &plaintext[..], Vec::new(), &WriteOptions::default())?;
//!
//! let mut opened = Vec::new();
//! format::decrypt(&file[..], &key, &mut opened)?;
//! assert_eq!(opened, plaintext);
//!
//! // One flipped byte, and nothing opens.
//! let mut damaged = file.clone();
//! damaged[40] ^= 1;
//! assert!(format::decrypt(&damaged[..], &key, &mut Vec::new()).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod crypt15;
pub mod error;
pub mod format;
pub mod key;
mod read_full;

pub use error::{Classify, ErrorClass};

/// Not API: the layers below the public surface, for Coffer's own vectors, conformance
/// runner, fuzzers and tests. Anything here may change in any release.
#[doc(hidden)]
pub mod internal {
    /// C2SP chunked encryption (Cobblestone-256) alone.
    pub mod cobblestone {
        pub use crate::format::cobblestone::*;
    }
    /// C2SP as `Write` / `Read` adapters.
    pub mod stream {
        pub use crate::format::parallel_seal::ParallelChunkedWriter;
        pub use crate::format::stream::*;
    }
    /// The Coffer header's encoding: magic, key id, header check, footer.
    pub mod format_header {
        pub use crate::format::header::*;
    }
    /// The crypt15 header's encoding.
    pub mod crypt15_header {
        pub use crate::crypt15::header::*;
    }
    /// The protobuf wire helpers of the crypt15 header.
    pub mod protobuf {
        pub use crate::crypt15::protobuf::*;
    }
}
