//! `coffer`, the Python package: open, inspect, decrypt and encrypt WhatsApp crypt15 (and
//! crypt14/12) backups and Coffer files, streaming, on the `coffer-format` crate.
//!
//! Every function takes paths or binary file objects, works without the GIL, and raises the
//! error classes of `spec/errors.md` as `coffer.CofferError` subclasses. Type stubs:
//! `coffer.pyi` beside this crate.

mod errors;
mod keys;
mod reader;
mod streams;

use coffer_format::crypt15::{self, DecryptOptions, EncryptOptions, HeaderSpec, PayloadEncoding};
use coffer_format::format::{self, tag, Compression, Header, MetaValue, WriteOptions};
use coffer_format::key::{BackupKey, RootKey};
use coffer_format::ErrorClass;
use errors::Failure;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde_json::json;
use std::io::{self, BufReader, Read, Write};
use streams::{Caught, Sink, Source, BUFFER};

/// Enough bytes to tell a Coffer file from a crypt15/14/12 one.
const MAGIC_LEN: usize = 8;

/// How often the progress callback is called, in bytes read.
const PROGRESS_STEP: u64 = 4 << 20;

/// Counts bytes read and reports them to the caller's progress callback.
struct Progress<R> {
    inner: R,
    done: u64,
    reported: u64,
    callback: Option<Py<PyAny>>,
    caught: Caught,
}

impl<R> Progress<R> {
    fn new(inner: R, callback: Option<Py<PyAny>>, caught: &Caught) -> Self {
        Progress {
            inner,
            done: 0,
            reported: 0,
            callback,
            caught: caught.clone(),
        }
    }

    fn report(&mut self) -> io::Result<()> {
        if let Some(callback) = &self.callback {
            self.reported = self.done;
            let done = self.done;
            Python::attach(|py| callback.bind(py).call1((done,)).map(drop))
                .map_err(|e| self.caught.keep(e))?;
        }
        Ok(())
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if n == 0 || self.done - self.reported >= PROGRESS_STEP {
            self.report()?;
        }
        Ok(n)
    }
}

fn json_to_py(py: Python<'_>, value: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let text = value.to_string();
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

fn io_failure(context: &str) -> impl FnOnce(io::Error) -> Failure + '_ {
    move |e| Failure::new(ErrorClass::Io, format!("{context}: {e}"))
}

fn need_root(key: &BackupKey) -> Result<&RootKey, Failure> {
    match key {
        BackupKey::Root(root) => Ok(root),
        BackupKey::Legacy(_) => Err(Failure::new(
            ErrorClass::WrongKey,
            "this is a Coffer file: it needs the 64-digit key or encrypted_backup.key, not a crypt12/14 key file",
        )),
    }
}

/// Decrypts whatever `source` holds (recognised from its first bytes) into `sink`.
fn decrypt_any(
    source: Source,
    sink: Option<Sink>,
    key: &BackupKey,
    decompress: bool,
    progress: Option<Py<PyAny>>,
    caught: &Caught,
) -> Result<serde_json::Value, Failure> {
    let (head, input) = source
        .peek(MAGIC_LEN)
        .map_err(io_failure("cannot read the backup"))?;
    let input = Progress::new(input, progress, caught);
    let run = |out: &mut dyn Write| -> Result<serde_json::Value, Failure> {
        if format::looks_like_coffer(&head) {
            let root = need_root(key)?;
            let reader = BufReader::with_capacity(BUFFER, input);
            let (header, summary) = format::decrypt(reader, root, &mut &mut *out)
                .map_err(|e| Failure::from_lib("cannot decrypt", e))?;
            return Ok(json!({
                "format": "coffer",
                "compression": header.compression,
                "content": header.content(),
                "input_bytes": summary.file_len,
                "output_bytes": summary.plaintext_len,
            }));
        }
        let options = DecryptOptions {
            decompress,
            ..DecryptOptions::default()
        };
        let summary = crypt15::decrypt(key, input, out, &options, &mut |_| {})
            .map_err(|e| Failure::from_lib("cannot decrypt", e))?;
        let mut value = serde_json::to_value(&summary)
            .map_err(|e| Failure::new(ErrorClass::Io, e.to_string()))?;
        value["format"] = json!(summary.header.format);
        Ok(value)
    };
    match sink {
        Some(sink) => sink.write_with(run),
        None => run(&mut io::sink()),
    }
}

