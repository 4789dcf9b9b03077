//! Opening the files a command reads, with messages that name them.

use super::failure::{CliResult, Failure};
use std::fs::File;
use std::path::Path;

/// Opens `path` for reading; returns the file and its size.
pub(super) fn open_input(path: &Path) -> CliResult<(File, u64)> {
    let file =
        File::open(path).map_err(|e| Failure::io(format!("cannot open {}", path.display()), e))?;
    let size = file
        .metadata()
        .map_err(|e| Failure::io(format!("cannot stat {}", path.display()), e))?
        .len();
    Ok((file, size))
}
