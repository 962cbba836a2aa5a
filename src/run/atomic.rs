//! Atomic artifact writes: a temp file in the destination's directory, fsync, rename.
//!
//! A reader (or a crash) sees either the old file or the new one, never half of one, and no
//! temp file is left behind on success or on failure (`tempfile` removes it on drop).
//!
//! Directories are removed the same way round ([`remove_dir`]): renamed to a hidden scratch name
//! first, then deleted, so a kill mid-delete never leaves a half-deleted checkpoint under its
//! real name. Names starting with `.` inside a run directory are scratch, never results.

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically (temp file in the same directory + fsync + rename).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Errors name the artifact being written (its temp file is an implementation detail, and
    // is removed on failure); the OS error says why (e.g. "No space left on device").
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir);
    Ok(())
}

/// Write a string atomically.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_bytes(path, text.as_bytes())
}

/// Serialise `value` as pretty JSON (with a trailing newline) and write it atomically.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_text(path, &text)
}

/// Prefix of directories being deleted (see [`remove_dir`]).
pub const TRASH_PREFIX: &str = ".trash-";

/// Remove the directory `path` (no error when it is absent) without ever exposing a partly
/// deleted tree under its name: rename it to a hidden `.trash-…` sibling, then delete that,
/// along with any trash an earlier killed process left in the same parent.
pub fn remove_dir(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let parent = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "dir".into(), |n| n.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let trash = parent.join(format!(
        "{TRASH_PREFIX}{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::rename(path, &trash).map_err(|e| Error::io(path, e))?;
    sync_dir(parent);
    empty_trash(parent)
}

/// Delete every `.trash-*` directory under `parent` (left by [`remove_dir`], possibly by a
/// process killed mid-delete).
pub fn empty_trash(parent: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(TRASH_PREFIX) {
            let p = e.path();
            match std::fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(&p, err)),
            }
        }
    }
    Ok(())
}

/// Make the rename itself durable. Best effort: some file systems refuse to fsync a directory,
/// and the data is already safe in the renamed file.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_dir_leaves_no_partial_tree_and_clears_old_trash() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("checkpoint-3");
        std::fs::create_dir_all(victim.join("sub")).unwrap();
        std::fs::write(victim.join("sub/a.bin"), b"x").unwrap();
        // What a process killed mid-delete leaves behind.
        let stale = root.path().join(format!("{TRASH_PREFIX}checkpoint-1-1-2"));
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("half"), b"y").unwrap();
        remove_dir(&victim).unwrap();
        assert!(!victim.exists());
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        // Absent: not an error.
        remove_dir(&victim).unwrap();
    }
}
