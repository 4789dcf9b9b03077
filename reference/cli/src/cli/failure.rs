//! A failed command: its error class (which fixes the exit code) and a readable message.

use coffer::{Classify, ErrorClass};
use std::fmt::Display;

/// Why a command failed.
#[derive(Debug)]
pub(super) struct Failure {
    pub class: ErrorClass,
    pub message: String,
    /// The command line itself is wrong (exit 2, `"error": "usage"`), before any work.
    pub usage: bool,
}

/// The exit code of a usage error (as clap's own).
pub(super) const USAGE_EXIT: u8 = 2;

impl Failure {
    pub(super) fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
            usage: false,
        }
    }

    /// A command line that cannot be run as given: options that do not apply together, a
    /// value of the wrong form. Exit code 2.
    pub(super) fn usage(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Malformed,
            message: message.into(),
            usage: true,
        }
    }

    /// The process's exit code for this failure.
    pub(super) fn exit_code(&self) -> u8 {
        if self.usage {
            USAGE_EXIT
        } else {
            self.class.exit_code()
        }
    }

    /// The `error` field of the `--json` form: the class, or `usage`.
    pub(super) fn error_name(&self) -> String {
        if self.usage {
            "usage".into()
        } else {
            self.class.to_string()
        }
    }

    /// Wraps a library error, prefixing what was being done.
    pub(super) fn from_lib<E: Classify + Display>(context: &str, error: E) -> Self {
        Self::new(error.class(), format!("{context}: {error}"))
    }

    /// An `io::Error` from a Coffer-format reader or writer, which may carry a
    /// [`coffer::format::FormatError`] (and then its class).
    pub(super) fn from_io_lib(context: &str, error: std::io::Error) -> Self {
        Self::from_lib(context, coffer::format::FormatError::from_io(error))
    }

    /// An I/O failure on a named path.
    pub(super) fn io(context: impl Display, error: std::io::Error) -> Self {
        Self::new(ErrorClass::Io, format!("{context}: {error}"))
    }
}

pub(super) type CliResult<T> = Result<T, Failure>;
