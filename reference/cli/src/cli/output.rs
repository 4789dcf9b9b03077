//! Output files that appear only when complete, and progress bars.

use super::failure::{CliResult, Failure};
use coffer::ErrorClass;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tempfile::NamedTempFile;

/// Where an output goes: a file that appears only once complete, or standard output.
enum Target {
    /// An unnamed file (O_TMPFILE) in the output's directory, given its name by
    /// [`AtomicOutput::commit`]: a crash, SIGKILL included, leaves nothing behind.
    Unnamed { file: File, dir: PathBuf },
    /// A hidden named file beside the output (filesystems without O_TMPFILE), removed on
    /// drop and by the interrupt handler.
    Named {
        temp: NamedTempFile,
        /// Dropped after `temp`: the file is gone, or moved, by then.
        _registered: Registered,
    },
    /// `-o -`: an unnamed file in the temporary directory, copied to standard output only
    /// once complete, so that nothing unauthenticated ever reaches a pipe.
    Stdout(File),
}

/// An output that appears complete or not at all: at `-o PATH` by [`AtomicOutput::commit`],
/// or on standard output for `-o -`. Dropped without commit, nothing is left; on SIGINT,
/// SIGTERM or SIGHUP the process exits (128 + the signal) leaving nothing; and where the
/// filesystem supports O_TMPFILE (ext4, xfs, btrfs, tmpfs) the file has no name until commit,
/// so not even a crash leaves unauthenticated plaintext behind.
pub(super) struct AtomicOutput {
    path: PathBuf,
    force: bool,
    target: Target,
}

/// A temporary output the interrupt handler removes, until this is dropped.
struct Registered(PathBuf);

/// Registers `path` (a file or a directory) for removal on an interrupting signal, until the
/// returned guard is dropped.
pub(super) fn register_partial(path: &Path) -> CliResult<impl Drop> {
    Registered::new(path)
}

impl Registered {
    fn new(path: &Path) -> CliResult<Self> {
        remove_partials_on_interrupt()?;
        if let Ok(mut partials) = PARTIALS.lock() {
            partials.push(path.to_owned());
        }
        Ok(Registered(path.to_owned()))
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut partials) = PARTIALS.lock() {
            partials.retain(|p| p != &self.0);
        }
    }
}

/// The temporary outputs of this process that an interrupting signal must remove.
static PARTIALS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Whether this run's result goes to stderr, because its output is standard output.
static REPORT_TO_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sends this run's report to stderr: its standard output carries the command's output.
pub(super) fn report_on_stderr() {
    REPORT_TO_STDERR.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// True when the command's output went to standard output: its report goes to stderr then.
pub(super) fn report_to_stderr() -> bool {
    REPORT_TO_STDERR.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs, once, the handler that removes [`PARTIALS`] and exits on SIGINT, SIGTERM or
/// SIGHUP. The signals are registered before this returns, so none is missed once an output
/// exists; the waiting happens on a thread of its own.
fn remove_partials_on_interrupt() -> CliResult<()> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            use tokio::signal::unix::{signal, SignalKind};
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| e.to_string())?;
            let signals = runtime.block_on(async {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ))
            });
            let (mut int, mut term, mut hup) = signals.map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("interrupt".into())
                .spawn(move || {
                    let code = runtime.block_on(async {
                        tokio::select! {
                            _ = int.recv() => 130,
                            _ = term.recv() => 143,
                            _ = hup.recv() => 129,
                        }
                    });
                    if let Ok(partials) = PARTIALS.lock() {
                        for path in partials.iter() {
                            if std::fs::remove_file(path).is_err() {
                                let _ = std::fs::remove_dir_all(path);
                            }
                        }
                    }
                    std::process::exit(code);
                })
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|why| Failure::new(ErrorClass::Io, format!("signal handler: {why}")))
}