/// decrypt(src, dst, *, key, decompress=True, overwrite=False, progress=None)
/// --
///
/// Decrypts a crypt15, crypt14, crypt12 or Coffer backup (recognised from its first bytes).
///
/// `src` and `dst` are paths or binary file objects; `key` is the 64 hex digits, a key
/// file's path (`encrypted_backup.key`, or crypt12/14's `key`) or its bytes. Nothing
/// unauthenticated is left in `dst`: a path appears only once the backup authenticates; a
/// file object is rolled back on failure. An existing `dst` path is refused unless
/// `overwrite`. `decompress=False` keeps crypt15's zlib payload as is. `progress(n)` is
/// called with the bytes read so far. Returns a summary dict.
#[pyfunction]
#[pyo3(signature = (src, dst, *, key, decompress = true, overwrite = false, progress = None))]
fn decrypt(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    dst: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
    decompress: bool,
    overwrite: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let caught = Caught::default();
    let key = keys::backup_key(key).map_err(|f| f.into_pyerr(py))?;
    let source = Source::open(src, &caught).map_err(|f| f.into_pyerr(py))?;
    let sink = Sink::open(dst, overwrite, &caught).map_err(|f| f.into_pyerr(py))?;
    let summary = py
        .detach(|| decrypt_any(source, Some(sink), &key, decompress, progress, &caught))
        .map_err(|f| caught.or(f).into_pyerr(py))?;
    json_to_py(py, &summary)
}

/// verify(src, *, key, progress=None)
/// --
///
/// Authenticates a backup without writing its plaintext anywhere; returns a summary dict,
/// or raises as `decrypt` would.
#[pyfunction]
#[pyo3(signature = (src, *, key, progress = None))]
fn verify(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let caught = Caught::default();
    let key = keys::backup_key(key).map_err(|f| f.into_pyerr(py))?;
    let source = Source::open(src, &caught).map_err(|f| f.into_pyerr(py))?;
    let summary = py
        .detach(|| decrypt_any(source, None, &key, true, progress, &caught))
        .map_err(|f| caught.or(f).into_pyerr(py))?;
    json_to_py(py, &summary)
}

/// The options of `encrypt`, before they are checked against the format.
struct EncryptRequest {
    format: String,
    like: Option<Py<PyAny>>,
    keep_iv: bool,
    iv: Option<Vec<u8>>,
    app_version: Option<String>,
    jid_suffix: Option<String>,
    backup_version: Option<u64>,
    level: Option<u32>,
    stored: bool,
    md5: bool,
    compress: Option<String>,
    zstd_level: Option<i32>,
}

fn value_error(message: impl Into<String>) -> Failure {
    Failure::Python(PyValueError::new_err(message.into()))
}

/// What to write: crypt15 (header bytes and options) or a Coffer file.
enum Plan {
    Crypt15 {
        header: Vec<u8>,
        options: EncryptOptions,
    },
    Coffer {
        header: Header,
        options: WriteOptions,
    },
}

fn iv_from(bytes: Option<Vec<u8>>) -> Result<[u8; crypt15::IV_LEN], Failure> {
    match bytes {
        Some(iv) => iv.try_into().map_err(|iv: Vec<u8>| {
            value_error(format!(
                "iv must be 16 bytes (or 32 hex digits), not {}",
                iv.len()
            ))
        }),
        None => {
            let mut iv = [0u8; crypt15::IV_LEN];
            getrandom_fill(&mut iv)?;
            Ok(iv)
        }
    }
}

fn getrandom_fill(buf: &mut [u8]) -> Result<(), Failure> {
    getrandom::fill(buf).map_err(|e| {
        Failure::new(
            ErrorClass::Io,
            format!("the OS random generator failed: {e}"),
        )
    })
}

impl EncryptRequest {
    fn plan(self, py: Python<'_>, caught: &Caught) -> Result<Plan, Failure> {
        match self.format.as_str() {
            "crypt15" => self.crypt15_plan(py, caught),
            "coffer" => self.coffer_plan(),
            other => Err(value_error(format!(
                "format must be 'crypt15' or 'coffer', not {other:?}"
            ))),
        }
    }

