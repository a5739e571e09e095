//! Files of the state directory: written atomically (temporary file, fsync, rename),
//! so a crash leaves the old file or the new one, never half of one. Blocking calls:
//! async code runs them on the blocking pool.

use std::path::{Path, PathBuf};

/// A file operation that failed, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename) with `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    sonde_cli::blocking::check("writing a state file");
    sonde_cli::files::write_atomic(path, contents, mode).map_err(at(path))
}

/// Creates the state directory (mode 0700) if needed.
pub fn ensure_dir(dir: &Path) -> Result<(), FileError> {
    sonde_cli::blocking::check("creating the state directory");
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(at(dir))
}
