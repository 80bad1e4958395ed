//! Changing one entry of a bundle in place: decrypted in memory, the entry changed in the
//! document tree (the rest kept in its order), the result checked to be a valid bundle,
//! re-sealed in the bundle's own format to the key's recipients, written beside the old file,
//! read back and decrypted, and only then renamed over it. A crash at any point leaves the old
//! bundle or the new one, both readable. Edits are serialised by a lock file in the secrets
//! directory, so the daemon and a host command never lose each other's change.

use std::path::{Path, PathBuf};

use crate::age_key::AgeKey;
use crate::atomic_write::{Existing, remove_stale_temps, write_private_file_checked};
use crate::bundle::SecretsBundle;
use crate::error::BundleError;
use crate::load::{Sealing, decrypt_located};
use crate::locate::{BundleFormat, Located, locate};
use crate::sops::SopsLayout;
use crate::summary::BundleSummary;
use crate::tree::Node;

/// A `git` field a command may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitField {
    Username,
    Token,
    SshPrivateKey,
    SshPublicKey,
    KnownHosts,
}

impl GitField {
    pub const ALL: [GitField; 5] =
        [GitField::Username, GitField::Token, GitField::SshPrivateKey, GitField::SshPublicKey, GitField::KnownHosts];

    /// The field's name in the bundle (`git.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            GitField::Username => "username",
            GitField::Token => "token",
            GitField::SshPrivateKey => "ssh_private_key",
            GitField::SshPublicKey => "ssh_public_key",
            GitField::KnownHosts => "known_hosts",
        }
    }

    pub fn from_name(name: &str) -> Option<GitField> {
        GitField::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// One change to a bundle. `Debug` names the entry, never the value.
#[derive(Clone, PartialEq, Eq)]
pub enum BundleChange {
    SetEnv {
        name: String,
        value: String,
    },
    UnsetEnv {
        name: String,
    },
    SetGit {
        field: GitField,
        value: String,
    },
    /// An SSH public key (`TYPE BASE64 [COMMENT]`, one line), as the Go version stored them;
    /// `key_type` and `comment` default to the key's own.
    AddSshKey {
        name: String,
        key: String,
        key_type: Option<String>,
        comment: Option<String>,
    },
    RemoveSshKey {
        name: String,
    },
}

impl BundleChange {
    /// `(operation, entry)`, e.g. `("set_env", "env.API_KEY")`: what events and logs say.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            BundleChange::SetEnv { name, .. } => ("set_env", format!("env.{name}")),
            BundleChange::UnsetEnv { name } => ("unset_env", format!("env.{name}")),
            BundleChange::SetGit { field, .. } => ("set_git", format!("git.{}", field.name())),
            BundleChange::AddSshKey { name, .. } => ("add_ssh_key", format!("ssh.keys.{name}")),
            BundleChange::RemoveSshKey { name } => ("remove_ssh_key", format!("ssh.keys.{name}")),
        }
    }

    /// Where the change puts a secret value (`["env", NAME]`, `["git", "token"]`): a sops
    /// file's rule must encrypt it there. Public keys, usernames and host keys are not secret.
    fn secret_path(&self) -> Option<[&str; 2]> {
        match self {
            BundleChange::SetEnv { name, .. } => Some(["env", name.as_str()]),
            BundleChange::SetGit { field: field @ (GitField::Token | GitField::SshPrivateKey), .. } => {
                Some(["git", field.name()])
            }
            _ => None,
        }
    }

    /// Whether the change adds something (and so may create a bundle that does not exist).
    fn adds(&self) -> bool {
        matches!(self, BundleChange::SetEnv { .. } | BundleChange::SetGit { .. } | BundleChange::AddSshKey { .. })
    }
}

impl std::fmt::Debug for BundleChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (op, entry) = self.describe();
        write!(f, "{op} {entry}")
    }
}

/// What an edit did, and the bundle as it now is.
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    pub path: PathBuf,
    pub format: BundleFormat,
    /// The bundle did not exist and was created (as an age file).
    pub created: bool,
    pub summary: BundleSummary,
    pub bundle: SecretsBundle,
}

/// Applies `change` to bundle `name` in `secrets_dir`, re-sealed to `key`'s recipients. A
/// change that adds to a bundle that does not exist creates `name.age`.
pub fn edit_bundle(secrets_dir: &Path, name: &str, key: &AgeKey, change: &BundleChange) -> Result<Edited, BundleError> {
    edit_bundle_all(secrets_dir, name, key, std::slice::from_ref(change))
}