    fn crypt15_plan(self, py: Python<'_>, caught: &Caught) -> Result<Plan, Failure> {
        if let Some((_, name)) = [
            (self.compress.is_some(), "compress"),
            (self.zstd_level.is_some(), "zstd_level"),
        ]
        .iter()
        .find(|(set, _)| *set)
        {
            return Err(value_error(format!(
                "{name} applies to format='coffer' only"
            )));
        }
        if self.stored && self.level.is_some() {
            return Err(value_error("stored=True and level exclude each other"));
        }
        if !self.md5 && !self.stored {
            return Err(value_error(
                "md5=False needs stored=True (older multi-file backups)",
            ));
        }
        let level = self.level.unwrap_or(1);
        if level > 9 {
            return Err(value_error(format!("level must be 0-9, not {level}")));
        }
        if self.keep_iv && self.iv.is_some() {
            return Err(value_error("keep_iv=True and iv exclude each other"));
        }
        let header = match &self.like {
            Some(like) => {
                if let Some((_, name)) = [
                    (self.app_version.is_some(), "app_version"),
                    (self.jid_suffix.is_some(), "jid_suffix"),
                    (self.backup_version.is_some(), "backup_version"),
                ]
                .iter()
                .find(|(set, _)| *set)
                {
                    return Err(value_error(format!(
                        "{name} comes from the `like` backup; pass one or the other"
                    )));
                }
                let source = Source::open(like.bind(py), caught)?;
                let reference = crypt15::read_header(&mut BufReader::new(source)).map_err(|e| {
                    caught.or(Failure::from_lib("cannot read the `like` header", e))
                })?;
                if self.keep_iv {
                    reference.raw
                } else {
                    crypt15::with_new_iv(&reference, &iv_from(self.iv)?)
                        .map_err(|e| Failure::from_lib("like", e))?
                }
            }
            None => {
                if self.keep_iv {
                    return Err(value_error("keep_iv=True needs `like`"));
                }
                let jid = self.jid_suffix.unwrap_or_else(|| "00".into());
                if jid.len() != 2 || !jid.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(value_error("jid_suffix must be two digits"));
                }
                HeaderSpec::new(
                    iv_from(self.iv)?,
                    self.app_version.as_deref().unwrap_or("2.22.5.13"),
                    &jid,
                    self.backup_version.unwrap_or(0),
                )
                .encode()
            }
        };
        let options = EncryptOptions {
            payload: if self.stored {
                PayloadEncoding::Stored
            } else {
                PayloadEncoding::Zlib { level }
            },
            md5: self.md5,
            ..EncryptOptions::default()
        };
        Ok(Plan::Crypt15 { header, options })
    }

    fn coffer_plan(self) -> Result<Plan, Failure> {
        let crypt15_only = [
            (self.like.is_some(), "like"),
            (self.keep_iv, "keep_iv"),
            (self.iv.is_some(), "iv"),
            (self.app_version.is_some(), "app_version"),
            (self.jid_suffix.is_some(), "jid_suffix"),
            (self.backup_version.is_some(), "backup_version"),
            (self.level.is_some(), "level"),
            (self.stored, "stored"),
            (!self.md5, "md5"),
        ];
        if let Some((_, name)) = crypt15_only.iter().find(|(set, _)| *set) {
            return Err(value_error(format!(
                "{name} applies to format='crypt15' only"
            )));
        }
        let compression = match self.compress.as_deref().unwrap_or("zstd") {
            "zstd" => Compression::ZstdSeekable,
            "none" => Compression::None,
            other => {
                return Err(value_error(format!(
                    "compress must be 'zstd' or 'none', not {other:?}"
                )))
            }
        };
        let zstd_level = self.zstd_level.unwrap_or(3);
        if !(1..=19).contains(&zstd_level) {
            return Err(value_error(format!(
                "zstd_level must be 1-19, not {zstd_level}"
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = Header::new(
            compression,
            vec![
                // The header is public, so the time is coarse: UTC midnight.
                (tag::CREATED, MetaValue::U64(now - now % 86_400)),
                (
                    tag::GENERATOR,
                    MetaValue::Text(format!("coffer-python {}", env!("CARGO_PKG_VERSION"))),
                ),
                (tag::CONTENT, MetaValue::U64(0)),
            ],
        );
        Ok(Plan::Coffer {
            header,
            options: WriteOptions {
                zstd_level,
                ..WriteOptions::default()
            },
        })
    }
}

fn encrypt_with(
    plan: Plan,
    root: &RootKey,
    input: impl Read,
    sink: Sink,
) -> Result<serde_json::Value, Failure> {
    sink.write_with(|out| match plan {
        Plan::Crypt15 { header, options } => {
            let summary = crypt15::encrypt(root, &header, input, out, &options, &mut |_| {})
                .map_err(|e| Failure::from_lib("cannot encrypt", e))?;
            Ok(json!({
                "format": "crypt15",
                "payload": options.payload,
                "md5": options.md5,
                "input_bytes": summary.input_bytes,
                "ciphertext_bytes": summary.ciphertext_bytes,
                "output_bytes": summary.output_bytes,
            }))
        }
        Plan::Coffer { header, options } => {
            let compression = header.compression;
            let mut input = BufReader::with_capacity(BUFFER, input);
            let (_, summary) = format::encrypt(root, header, &mut input, out, &options)
                .map_err(|e| Failure::from_lib("cannot encrypt", e))?;
            Ok(json!({
                "format": "coffer",
                "compression": compression,
                "input_bytes": summary.plaintext_len,
                "output_bytes": summary.file_len,
            }))
        }
    })
}

/// The `iv=` argument: 16 bytes, or 32 hex digits.
fn iv_argument(iv: Option<&Bound<'_, PyAny>>) -> Result<Option<Vec<u8>>, Failure> {
    let Some(iv) = iv else { return Ok(None) };
    if let Ok(text) = iv.extract::<String>() {
        return hex::decode(text.trim())
            .map(Some)
            .map_err(|e| value_error(format!("iv is not hex: {e}")));
    }
    iv.extract::<Vec<u8>>()
        .map(Some)
        .map_err(|_| value_error("iv must be 16 bytes or 32 hex digits"))
}

/// encrypt(src, dst, *, key, format="crypt15", overwrite=False, like=None, keep_iv=False,
///         iv=None, app_version=None, jid_suffix=None, backup_version=None, level=None,
///         stored=False, md5=True, compress=None, zstd_level=None, progress=None)
/// --
///
/// Encrypts `src` into a crypt15 backup WhatsApp restores (`format="crypt15"`) or a Coffer
/// file (`format="coffer"`), under the 64-digit key.
///
/// crypt15: the header is copied from the backup `like` (a new random IV unless `keep_iv`,
/// which reproduces `like` byte for byte from its own plaintext and must never be used for
/// other plaintext), or built from `app_version` (default "2.22.5.13"), `jid_suffix` (the
/// phone number's last two digits, default "00") and `backup_version` (0). The payload is
/// zlib at `level` (default 1, as WhatsApp writes), or `stored`; `md5=False` (only with
/// `stored`) omits the MD5 trailer. Coffer: `compress` "zstd" (default) or "none",
/// `zstd_level` 1-19 (default 3). `dst` appears only when complete. Returns a summary dict.
#[pyfunction]
#[pyo3(signature = (
    src, dst, *, key, format = "crypt15", overwrite = false, like = None, keep_iv = false,
    iv = None, app_version = None, jid_suffix = None, backup_version = None, level = None,
    stored = false, md5 = true, compress = None, zstd_level = None, progress = None
))]
#[allow(clippy::too_many_arguments)]
fn encrypt(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    dst: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
    format: &str,
    overwrite: bool,
    like: Option<Py<PyAny>>,
    keep_iv: bool,
    iv: Option<&Bound<'_, PyAny>>,
    app_version: Option<String>,
    jid_suffix: Option<String>,
    backup_version: Option<u64>,
    level: Option<u32>,
    stored: bool,
    md5: bool,
    compress: Option<String>,
    zstd_level: Option<i32>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let caught = Caught::default();
    let prepared = (|| {
        let root = keys::root_key(key)?;
        let request = EncryptRequest {
            format: format.to_owned(),
            like,
            keep_iv,
            iv: iv_argument(iv)?,
            app_version,
            jid_suffix,
            backup_version,
            level,
            stored,
            md5,
            compress,
            zstd_level,
        };
        let plan = request.plan(py, &caught)?;
        let source = Source::open(src, &caught)?;
        let sink = Sink::open(dst, overwrite, &caught)?;
        Ok((root, plan, source, sink))
    })();
    let (root, plan, source, sink) = prepared.map_err(|f: Failure| f.into_pyerr(py))?;
    let summary = py
        .detach(|| {
            let input = Progress::new(source, progress, &caught);
            encrypt_with(plan, &root, input, sink)
        })
        .map_err(|f| caught.or(f).into_pyerr(py))?;
    json_to_py(py, &summary)
}