/// What a backup's output is called when `-o` names a directory.
#[derive(Debug, Clone, Copy)]
pub(super) enum Naming {
    /// The input's name without its backup extension (`msgstore.db.crypt15` → `msgstore.db`).
    Decrypted,
    /// The input's name with this extension added (`msgstore.db` → `msgstore.db.crypt15`).
    Encrypted(&'static str),
}

/// Backup extensions a decrypted output's name drops.
const BACKUP_EXTENSIONS: [&str; 4] = ["crypt15", "crypt14", "crypt12", "coffer"];

/// The output path `-o OUTPUT` means for `input`: `-` (standard output) as is, an existing
/// directory as `DIR/<name>` by `naming`, anything else as given. Decided before any work,
/// so that a refusal costs nothing (no vault guess, no decryption).
pub(super) fn resolve(input: &Path, output: &Path, naming: Naming) -> CliResult<PathBuf> {
    if output == Path::new("-") || !output.is_dir() {
        return Ok(output.to_owned());
    }
    let file_name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match naming {
        Naming::Decrypted => Path::new(&file_name)
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| BACKUP_EXTENSIONS.contains(e))
            .and_then(|_| Path::new(&file_name).file_stem())
            .map(|s| s.to_string_lossy().into_owned()),
        Naming::Encrypted(extension) => Some(file_name.clone())
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .map(|n| format!("{n}.{extension}")),
    };
    match name.filter(|n| !n.is_empty()) {
        Some(name) => Ok(output.join(name)),
        None => Err(Failure::usage(format!(
            "{} is a directory and no file name follows from {}; give -o {}/NAME",
            output.display(),
            input.display(),
            output.display()
        ))),
    }
}

