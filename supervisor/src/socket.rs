//! The control socket's life: refuse to steal a live daemon's socket, remove a stale one,
//! bind with mode 0660 (group `agentlab` when it exists), delete it at exit.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another agentlabd is already serving {}: stop it first (`systemctl stop agentlabd`)", .0.display())]
    InUse(PathBuf),
    #[error("{} exists and is not a socket: move it away or set socket_path", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot prepare control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Removes the socket file when dropped (normal exit and error paths alike).
pub struct SocketGuard {
    path: PathBuf,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove control socket");
        }
    }
}

pub fn bind(path: &Path) -> Result<(UnixListener, SocketGuard), SocketError> {
    let io_err = |source| SocketError::Io { path: path.to_path_buf(), source };
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(SocketError::NotASocket(path.to_path_buf()));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse(path.to_path_buf()));
            }
            tracing::info!(path = %path.display(), "removing stale control socket");
            std::fs::remove_file(path).map_err(io_err)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    if let Some(parent) = path.parent() {
        create_private_dir(parent).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let guard = SocketGuard { path: path.to_path_buf() };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io_err)?;
    give_to_agentlab_group(path);
    Ok((listener, guard))
}

/// Creates a directory (and parents) as 0750 if missing; leaves existing ones alone.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
}

/// Operators in group `agentlab` may drive the daemon; without that group only root can.
fn give_to_agentlab_group(path: &Path) {
    match nix::unistd::Group::from_name("agentlab") {
        Ok(Some(group)) => {
            if let Err(e) = nix::unistd::chown(path, None, Some(group.gid)) {
                tracing::warn!(error = %e, "cannot give the control socket to group agentlab");
            }
        }
        Ok(None) => tracing::info!("no group `agentlab`: only root and the daemon's group can use the socket"),
        Err(e) => tracing::warn!(error = %e, "cannot look up group agentlab"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_0660_refuses_a_live_socket_replaces_a_stale_one_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/agentlabd.sock");
        let first = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode, 0o660);
        assert!(matches!(bind(&path), Err(SocketError::InUse(_))));
        drop(first);
        assert!(!path.exists(), "socket removed at drop");
        // A crashed daemon leaves its socket file behind with nobody accepting on it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let replaced = bind(&path).expect("stale socket not replaced");
        drop(replaced);
        assert!(!path.exists());
        std::fs::write(dir.path().join("plain"), "x").unwrap();
        assert!(matches!(bind(&dir.path().join("plain")), Err(SocketError::NotASocket(_))));
    }
}
