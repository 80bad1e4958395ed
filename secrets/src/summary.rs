//! What of a bundle may be shown (its summary: names and flags) and what must be hidden (the
//! values a log redactor has to scrub).

use serde::Serialize;

use crate::bundle::SecretsBundle;

/// A value-free description of a bundle, for `secrets validate` and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleSummary {
    pub sections: Vec<&'static str>,
    pub env_names: Vec<String>,
    pub git: GitFieldsSet,
    pub claude_settings: bool,
    pub tailscale_authkey: bool,
    pub ssh_key_names: Vec<String>,
}

/// Which `git` fields are set (to a non-empty value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GitFieldsSet {
    pub username: bool,
    pub token: bool,
    pub ssh_private_key: bool,
    pub ssh_public_key: bool,
    pub known_hosts: bool,
}

impl SecretsBundle {
    /// Section and variable names and which credentials are set; never a value.
    pub fn summary(&self) -> BundleSummary {
        let git = self.git.as_ref().map_or_else(GitFieldsSet::default, |git| GitFieldsSet {
            username: is_set(&git.username),
            token: is_set(&git.token),
            ssh_private_key: is_set(&git.ssh_private_key),
            ssh_public_key: is_set(&git.ssh_public_key),
            known_hosts: is_set(&git.known_hosts),
        });
        BundleSummary {
            sections: self.section_names(),
            env_names: self.env.keys().cloned().collect(),
            git,
            claude_settings: self.claude_settings_json().is_some(),
            tailscale_authkey: self.tailscale.as_ref().is_some_and(|t| is_set(&t.authkey)),
            ssh_key_names: self.ssh.as_ref().map(|s| s.keys.keys().cloned().collect()).unwrap_or_default(),
        }
    }

    /// Every value that must be redacted from job output and logs, deduplicated, longest
    /// first (so a redactor replacing in order never leaves the tail of a longer secret that
    /// contains a shorter one). Metadata, usernames, public keys, known_hosts, tailnet names
    /// and tags are not secret.
    pub fn secret_values(&self) -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        let mut add = |value: Option<&String>| {
            // An empty "secret" would redact everything; it protects nothing anyway.
            if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
                values.push(value.clone());
            }
        };
        if let Some(git) = &self.git {
            add(git.token.as_ref());
            add(git.ssh_private_key.as_ref());
        }
        self.env.values().for_each(|v| add(Some(v)));
        let claude_json = self.claude_settings_json();
        add(claude_json.as_ref());
        // Claude Code's settings carry credentials in their `env` object; the agent can print
        // one of them alone, which redacting the whole JSON document would not catch.
        for value in self.claude_settings_env_values() {
            add(Some(&value));
        }
        if let Some(artifact) = &self.artifact {
            add(artifact.token.as_ref());
        }
        if let Some(ssh) = &self.ssh {
            ssh.keys.values().for_each(|k| add(Some(&k.key)));
        }
        if let Some(tailscale) = &self.tailscale {
            add(tailscale.authkey.as_ref());
            add(tailscale.admin_api_key.as_ref());
        }
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        values
    }

    fn claude_settings_env_values(&self) -> Vec<String> {
        let Some(json) = self.claude_settings_json() else { return Vec::new() };
        let Ok(serde_json::Value::Object(settings)) = serde_json::from_str::<serde_json::Value>(&json) else {
            return Vec::new();
        };
        let Some(serde_json::Value::Object(env)) = settings.get("env") else { return Vec::new() };
        env.values().filter_map(|v| v.as_str().map(str::to_string)).collect()
    }
}

fn is_set(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}