/// inspect(src)
/// --
///
/// What a backup is, without the key: its format and public header (a dict). A Coffer
/// header whose check fails is still shown as far as it parses, with `check_ok` False.
#[pyfunction]
fn inspect(py: Python<'_>, src: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let caught = Caught::default();
    let run = || -> Result<serde_json::Value, Failure> {
        let source = Source::open(src, &caught)?;
        let size = source.size();
        let (head, mut input) = source
            .peek(MAGIC_LEN)
            .map_err(|e| caught.or(io_failure("cannot read the backup")(e)))?;
        if format::looks_like_coffer(&head) {
            let file_len = size.unwrap_or(head.len() as u64);
            let info = format::inspect(&mut input, file_len)
                .map_err(|e| caught.or(Failure::from_lib("not a readable Coffer file", e)))?;
            let metadata: serde_json::Map<String, serde_json::Value> = info
                .header
                .metadata
                .iter()
                .map(|(t, v)| {
                    let name = match *t {
                        tag::CREATED => "created".to_string(),
                        tag::GENERATOR => "generator".to_string(),
                        tag::CONTENT => "content".to_string(),
                        other => format!("{other:#04x}"),
                    };
                    let value = match v {
                        MetaValue::U64(n) => json!(n),
                        MetaValue::Text(text) => json!(text),
                        MetaValue::Bytes(bytes) => json!(hex::encode(bytes)),
                    };
                    (name, value)
                })
                .collect();
            let layout = size.and_then(|s| info.layout(s));
            return Ok(json!({
                "format": "coffer",
                "size": size,
                "header_bytes": info.header_len,
                "check_ok": info.check_ok,
                "key_id": hex::encode(info.header.key_id),
                "compression": info.header.compression,
                "content": info.header.content(),
                "metadata": metadata,
                "chunks": layout.map(|(chunks, _)| chunks),
                "payload_bytes": layout.map(|(_, payload)| payload),
            }));
        }
        let header = crypt15::read_header(&mut BufReader::new(input))
            .map_err(|e| caught.or(Failure::from_lib("not a readable backup", e)))?;
        Ok(json!({
            "format": header.format,
            "size": size,
            "header_bytes": header.len(),
            "header": header,
        }))
    };
    let summary = run().map_err(|f| f.into_pyerr(py))?;
    json_to_py(py, &summary)
}