/// [`edit_bundle`] with several changes, applied in order and re-sealed once: all or none.
pub fn edit_bundle_all(
    secrets_dir: &Path,
    name: &str,
    key: &AgeKey,
    changes: &[BundleChange],
) -> Result<Edited, BundleError> {
    let _lock = DirLock::take(secrets_dir)?;
    let (located, mut document, created) = match locate(secrets_dir, name) {
        Ok(located) => {
            let plaintext = decrypt_located(&located, key)?;
            let text =
                String::from_utf8(plaintext).map_err(|_| invalid(&located.path, "the bundle is not UTF-8 text"))?;
            let document = Node::parse(&text).map_err(|e| invalid(&located.path, &e))?;
            (located, document, false)
        }
        Err(BundleError::NotFound { .. }) if changes.iter().any(BundleChange::adds) => {
            let stem = name.strip_suffix(".age").unwrap_or(name);
            let located = Located { path: secrets_dir.join(format!("{stem}.age")), format: BundleFormat::Age };
            let document = Node::Map(vec![("version".into(), Node::Int(1))]);
            (located, document, true)
        }
        Err(e) => return Err(e),
    };
    if document == Node::Null {
        document = Node::Map(Vec::new());
    }
    for change in changes {
        apply(&mut document, change)
            .map_err(|message| BundleError::InvalidChange { origin: display(&located.path), message })?;
    }
    let text = document.to_yaml();
    let bundle = SecretsBundle::parse_yaml(&text, &display(&located.path))?;
    let sealing = match (located.format, created) {
        // A sops file stays sealed to everyone it was (a team's keys next to the daemon's),
        // with its own rule for what stays readable.
        (BundleFormat::Sops, false) => {
            let layout = SopsLayout::of_file(&located.path)?;
            refuse_plaintext_secrets(&located, &layout, changes)?;
            let recipients = merge(layout.recipients().to_vec(), key.recipients());
            Sealing::Sops(layout.with_recipients(recipients))
        }
        (format, _) => Sealing::new(format, key.recipients()),
    };
    reseal(&located, key, &sealing, text.as_bytes(), &bundle)?;
    Ok(Edited { path: located.path, format: located.format, created, summary: bundle.summary(), bundle })
}

/// A secret the change would put where the sops file's rule keeps values readable (say
/// `env.TOKEN` in a file with `encrypted_regex: ^git$`) is refused: the file would hold it in
/// plaintext. Changing the rule is the team's call, with sops.
fn refuse_plaintext_secrets(
    located: &Located,
    layout: &SopsLayout,
    changes: &[BundleChange],
) -> Result<(), BundleError> {
    match changes.iter().filter_map(BundleChange::secret_path).find(|path| !layout.encrypts(path)) {
        None => Ok(()),
        Some(path) => Err(BundleError::InvalidChange {
            origin: display(&located.path),
            message: format!(
                "{} would be stored in plaintext: the sops file's rule ({}) leaves it unencrypted; use another name, \
                 or change the rule with sops",
                path.join("."),
                layout.rule()
            ),
        }),
    }
}

/// Seals `plaintext` (which parses as `expected`) as `sealing` says and puts it in place once
/// `reader` decrypts the written file back to `expected`. The caller holds the directory lock,
/// so temp files of the bundle are a crashed writer's and go first.
pub(crate) fn reseal(
    located: &Located,
    reader: &AgeKey,
    sealing: &Sealing,
    plaintext: &[u8],
    expected: &SecretsBundle,
) -> Result<(), BundleError> {
    debug_assert_eq!(sealing.format(), located.format);
    let sealed = sealing.seal(plaintext)?;
    remove_stale_temps(&located.path);
    let check = |temp: &Path| {
        let written = Located { path: temp.to_path_buf(), format: located.format };
        let opened = decrypt_located(&written, reader)?;
        let text = String::from_utf8(opened).map_err(|_| invalid(temp, "the re-sealed bundle is not UTF-8"))?;
        match SecretsBundle::parse_yaml(&text, &display(temp))? == *expected {
            true => Ok(()),
            false => Err(invalid(temp, "the re-sealed bundle does not read back as written; the old one is kept")),
        }
    };
    write_private_file_checked(&located.path, &sealed, Existing::Replace, &check)
}

