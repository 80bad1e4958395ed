//! Getting the job's repository: git credentials in the secrets directory, a fresh clone,
//! or an existing checkout treated as hostile (an earlier agent may have planted hooks,
//! filters or URL rewrites in `.git/config`).
//!
//! git always runs with an argument vector (never a shell string), `GIT_CONFIG_NOSYSTEM=1`,
//! no prompts, hooks disabled, and the token only in a 0600 file read by an askpass script.

use crate::secrets::SecretsDir;
use agentlab_model::protocol::guest::GitCredentials;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// The branch the job works on.
pub const WORK_BRANCH: &str = "agentlab";
const DEFAULT_USERNAME: &str = "x-access-token";
/// Sections (with any subsection) whose keys are removed from an existing repository's config.
const HOSTILE_SECTIONS: &[&str] = &["include", "includeif", "filter", "url", "credential", "http", "remote"];
/// Single keys removed from it (names as `git config --list` prints them: lower case).
const HOSTILE_KEYS: &[&str] = &["core.hookspath", "core.fsmonitor", "core.sshcommand", "core.gitproxy", "core.askpass"];

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(io::Error),
    #[error("`git {command}` failed ({status}): {output}")]
    Failed { command: String, status: String, output: String },
    #[error("cannot write git credentials: {0}")]
    Credentials(io::Error),
    #[error("{0}")]
    Refused(String),
}

/// Runs git with the credential environment and safety settings.
pub struct Git {
    env: Vec<(String, String)>,
}

