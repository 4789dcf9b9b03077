//! The vault's 16-byte identifiers as types, so that a record id cannot be passed where a
//! session id is expected. Both are random (`spec/vault.md` §3); on the wire and in stores
//! they are 32 lowercase hex digits.

use std::fmt;

macro_rules! id16 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// The identifier with these bytes.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }

            /// Its 16 bytes.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// Its 32 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The identifier of `bytes`, if they are 16 bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map($name)
            }

            /// The identifier written as 32 hex digits, if `text` is that.
            pub fn from_hex(text: &str) -> Option<Self> {
                hex::decode(text).ok().and_then(|b| Self::from_slice(&b))
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id16!(
    /// A record: one registration of one user. A password change makes a new one.
    RecordId
);
id16!(
    /// A login in progress, between the vault's KE2 and the client's KE3.
    SessionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_other_lengths() {
        let id = RecordId::from_bytes([0xab; 16]);
        assert_eq!(id.to_hex(), "ab".repeat(16));
        assert_eq!(RecordId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(RecordId::from_hex("abab"), None);
        assert_eq!(RecordId::from_hex(&"zz".repeat(16)), None);
        assert_eq!(SessionId::from_slice(&[1; 15]), None);
        assert_eq!(format!("{id:?}"), format!("RecordId({})", "ab".repeat(16)));
    }
}
