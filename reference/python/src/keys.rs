//! The `key=` argument: the 64 hex digits, a key file's path, or a key file's bytes.

use crate::errors::Failure;
use crate::streams::as_path;
use coffer_format::key::{BackupKey, RootKey};
use coffer_format::ErrorClass;
use pyo3::prelude::*;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// Largest key file read (the biggest real one is 158 bytes).
const MAX_KEY_FILE: u64 = 4096;

fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let io = |what: &str, e: std::io::Error| {
        Failure::new(
            ErrorClass::Io,
            format!("cannot {what} key file {}: {e}", path.display()),
        )
    };
    let file = std::fs::File::open(path).map_err(|e| io("open", e))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io("read", e))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(Failure::new(
            ErrorClass::Malformed,
            format!(
                "{} is larger than any key file ({MAX_KEY_FILE} bytes)",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

/// Any key this package can use: a root key, or a crypt12/14 `key` file's AES key.
///
/// A `str` that names an existing file is that key file; any other `str` must be the 64 hex
/// digits (spaces and dashes allowed). `bytes` are a key file's contents.
pub(crate) fn backup_key(object: &Bound<'_, PyAny>) -> Result<BackupKey, Failure> {
    if let Ok(bytes) = object.cast::<pyo3::types::PyBytes>() {
        return BackupKey::from_file_bytes(bytes.as_bytes())
            .map_err(|e| Failure::from_lib("key bytes", e));
    }
    if object.is_instance_of::<pyo3::types::PyString>() {
        let text = Zeroizing::new(object.extract::<String>().map_err(Failure::Python)?);
        if !Path::new(text.as_str()).is_file() {
            return BackupKey::from_hex(&text).map_err(|e| {
                Failure::from_lib("key (neither an existing key file nor 64 hex digits)", e)
            });
        }
    }
    let Some(path) = as_path(object) else {
        return Err(Failure::Python(pyo3::exceptions::PyTypeError::new_err(
            "key must be the 64 hex digits (str), a key file's path, or a key file's bytes",
        )));
    };
    let bytes = read_key_file(&path)?;
    BackupKey::from_file_bytes(&bytes)
        .map_err(|e| Failure::from_lib(&format!("key file {}", path.display()), e))
}

/// Like [`backup_key`], but only a 64-digit root key will do (crypt15 and Coffer files).
pub(crate) fn root_key(object: &Bound<'_, PyAny>) -> Result<RootKey, Failure> {
    match backup_key(object)? {
        BackupKey::Root(root) => Ok(root),
        BackupKey::Legacy(_) => Err(Failure::new(
            ErrorClass::WrongKey,
            "crypt15 and Coffer files need the 64-digit key or encrypted_backup.key; this is a crypt12/14 key file",
        )),
    }
}
