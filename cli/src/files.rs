//! Files written whole or not at all: a temporary file beside the target, fsync,
//! rename over the target, fsync of the directory. A crash at any point leaves the old
//! file (or none) or the new one, never part of one. Blocking calls.

use std::path::Path;

/// Writes `contents` to `path` atomically, readable as `mode` says. The caller names
/// the file in its error.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable once the directory is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("sonde-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key.pem");
        // A temporary left by a process killed mid-write is no obstacle.
        std::fs::write(path.with_extension("tmp"), b"half a ke").expect("stale tmp");
        write_atomic(&path, b"first", 0o600).expect("write");
        write_atomic(&path, b"second", 0o600).expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        assert!(!path.with_extension("tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
