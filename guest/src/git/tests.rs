//! Tests of credentials, cloning and cleaning a hostile checkout, with real git.

use super::*;
use crate::files::test_dir;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

fn sh(dir: &Path, script: &str) {
    let status = Command::new("/bin/sh")
        .args(["-c", script])
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

/// An origin repository with two commits; the first is tagged `v1`.
fn origin(root: &Path) -> PathBuf {
    let origin = root.join("origin");
    std::fs::create_dir_all(&origin).unwrap();
    sh(
        &origin,
        "git init -q -b main . && echo one > f && git add f && git -c user.email=t@t -c user.name=t commit -qm one \
         && git tag v1 && echo two > f && git -c user.email=t@t -c user.name=t commit -qam two",
    );
    origin
}

fn file_mode(path: &Path) -> u32 {
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
}

#[test]
fn a_token_is_served_by_askpass_from_a_private_file() {
    let dir = test_dir("git-token");
    let secrets = SecretsDir::open(&dir.join("secrets")).unwrap();
    let creds = GitCredentials { token: Some("ghp-secret-token".into()), ..GitCredentials::default() };
    let env = credentials_env(&creds, &secrets).unwrap();
    let askpass = env.iter().find(|(k, _)| k == "GIT_ASKPASS").map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(file_mode(Path::new(&askpass)), 0o700);
    assert_eq!(file_mode(&secrets.file("git-token")), 0o600);
    let script = std::fs::read_to_string(&askpass).unwrap_or_default();
    assert!(!script.contains("ghp-secret-token"), "the token is not in the script");
    let ask = |prompt: &str| {
        let out = Command::new(&askpass).arg(prompt).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(ask("Username for 'https://example.invalid': "), "x-access-token");
    assert_eq!(ask("Password for 'https://x-access-token@example.invalid': "), "ghp-secret-token");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_ssh_key_wins_and_is_written_with_its_newline() {
    let dir = test_dir("git-ssh");
    let secrets = SecretsDir::open(&dir.join("secrets")).unwrap();
    let creds = GitCredentials {
        token: Some("unused-token".into()),
        ssh_private_key: Some("-----BEGIN KEY-----\nabc\n-----END KEY-----".into()),
        known_hosts: Some("host ssh-ed25519 AAAA\n".into()),
        ..GitCredentials::default()
    };
    let env = credentials_env(&creds, &secrets).unwrap();
    assert_eq!(env.len(), 1);
    let key = secrets.file("id_ed25519");
    let want = format!(
        "ssh -i '{}' -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile='{}'",
        key.display(),
        secrets.file("known_hosts").display()
    );
    assert_eq!(env[0], ("GIT_SSH_COMMAND".to_string(), want));
    assert!(std::fs::read_to_string(&key).unwrap_or_default().ends_with("-----END KEY-----\n"));
    assert_eq!(file_mode(&key), 0o600);
    assert!(!secrets.file("git-token").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_fresh_clone_lands_on_the_work_branch_at_the_ref() {
    let dir = test_dir("git-clone");
    let origin = origin(&dir);
    let git = Git::new(Vec::new());
    let url = format!("file://{}", origin.display());
    let repo = dir.join("repo");
    prepare(&git, &url, Some("v1"), &repo).unwrap();
    assert_eq!(std::fs::read_to_string(repo.join("f")).unwrap_or_default(), "one\n");
    assert_eq!(git.run(Some(&repo), &["branch", "--show-current"]).unwrap_or_default().trim(), WORK_BRANCH);
    let tagged = git.run(Some(&origin), &["rev-parse", "v1"]).unwrap_or_default();
    assert_eq!(head_commit(&git, &repo), Some(tagged.trim().to_string()));

    let plain = dir.join("plain");
    prepare(&git, &origin.to_string_lossy(), None, &plain).unwrap();
    assert_eq!(std::fs::read_to_string(plain.join("f")).unwrap_or_default(), "two\n");

    let busy = dir.join("busy");
    std::fs::create_dir_all(&busy).and_then(|()| std::fs::write(busy.join("x"), "")).unwrap();
    let err = prepare(&git, &url, None, &busy).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("git clone"), "{err}");
    assert!(matches!(prepare(&git, "--upload-pack=x", None, &dir.join("x")), Err(GitError::Refused(_))));
    assert_eq!(head_commit(&git, &dir), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_existing_checkout_is_cleaned_before_it_is_fetched() {
    let dir = test_dir("git-hostile");
    let origin = origin(&dir);
    let git = Git::new(Vec::new());
    let repo = dir.join("repo");
    prepare(&git, &origin.to_string_lossy(), None, &repo).unwrap();
    // What a malicious agent could leave behind for the next run.
    let marker = dir.join("pwned");
    let hook = format!("#!/bin/sh\ntouch '{}'\n", marker.display());
    std::fs::write(dir.join("hook.sh"), &hook).unwrap();
    sh(
        &repo,
        &format!(
            "chmod +x ../hook.sh && cp ../hook.sh .git/hooks/post-checkout && \
             git config core.hooksPath .git/hooks && git config include.path /etc/evil && \
             git config includeIf.gitdir:/.path /etc/evil && git config filter.lfs.smudge ../hook.sh && \
             git config url.file:///nowhere/.insteadOf '{0}' && git config remote.evil.url /x && \
             git config credential.helper '!sh ../hook.sh' && git config http.extraHeader X && \
             git config core.sshCommand ../hook.sh && git config core.fsmonitor ../hook.sh && \
             git config user.name kept && printf '[Remote \"Evil\"]\\n\\turl = /y\\n' >> .git/config",
            origin.display()
        ),
    );
    let done = prepare(&git, &origin.to_string_lossy(), Some("v1"), &repo).unwrap();
    assert!(done.contains("reused"), "{done}");
    assert!(!marker.exists(), "a planted hook ran");
    assert_eq!(std::fs::read_to_string(repo.join("f")).unwrap_or_default(), "one\n");
    let config = git.run(Some(&repo), &["config", "--file", ".git/config", "--list"]).unwrap_or_default();
    for gone in
        ["include", "filter.", "url.", "remote.evil", "credential.", "http.", "hookspath", "sshcommand", "fsmonitor"]
    {
        assert!(!config.to_ascii_lowercase().contains(gone), "{gone} left in {config}");
    }
    assert!(config.contains("user.name=kept") && config.contains("remote.origin.url="), "{config}");

    std::fs::write(repo.join(".git").join("commondir"), "../elsewhere").unwrap();
    assert!(matches!(prepare(&git, &origin.to_string_lossy(), None, &repo), Err(GitError::Refused(_))));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hostile_keys_are_recognised_in_any_spelling() {
    for key in
        ["url.https://x/.insteadof", "includeif.gitdir:/a.b/.path", "include.path", "Remote.Evil.url", "core.hookspath"]
    {
        assert!(is_hostile(key), "{key}");
    }
    for key in ["user.name", "core.bare", "branch.main.remote", "core.hooksPathX"] {
        assert!(!is_hostile(key), "{key}");
    }
    assert_eq!(shell_quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
}
