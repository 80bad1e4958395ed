//! The secrets directory: the cached payload, git credentials and agent settings live here
//! (0700, files 0600) and are wiped when the runner exits.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The payload cache: a restarted runner uses it, since the bootstrap token is single use.
pub const PAYLOAD_CACHE: &str = "bootstrap.json";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets directory {0} is a symlink; refusing to use it")]
    Symlink(PathBuf),
    #[error("secrets directory {0} exists but is not a directory")]
    NotADirectory(PathBuf),
    #[error("secrets directory {path} belongs to uid {owner}, not to the runner (uid {me})")]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("secrets directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

#[derive(Debug)]
pub struct SecretsDir {
    path: PathBuf,
}

impl SecretsDir {
    /// Creates the directory (0700) or checks an existing one: a real directory owned by
    /// the runner, tightened to 0700.
    pub fn open(path: &Path) -> Result<SecretsDir, SecretsError> {
        let io_err = |source| SecretsError::Io { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(e)),
        }
        let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
        if meta.file_type().is_symlink() {
            return Err(SecretsError::Symlink(path.to_path_buf()));
        }
        if !meta.is_dir() {
            return Err(SecretsError::NotADirectory(path.to_path_buf()));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(SecretsError::Owner { path: path.to_path_buf(), owner: meta.uid(), me });
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io_err)?;
        Ok(SecretsDir { path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `name` (0600), replacing any earlier file or link of that name.
    pub fn write(&self, name: &str, contents: &[u8]) -> io::Result<PathBuf> {
        self.write_mode(name, contents, 0o600)
    }

    pub fn write_mode(&self, name: &str, contents: &[u8], mode: u32) -> io::Result<PathBuf> {
        let path = self.file(name);
        crate::files::write_new(&path, contents, mode)?;
        Ok(path)
    }

    /// The cached payload, if a previous run of the runner left one.
    pub fn cached_payload(&self) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.file(PAYLOAD_CACHE)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes everything inside the directory (not the directory itself). Links are
    /// removed, never followed.
    pub fn wipe(&self) -> io::Result<()> {
        // The agent may have swapped the directory for a link: never wipe its target.
        if !std::fs::symlink_metadata(&self.path)?.is_dir() {
            return std::fs::remove_file(&self.path);
        }
        let mut first_error = None;
        for entry in std::fs::read_dir(&self.path)? {
            let path = entry?.path();
            let is_dir = std::fs::symlink_metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
            let removed = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(e) = removed {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Wipes the secrets directory when dropped: on every way out of the run once the payload
/// may be on disk, including early returns and panics.
pub struct WipeOnDrop<'a>(pub &'a SecretsDir);

impl Drop for WipeOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.wipe() {
            eprintln!("agent-runner: could not wipe secrets directory {}: {e}", self.0.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::test_dir;

    #[test]
    fn the_directory_is_private_and_wiped() {
        let dir = test_dir("secrets");
        let path = dir.join("run").join("secrets");
        let secrets = SecretsDir::open(&path).unwrap();
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode, 0o700);
        secrets.write(PAYLOAD_CACHE, b"{}").unwrap();
        assert_eq!(secrets.cached_payload().ok().flatten(), Some(b"{}".to_vec()));
        std::fs::create_dir(path.join("sub")).unwrap();
        let outside = dir.join("outside");
        std::fs::write(&outside, "keep").unwrap();
        std::os::unix::fs::symlink(&outside, path.join("link")).unwrap();
        drop(WipeOnDrop(&secrets));
        assert_eq!(std::fs::read_dir(&path).map(|d| d.count()).ok(), Some(0));
        assert!(outside.exists(), "a link is removed, its target kept");
        assert_eq!(secrets.cached_payload().ok().flatten(), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_symlink_or_a_file_is_refused_and_never_wiped_through() {
        let dir = test_dir("secrets-link");
        let real = dir.join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(SecretsDir::open(&link), Err(SecretsError::Symlink(_))));
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(SecretsDir::open(&file), Err(SecretsError::NotADirectory(_))));

        // Swapped for a link after it was opened: the link goes, its target stays.
        let secrets = SecretsDir::open(&dir.join("swapped")).unwrap();
        std::fs::write(real.join("precious"), "keep").unwrap();
        std::fs::remove_dir(dir.join("swapped")).unwrap();
        std::os::unix::fs::symlink(&real, dir.join("swapped")).unwrap();
        secrets.wipe().unwrap();
        assert!(real.join("precious").exists() && !dir.join("swapped").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
