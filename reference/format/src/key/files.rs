//! The key files WhatsApp writes, read and written byte for byte.
//!
//! Both are a Java-serialized `byte[]`: a fixed 23-byte stream header and class descriptor,
//! then the array length as a big-endian u32, then the bytes (`spec/key.md`).

use super::{KeyError, RootKey, ROOT_KEY_LEN};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Java serialization of a `byte[]` up to (not including) its 4-byte length:
/// stream magic and version, TC_ARRAY, TC_CLASSDESC "[B", serialVersionUID, flags, no fields,
/// TC_ENDBLOCKDATA, TC_NULL.
pub const JAVA_BYTE_ARRAY_HEADER: [u8; 23] = [
    0xac, 0xed, 0x00, 0x05, 0x75, 0x72, 0x00, 0x02, 0x5b, 0x42, 0xac, 0xf3, 0x17, 0xf8, 0x06, 0x08,
    0x54, 0xe0, 0x02, 0x00, 0x00, 0x78, 0x70,
];

/// Length of the body of a crypt12/14 `key` file.
pub(super) const LEGACY_BODY_LEN: usize = 131;

/// A parsed key file.
#[derive(Debug)]
pub enum KeyFile {
    /// `encrypted_backup.key`: the 32-byte root key (59 bytes on disk).
    EncryptedBackupKey(RootKey),
    /// The crypt12/14 `key` file (158 bytes on disk).
    Legacy(LegacyKey),
    /// A text file with the 64-digit form.
    Hex(RootKey),
}

/// The crypt12/14 `key` file body: who the key belongs to, and the AES key itself.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct LegacyKey {
    /// Cipher version, `00 01` in every known file.
    pub cipher_version: [u8; 2],
    /// Key version byte (`02`).
    pub key_version: u8,
    /// Server salt; crypt12/14 headers repeat it.
    pub server_salt: [u8; 32],
    /// Google account id salt; crypt12/14 headers repeat it.
    pub google_id_salt: [u8; 16],
    /// SHA-256 of the Google id salt.
    pub hashed_google_id: [u8; 32],
    /// Sixteen bytes, zero in every known file.
    pub padding: [u8; 16],
    /// The AES-256 key, used directly (no derivation).
    pub aes_key: [u8; 32],
}

impl std::fmt::Debug for LegacyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyKey")
            .field("cipher_version", &hex::encode(self.cipher_version))
            .field("key_version", &self.key_version)
            .field("server_salt", &hex::encode(self.server_salt))
            .field("aes_key", &"<redacted>")
            .finish()
    }
}

fn java_byte_array(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(JAVA_BYTE_ARRAY_HEADER.len() + 4 + body.len());
    out.extend_from_slice(&JAVA_BYTE_ARRAY_HEADER);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The array body if `bytes` is a complete Java-serialized `byte[]`.
fn java_byte_array_body(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(&JAVA_BYTE_ARRAY_HEADER[..])?;
    let (len, body) = rest.split_first_chunk::<4>()?;
    (u32::from_be_bytes(*len) as usize == body.len()).then_some(body)
}

impl KeyFile {
    /// Parses any key file form. A Java-serialized array must have exactly the declared length.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.starts_with(&JAVA_BYTE_ARRAY_HEADER[..4]) {
            let body = java_byte_array_body(bytes).ok_or_else(|| {
                KeyError::BadKeyFile(format!(
                    "Java-serialized key file of {} bytes is not a complete byte[] (expected 59 or 158 bytes)",
                    bytes.len()
                ))
            })?;
            return match body.len() {
                ROOT_KEY_LEN => {
                    let mut key = [0u8; ROOT_KEY_LEN];
                    key.copy_from_slice(body);
                    Ok(KeyFile::EncryptedBackupKey(RootKey::from_bytes(key)))
                }
                LEGACY_BODY_LEN => Ok(KeyFile::Legacy(LegacyKey::from_body(body)?)),
                n => Err(KeyError::BadKeyFile(format!(
                    "Java-serialized byte[] of {n} bytes (a key file holds 32 or 131)"
                ))),
            };
        }
        let text = std::str::from_utf8(bytes).map_err(|_| {
            KeyError::BadKeyFile(format!(
                "{} bytes that are neither a Java-serialized key nor text",
                bytes.len()
            ))
        })?;
        Ok(KeyFile::Hex(RootKey::parse(
            text.trim_matches(['\n', '\r', ' ']),
        )?))
    }
}

