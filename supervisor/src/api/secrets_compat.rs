//! The Go version's secrets routes, kept for the scripts written against them
//! (docs/reference/compatibility.md): they act on the daemon's `secrets_bundle` and answer
//! with its redacted view, `{bundle, path, secrets}` — names, public keys, usernames and
//! flags, every secret value `[REDACTED]`. They share `secrets.rs`'s atomic re-seal and events
//! (the Go version wrote the file in place).

use std::collections::BTreeMap;

use super::secrets::{blocking, change_bundle, load, refused};
use super::{ApiError, AppState, Peer, StrictJson};
use agentlab_actors::model::ErrorCode;
use agentlab_secrets::{BundleChange, BundleError, GitField, SecretsBundle};
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use serde::{Deserialize, Serialize};

const REDACTED: &str = "[REDACTED]";

/// `PUT /v1/secrets/env`: merged into the bundle's `env`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSetRequest {
    env: BTreeMap<String, String>,
}

/// `PUT /v1/secrets/git`: the fields given (non-empty) are set, the others kept.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSetRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    ssh_private_key: String,
    #[serde(default)]
    ssh_public_key: String,
    #[serde(default)]
    known_hosts: String,
}

/// `POST /v1/secrets/ssh-keys`: a named SSH public key (an existing one of that name is
/// replaced, as the Go version did).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeyAddRequest {
    name: String,
    key: String,
}

#[derive(Serialize)]
pub struct SecretsViewResponse {
    bundle: String,
    path: String,
    secrets: SecretsView,
}

#[derive(Serialize, Default)]
struct SecretsView {
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    git: Option<GitView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh: Option<BTreeMap<String, SshKeyView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tailscale: Option<TailscaleView>,
}

#[derive(Serialize)]
struct GitView {
    username: String,
    token: String,
    ssh_private_key: String,
    ssh_public_key: String,
    known_hosts: String,
}

#[derive(Serialize)]
struct SshKeyView {
    key: String,
    #[serde(rename = "type")]
    key_type: String,
    comment: String,
}

#[derive(Serialize)]
struct TailscaleView {
    hostname_template: String,
    tags: Vec<String>,
    extra_args: Vec<String>,
    tailnet: String,
    authkey_configured: bool,
    admin_api_key_configured: bool,
}

/// `GET /v1/secrets`: the default bundle's redacted view (an empty one when it does not exist).
pub async fn view(State(app): State<AppState>) -> Result<Json<SecretsViewResponse>, ApiError> {
    let name = app.config.secrets_bundle.clone();
    let (dir, key, bundle_name) =
        (app.config.secrets_dir.clone(), app.config.secrets_age_key_path.clone(), name.clone());
    match blocking(move || agentlab_secrets::load_bundle(&dir, &bundle_name, &key)).await? {
        Ok(loaded) => Ok(Json(response(&name, &loaded.path, &loaded.bundle))),
        Err(BundleError::NotFound { .. }) => {
            Ok(Json(SecretsViewResponse { bundle: name, path: String::new(), secrets: SecretsView::default() }))
        }
        Err(e) => Err(refused(&name, &e)),
    }
}

pub async fn set_env(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    StrictJson(req): StrictJson<EnvSetRequest>,
) -> Result<Json<SecretsViewResponse>, ApiError> {
    let changes: Vec<BundleChange> = req
        .env
        .into_iter()
        .filter(|(name, _)| !name.trim().is_empty())
        .map(|(name, value)| BundleChange::SetEnv { name: name.trim().to_string(), value })
        .collect();
    if changes.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidValue, "env map is required"));
    }
    apply(&app, peer.uid, changes).await
}

/// `DELETE /v1/secrets/env/{key}`: removing a variable that is not there changes nothing.
pub async fn unset_env(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(key): Path<String>,
) -> Result<Json<SecretsViewResponse>, ApiError> {
    let loaded = load(&app, &app.config.secrets_bundle).await?;
    if !loaded.bundle.env.contains_key(&key) {
        return Ok(Json(response(&app.config.secrets_bundle, &loaded.path, &loaded.bundle)));
    }
    apply(&app, peer.uid, vec![BundleChange::UnsetEnv { name: key }]).await
}

