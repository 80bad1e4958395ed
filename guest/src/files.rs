//! Files the runner writes: private (0600 or the given mode) and never through a symlink,
//! since the run and secrets directories could hold links planted by an earlier agent.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `O_NOFOLLOW`: opening a symlink fails instead of writing to its target.
fn no_follow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Replaces `path` with a new, empty file created with `mode`.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // `create_new` (O_EXCL) never follows a symlink and fails if someone raced us.
    OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(no_follow()).open(path)
}

/// Replaces `path` with a new private (0600) file, open for writing.
pub fn create_private(path: &Path) -> io::Result<File> {
    create_new(path, 0o600)
}

/// Replaces `path` with a new file holding `contents`, created with `mode`.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = create_new(path, mode)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Opens `path` for appending, creating it 0600.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(0o600).custom_flags(no_follow()).open(path)
}

/// Copies a regular file into a new private file (the log and report into artifacts/).
/// A source that became a symlink is not followed.
pub fn copy_private(from: &Path, to: &Path) -> io::Result<()> {
    let mut contents = Vec::new();
    OpenOptions::new().read(true).custom_flags(no_follow()).open(from)?.read_to_end(&mut contents)?;
    write_new(to, &contents, 0o600)
}

/// Makes `path` a real directory: a symlink or file the agent put in its place is removed
/// first, so nothing the runner writes lands outside the run directory.
pub fn ensure_real_dir(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(path)
}

/// A fresh directory under the system temp dir for one unit test.
#[cfg(test)]
pub fn test_dir(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("agent-runner-unit-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
    }

    #[test]
    fn files_are_private_and_links_are_not_followed() {
        let dir = test_dir("files");
        let target = dir.join("target");
        std::fs::write(&target, "original").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // Appending through a link fails.
        assert!(open_private_append(&link).is_err());
        // Replacing a link replaces the link, not its target.
        write_new(&link, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap_or_default(), "original");
        assert_eq!((std::fs::read_to_string(&link).unwrap_or_default().as_str(), mode(&link)), ("new", 0o600));
        write_new(&dir.join("script"), b"#!/bin/sh\n", 0o700).unwrap();
        assert_eq!(mode(&dir.join("script")), 0o700);
        copy_private(&target, &dir.join("copy")).unwrap();
        assert_eq!(mode(&dir.join("copy")), 0o600);
        std::os::unix::fs::symlink(&target, dir.join("link2")).unwrap();
        assert!(copy_private(&dir.join("link2"), &dir.join("copy2")).is_err(), "a linked source is not read");
        // A link where a directory should be is replaced by a real directory.
        ensure_real_dir(&dir.join("link2")).unwrap();
        assert!(std::fs::symlink_metadata(dir.join("link2")).is_ok_and(|m| m.is_dir()));
        assert_eq!(std::fs::read_to_string(&target).unwrap_or_default(), "original");
        let _ = std::fs::remove_dir_all(dir);
    }
}
