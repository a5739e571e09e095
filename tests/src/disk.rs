//! A small tmpfs mounted for one test (root only), to fill a disk on purpose: the
//! filler takes every free byte, removing it gives the room back. Unmounted on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a directory, unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB at `at` (created if needed).
    pub fn mount(at: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs at {}", at.display());
        Tmpfs {
            at: at.to_path_buf(),
        }
    }

    fn filler(&self) -> PathBuf {
        self.at.join("filler")
    }

    /// Writes a file until the disk refuses (ENOSPC, 1 GiB at most); returns the bytes
    /// written.
    pub fn fill(&self) -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .expect("open the filler");
        let block = vec![0xa5u8; 64 * 1024];
        let mut written = 0u64;
        while written < 1 << 30 {
            match f.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        let _ = f.flush();
        written
    }

    /// Removes the filler: the room is back.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}
