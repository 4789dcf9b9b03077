//! Backup keys: the 32-byte root key K, its 64-digit display form, the key files
//! WhatsApp writes, and the HKDF derivations (`spec/key.md`).

mod files;

pub use files::{KeyFile, LegacyKey, JAVA_BYTE_ARRAY_HEADER};

use crate::error::{Classify, ErrorClass};
use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of the root key in bytes.
pub const ROOT_KEY_LEN: usize = 32;

/// HKDF info label of the crypt15 file key.
pub const INFO_BACKUP_ENCRYPTION: &[u8] = b"backup encryption";
/// HKDF info label of the crypt15 metadata encryption key.
pub const INFO_METADATA_ENCRYPTION: &[u8] = b"metadata encryption";
/// HKDF info label of the crypt15 metadata authentication key.
pub const INFO_METADATA_AUTHENTICATION: &[u8] = b"metadata authentication";

/// Errors from parsing or loading keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A character that is neither a hex digit, a space nor a dash.
    #[error("invalid character {character:?} at position {position} of the key (expected hex digits, spaces or dashes)")]
    BadCharacter {
        /// 1-based character position in the input.
        position: usize,
        /// The offending character.
        character: char,
    },
    /// The right characters, but not 64 hex digits of them.
    #[error("a key has 64 hex digits, this one has {digits}")]
    WrongLength {
        /// How many hex digits were found.
        digits: usize,
    },
    /// A key file that is none of the known forms.
    #[error("not a key file: {0}")]
    BadKeyFile(String),
    /// The operating system's random generator failed.
    #[error("the OS random generator failed: {0}")]
    Random(String),
    /// The key file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Classify for KeyError {
    fn class(&self) -> ErrorClass {
        match self {
            KeyError::BadCharacter { .. }
            | KeyError::WrongLength { .. }
            | KeyError::BadKeyFile(_) => ErrorClass::Malformed,
            KeyError::Random(_) | KeyError::Io { .. } => ErrorClass::Io,
        }
    }
}

/// The 32-byte root key K. Zeroized on drop; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct RootKey([u8; ROOT_KEY_LEN]);

impl RootKey {
    /// Wraps 32 bytes.
    pub fn from_bytes(bytes: [u8; ROOT_KEY_LEN]) -> Self {
        RootKey(bytes)
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; ROOT_KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(RootKey(bytes))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; ROOT_KEY_LEN] {
        &self.0
    }

