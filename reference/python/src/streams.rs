//! Sources and destinations: a path, or a binary file object.
//!
//! The library works without the GIL; a file object's `read` and `write` take it back for
//! each call. An exception the object raises is kept in [`Caught`] and re-raised unchanged.
//!
//! A destination never keeps a partial or unauthenticated result:
//! - a path is written to a temporary file beside it, renamed into place when complete;
//! - a seekable file object is written in place and, on failure, truncated back to where it was;
//! - any other file object (a pipe, a socket) gets the bytes only once they are complete,
//!   spooled meanwhile to an anonymous temporary file.

use crate::errors::Failure;
use coffer_format::ErrorClass;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tempfile::NamedTempFile;

/// Buffer between the library and a file object or file (fewer, larger Python calls).
pub(crate) const BUFFER: usize = 1 << 20;

/// The first exception a file object raised during one call, if any.
#[derive(Clone, Default)]
pub(crate) struct Caught(Arc<Mutex<Option<PyErr>>>);

impl Caught {
    /// Keeps `err` (the first one wins) and returns an I/O error that stands for it.
    pub(crate) fn keep(&self, err: PyErr) -> io::Error {
        let message = format!("the file object raised {err}");
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(err);
        }
        io::Error::other(message)
    }

    /// The caller's exception if there was one, else `failure`.
    pub(crate) fn or(&self, failure: Failure) -> Failure {
        match self.0.lock().ok().and_then(|mut slot| slot.take()) {
            Some(err) => Failure::Python(err),
            None => failure,
        }
    }
}

/// A binary file object, read or written with the GIL taken per call.
pub(crate) struct PyStream {
    object: Py<PyAny>,
    caught: Caught,
}

impl PyStream {
    fn call<T>(&self, f: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>) -> io::Result<T> {
        Python::attach(|py| f(self.object.bind(py)).map_err(|e| self.caught.keep(e)))
    }
}

impl Read for PyStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.call(|object| {
            let chunk = object.call_method1("read", (buf.len(),))?;
            if chunk.is_none() {
                return Err(pyo3::exceptions::PyBlockingIOError::new_err(
                    "the source is non-blocking and has no data",
                ));
            }
            let bytes = match chunk.cast::<PyBytes>() {
                Ok(bytes) => bytes.as_bytes().to_vec(),
                Err(_) if chunk.is_instance_of::<pyo3::types::PyString>() => {
                    return Err(pyo3::exceptions::PyTypeError::new_err(
                        "the source returned text: open it in binary mode ('rb')",
                    ))
                }
                // bytearray, memoryview: anything with the buffer protocol.
                Err(_) => chunk.extract::<Vec<u8>>()?,
            };
            if bytes.len() > buf.len() {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "read({}) returned {} bytes",
                    buf.len(),
                    bytes.len()
                )));
            }
            buf[..bytes.len()].copy_from_slice(&bytes);
            Ok(bytes.len())
        })
    }
}

impl Write for PyStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.call(|object| {
            let written = object.call_method1("write", (PyBytes::new(object.py(), buf),))?;
            // Raw streams may write less and say so; buffered and BytesIO write it all.
            Ok(written
                .extract::<Option<usize>>()?
                .unwrap_or(buf.len())
                .min(buf.len()))
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.call(|object| object.call_method0("flush").map(drop))
    }
}

/// Where the bytes come from.
pub(crate) enum Source {
    /// A file opened from a path, with its size.
    File(File, u64),
    /// A binary file object.
    Object(PyStream),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::File(file, _) => file.read(buf),
            Source::Object(stream) => stream.read(buf),
        }
    }
}

/// A path (str or os.PathLike), if `object` is one.
pub(crate) fn as_path(object: &Bound<'_, PyAny>) -> Option<PathBuf> {
    let is_path = object.is_instance_of::<pyo3::types::PyString>()
        || object.hasattr("__fspath__").unwrap_or(false);
    if is_path {
        object.extract::<PathBuf>().ok()
    } else {
        None
    }
}

fn io_failure(context: String, err: io::Error) -> Failure {
    Failure::new(ErrorClass::Io, format!("{context}: {err}"))
}

impl Source {
    /// Opens a path, or takes a file object with a `read` method.
    pub(crate) fn open(object: &Bound<'_, PyAny>, caught: &Caught) -> Result<Self, Failure> {
        if let Some(path) = as_path(object) {
            let file = File::open(&path)
                .map_err(|e| io_failure(format!("cannot open {}", path.display()), e))?;
            let size = file
                .metadata()
                .map_err(|e| io_failure(format!("cannot stat {}", path.display()), e))?;
            if size.is_dir() {
                return Err(Failure::new(
                    ErrorClass::Io,
                    format!("{} is a directory", path.display()),
                ));
            }
            return Ok(Source::File(file, size.len()));
        }
        if object.hasattr("read").unwrap_or(false) {
            return Ok(Source::Object(PyStream {
                object: object.clone().unbind(),
                caught: caught.clone(),
            }));
        }
        Err(Failure::Python(pyo3::exceptions::PyTypeError::new_err(
            "expected a path (str or os.PathLike) or a binary file object with read()",
        )))
    }

