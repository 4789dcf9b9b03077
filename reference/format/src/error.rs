//! The error vocabulary shared by the library, the CLI, shim answers and vectors.
//!
//! Every library error type maps to exactly one [`ErrorClass`] (see `spec/errors.md`).
//! The CLI turns the class into a documented exit code and a `--json` error body.

use serde::Serialize;
use std::fmt;

/// One of the error classes fixed by the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The key does not open this file (authentication failed with intact data).
    WrongKey,
    /// The data was modified or damaged.
    Corrupt,
    /// The data ends before its structure says it should.
    Truncated,
    /// Bytes follow the end of a complete file.
    TrailingData,
    /// A well-formed input that uses a feature or version this implementation does not support.
    Unsupported,
    /// The input is not of the expected form at all.
    Malformed,
    /// Vault: the password is wrong.
    WrongPassword,
    /// Vault: no such record (never registered, or destroyed).
    NoRecord,
    /// Vault: the record is locked.
    Locked,
    /// Vault: the server failed to authenticate.
    ServerAuthFailed,
    /// Vault: too many requests.
    RateLimited,
    /// Vault: the caller is not allowed to do this.
    Unauthorized,
    /// Reading or writing failed for a reason outside the data (file system, device, network).
    Io,
}

impl ErrorClass {
    /// Every class, in exit-code order.
    pub const ALL: [ErrorClass; 13] = [
        ErrorClass::WrongKey,
        ErrorClass::Corrupt,
        ErrorClass::Truncated,
        ErrorClass::TrailingData,
        ErrorClass::Unsupported,
        ErrorClass::Malformed,
        ErrorClass::WrongPassword,
        ErrorClass::NoRecord,
        ErrorClass::Locked,
        ErrorClass::ServerAuthFailed,
        ErrorClass::RateLimited,
        ErrorClass::Unauthorized,
        ErrorClass::Io,
    ];

    /// The class name as written in JSON, vectors and the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::WrongKey => "wrong_key",
            ErrorClass::Corrupt => "corrupt",
            ErrorClass::Truncated => "truncated",
            ErrorClass::TrailingData => "trailing_data",
            ErrorClass::Unsupported => "unsupported",
            ErrorClass::Malformed => "malformed",
            ErrorClass::WrongPassword => "wrong_password",
            ErrorClass::NoRecord => "no_record",
            ErrorClass::Locked => "locked",
            ErrorClass::ServerAuthFailed => "server_auth_failed",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Io => "io",
        }
    }

    /// The `coffer` CLI exit code for this class (`spec/errors.md`): 10 + its index.
    pub fn exit_code(self) -> u8 {
        let index = Self::ALL.iter().position(|c| *c == self).unwrap_or(0);
        10 + index as u8
    }

    /// Parses a class name.
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every library error: the spec's class of this error.
pub trait Classify {
    /// The error class.
    fn class(&self) -> ErrorClass;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_names_round_trip() {
        let mut codes: Vec<u8> = ErrorClass::ALL.iter().map(|c| c.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorClass::ALL.len());
        assert_eq!(ErrorClass::WrongKey.exit_code(), 10);
        assert_eq!(ErrorClass::Io.exit_code(), 22);
        for class in ErrorClass::ALL {
            assert_eq!(ErrorClass::from_name(class.as_str()), Some(class));
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
        }
    }
}
