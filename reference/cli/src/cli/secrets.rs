//! Secrets the CLI reads or writes: passwords (a file's first line, or a prompt; never the
//! command line) and files only their owner may read.

use super::failure::{CliResult, Failure};
use coffer::ErrorClass;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// What a script without a terminal is told when a password would be prompted for.
const NO_TERMINAL: &str = "no terminal to ask the password at: give it with --password-file FILE \
     (its first line), or --password-file - to read it from standard input";

/// The password: the first line of `file` (`-`: standard input) if given, else asked at the
/// terminal with `question`.
pub(super) fn password(file: Option<&Path>, question: &str) -> CliResult<Zeroizing<Vec<u8>>> {
    match file {
        Some(path) => read_password_file(path),
        None => prompt(question),
    }
}

/// A new password, the one a key will be kept behind: from `file` as [`password`] reads it,
/// else asked twice at the terminal (a typo would lose the key for good). Refused when
/// zxcvbn estimates it weak (score below 3 of 4, with `user` counted as known to a guesser)
/// unless `allow_weak`: whoever takes a vault's state can guess it offline (spec/vault.md
/// §7), so the password is the last line of defence.
pub(super) fn new_password(
    file: Option<&Path>,
    question: &str,
    user: &str,
    allow_weak: bool,
) -> CliResult<Zeroizing<Vec<u8>>> {
    let password = match file {
        Some(path) => read_password_file(path)?,
        None => {
            let first = prompt(question)?;
            let again = prompt("the same password again: ")?;
            if !bool::from(subtle::ConstantTimeEq::ct_eq(&first[..], &again[..])) {
                return Err(Failure::new(
                    ErrorClass::Malformed,
                    "the two passwords differ; nothing was changed",
                ));
            }
            first
        }
    };
    if !allow_weak {
        refuse_weak(&password, user)?;
    }
    Ok(password)
}

/// The zxcvbn score a new password needs (of 0 to 4): 3 is "safely unguessable: moderate
/// protection from an offline slow-hash scenario", which is what Argon2id over a vault's
/// stolen state is.
const MIN_SCORE: u8 = 3;

fn refuse_weak(password: &[u8], user: &str) -> CliResult<()> {
    let text = Zeroizing::new(String::from_utf8_lossy(password).into_owned());
    let estimate = zxcvbn::zxcvbn(&text, &[user]);
    let score = u8::from(estimate.score());
    if score >= MIN_SCORE {
        return Ok(());
    }
    let advice = estimate
        .feedback()
        .map(|f| {
            f.warning()
                .map(|w| format!(" {w}."))
                .into_iter()
                .chain(f.suggestions().iter().map(|s| format!(" {s}")))
                .collect::<String>()
        })
        .unwrap_or_default();
    Err(Failure::new(
        ErrorClass::Malformed,
        format!(
            "this password is too easy to guess (zxcvbn score {score} of 4; {MIN_SCORE} is needed, \
             about {} guesses).{advice} Whoever takes the vault's state could try it offline; \
             choose a longer one, or pass --allow-weak-password",
            estimate.guesses()
        ),
    ))
}

fn first_line(text: &str) -> CliResult<Zeroizing<Vec<u8>>> {
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(Failure::new(ErrorClass::Malformed, "the password is empty"));
    }
    Ok(Zeroizing::new(line.as_bytes().to_vec()))
}

fn read_password_file(path: &Path) -> CliResult<Zeroizing<Vec<u8>>> {
    let mut text = Zeroizing::new(String::new());
    let read = if path == Path::new("-") {
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
    };
    read.map_err(|e| {
        Failure::io(
            format!("cannot read the password from {}", path.display()),
            e,
        )
    })?;
    first_line(&text)
}

/// Asks at the controlling terminal (rpassword opens /dev/tty, so standard input may be a
/// pipe); a process without one is told how else to give the password.
fn prompt(question: &str) -> CliResult<Zeroizing<Vec<u8>>> {
    let text = Zeroizing::new(
        rpassword::prompt_password(question)
            .map_err(|e| Failure::new(ErrorClass::Io, format!("{NO_TERMINAL} ({e})")))?,
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

/// Checks, before anything is asked of a vault, that a new file can be made at `path`: it
/// does not exist, and its directory takes new files.
pub(super) fn writable_new(path: &Path) -> CliResult<()> {
    if path.exists() {
        return Err(Failure::new(
            ErrorClass::Io,
            format!("{} already exists; choose another file", path.display()),
        ));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    tempfile::tempfile_in(dir)
        .map(drop)
        .map_err(|e| Failure::io(format!("cannot create files in {}", dir.display()), e))
}

/// A deletion goes ahead only when the user said so: `--yes`, or the user id typed at the
/// terminal (standard input must be one). Otherwise it is refused (exit 2), before the vault
/// is asked anything.
pub(super) fn confirm_deletion(user: &str, yes: bool) -> CliResult<()> {
    use std::io::{BufRead, IsTerminal};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "a deletion needs confirmation: pass --yes, or run it at a terminal and type the user id",
        ));
    }
    eprint!(
        "this deletes {user}'s key for good: every backup made with it is lost.\n\
         type the user id ({user}) to go on: "
    );
    let mut typed = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut typed)
        .map_err(|e| Failure::io("cannot read the confirmation", e))?;
    if typed.trim() != user {
        return Err(Failure::usage(
            "the user id typed does not match; nothing was deleted",
        ));
    }
    Ok(())
}

/// Refuses two secrets read from standard input at once (`--key -` with `--password-file -`,
/// or both passwords of a change from `-`): the first would take everything.
pub(super) fn one_reader_of_stdin(a: Option<&str>, b: Option<&Path>) -> CliResult<()> {
    if a == Some("-") && b == Some(Path::new("-")) {
        return Err(Failure::usage(
            "only one secret can come from standard input (-); give the other in a file",
        ));
    }
    Ok(())
}