pub async fn set_git(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    StrictJson(req): StrictJson<GitSetRequest>,
) -> Result<Json<SecretsViewResponse>, ApiError> {
    let fields = [
        (GitField::Username, req.username),
        (GitField::Token, req.token),
        (GitField::SshPrivateKey, req.ssh_private_key),
        (GitField::SshPublicKey, req.ssh_public_key),
        (GitField::KnownHosts, req.known_hosts),
    ];
    let changes: Vec<BundleChange> = fields
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(field, value)| BundleChange::SetGit { field, value })
        .collect();
    if changes.is_empty() {
        return unchanged(&app).await;
    }
    apply(&app, peer.uid, changes).await
}

pub async fn add_ssh_key(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    StrictJson(req): StrictJson<SshKeyAddRequest>,
) -> Result<Json<SecretsViewResponse>, ApiError> {
    let name = req.name.trim().to_string();
    if name.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidValue, "name is required"));
    }
    let bundle = app.config.secrets_bundle.clone();
    let present = match load(&app, &bundle).await {
        Ok(loaded) => loaded.bundle.ssh.as_ref().is_some_and(|s| s.keys.contains_key(&name)),
        Err(_) => false,
    };
    let mut changes = Vec::new();
    if present {
        changes.push(BundleChange::RemoveSshKey { name: name.clone() });
    }
    changes.push(BundleChange::AddSshKey { name, key: req.key, key_type: None, comment: None });
    apply(&app, peer.uid, changes).await
}

pub async fn remove_ssh_key(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(name): Path<String>,
) -> Result<Json<SecretsViewResponse>, ApiError> {
    apply(&app, peer.uid, vec![BundleChange::RemoveSshKey { name }]).await
}

async fn apply(
    app: &AppState,
    peer_uid: Option<u32>,
    changes: Vec<BundleChange>,
) -> Result<Json<SecretsViewResponse>, ApiError> {
    let name = app.config.secrets_bundle.clone();
    let edited = change_bundle(app, peer_uid, &name, changes).await?;
    Ok(Json(response(&name, &edited.path, &edited.bundle)))
}

/// The default bundle's view as it is, for a request that changes nothing.
async fn unchanged(app: &AppState) -> Result<Json<SecretsViewResponse>, ApiError> {
    let name = app.config.secrets_bundle.clone();
    let loaded = load(app, &name).await?;
    Ok(Json(response(&name, &loaded.path, &loaded.bundle)))
}

fn response(name: &str, path: &std::path::Path, bundle: &SecretsBundle) -> SecretsViewResponse {
    SecretsViewResponse { bundle: name.to_string(), path: path.display().to_string(), secrets: redacted(bundle) }
}

/// The Go version's `redactedSecretsView`: what is not secret as it is, the rest `[REDACTED]`
/// (an empty value stays empty).
fn redacted(bundle: &SecretsBundle) -> SecretsView {
    let hide = |value: &Option<String>| match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => REDACTED.to_string(),
        _ => String::new(),
    };
    let env = (!bundle.env.is_empty()).then(|| {
        let hidden = |v: &String| if v.trim().is_empty() { String::new() } else { REDACTED.to_string() };
        bundle.env.iter().map(|(k, v)| (k.clone(), hidden(v))).collect()
    });
    let git = bundle.git.as_ref().map(|git| GitView {
        username: git.username.clone().unwrap_or_default(),
        token: hide(&git.token),
        ssh_private_key: hide(&git.ssh_private_key),
        ssh_public_key: git.ssh_public_key.clone().unwrap_or_default(),
        known_hosts: git.known_hosts.clone().unwrap_or_default(),
    });
    let ssh = bundle.ssh.as_ref().filter(|s| !s.keys.is_empty()).map(|s| {
        let view = |k: &agentlab_secrets::SshKey| SshKeyView {
            key: if k.key.contains("PRIVATE KEY") { REDACTED.to_string() } else { k.key.clone() },
            key_type: k.key_type.clone().unwrap_or_default(),
            comment: k.comment.clone().unwrap_or_default(),
        };
        s.keys.iter().map(|(name, key)| (name.clone(), view(key))).collect()
    });
    let tailscale = bundle.tailscale.as_ref().map(|t| TailscaleView {
        hostname_template: t.hostname_template.clone().unwrap_or_default(),
        tags: t.tags.clone(),
        extra_args: t.extra_args.clone(),
        tailnet: t.tailnet.clone().unwrap_or_default(),
        authkey_configured: t.authkey.as_deref().is_some_and(|k| !k.trim().is_empty()),
        admin_api_key_configured: t.admin_api_key.as_deref().is_some_and(|k| !k.trim().is_empty()),
    });
    SecretsView { env, git, ssh, tailscale }
}
