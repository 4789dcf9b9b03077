//! A vault's data directory: one `serve` at a time, and sealed by one backend for good.
//!
//! `DATA/serve.lock` holds an exclusive lock (flock) for as long as a `serve` runs, so a
//! second one on the same directory is refused instead of sharing its SQLite file and
//! counters. `DATA/sealing` records the kind of the backend that sealed the directory's
//! secrets (`soft` or `pkcs11`) on first start; a later start with the other kind is refused
//! with a message that names the right one, before any file is made (a forgotten `--hsm`
//! once created a stray software master key beside HSM-sealed data).

use super::failure::{CliResult, Failure};
use super::secrets;
use coffer::hsm::uri::HsmLocation;
use coffer::ErrorClass;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Held while a `serve` runs on the directory; the lock goes with the process.
pub(super) struct Claimed {
    _lock: File,
}

/// Creates `data` (0700) if needed, takes its lock, and checks (or records) that `location`
/// is the kind of backend that sealed it.
pub(super) fn claim(data: &Path, location: &HsmLocation) -> CliResult<Claimed> {
    secrets::private_dir(data)?;
    let lock = lock(data)?;
    check_sealing(data, location)?;
    Ok(Claimed { _lock: lock })
}

fn lock(data: &Path) -> CliResult<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data.join("serve.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Failure::io(format!("cannot open {}", path.display()), e))?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(Failure::new(
            ErrorClass::Io,
            format!(
                "another vault serve (pid {}) is using {}; one directory serves one process \
                 (several nodes share an etcd store, each with its own directory)",
                holder.trim(),
                data.display()
            ),
        ));
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| Failure::io(format!("cannot write {}", path.display()), e))?;
    Ok(file)
}

/// The word `DATA/sealing` holds for a backend.
fn kind(location: &HsmLocation) -> &'static str {
    match location {
        HsmLocation::Soft(_) => "soft",
        HsmLocation::Pkcs11(_) => "pkcs11",
    }
}

fn check_sealing(data: &Path, location: &HsmLocation) -> CliResult<()> {
    let path = data.join("sealing");
    let wanted = kind(location);
    let recorded = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.lines().next().unwrap_or_default().trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Failure::io(format!("cannot read {}", path.display()), e)),
    };
    // A directory from before the record: records without a software master key beside
    // them were sealed by a token.
    let recorded = recorded.or_else(|| {
        let has_records = ["vault.db", "realm.db"]
            .iter()
            .any(|db| data.join(db).exists());
        match (has_records, data.join("master.key").exists()) {
            (_, true) => Some("soft".to_owned()),
            (true, false) => Some("pkcs11".to_owned()),
            (false, false) => None,
        }
    });
    match recorded.as_deref() {
        None => secrets::write_private(&path, format!("{wanted}\n").as_bytes()),
        Some(r) if r == wanted => {
            if !path.exists() {
                secrets::write_private(&path, format!("{wanted}\n").as_bytes())?;
            }
            Ok(())
        }
        Some("pkcs11") => Err(Failure::new(
            ErrorClass::Unsupported,
            format!(
                "{} is sealed by a PKCS#11 token: pass --hsm 'pkcs11:token=...' (or set \
                 COFFER_VAULT_HSM); nothing was started",
                data.display()
            ),
        )),
        Some("soft") => Err(Failure::new(
            ErrorClass::Unsupported,
            format!(
                "{} is sealed by the software master key ({}): serve it without --hsm, or \
                 move its records to the token first; nothing was started",
                data.display(),
                data.join("master.key").display()
            ),
        )),
        Some(other) => Err(Failure::new(
            ErrorClass::Malformed,
            format!("{}: unknown sealing backend {other:?}", path.display()),
        )),
    }
}
