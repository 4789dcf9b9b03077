//! Resolving the `--key` argument: 64 hex digits, a key file, or `-` for standard input.

use super::failure::{CliResult, Failure};
use coffer::key::{BackupKey, RootKey};
use coffer::ErrorClass;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// Largest key file read (the biggest real one is 158 bytes).
const MAX_KEY_FILE: u64 = 4096;

fn looks_like_hex(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ' ' || c == '-')
}

/// Reads a key file with a size limit.
pub(super) fn read_key_file(path: &Path) -> CliResult<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::io(format!("cannot open key file {}", path.display()), e))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::io(format!("cannot read key file {}", path.display()), e))?;
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

/// Turns the `--key` value into a key.
pub(super) fn resolve(spec: &str) -> CliResult<BackupKey> {
    if spec == "-" {
        let mut bytes = Zeroizing::new(Vec::new());
        std::io::stdin()
            .take(MAX_KEY_FILE)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::io("cannot read the key from standard input", e))?;
        return BackupKey::from_file_bytes(&bytes)
            .map_err(|e| Failure::from_lib("key from standard input", e));
    }
    let path = Path::new(spec);
    if !path.exists() {
        if looks_like_hex(spec) || !spec.contains(['/', '.']) {
            return BackupKey::from_hex(spec).map_err(|e| Failure::from_lib("--key", e));
        }
        return Err(Failure::new(
            ErrorClass::Io,
            format!("no key file at {spec} (and it is not 64 hex digits)"),
        ));
    }
    let bytes = read_key_file(Path::new(spec))?;
    BackupKey::from_file_bytes(&bytes)
        .map_err(|e| Failure::from_lib(&format!("key file {spec}"), e))
}

/// Like [`resolve`], but only a 64-digit root key will do (crypt15 encryption).
pub(super) fn resolve_root(spec: &str) -> CliResult<RootKey> {
    match resolve(spec)? {
        BackupKey::Root(root) => Ok(root),
        BackupKey::Legacy(_) => Err(Failure::new(
            ErrorClass::WrongKey,
            "crypt15 and Coffer files need the 64-digit key or encrypted_backup.key; this is a crypt12/14 key file",
        )),
    }
}
