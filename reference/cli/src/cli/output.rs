//! Output files that appear only when complete, and progress bars.

use super::failure::{CliResult, Failure};
use coffer::ErrorClass;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tempfile::NamedTempFile;

/// A file written beside its final path and renamed into place by [`AtomicOutput::commit`].
/// Dropped without commit, the temporary file is removed and the final path is untouched;
/// on SIGINT, SIGTERM or SIGHUP it is removed before the process exits (128 + the signal),
/// so an interrupted decryption leaves no unauthenticated plaintext behind.
pub(super) struct AtomicOutput {
    path: PathBuf,
    force: bool,
    temp: NamedTempFile,
    /// Dropped after `temp` (fields drop in order): the file is gone, or moved, by then.
    _registered: Registered,
}

/// A temporary output the interrupt handler removes, until this is dropped.
struct Registered(PathBuf);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut partials) = PARTIALS.lock() {
            partials.retain(|p| p != &self.0);
        }
    }
}

/// The temporary outputs of this process that an interrupting signal must remove.
static PARTIALS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

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
                            let _ = std::fs::remove_file(path);
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

impl AtomicOutput {
    /// Refuses an existing `path` unless `force`.
    pub(super) fn create(path: &Path, force: bool) -> CliResult<Self> {
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
        remove_partials_on_interrupt()?;
        if let Ok(mut partials) = PARTIALS.lock() {
            partials.push(temp.path().to_owned());
        }
        let registered = Registered(temp.path().to_owned());
        Ok(AtomicOutput {
            path: path.to_owned(),
            force,
            temp,
            _registered: registered,
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
        self.temp.as_file()
    }

    /// A buffered writer to the temporary file.
    pub(super) fn writer(&self) -> BufWriter<&File> {
        BufWriter::with_capacity(1 << 20, self.temp.as_file())
    }

    /// Makes the file durable and moves it to its final path.
    pub(super) fn commit(self) -> CliResult<()> {
        let target = self.path.display().to_string();
        self.temp
            .as_file()
            .sync_all()
            .map_err(|e| Failure::io(format!("cannot sync {target}"), e))?;
        // `_registered` is dropped after the move, at the end of this function: a signal in
        // between finds nothing left to remove.
        let result = if self.force {
            self.temp.persist(&self.path)
        } else {
            self.temp.persist_noclobber(&self.path)
        };
        result.map_err(|e| Failure::io(format!("cannot move the output to {target}"), e.error))?;
        Ok(())
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
