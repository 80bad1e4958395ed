//! Schema v1 of a secrets bundle and its parser.
//!
//! Every struct denies unknown fields, so a misspelt key is an error naming it instead of a
//! secret that silently never reaches the job. Section types deliberately do not implement
//! `Debug`: a `{:?}` of a bundle must never print a value ([`SecretsBundle`]'s own `Debug`
//! prints its summary).
//!
//! Scalars are kept exactly as written: `PORT: 8080` or `FLAG: true` give the strings
//! `"8080"` and `"true"` (the YAML crate hands a string field the scalar's source text), so
//! numbers and booleans are accepted wherever a string is expected. `null` is rejected.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::error::BundleError;

/// The only schema version this crate reads; `version` may be omitted.
pub const SUPPORTED_VERSION: u32 = 1;

/// A parsed and validated secrets bundle. All sections are optional.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsBundle {
    pub version: Option<u32>,
    /// Free-form labels (owner, rotation date…); not secret.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    pub git: Option<GitSecrets>,
    /// Environment variables for the agent, `NAME: value`.
    #[serde(default, deserialize_with = "env_map")]
    pub env: BTreeMap<String, String>,
    pub claude: Option<ClaudeSecrets>,
    /// Accepted so older bundles still parse; nothing uses it.
    pub artifact: Option<ArtifactSecrets>,
    pub ssh: Option<SshSecrets>,
    pub tailscale: Option<TailscaleSecrets>,
}

/// Credentials for cloning and pushing.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSecrets {
    pub username: Option<String>,
    pub token: Option<String>,
    pub ssh_private_key: Option<String>,
    pub ssh_public_key: Option<String>,
    pub known_hosts: Option<String>,
}

/// Claude Code settings, either as a YAML mapping or as a JSON string (not both).
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaudeSecrets {
    pub settings: Option<serde_json::Value>,
    pub settings_json: Option<String>,
}

/// Legacy artifact upload target.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSecrets {
    pub endpoint: Option<String>,
    pub token: Option<String>,
}

/// Named SSH public keys (kept in the bundle; not delivered to the guest).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSecrets {
    #[serde(default, deserialize_with = "null_as_default")]
    pub keys: BTreeMap<String, SshKey>,
}

/// One SSH key: `key` is an OpenSSH public key line (`secrets add-ssh-key` refuses a private
/// one, as the Go version's did). Redacted like a secret all the same, in case an older bundle
/// holds a private key here.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKey {
    pub key: String,
    #[serde(rename = "type")]
    pub key_type: Option<String>,
    pub comment: Option<String>,
}

/// Tailscale enrolment of the sandbox VM.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailscaleSecrets {
    pub authkey: Option<String>,
    pub admin_api_key: Option<String>,
    pub tailnet: Option<String>,
    pub hostname_template: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub extra_args: Vec<String>,
}

impl SecretsBundle {
    /// Parses and validates bundle text; `origin` (a path or name) is only used in messages.
    pub fn parse_yaml(text: &str, origin: &str) -> Result<SecretsBundle, BundleError> {
        let invalid = |message: String| BundleError::InvalidBundle { origin: origin.to_string(), message };
        // Snippets off: the YAML crate would otherwise quote the offending lines, secrets and all.
        let options = serde_saphyr::options! { with_snippet: false };
        let parsed: Option<SecretsBundle> =
            serde_saphyr::from_str_with_options(text, options).map_err(|e| invalid(e.to_string()))?;
        // An empty or comments-only document is an empty bundle.
        let bundle = parsed.unwrap_or_default();
        bundle.validate().map_err(invalid)?;
        Ok(bundle)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(version) = self.version
            && version != SUPPORTED_VERSION
        {
            return Err(format!("version: {version} is not supported (this daemon reads version {SUPPORTED_VERSION})"));
        }
        if let Some(name) = self.env.keys().find(|name| !is_env_name(name)) {
            return Err(format!("env.{name}: variable names must match ^[A-Za-z_][A-Za-z0-9_]*$"));
        }
        if let Some(claude) = &self.claude {
            claude.validate()?;
        }
        if let Some(ssh) = &self.ssh
            && let Some((name, _)) = ssh.keys.iter().find(|(_, k)| k.key.trim().is_empty())
        {
            return Err(format!("ssh.keys.{name}.key: must not be empty"));
        }
        Ok(())
    }

    /// The Claude Code settings as a JSON document, whichever form the bundle used.
    pub fn claude_settings_json(&self) -> Option<String> {
        let claude = self.claude.as_ref()?;
        match (&claude.settings, &claude.settings_json) {
            (Some(settings), _) => Some(settings.to_string()),
            (None, Some(json)) => Some(json.clone()),
            (None, None) => None,
        }
    }

    /// The section names present, in schema order.
    pub fn section_names(&self) -> Vec<&'static str> {
        let present = [
            ("version", self.version.is_some()),
            ("metadata", !self.metadata.is_empty()),
            ("git", self.git.is_some()),
            ("env", !self.env.is_empty()),
            ("claude", self.claude.is_some()),
            ("artifact", self.artifact.is_some()),
            ("ssh", self.ssh.is_some()),
            ("tailscale", self.tailscale.is_some()),
        ];
        present.into_iter().filter(|(_, is_present)| *is_present).map(|(name, _)| name).collect()
    }
}

impl ClaudeSecrets {
    fn validate(&self) -> Result<(), String> {
        match (&self.settings, &self.settings_json) {
            (Some(_), Some(_)) => Err("claude: give either settings or settings_json, not both".to_string()),
            (Some(settings), None) if !settings.is_object() => {
                Err("claude.settings: must be a mapping (the contents of settings.json)".to_string())
            }
            (None, Some(json)) => match serde_json::from_str::<serde_json::Value>(json) {
                // serde_json's messages give only a position, never the offending text.
                Err(e) => Err(format!("claude.settings_json: not valid JSON: {e}")),
                Ok(value) if !value.is_object() => Err("claude.settings_json: must be a JSON object".to_string()),
                Ok(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

impl std::fmt::Debug for SecretsBundle {
    /// Names and flags only, never a value: bundles get logged by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsBundle").field("summary", &self.summary()).finish_non_exhaustive()
    }
}

/// An empty key (`metadata:` with nothing under it) is an empty collection, not an error.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `env` with a message naming the variable when a value is missing (`NAME:` with nothing
/// after it), instead of the YAML crate's generic "cannot deserialize null".
fn env_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, Option<String>>> = Option::deserialize(deserializer)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(name, value)| match value {
            Some(value) => Ok((name, value)),
            None => Err(serde::de::Error::custom(format!(
                "env.{name} has no value (write {name}: \"\" for an empty string)"
            ))),
        })
        .collect()
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`, what a POSIX shell accepts as a variable name.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