    /// Parses the 64-digit form: hex digits in either case; spaces and dashes are ignored;
    /// anything else is rejected with its 1-based position.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; ROOT_KEY_LEN]);
        let mut digits = 0usize;
        for (index, character) in text.chars().enumerate() {
            if character == ' ' || character == '-' {
                continue;
            }
            let Some(value) = character.to_digit(16) else {
                return Err(KeyError::BadCharacter {
                    position: index + 1,
                    character,
                });
            };
            if digits < 2 * ROOT_KEY_LEN {
                let byte = &mut bytes[digits / 2];
                *byte = (*byte << 4) | value as u8;
            }
            digits += 1;
        }
        if digits != 2 * ROOT_KEY_LEN {
            return Err(KeyError::WrongLength { digits });
        }
        Ok(RootKey(*bytes))
    }

    /// The 64 lowercase hex digits, without separators.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0))
    }

    /// The display form: 16 groups of 4 digits separated by spaces, as WhatsApp shows it.
    pub fn to_grouped(&self) -> Zeroizing<String> {
        let digits = self.to_hex();
        let mut out = String::with_capacity(79);
        for (i, chunk) in digits.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.extend(chunk.iter().map(|b| *b as char));
        }
        Zeroizing::new(out)
    }

    /// HKDF-SHA256(salt = 32 zero bytes, ikm = K, info) expanded to 32 bytes.
    pub fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let hkdf = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &self.0);
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        if hkdf.expand(info, out.as_mut()).is_err() {
            unreachable!("HKDF-SHA256 expand of 32 bytes");
        }
        out
    }

    /// The crypt15 file key: `derive("backup encryption")`.
    pub fn crypt15_file_key(&self) -> Zeroizing<[u8; 32]> {
        self.derive(INFO_BACKUP_ENCRYPTION)
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

/// A key that opens backups: either a 32-byte key (the crypt15 root key, or for crypt12/14
/// the AES key itself) or a crypt12/14 `key` file with its salts.
#[derive(Clone, Debug)]
pub enum BackupKey {
    /// 64 hex digits or an `encrypted_backup.key` file.
    Root(RootKey),
    /// A crypt12/14 `key` file.
    Legacy(LegacyKey),
}

impl BackupKey {
    /// Parses a key given as text: 64 hex digits (see [`RootKey::parse`]).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        RootKey::parse(text).map(BackupKey::Root)
    }

    /// Reads a key file in any of its forms: `encrypted_backup.key` (59 bytes),
    /// the crypt12/14 `key` (158 bytes), or a text file holding 64 hex digits.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        match KeyFile::parse(bytes)? {
            KeyFile::EncryptedBackupKey(root) => Ok(BackupKey::Root(root)),
            KeyFile::Legacy(legacy) => Ok(BackupKey::Legacy(legacy)),
            KeyFile::Hex(root) => Ok(BackupKey::Root(root)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "6730a595a1484d0c39c101dc0ac82ec5e401bb6f0e1b8ee2dc104a6b3687f017";

    #[test]
    fn parse_accepts_case_spaces_and_dashes() {
        let key = RootKey::parse(SAMPLE).unwrap();
        assert_eq!(key.to_hex().as_str(), SAMPLE);
        let upper = SAMPLE.to_uppercase();
        assert_eq!(RootKey::parse(&upper).unwrap(), key);
        let grouped = key.to_grouped();
        assert_eq!(grouped.len(), 79);
        assert_eq!(RootKey::parse(&grouped).unwrap(), key);
        assert_eq!(RootKey::parse(&grouped.replace(' ', "-")).unwrap(), key);
    }

    #[test]
    fn parse_rejects_with_position() {
        let mut bad = SAMPLE.to_string();
        bad.replace_range(9..10, "g");
        match RootKey::parse(&bad) {
            Err(KeyError::BadCharacter {
                position,
                character,
            }) => {
                assert_eq!((position, character), (10, 'g'));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            RootKey::parse(&SAMPLE[..62]),
            Err(KeyError::WrongLength { digits: 62 })
        ));
        assert!(matches!(
            RootKey::parse(&format!("{SAMPLE}0")),
            Err(KeyError::WrongLength { digits: 65 })
        ));
        assert!(matches!(
            RootKey::parse("\t"),
            Err(KeyError::BadCharacter {
                position: 1,
                character: '\t'
            })
        ));
        assert!(matches!(
            RootKey::parse(""),
            Err(KeyError::WrongLength { digits: 0 })
        ));
    }

    #[test]
    fn debug_is_redacted() {
        let key = RootKey::parse(SAMPLE).unwrap();
        assert!(!format!("{key:?}").contains("6730"));
    }

    #[test]
    fn generate_gives_distinct_keys() {
        assert_ne!(RootKey::generate().unwrap(), RootKey::generate().unwrap());
    }

    #[test]
    fn hkdf_matches_rfc5869_construction() {
        // Recompute HKDF-SHA256 by hand with HMAC (RFC 5869) to check the salt/info wiring.
        use hkdf::hmac::{Hmac, Mac};
        let key = RootKey::parse(SAMPLE).unwrap();
        let mut extract = Hmac::<Sha256>::new_from_slice(&[0u8; 32]).unwrap();
        extract.update(key.as_bytes());
        let prk = extract.finalize().into_bytes();
        let mut expand = Hmac::<Sha256>::new_from_slice(&prk).unwrap();
        expand.update(b"backup encryption\x01");
        let okm = expand.finalize().into_bytes();
        assert_eq!(key.crypt15_file_key().as_slice(), okm.as_slice());
        assert_ne!(
            key.derive(INFO_METADATA_ENCRYPTION).as_slice(),
            key.derive(INFO_METADATA_AUTHENTICATION).as_slice()
        );
    }
}
