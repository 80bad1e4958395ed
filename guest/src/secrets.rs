//! The secrets directory: the cached payload, git credentials and agent settings live here
//! (0700, files 0600) and are wiped when the runner exits.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use agentlab_model::protocol::guest::BootstrapPayload;

/// The payload cache: a restarted runner uses it, since the bootstrap token is single use.
pub const PAYLOAD_CACHE: &str = "bootstrap.json";

/// The job's bundle as the agent reads it (`jq -r .env.NAME /run/agentlab/secrets/bundle.json`,
/// as the seed FAQ shows); `AGENTLAB_SECRETS_BUNDLE` names it.
pub const BUNDLE_FILE: &str = "bundle.json";

/// The sections of the job's bundle that reach the guest, as JSON: `env` always (an empty
/// object when the bundle has none, so `jq .env.X` gives `null` rather than an error), `git`
/// and `claude.settings` when the bundle has them. Nothing the payload does not already carry.
pub fn bundle_json(payload: &BootstrapPayload) -> Vec<u8> {
    let mut bundle = serde_json::Map::new();
    bundle.insert("version".into(), serde_json::Value::from(1));
    bundle.insert("env".into(), serde_json::json!(payload.env));
    let git = serde_json::to_value(&payload.git).unwrap_or_default();
    if git.as_object().is_some_and(|fields| !fields.is_empty()) {
        bundle.insert("git".into(), git);
    }
    // The daemon checked it is a JSON object; a string is kept if it somehow is not.
    if let Some(json) = &payload.claude_settings_json {
        let settings = serde_json::from_str(json).unwrap_or_else(|_| serde_json::Value::String(json.clone()));
        bundle.insert("claude".into(), serde_json::json!({ "settings": settings }));
    }
    let mut text = serde_json::to_vec_pretty(&serde_json::Value::Object(bundle)).unwrap_or_default();
    text.push(b'\n');
    text
}

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
    fn the_bundle_file_has_the_sections_the_payload_carries() {
        let payload: BootstrapPayload = serde_json::from_str(
            r#"{"job":{"id":"job_1","repo_url":"/r","task":"t","mode":"dangerous","profile":"p","agent":"custom",
            "keepalive":false,"ttl_minutes":5,"timeout_seconds":60},
            "git":{"username":"bot","token":"git-token-123"},
            "env":{"DEMO_API_KEY":"env-secret-456"},"claude_settings_json":"{\"env\":{\"K\":\"v\"}}",
            "artifact":{"endpoint":"http://127.0.0.1:1/upload","token":"artifact-token-1"},
            "runner_token":"runner-token-1","policy":{"mode":"dangerous","inner_sandbox":"none"}}"#,
        )
        .unwrap();
        let bundle: serde_json::Value = serde_json::from_slice(&bundle_json(&payload)).unwrap();
        assert_eq!(bundle["env"]["DEMO_API_KEY"], "env-secret-456");
        assert_eq!(bundle["git"], serde_json::json!({"username": "bot", "token": "git-token-123"}));
        assert_eq!(bundle["claude"]["settings"]["env"]["K"], "v");
        let text = String::from_utf8(bundle_json(&payload)).unwrap();
        assert!(!text.contains("runner-token-1") && !text.contains("artifact-token-1"), "{text}");

        let bare = BootstrapPayload {
            env: Default::default(),
            git: Default::default(),
            claude_settings_json: None,
            ..payload
        };
        let bundle: serde_json::Value = serde_json::from_slice(&bundle_json(&bare)).unwrap();
        assert_eq!(bundle, serde_json::json!({"version": 1, "env": {}}));
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