impl RootKey {
    /// The 59-byte `encrypted_backup.key` form.
    pub fn to_encrypted_backup_key(&self) -> Vec<u8> {
        java_byte_array(self.as_bytes())
    }
}

impl LegacyKey {
    fn from_body(body: &[u8]) -> Result<Self, KeyError> {
        let fixed: &[u8; LEGACY_BODY_LEN] = body
            .try_into()
            .map_err(|_| KeyError::BadKeyFile(format!("key body of {} bytes", body.len())))?;
        let mut key = LegacyKey {
            cipher_version: [0; 2],
            key_version: fixed[2],
            server_salt: [0; 32],
            google_id_salt: [0; 16],
            hashed_google_id: [0; 32],
            padding: [0; 16],
            aes_key: [0; 32],
        };
        key.cipher_version.copy_from_slice(&fixed[0..2]);
        key.server_salt.copy_from_slice(&fixed[3..35]);
        key.google_id_salt.copy_from_slice(&fixed[35..51]);
        key.hashed_google_id.copy_from_slice(&fixed[51..83]);
        key.padding.copy_from_slice(&fixed[83..99]);
        key.aes_key.copy_from_slice(&fixed[99..131]);
        Ok(key)
    }

    /// The 158-byte `key` file form.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(LEGACY_BODY_LEN);
        body.extend_from_slice(&self.cipher_version);
        body.push(self.key_version);
        body.extend_from_slice(&self.server_salt);
        body.extend_from_slice(&self.google_id_salt);
        body.extend_from_slice(&self.hashed_google_id);
        body.extend_from_slice(&self.padding);
        body.extend_from_slice(&self.aes_key);
        let out = java_byte_array(&body);
        body.zeroize();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_backup_key_round_trip() {
        let key = RootKey::generate().unwrap();
        let bytes = key.to_encrypted_backup_key();
        assert_eq!(bytes.len(), 59);
        match KeyFile::parse(&bytes).unwrap() {
            KeyFile::EncryptedBackupKey(parsed) => assert_eq!(parsed, key),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_lengths_and_garbage() {
        use crate::error::{Classify, ErrorClass};
        let malformed = |bytes: &[u8], what: &str| match KeyFile::parse(bytes) {
            Err(e) => assert_eq!(e.class(), ErrorClass::Malformed, "{what}: {e}"),
            Ok(parsed) => panic!("{what}: accepted as {parsed:?}"),
        };
        let key = RootKey::generate().unwrap();
        let bytes = key.to_encrypted_backup_key();
        for cut in [4, 26, 27, 58] {
            malformed(&bytes[..cut], &format!("cut at {cut}"));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        malformed(&longer, "one byte too many");
        let mut wrong_len = bytes.clone();
        wrong_len[26] = 31;
        malformed(&wrong_len, "declared length 31");
        malformed(&[0xff, 0xfe, 0x00], "binary garbage");
        malformed(b"not a key\n", "text that is not hex");
    }

    #[test]
    fn hex_text_file() {
        let key = RootKey::generate().unwrap();
        let text = format!("{}\n", key.to_grouped().as_str());
        match KeyFile::parse(text.as_bytes()).unwrap() {
            KeyFile::Hex(parsed) => assert_eq!(parsed, key),
            other => panic!("unexpected {other:?}"),
        }
    }
}
