//! The one error type of this crate, with a stable machine-readable code per variant.
//!
//! Messages name paths, bundle names, field names and public recipients, never a secret value:
//! they end up in the daemon's log and in API responses.

use std::path::{Path, PathBuf};

/// Why a secrets bundle (or the daemon's age key) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "bundle name {name:?} is not a plain name (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit, no '..')"
    )]
    InvalidName { name: String },

    #[error(
        "secrets bundle {name:?} not found in {dir}: looked for {looked_for}; bundles present: {available}",
        dir = dir.display(),
        looked_for = join_paths(looked_for),
        available = if available.is_empty() { "none".to_string() } else { available.join(", ") }
    )]
    NotFound { name: String, dir: PathBuf, looked_for: Vec<PathBuf>, available: Vec<String> },

    #[error(
        "secrets bundle {name:?} is ambiguous: both {} exist; remove the one you do not use",
        join_paths(paths).replace(", ", " and ")
    )]
    Ambiguous { name: String, paths: Vec<PathBuf> },

    /// `recipient` and `key_path` are filled in when the caller knows the daemon's key, so the
    /// message is a command that can be pasted as is.
    #[error("{}", plaintext_refused_message(plaintext, target, recipient.as_deref(), key_path.as_deref()))]
    PlaintextRefused { plaintext: PathBuf, target: PathBuf, recipient: Option<String>, key_path: Option<PathBuf> },

    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },

    #[error("age identity file {} (secrets_age_key_path) is unusable: {reason}", path.display())]
    KeyUnreadable { path: PathBuf, reason: String },

    #[error("cannot decrypt secrets bundle {}: {reason}", path.display())]
    DecryptFailed { path: PathBuf, reason: String },

    #[error("invalid secrets bundle {origin}: {message}")]
    InvalidBundle { origin: String, message: String },

    #[error("cannot change secrets bundle {origin}: {message}")]
    InvalidChange { origin: String, message: String },

    #[error("{} is larger than the {limit}-byte limit for secrets bundles", path.display())]
    TooLarge { path: PathBuf, limit: u64 },

    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "reading" or "renaming into place".
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BundleError {
    /// The stable `v1/secrets/<reason>` code of this error, for API responses and tests.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::InvalidName { .. } => "v1/secrets/invalid_name",
            BundleError::NotFound { .. } => "v1/secrets/not_found",
            BundleError::Ambiguous { .. } => "v1/secrets/ambiguous",
            BundleError::PlaintextRefused { .. } => "v1/secrets/plaintext_refused",
            BundleError::Unsupported { .. } => "v1/secrets/unsupported",
            BundleError::KeyUnreadable { .. } => "v1/secrets/key_unreadable",
            BundleError::DecryptFailed { .. } => "v1/secrets/decrypt_failed",
            BundleError::InvalidBundle { .. } => "v1/secrets/invalid_bundle",
            BundleError::InvalidChange { .. } => "v1/secrets/invalid_change",
            BundleError::TooLarge { .. } => "v1/secrets/too_large",
            BundleError::Io { .. } => "v1/secrets/io",
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> BundleError {
        BundleError::Io { action, path: path.to_path_buf(), source }
    }

    pub(crate) fn key(path: &Path, reason: impl Into<String>) -> BundleError {
        BundleError::KeyUnreadable { path: path.to_path_buf(), reason: reason.into() }
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn plaintext_refused_message(
    plaintext: &Path,
    target: &Path,
    recipient: Option<&str>,
    key_path: Option<&Path>,
) -> String {
    let (plain, out) = (plaintext.display(), target.display());
    let recipient = recipient.unwrap_or("<recipient>");
    let key = key_path.map_or_else(|| "<identity file>".to_string(), |p| p.display().to_string());
    let mut message = format!(
        "plaintext secrets bundle {plain} refused: bundles must be age-encrypted. Encrypt it with \
         `age -r {recipient} -o {out} {plain}` (or `agentlabd secrets seal --key {key} --in {plain} --out {out}`), \
         then delete the plaintext: `rm {plain}`"
    );
    if recipient == "<recipient>" {
        message.push_str(" (<recipient> is the daemon's public key: `age-keygen -y <identity file>`)");
    }
    message
}
