//! Resolving the `--key` argument: a key file, or `-` for standard input; the 64 digits
//! themselves only from `COFFER_KEY` or a prompt, never from the command line, where every
//! user of the machine can read them (`ps`, `/proc/PID/cmdline`).

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

/// Why 64 digits on the command line are refused, and what to do instead.
const NOT_ON_THE_COMMAND_LINE: &str = "a key on the command line is visible to every user \
    of this machine (ps, /proc); put the 64 digits in COFFER_KEY, or in a file (--key FILE), \
    or pass --key - and type or pipe them on standard input";

/// Turns the `--key` value into a key: a file or `-` when given; otherwise `COFFER_KEY` (64
/// digits or a file), otherwise a prompt at the terminal.
pub(super) fn resolve(arg: Option<&str>) -> CliResult<BackupKey> {
    match arg {
        Some(spec) => {
            if spec != "-" && !Path::new(spec).exists() && looks_like_hex(spec) {
                return Err(Failure::new(ErrorClass::Malformed, NOT_ON_THE_COMMAND_LINE));
            }
            resolve_spec(spec)
        }
        None => match std::env::var("COFFER_KEY") {
            Ok(spec) => resolve_spec(&Zeroizing::new(spec)),
            Err(_) => {
                let typed = super::secrets::ask_at_terminal(
                    "backup key (64 hex digits): ",
                    "no key: pass --key FILE, --key - (standard input), or set COFFER_KEY",
                )?;
                let text = Zeroizing::new(String::from_utf8_lossy(&typed).into_owned());
                BackupKey::from_hex(text.trim()).map_err(|e| Failure::from_lib("the key", e))
            }
        },
    }
}

/// A key named by `spec`: `-` (standard input), a file, or 64 hex digits.
fn resolve_spec(spec: &str) -> CliResult<BackupKey> {
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
pub(super) fn resolve_root(arg: Option<&str>) -> CliResult<RootKey> {
    match resolve(arg)? {
        BackupKey::Root(root) => Ok(root),
        BackupKey::Legacy(_) => Err(Failure::new(
            ErrorClass::WrongKey,
            "crypt15 and Coffer files need the 64-digit key or encrypted_backup.key; this is a crypt12/14 key file",
        )),
    }
}
