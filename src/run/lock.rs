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
            return Err(Error::Run(locked_message(dir, read_pid(&mut file))));
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

/// What to tell the user when `dir` is locked by `holder`: who holds it and what to do.
fn locked_message(dir: &Path, holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!(
            "run directory {} is locked by PID {pid} (another `runner apply` is using it); wait \
             for it to finish, or stop it (`kill {pid}`) and run `runner apply --resume {}` \
             again: the lock is released as soon as that process exits",
            dir.display(),
            dir.display()
        ),
        None => format!(
            "run directory {} is locked by another process (its PID is not recorded in {}); \
             wait for it to finish, or stop it and resume again",
            dir.display(),
            dir.join(LOCK_FILE).display()
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_told_the_pid_and_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(d.path()).unwrap();
        let pid = std::process::id();
        let err = RunLock::acquire(d.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("locked by PID {pid}")), "{err}");
        assert!(err.contains(&format!("kill {pid}")), "{err}");
        assert!(err.contains("--resume"), "{err}");
        drop(first);
        // Released: the next one takes it, over the PID left in the file.
        assert_eq!(holder_pid(d.path()), Some(pid));
        let _again = RunLock::acquire(d.path()).unwrap();
    }

    #[test]
    fn stale_pid_without_a_lock_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(LOCK_FILE), "999999999\n").unwrap();
        let _l = RunLock::acquire(d.path()).unwrap();
        assert_eq!(holder_pid(d.path()), Some(std::process::id()));
    }
}
