//! Managing secrets bundles through the daemon (it holds the age key): list, show (values only
//! on an explicit, audited reveal), change one entry, rotate the key. Values travel only in
//! request and response bodies over the control socket, never in a path or a query.

use serde::{Deserialize, Serialize};

/// `GET /v1/secrets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretsListResponse {
    /// `secrets_dir`.
    pub dir: String,
    /// `secrets_age_key_path`, and the recipients (public keys) of its identities.
    pub key_path: String,
    pub recipients: Vec<String>,
    /// `secrets_bundle`: what a profile that names none gets.
    pub default_bundle: String,
    pub bundles: Vec<SecretsBundleEntry>,
    /// The newest `secrets.*` events (changes, reveals, rotations), newest first.
    pub audit: Vec<super::EventView>,
}

/// One bundle of the list: whether it opens, and its summary (names only) when it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretsBundleEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `age` or `sops`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    /// Why it does not open (`code` is the `v1/secrets/...` reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// `POST /v1/secrets/show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowSecretsRequest {
    /// Unset: the daemon's `secrets_bundle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// Return the decrypted bundle too; recorded as a `secrets.revealed` event.
    #[serde(default)]
    pub reveal: bool,
}

/// What `secrets show` returns. `Debug` leaves the plaintext out.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowSecretsResponse {
    pub bundle: String,
    pub path: String,
    pub format: String,
    pub summary: serde_json::Value,
    /// The decrypted bundle (YAML), only when `reveal` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
}

impl std::fmt::Debug for ShowSecretsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShowSecretsResponse")
            .field("bundle", &self.bundle)
            .field("path", &self.path)
            .field("format", &self.format)
            .field("revealed", &self.plaintext.is_some())
            .finish_non_exhaustive()
    }
}

/// `POST /v1/secrets/edit`: one change to one bundle.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditSecretsRequest {
    pub bundle: String,
    pub change: SecretsChange,
}

/// A change; `Debug` names the entry, never the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretsChange {
    SetEnv {
        name: String,
        value: String,
    },
    UnsetEnv {
        name: String,
    },
    /// `field`: username, token, ssh_private_key, ssh_public_key or known_hosts.
    SetGit {
        field: String,
        value: String,
    },
    AddSshKey {
        name: String,
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    RemoveSshKey {
        name: String,
    },
}

impl SecretsChange {
    /// The entry the change is about, e.g. `env.API_KEY`.
    pub fn entry(&self) -> String {
        match self {
            SecretsChange::SetEnv { name, .. } | SecretsChange::UnsetEnv { name } => format!("env.{name}"),
            SecretsChange::SetGit { field, .. } => format!("git.{field}"),
            SecretsChange::AddSshKey { name, .. } | SecretsChange::RemoveSshKey { name } => format!("ssh.keys.{name}"),
        }
    }
}

impl std::fmt::Debug for EditSecretsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EditSecretsRequest {{ bundle: {:?}, change: {:?} }}", self.bundle, self.change)
    }
}

impl std::fmt::Debug for SecretsChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.entry())
    }
}

/// What a change did; names only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditSecretsResponse {
    pub bundle: String,
    pub path: String,
    pub format: String,
    /// The bundle did not exist and was created.
    pub created: bool,
    /// The operation (`set_env`, …) and the entry it changed.
    pub op: String,
    pub entry: String,
    pub summary: serde_json::Value,
}

/// `POST /v1/secrets/rotate-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateKeyResponse {
    pub key_path: String,
    /// The new recipient, the only one the identity file holds.
    pub recipient: String,
    /// The recipients dropped from it.
    pub retired: Vec<String>,
    /// The bundles re-sealed to the new key.
    pub bundles: Vec<String>,
}