impl Git {
    pub fn new(credentials_env: Vec<(String, String)>) -> Git {
        let mut env = vec![("GIT_CONFIG_NOSYSTEM".to_string(), "1".to_string())];
        env.push(("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()));
        env.extend(credentials_env);
        Git { env }
    }

    /// The variables the agent inherits too, so it can push with the same credentials.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// `git [-C dir] -c core.hooksPath=/dev/null -c core.fsmonitor=false <args>`; stdout on
    /// success.
    pub fn run(&self, dir: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
        let mut command = Command::new("git");
        if let Some(dir) = dir {
            command.arg("-C").arg(dir);
        }
        command.args(["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"]).args(args);
        command.envs(self.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
        let out = command.output().map_err(GitError::Spawn)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let mut output = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if output.is_empty() {
            output = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Err(GitError::Failed { command: args.join(" "), status: out.status.to_string(), output })
    }
}

/// Writes the payload's git credentials into the secrets directory and returns the
/// environment that makes git use them: an SSH key if given, else a token via askpass.
pub fn credentials_env(creds: &GitCredentials, secrets: &SecretsDir) -> Result<Vec<(String, String)>, GitError> {
    let given = |v: &Option<String>| v.as_deref().filter(|s| !s.trim().is_empty()).map(str::to_string);
    if let Some(mut key) = given(&creds.ssh_private_key) {
        if !key.ends_with('\n') {
            // ssh rejects a key file without its final newline.
            key.push('\n');
        }
        let key_path = secrets.write("id_ed25519", key.as_bytes()).map_err(GitError::Credentials)?;
        let known = creds.known_hosts.clone().unwrap_or_default();
        let known_path = secrets.write("known_hosts", known.as_bytes()).map_err(GitError::Credentials)?;
        let ssh = format!(
            "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={}",
            shell_quote(&key_path),
            shell_quote(&known_path)
        );
        return Ok(vec![("GIT_SSH_COMMAND".into(), ssh)]);
    }
    let Some(token) = given(&creds.token) else { return Ok(Vec::new()) };
    let username = given(&creds.username).unwrap_or_else(|| DEFAULT_USERNAME.to_string());
    let token_path = secrets.write("git-token", token.as_bytes()).map_err(GitError::Credentials)?;
    let user_path = secrets.write("git-username", username.as_bytes()).map_err(GitError::Credentials)?;
    // git calls the helper with its prompt ("Username for …", "Password for …"); the token
    // is read from its file, so it is never on a command line or in the environment.
    let script = format!(
        "#!/bin/sh\n# Written by agent-runner: answers git's credential prompts.\ncase \"$1\" in\n  Username*|username*) exec cat {} ;;\n  *) exec cat {} ;;\nesac\n",
        shell_quote(&user_path),
        shell_quote(&token_path)
    );
    let askpass = secrets.write_mode("git-askpass", script.as_bytes(), 0o700).map_err(GitError::Credentials)?;
    Ok(vec![("GIT_ASKPASS".into(), askpass.display().to_string()), ("GIT_TERMINAL_PROMPT".into(), "0".into())])
}

/// Puts the job's code in `dir` on branch [`WORK_BRANCH`]. Returns what was done, for the log.
pub fn prepare(git: &Git, repo_url: &str, git_ref: Option<&str>, dir: &Path) -> Result<String, GitError> {
    let git_ref = git_ref.map(str::trim).filter(|r| !r.is_empty());
    if git_ref.is_some_and(|r| r.starts_with('-')) || repo_url.starts_with('-') {
        return Err(GitError::Refused("the repository URL and ref must not start with `-`".into()));
    }
    let dot_git = dir.join(".git");
    match std::fs::symlink_metadata(&dot_git) {
        Ok(meta) if meta.is_dir() => {
            sanitize(git, &dot_git)?;
            let config = dot_git.join("config");
            let config = config.to_string_lossy();
            git.run(None, &["config", "--file", &config, "remote.origin.url", repo_url])?;
            git.run(
                None,
                &["config", "--file", &config, "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"],
            )?;
            git.run(Some(dir), &["fetch", "--force", "origin", git_ref.unwrap_or("HEAD")])?;
            git.run(Some(dir), &["checkout", "-B", WORK_BRANCH, "FETCH_HEAD"])?;
            Ok(format!("reused the existing checkout in {} after cleaning its git config", dir.display()))
        }
        Ok(_) => Err(GitError::Refused(format!("{} is not a directory; refusing to use it", dot_git.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let target = dir.to_string_lossy();
            git.run(None, &["clone", "--", repo_url, &target])?;
            match git_ref {
                Some(r) => {
                    git.run(Some(dir), &["fetch", "--force", "origin", r])?;
                    git.run(Some(dir), &["checkout", "-B", WORK_BRANCH, "FETCH_HEAD"])?;
                }
                None => {
                    git.run(Some(dir), &["checkout", "-B", WORK_BRANCH])?;
                }
            }
            Ok(format!("cloned into {}", dir.display()))
        }
        Err(e) => Err(GitError::Refused(format!("cannot inspect {}: {e}", dot_git.display()))),
    }
}

/// `git rev-parse HEAD`, if there is a repository with a commit.
pub fn head_commit(git: &Git, dir: &Path) -> Option<String> {
    let out = git.run(Some(dir), &["rev-parse", "--verify", "HEAD"]).ok()?;
    Some(out.trim().to_string()).filter(|c| !c.is_empty())
}

/// Removes what could run code or redirect fetches from an existing repository's config
/// files. A repository that borrows another's config (`commondir`) is refused.
fn sanitize(git: &Git, dot_git: &Path) -> Result<(), GitError> {
    if std::fs::symlink_metadata(dot_git.join("commondir")).is_ok() {
        return Err(GitError::Refused(format!("{} points at another repository (commondir)", dot_git.display())));
    }
    for name in ["config", "config.worktree"] {
        let path = dot_git.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => clean_config(git, &path)?,
            Ok(_) => return Err(GitError::Refused(format!("{} is not a regular file", path.display()))),
            Err(_) => {}
        }
    }
    Ok(())
}

fn clean_config(git: &Git, path: &Path) -> Result<(), GitError> {
    let file = path.to_string_lossy();
    // `--file` reads just this file: its `include`s are not followed.
    let list = |git: &Git| git.run(None, &["config", "--file", &file, "--name-only", "--list"]);
    // Key by key, as listed: `--remove-section` matches a section's spelling case-sensitively
    // (`includeIf`, `[URL "…"]`), `--unset-all` on the listed key does not, and git drops a
    // section left empty. A key already gone ("not present") is fine.
    for key in list(git)?.lines().filter(|k| is_hostile(k)) {
        let _ = git.run(None, &["config", "--file", &file, "--unset-all", key]);
    }
    let left: Vec<String> = list(git)?.lines().filter(|k| is_hostile(k)).map(str::to_string).collect();
    if !left.is_empty() {
        return Err(GitError::Refused(format!("could not remove {} from {}", left.join(", "), path.display())));
    }
    Ok(())
}

/// Whether a key as `git config --list` prints it (`url.https://x/.insteadof`) is in one of
/// [`HOSTILE_SECTIONS`] or is one of [`HOSTILE_KEYS`].
fn is_hostile(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let section = lower.split('.').next().unwrap_or_default();
    HOSTILE_SECTIONS.contains(&section) || HOSTILE_KEYS.contains(&lower.as_str())
}

/// Single-quotes a path for the shell git runs `GIT_SSH_COMMAND` with.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests;