/// open(src, *, key)
/// --
///
/// A Coffer file as a readable binary stream of its plaintext (`with coffer.open(...) as f`).
/// Each chunk is released only once authenticated; a truncated or reordered file raises at
/// the point where it is found, so read to the end before trusting the whole. crypt15 is
/// one AES-GCM message, authentic only at its end: use `decrypt` for it.
#[pyfunction]
#[pyo3(signature = (src, *, key))]
fn open(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
) -> PyResult<reader::CofferReader> {
    reader::CofferReader::open(py, src, key)
}

/// The `coffer` module.
#[pymodule]
#[pyo3(name = "coffer")]
fn coffer_python(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_function(wrap_pyfunction!(decrypt, module)?)?;
    module.add_function(wrap_pyfunction!(encrypt, module)?)?;
    module.add_function(wrap_pyfunction!(verify, module)?)?;
    module.add_function(wrap_pyfunction!(inspect, module)?)?;
    module.add_function(wrap_pyfunction!(open, module)?)?;
    module.add_class::<reader::CofferReader>()?;
    errors::register(module)?;
    // maturin's package `__init__` star-imports the extension: `__all__` carries the
    // dunder and the exception names through it.
    let mut names: Vec<String> = vec!["__version__".into(), "ERROR_CLASSES".into()];
    for item in module.dict().keys() {
        let name: String = item.extract()?;
        if !name.starts_with('_') && !names.contains(&name) {
            names.push(name);
        }
    }
    module.add("__all__", names)?;
    Ok(())
}
