//! A failed command: its error class (which fixes the exit code) and a readable message.

use coffer::{Classify, ErrorClass};
use std::fmt::Display;

/// Why a command failed.
#[derive(Debug)]
pub(super) struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

impl Failure {
    pub(super) fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }

    /// Wraps a library error, prefixing what was being done.
    pub(super) fn from_lib<E: Classify + Display>(context: &str, error: E) -> Self {
        Failure {
            class: error.class(),
            message: format!("{context}: {error}"),
        }
    }

    /// An `io::Error` from a Coffer-format reader or writer, which may carry a
    /// [`coffer::format::FormatError`] (and then its class).
    pub(super) fn from_io_lib(context: &str, error: std::io::Error) -> Self {
        Self::from_lib(context, coffer::format::FormatError::from_io(error))
    }

    /// An I/O failure on a named path.
    pub(super) fn io(context: impl Display, error: std::io::Error) -> Self {
        Failure {
            class: ErrorClass::Io,
            message: format!("{context}: {error}"),
        }
    }
}

pub(super) type CliResult<T> = Result<T, Failure>;