/// `first` then those of `more` it does not hold, each recipient once.
pub(crate) fn merge(
    first: Vec<age::x25519::Recipient>,
    more: Vec<age::x25519::Recipient>,
) -> Vec<age::x25519::Recipient> {
    let mut all = first;
    for recipient in more {
        if !all.iter().any(|r| r.to_string() == recipient.to_string()) {
            all.push(recipient);
        }
    }
    all
}

fn apply(document: &mut Node, change: &BundleChange) -> Result<(), String> {
    let not_a_mapping = |section: &str| format!("`{section}` is not a mapping");
    match change {
        BundleChange::SetEnv { name, value } => {
            let env = document.section("env").ok_or_else(|| not_a_mapping("the bundle"))?;
            env.set(name, Node::Str(value.clone())).then_some(()).ok_or_else(|| not_a_mapping("env"))
        }
        BundleChange::UnsetEnv { name } => remove_entry(document, &["env"], name),
        BundleChange::SetGit { field, value } => {
            let git = document.section("git").ok_or_else(|| not_a_mapping("the bundle"))?;
            git.set(field.name(), Node::Str(value.clone())).then_some(()).ok_or_else(|| not_a_mapping("git"))
        }
        BundleChange::AddSshKey { name, key, key_type, comment } => {
            let (key, own_type, own_comment) = public_key_parts(key)?;
            let ssh = document.section("ssh").ok_or_else(|| not_a_mapping("the bundle"))?;
            let keys = ssh.section("keys").ok_or_else(|| not_a_mapping("ssh"))?;
            if keys.get(name).is_some() {
                return Err(format!("ssh.keys.{name} is already in the bundle; remove it first"));
            }
            let mut entry = vec![("key".to_string(), Node::Str(key))];
            entry.push(("type".to_string(), Node::Str(key_type.clone().unwrap_or(own_type))));
            entry.extend(comment.clone().or(own_comment).map(|c| ("comment".to_string(), Node::Str(c))));
            keys.set(name, Node::Map(entry)).then_some(()).ok_or_else(|| not_a_mapping("ssh.keys"))
        }
        BundleChange::RemoveSshKey { name } => remove_entry(document, &["ssh", "keys"], name),
    }
}

/// `(key, type, comment)` of an OpenSSH public key line. A private key is refused: this
/// section holds public keys, and a private key pasted here would sit in the wrong place.
fn public_key_parts(key: &str) -> Result<(String, String, Option<String>), String> {
    let key = key.trim();
    if key.contains("PRIVATE KEY") {
        return Err("that is a private key; ssh.keys holds public keys (the .pub file), and a git deploy key \
                    goes in git.ssh_private_key (`secrets set-git BUNDLE ssh_private_key`)"
            .into());
    }
    let fields: Vec<&str> = key.split_whitespace().collect();
    let known_type =
        fields.first().is_some_and(|t| t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-"));
    if key.contains('\n') || fields.len() < 2 || !known_type {
        return Err(
            "not an SSH public key: expected one line `TYPE BASE64 [COMMENT]`, e.g. `ssh-ed25519 AAAA… me@host`".into(),
        );
    }
    let comment = (fields.len() > 2).then(|| fields[2..].join(" "));
    Ok((key.to_string(), fields[0].to_string(), comment))
}

/// Removes `name` from the mapping at `path`; an error when it is not there.
fn remove_entry(document: &mut Node, path: &[&str], name: &str) -> Result<(), String> {
    let mut node = Some(&mut *document);
    for key in path {
        node = node.filter(|n| n.get(key).is_some()).and_then(|n| n.section(key));
    }
    match node.is_some_and(|section| section.remove(name)) {
        true => Ok(()),
        false => Err(format!("{}.{name} is not in the bundle", path.join("."))),
    }
}

fn invalid(path: &Path, message: &str) -> BundleError {
    BundleError::InvalidBundle { origin: display(path), message: message.to_string() }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// An exclusive lock on `secrets_dir/.agentlab-secrets.lock`, released on drop (and by the
/// kernel when the process dies, so a crash never leaves the directory locked).
pub(crate) struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    pub(crate) fn take(secrets_dir: &Path) -> Result<DirLock, BundleError> {
        let path = secrets_dir.join(".agentlab-secrets.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| BundleError::io("opening the lock file", &path, e))?;
        file.lock().map_err(|e| BundleError::io("locking", &path, e))?;
        Ok(DirLock { _file: file })
    }
}
