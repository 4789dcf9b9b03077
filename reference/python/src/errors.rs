//! The error classes of `spec/errors.md` as Python exceptions.
//!
//! Every exception derives from `coffer.CofferError` and carries the class name in
//! `error_class` (`"wrong_key"`, `"corrupt"`, ...), the word the CLI's `--json`, the shim and
//! the vectors use. An exception raised by the caller's own file object is re-raised as is.

use coffer_format::{Classify, ErrorClass};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    coffer,
    CofferError,
    PyException,
    "Base class of every Coffer error; `error_class` names its class (spec/errors.md)."
);
create_exception!(
    coffer,
    WrongKeyError,
    CofferError,
    "The key does not open this backup (authentication failed on intact data)."
);
create_exception!(
    coffer,
    CorruptError,
    CofferError,
    "The backup was modified or damaged."
);
create_exception!(
    coffer,
    TruncatedError,
    CofferError,
    "The backup ends before its structure says it should."
);
create_exception!(
    coffer,
    TrailingDataError,
    CofferError,
    "Bytes follow the end of a complete backup."
);
create_exception!(
    coffer,
    UnsupportedError,
    CofferError,
    "A well-formed backup that uses a feature or version this package does not support."
);
create_exception!(
    coffer,
    MalformedError,
    CofferError,
    "The input (backup, key or argument) is not of the expected form at all."
);
create_exception!(
    coffer,
    CofferIOError,
    CofferError,
    "Reading or writing failed for a reason outside the data."
);

/// The exception type for a class. Vault classes never come out of the format crate; they
/// fall back to the base class rather than pretend to be a format error.
fn exception_for(py: Python<'_>, class: ErrorClass) -> Bound<'_, pyo3::types::PyType> {
    match class {
        ErrorClass::WrongKey => py.get_type::<WrongKeyError>(),
        ErrorClass::Corrupt => py.get_type::<CorruptError>(),
        ErrorClass::Truncated => py.get_type::<TruncatedError>(),
        ErrorClass::TrailingData => py.get_type::<TrailingDataError>(),
        ErrorClass::Unsupported => py.get_type::<UnsupportedError>(),
        ErrorClass::Malformed => py.get_type::<MalformedError>(),
        ErrorClass::Io => py.get_type::<CofferIOError>(),
        _ => py.get_type::<CofferError>(),
    }
}

/// The classes this package raises, in the order of `spec/errors.md`.
pub(crate) const RAISED: [ErrorClass; 7] = [
    ErrorClass::WrongKey,
    ErrorClass::Corrupt,
    ErrorClass::Truncated,
    ErrorClass::TrailingData,
    ErrorClass::Unsupported,
    ErrorClass::Malformed,
    ErrorClass::Io,
];

/// An error on its way to Python: a Coffer class and message, or an exception that the
/// caller's file object raised (kept, to be re-raised unchanged).
#[derive(Debug)]
pub(crate) enum Failure {
    /// A Coffer error class and its message.
    Coffer(ErrorClass, String),
    /// The caller's own exception.
    Python(PyErr),
}

impl Failure {
    /// A failure of `class` with `message`.
    pub(crate) fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure::Coffer(class, message.into())
    }

    /// A library error, prefixed with what was being done.
    pub(crate) fn from_lib(context: &str, error: impl Classify + std::fmt::Display) -> Self {
        Failure::Coffer(error.class(), format!("{context}: {error}"))
    }

    /// The Python exception to raise.
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::Python(err) => err,
            Failure::Coffer(class, message) => PyErr::from_type(exception_for(py, class), message),
        }
    }
}

/// Sets `error_class` on every exception type and adds them to the module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let base = py.get_type::<CofferError>();
    base.setattr("error_class", "")?;
    module.add("CofferError", base)?;
    let classes = pyo3::types::PyDict::new(py);
    for class in RAISED {
        let exception = exception_for(py, class);
        exception.setattr("error_class", class.as_str())?;
        module.add(exception.name()?.to_string(), &exception)?;
        classes.set_item(class.as_str(), &exception)?;
    }
    module.add("ERROR_CLASSES", classes)?;
    Ok(())
}
