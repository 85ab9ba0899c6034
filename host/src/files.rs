//! Writing files that readers never see half-written, and keeping two
//! processes from rewriting the same directory's files at once.
//!
//! Run directories, latency tables, checkpoints and exported models are read
//! back by later steps and resumed runs, so a crash or a full disk must leave
//! either the old file or the new one, never a torn mix. This is the one place
//! that does it; its error names the file and what was being done.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file could not be written in place.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot {action}: {cause}")]
pub struct WriteError {
    /// The file, its temporary twin or its directory.
    pub path: PathBuf,
    /// What was being done, e.g. `write`, `rename into place`.
    pub action: &'static str,
    /// Cause (shown in the message, so not also returned as `source()`:
    /// each cause is printed once).
    pub cause: std::io::Error,
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, written and fsynced, renamed over `path`, then the directory
/// fsynced. Creates the directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |action: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| WriteError {
            path,
            action,
            cause: source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(err("create the directory", &dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Hidden, and unique (tempfile draws the name and opens it exclusively),
    // so two writers never share a temporary file and a leftover from a kill
    // is not mistaken for the real one. A dropped temporary file deletes
    // itself, so an error leaves nothing behind.
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // tempfile's default 0600 suits secrets, not results: ask for what
    // `File::create` gives (0666 less the umask) so tables and models stay
    // readable as before.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(&dir)
        .map_err(err("create a temporary file in", &dir))?;
    tmp.write_all(bytes).map_err(err("write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(err("fsync", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| err("rename into place", path)(e.error))?;
    // Persist the rename itself; some filesystems refuse to fsync a
    // directory, which costs only durability across a power cut, not atomicity.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Name of the lock file [`lock_dir`] takes in a directory.
pub const LOCK_FILE: &str = ".padnas.lock";

/// One process's exclusive hold on a directory whose files it rewrites
/// (a run directory, a ground truth's work directory); released when
/// dropped or when the process ends, however it ends (an OS file lock, not
/// a marker file, so a kill leaves nothing stale behind).
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Takes `dir`'s lock (creating `dir`), or fails at once when another
/// process holds it: two writers would each save their own stale copy of a
/// file over the other's results. Not reentrant: a second call from the
/// same process fails too.
pub fn lock_dir(dir: &Path) -> Result<DirLock, WriteError> {
    let path = dir.join(LOCK_FILE);
    let err = |action: &'static str| {
        let path = path.clone();
        move |cause| WriteError {
            path,
            action,
            cause,
        }
    };
    fs::create_dir_all(dir).map_err(err("create the directory of"))?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err("open"))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(err("lock")(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "another padnas process is working in this directory",
        ))),
        Err(fs::TryLockError::Error(e)) => Err(err("lock")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_refuses_a_second_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let held = lock_dir(&run).unwrap();
        let e = lock_dir(&run).unwrap_err();
        assert_eq!(e.action, "lock");
        assert!(e.to_string().contains("another padnas process"), "{e}");
        assert!(e.to_string().contains(LOCK_FILE), "{e}");
        drop(held);
        let _again = lock_dir(&run).unwrap();
    }

    #[test]
    fn replaces_whole_files_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/table.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["table.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            // Readable by others unless the umask says otherwise, as with File::create.
            let plain = dir.path().join("plain");
            fs::File::create(&plain).unwrap();
            let want = fs::metadata(&plain).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, want & 0o777);
        }
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go: the rename fails.
        let path = dir.path().join("taken");
        fs::create_dir_all(path.join("inner")).unwrap();
        let e = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(e.action, "rename into place");
        assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