    /// The size, when it is known without reading (a path).
    pub(crate) fn size(&self) -> Option<u64> {
        match self {
            Source::File(_, size) => Some(*size),
            Source::Object(_) => None,
        }
    }

    /// Reads the first `n` bytes and gives them back in front of the rest.
    pub(crate) fn peek(mut self, n: usize) -> io::Result<(Vec<u8>, Peeked)> {
        let mut head = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match self.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        head.truncate(got);
        let peeked = io::Cursor::new(head.clone()).chain(self);
        Ok((head, peeked))
    }
}

/// A source whose first bytes were read and put back.
pub(crate) type Peeked = io::Chain<io::Cursor<Vec<u8>>, Source>;

/// Where the result goes; see the module documentation for what happens on failure.
pub(crate) enum Sink {
    /// A path: a temporary file beside it, renamed into place by [`Sink::commit`].
    Path {
        temp: NamedTempFile,
        path: PathBuf,
        overwrite: bool,
    },
    /// A seekable file object, written in place from `start`.
    Seekable { stream: PyStream, start: u64 },
    /// Any other file object: the bytes wait in `spool` until complete.
    Spooled { stream: PyStream, spool: File },
}

fn temp_beside(path: &Path) -> Result<NamedTempFile, Failure> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| io_failure(format!("cannot create a file in {}", dir.display()), e))
}

impl Sink {
    /// A path (refused if it exists, unless `overwrite`) or a file object with `write`.
    pub(crate) fn open(
        object: &Bound<'_, PyAny>,
        overwrite: bool,
        caught: &Caught,
    ) -> Result<Self, Failure> {
        if let Some(path) = as_path(object) {
            if path.exists() && !overwrite {
                return Err(Failure::Python(
                    pyo3::exceptions::PyFileExistsError::new_err(format!(
                        "{} already exists; pass overwrite=True to replace it",
                        path.display()
                    )),
                ));
            }
            return Ok(Sink::Path {
                temp: temp_beside(&path)?,
                path,
                overwrite,
            });
        }
        if !object.hasattr("write").unwrap_or(false) {
            return Err(Failure::Python(pyo3::exceptions::PyTypeError::new_err(
                "expected a path (str or os.PathLike) or a binary file object with write()",
            )));
        }
        let stream = PyStream {
            object: object.clone().unbind(),
            caught: caught.clone(),
        };
        let seekable = object
            .call_method0("seekable")
            .and_then(|s| s.is_truthy())
            .unwrap_or(false)
            && object.hasattr("truncate").unwrap_or(false);
        if seekable {
            let start = object
                .call_method0("tell")
                .and_then(|t| t.extract::<u64>())
                .map_err(Failure::Python)?;
            return Ok(Sink::Seekable { stream, start });
        }
        let spool = tempfile::tempfile()
            .map_err(|e| io_failure("cannot create a temporary file".into(), e))?;
        Ok(Sink::Spooled { stream, spool })
    }

    /// Runs `write` on a buffered writer into this sink, then makes the result visible, or on
    /// failure removes every byte written.
    pub(crate) fn write_with<T>(
        self,
        write: impl FnOnce(&mut dyn Write) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        match self {
            Sink::Path {
                temp,
                path,
                overwrite,
            } => {
                let value = {
                    let mut out = BufWriter::with_capacity(BUFFER, temp.as_file());
                    let value = write(&mut out)?;
                    out.flush()
                        .map_err(|e| io_failure(format!("cannot write {}", path.display()), e))?;
                    value
                };
                temp.as_file()
                    .sync_all()
                    .map_err(|e| io_failure(format!("cannot sync {}", path.display()), e))?;
                let persisted = if overwrite {
                    temp.persist(&path)
                } else {
                    temp.persist_noclobber(&path)
                };
                persisted.map_err(|e| {
                    io_failure(
                        format!("cannot move the output to {}", path.display()),
                        e.error,
                    )
                })?;
                Ok(value)
            }
            Sink::Seekable { mut stream, start } => {
                let result = {
                    let mut out = BufWriter::with_capacity(BUFFER, &mut stream);
                    write(&mut out).and_then(|value| {
                        out.flush()
                            .map_err(|e| io_failure("cannot write the destination".into(), e))?;
                        Ok(value)
                    })
                };
                if result.is_err() {
                    // Best effort: the original failure is the one to report.
                    let _ = stream.call(|object| {
                        object.call_method1("seek", (start,))?;
                        object.call_method0("truncate").map(drop)
                    });
                }
                result
            }
            Sink::Spooled {
                mut stream,
                mut spool,
            } => {
                let value = {
                    let mut out = BufWriter::with_capacity(BUFFER, &spool);
                    let value = write(&mut out)?;
                    out.flush()
                        .map_err(|e| io_failure("cannot write the spool file".into(), e))?;
                    value
                };
                spool
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| io_failure("cannot read the spool file".into(), e))?;
                let mut out = BufWriter::with_capacity(BUFFER, &mut stream);
                io::copy(&mut spool, &mut out)
                    .and_then(|_| out.flush())
                    .map_err(|e| io_failure("cannot write the destination".into(), e))?;
                Ok(value)
            }
        }
    }
}
