//! Writing a private (0600) file so that readers see either the old file or the complete new
//! one, never a partial key or bundle: temp file in the same directory, fsync, then rename (or
//! hard-link, when an existing file must not be replaced), then fsync the directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::BundleError;

/// Whether an existing file at the destination may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    Replace,
    Refuse,
}

/// Writes `bytes` to `path` with mode 0600, atomically.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8], existing: Existing) -> Result<(), BundleError> {
    write_private_file_checked(path, bytes, existing, &|_| Ok(()))
}

/// [`write_private_file`], with `check` run on the complete, synced temp file before it takes
/// the old file's place: a new bundle that does not read back never replaces the old one.
pub(crate) fn write_private_file_checked(
    path: &Path,
    bytes: &[u8],
    existing: Existing,
    check: &dyn Fn(&Path) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(file_name) = path.file_name() else {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path");
        return Err(BundleError::io("writing", path, source));
    };
    if existing == Existing::Refuse && path.symlink_metadata().is_ok() {
        let source = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite an existing file");
        return Err(BundleError::io("writing", path, source));
    }
    let temp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), unique_suffix()));
    let result = write_temp(&temp, bytes).and_then(|()| check(&temp)).and_then(|()| publish(&temp, path, existing));
    // After a rename the temp name is gone; after a link or a failure it must not linger.
    let _ = std::fs::remove_file(&temp);
    result?;
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| BundleError::io("syncing directory", &dir, e))
}

/// Removes the temp files a crashed writer of `path` left behind (`.NAME.tmp-*`). Only safe
/// while no other writer of `path` runs: callers hold the secrets directory's lock.
pub(crate) fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else { return };
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn write_temp(temp: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(|e| BundleError::io("creating", temp, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| BundleError::io("writing", temp, e))
}

fn publish(temp: &Path, path: &Path, existing: Existing) -> Result<(), BundleError> {
    match existing {
        Existing::Replace => std::fs::rename(temp, path).map_err(|e| BundleError::io("renaming into place", path, e)),
        // link(2) fails if `path` exists, so a file created since the check above survives.
        Existing::Refuse => std::fs::hard_link(temp, path).map_err(|e| BundleError::io("linking into place", path, e)),
    }
}

/// Unique within this process (counter) and across processes (pid); the clock part keeps a
/// temp file left by a crashed process with a reused pid from blocking the next write.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}