/// An unnamed file in `dir` (O_TMPFILE), or None where the filesystem or kernel has none (or
/// /proc, needed to name it later, is not mounted).
fn unnamed_in(dir: &Path) -> Option<File> {
    use rustix::fs::{openat, Mode, OFlags, CWD};
    if !Path::new("/proc/self/fd").is_dir() {
        return None;
    }
    openat(
        CWD,
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .ok()
    .map(File::from)
}

/// Gives the unnamed `file` the name `path` (fails if `path` exists).
fn link_unnamed(file: &File, path: &Path) -> std::io::Result<()> {
    use rustix::fs::{linkat, AtFlags, CWD};
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    linkat(CWD, proc_path.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW).map_err(Into::into)
}

impl AtomicOutput {
    /// Refuses an existing `path` unless `force`; `-` is standard output.
    pub(super) fn create(path: &Path, force: bool) -> CliResult<Self> {
        if path == Path::new("-") {
            let file = tempfile::tempfile().map_err(|e| {
                Failure::io(
                    format!(
                        "cannot create a temporary file in {} (for -o -; set TMPDIR)",
                        std::env::temp_dir().display()
                    ),
                    e,
                )
            })?;
            return Ok(AtomicOutput {
                path: path.to_owned(),
                force,
                target: Target::Stdout(file),
            });
        }
        if path.is_dir() {
            return Err(Failure::usage(format!(
                "{} is a directory; a file's output must be a file",
                path.display()
            )));
        }
        if path.exists() && !force {
            return Err(Failure::new(
                ErrorClass::Io,
                format!(
                    "{} already exists; pass --force to replace it",
                    path.display()
                ),
            ));
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if let Some(file) = unnamed_in(dir) {
            return Ok(AtomicOutput {
                path: path.to_owned(),
                force,
                target: Target::Unnamed {
                    file,
                    dir: dir.to_owned(),
                },
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| {
                Failure::io(
                    format!("cannot create a temporary file in {}", dir.display()),
                    e,
                )
            })?;
        let registered = Registered::new(temp.path())?;
        Ok(AtomicOutput {
            path: path.to_owned(),
            force,
            target: Target::Named {
                temp,
                _registered: registered,
            },
        })
    }

    /// [`AtomicOutput::create`] for the output of reading `input`, refusing first an output
    /// that is `input` itself under any name (with `--force` it would replace the backup
    /// with what it decrypts to).
    pub(super) fn create_for(input: &Path, path: &Path, force: bool) -> CliResult<Self> {
        if same_file(input, path) {
            return Err(Failure::new(
                ErrorClass::Io,
                format!(
                    "{} is the input itself; write the output to another file",
                    path.display()
                ),
            ));
        }
        Self::create(path, force)
    }

    /// The temporary file itself (for positional writes).
    pub(super) fn file(&self) -> &File {
        match &self.target {
            Target::Unnamed { file, .. } | Target::Stdout(file) => file,
            Target::Named { temp, .. } => temp.as_file(),
        }
    }

    /// A buffered writer to the temporary file.
    pub(super) fn writer(&self) -> BufWriter<&File> {
        BufWriter::with_capacity(1 << 20, self.file())
    }

    /// Makes the file durable and moves it to its final path (for `-o -`: copies it to
    /// standard output).
    pub(super) fn commit(self) -> CliResult<()> {
        let target = self.path.display().to_string();
        match self.target {
            Target::Stdout(file) => {
                report_on_stderr();
                let mut file = file;
                std::io::Seek::rewind(&mut file)
                    .and_then(|_| std::io::copy(&mut file, &mut std::io::stdout().lock()))
                    .and_then(|_| std::io::stdout().flush())
                    .map_err(|e| Failure::io("cannot write to standard output", e))?;
                Ok(())
            }
            Target::Unnamed { file, dir } => {
                file.sync_all()
                    .map_err(|e| Failure::io(format!("cannot sync {target}"), e))?;
                if !self.force {
                    return link_unnamed(&file, &self.path)
                        .map_err(|e| Failure::io(format!("cannot create {target}"), e));
                }
                // Replacing: a name of its own first, then a rename over the old file (the
                // interrupt handler knows the name for the moment it exists).
                let name = self
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut suffix = [0u8; 8];
                getrandom::fill(&mut suffix)
                    .map_err(|e| Failure::new(ErrorClass::Io, format!("randomness: {e}")))?;
                let staged = dir.join(format!(".{name}.{}.partial", hex::encode(suffix)));
                let registered = Registered::new(&staged)?;
                link_unnamed(&file, &staged)
                    .map_err(|e| Failure::io(format!("cannot create {}", staged.display()), e))?;
                let renamed = std::fs::rename(&staged, &self.path);
                if renamed.is_err() {
                    let _ = std::fs::remove_file(&staged);
                }
                drop(registered);
                renamed.map_err(|e| Failure::io(format!("cannot move the output to {target}"), e))
            }
            Target::Named { temp, _registered } => {
                temp.as_file()
                    .sync_all()
                    .map_err(|e| Failure::io(format!("cannot sync {target}"), e))?;
                // `_registered` is dropped after the move, at the end of this arm: a signal
                // in between finds nothing left to remove.
                let result = if self.force {
                    temp.persist(&self.path)
                } else {
                    temp.persist_noclobber(&self.path)
                };
                result.map_err(|e| {
                    Failure::io(format!("cannot move the output to {target}"), e.error)
                })?;
                Ok(())
            }
        }
    }
}

/// Whether `a` and `b` name the same existing file (device and inode), whatever the path.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A byte progress bar on stderr, drawn only when stderr is a terminal.
pub(super) fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Unix seconds as ISO 8601 (RFC 3339, UTC, whole seconds): `2026-12-07T00:00:00Z`.
pub(super) fn iso8601(unix_seconds: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A byte counter on stderr without a total (drawn only when stderr is a terminal).
pub(super) fn counter_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} {bytes} {binary_bytes_per_sec}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// Flushes a writer, mapping the error.
pub(super) fn flush(mut writer: impl Write, what: &Path) -> CliResult<()> {
    writer
        .flush()
        .map_err(|e| Failure::io(format!("cannot write {}", what.display()), e))
}

/// The serde name of a unit enum value (the same word the JSON output uses).
pub(super) fn name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}
