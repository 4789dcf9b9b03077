//! `coffer.open`: a Coffer file as a readable binary stream.

use crate::errors::Failure;
use crate::keys;
use crate::streams::{Caught, Peeked, Source, BUFFER};
use coffer_format::format::{self, Reader};
use coffer_format::ErrorClass;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::io::{BufReader, Read};

/// The plaintext of a Coffer file, read as authenticated chunks arrive.
#[pyclass(module = "coffer")]
pub(crate) struct CofferReader {
    inner: Option<Reader<BufReader<Peeked>>>,
    caught: Caught,
    compression: String,
}

impl CofferReader {
    pub(crate) fn open(
        py: Python<'_>,
        src: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let caught = Caught::default();
        let opened = (|| {
            let root = keys::root_key(key)?;
            let source = Source::open(src, &caught)?;
            let (head, input) = source.peek(8).map_err(|e| {
                caught.or(Failure::new(
                    ErrorClass::Io,
                    format!("cannot read the backup: {e}"),
                ))
            })?;
            if !format::looks_like_coffer(&head) {
                return Err(Failure::new(
                    ErrorClass::Unsupported,
                    "not a Coffer file: a crypt15/14/12 backup is one AES-GCM message, authentic only at its end; use coffer.decrypt(src, dst, key=...)",
                ));
            }
            py.detach(|| format::open(BufReader::with_capacity(BUFFER, input), &root))
                .map_err(|e| caught.or(Failure::from_lib("cannot open the Coffer file", e)))
        })();
        let inner = opened.map_err(|f| f.into_pyerr(py))?;
        let compression = serde_json::to_value(inner.header().compression)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(CofferReader {
            inner: Some(inner),
            caught,
            compression,
        })
    }

    fn reader(&mut self) -> PyResult<&mut Reader<BufReader<Peeked>>> {
        self.inner
            .as_mut()
            .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("I/O operation on closed file"))
    }
}

#[pymethods]
impl CofferReader {
    /// Up to `size` plaintext bytes (all that remain when `size` is negative or omitted);
    /// `b""` at the end of a complete, authenticated file.
    #[pyo3(signature = (size = -1))]
    fn read<'py>(&mut self, py: Python<'py>, size: i64) -> PyResult<Bound<'py, PyBytes>> {
        let caught = self.caught.clone();
        let reader = self.reader()?;
        let result = py.detach(|| {
            let mut out = Vec::new();
            if size < 0 {
                reader.read_to_end(&mut out).map(|_| out)
            } else {
                let want = usize::try_from(size).unwrap_or(usize::MAX);
                reader.take(want as u64).read_to_end(&mut out).map(|_| out)
            }
        });
        match result {
            Ok(bytes) => Ok(PyBytes::new(py, &bytes)),
            Err(e) => Err(caught.or(io_error_failure(e)).into_pyerr(py)),
        }
    }

    /// Always true.
    fn readable(&self) -> bool {
        true
    }

    /// The header's compression: "zstd_seekable", "zstd" (one frame, format 0.3) or "none".
    #[getter]
    fn compression(&self) -> &str {
        &self.compression
    }

    /// True once closed.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// Releases the file; further reads raise ValueError.
    fn close(&mut self) {
        self.inner = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }
}

/// The error class a failed read carries (the format reader wraps it in the I/O error).
fn io_error_failure(e: std::io::Error) -> Failure {
    Failure::from_lib(
        "cannot read the Coffer file",
        format::FormatError::from_io(e),
    )
}
