//! The run directory lock: an OS advisory lock (`flock` / `LockFileEx` through `fs4`) on
//! `runner.lock`, holding the PID of the process that owns the run.
//!
//! The lock, not the file's existence, is what counts: the OS releases it when the process
//! exits, even on a crash, so there are no stale locks to clean up. The file is left in place
//! (removing it would let a second process lock a fresh inode while a third still holds the old).

use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the lock inside a run directory.
pub const LOCK_FILE: &str = "runner.lock";

/// A held lock on a run directory; released when dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Take the lock of run directory `dir` without waiting. Fails with
    /// "run directory X is locked by PID N" when another process (or handle) holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let got =
            fs4::fs_std::FileExt::try_lock_exclusive(&file).map_err(|e| Error::io(&path, e))?;
        if !got {
            let holder = read_pid(&mut file)
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".to_string());
            return Err(Error::Run(format!(
                "run directory {} is locked by PID {holder} (another `runner apply` is using it)",
                dir.display()
            )));
        }
        write_pid(&mut file, std::process::id()).map_err(|e| Error::io(&path, e))?;
        Ok(RunLock { file, path })
    }

    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes it immediate.
        let _ = fs4::fs_std::FileExt::unlock(&self.file);
    }
}

/// The PID recorded in a lock file, if it holds one.
pub fn holder_pid(dir: &Path) -> Option<u32> {
    let mut f = File::open(dir.join(LOCK_FILE)).ok()?;
    read_pid(&mut f)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

fn write_pid(file: &mut File, pid: u32) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{pid}")?;
    file.sync_all()
}
