//! Secrets the CLI reads or writes: passwords (a file's first line, or a prompt; never the
//! command line) and files only their owner may read.

use super::failure::{CliResult, Failure};
use coffer::ErrorClass;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// The password: the first line of `file` if given, else asked with `question`.
pub(super) fn password(file: Option<&Path>, question: &str) -> CliResult<Zeroizing<Vec<u8>>> {
    match file {
        Some(path) => read_password_file(path),
        None => prompt(question),
    }
}

fn first_line(text: &str) -> CliResult<Zeroizing<Vec<u8>>> {
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(Failure::new(ErrorClass::Malformed, "the password is empty"));
    }
    Ok(Zeroizing::new(line.as_bytes().to_vec()))
}

fn read_password_file(path: &Path) -> CliResult<Zeroizing<Vec<u8>>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Failure::io(format!("cannot read {}", path.display()), e))?,
    );
    first_line(&text)
}

fn prompt(question: &str) -> CliResult<Zeroizing<Vec<u8>>> {
    let text = Zeroizing::new(
        rpassword::prompt_password(question)
            .map_err(|e| Failure::io("cannot read the password", e))?,
    );
    first_line(&text)
}

/// Refuses a PIN in the process's own arguments (`pin-value=` in an `--hsm` URI): every user
/// of the machine can read them. The same URI from a variable (COFFER_VAULT_HSM) or a
/// configuration file is accepted; `pin-source=file:PATH` and COFFER_PKCS11_PIN are the
/// ways to give the PIN on the command line's behalf.
pub(super) fn none_on_the_command_line() -> CliResult<()> {
    if std::env::args_os().any(|a| a.to_string_lossy().contains("pin-value=")) {
        return Err(Failure::new(
            ErrorClass::Malformed,
            "a PIN on the command line (pin-value=) is visible to every user of this machine \
             (ps, /proc); use pin-source=file:PATH in the URI or set COFFER_PKCS11_PIN",
        ));
    }
    Ok(())
}

/// Asks `question` at the terminal without echo; fails with `otherwise` when standard input
/// is not a terminal (a script must say where the secret is).
pub(super) fn ask_at_terminal(question: &str, otherwise: &str) -> CliResult<Zeroizing<Vec<u8>>> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(ErrorClass::Malformed, otherwise));
    }
    let text = Zeroizing::new(
        rpassword::prompt_password(question)
            .map_err(|e| Failure::io("cannot read from the terminal", e))?,
    );
    Ok(Zeroizing::new(text.trim().as_bytes().to_vec()))
}

/// Writes a file readable only by its owner.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> CliResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::io(format!("cannot create {}", path.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::io(format!("cannot write {}", path.display()), e))
}

/// Creates `dir` (and its parents) with the last component mode 0700; an existing directory
/// that others can enter is kept, with a warning (the operator chose it).
pub(super) fn private_dir(dir: &Path) -> CliResult<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::io(format!("cannot create {}", parent.display()), e))?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(dir)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or(0);
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        dir = %dir.display(),
                        mode = format!("{mode:o}"),
                        "the data directory is open to other users; chmod 700 it"
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(Failure::io(format!("cannot create {}", dir.display()), e)),
    }
}
