//! `/v1/secrets/...`: the daemon holds the age key, so bundles are validated, listed, shown,
//! changed and re-keyed here. Nothing but names reaches a log or an event; a reveal is
//! recorded (who, which bundle) before the values are sent, and refused if it cannot be.

use super::{ApiError, AppState, Peer, StrictJson};
use agentlab_actors::model::{ErrorCode, EventKind};
use agentlab_actors::protocol::{
    EditSecretsRequest, EditSecretsResponse, RotateKeyResponse, SecretsBundleEntry, SecretsChange, SecretsListResponse,
    ShowSecretsRequest, ShowSecretsResponse, ValidateSecretsRequest, ValidateSecretsResponse,
};
use agentlab_actors::store::{NewEvent, Stage};
use agentlab_secrets::{AgeKey, BundleChange, BundleError, BundleFormat, GitField};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};

/// How many `secrets.*` events `secrets list` shows.
const AUDIT_TAIL: u32 = 20;

pub async fn validate(State(app): State<AppState>, body: Bytes) -> Result<Json<ValidateSecretsResponse>, ApiError> {
    let req: ValidateSecretsRequest = super::sandbox_ops::optional_body(&body)?;
    let name = req.bundle.unwrap_or_else(|| app.config.secrets_bundle.clone());
    let loaded = load(&app, &name).await?;
    Ok(Json(ValidateSecretsResponse {
        bundle: name,
        path: loaded.path.display().to_string(),
        ok: true,
        summary: summary_value(&loaded.bundle.summary())?,
    }))
}

pub async fn list(State(app): State<AppState>) -> Result<Json<SecretsListResponse>, ApiError> {
    let (dir, key_path) = (app.config.secrets_dir.clone(), app.config.secrets_age_key_path.clone());
    let (recipients, bundles) = blocking(move || {
        let key = AgeKey::load(&key_path);
        let recipients =
            key.as_ref().map(|k| k.recipients().iter().map(ToString::to_string).collect()).unwrap_or_default();
        let bundles = agentlab_secrets::bundle_names(&dir)
            .into_iter()
            .map(|name| {
                let located = agentlab_secrets::locate(&dir, &name).ok();
                let loaded = match &key {
                    Ok(key) => agentlab_secrets::load_bundle_with_key(&dir, &name, key),
                    Err(e) => Err(BundleError::KeyUnreadable { path: key_path.clone(), reason: e.to_string() }),
                };
                let (ok, summary, error, code) = match loaded {
                    Ok(loaded) => (true, serde_json::to_value(loaded.bundle.summary()).ok(), None, None),
                    Err(e) => (false, None, Some(e.to_string()), Some(e.code().to_string())),
                };
                SecretsBundleEntry {
                    path: located.as_ref().map(|l| l.path.display().to_string()),
                    format: located.map(|l| format_name(l.format).to_string()),
                    name,
                    ok,
                    summary,
                    error,
                    code,
                }
            })
            .collect::<Vec<_>>();
        (recipients, bundles)
    })
    .await?;
    let audit = app.store.events_of_kind_prefix("secrets.", AUDIT_TAIL)?;
    Ok(Json(SecretsListResponse {
        dir: app.config.secrets_dir.display().to_string(),
        key_path: app.config.secrets_age_key_path.display().to_string(),
        recipients,
        default_bundle: app.config.secrets_bundle.clone(),
        bundles,
        audit,
    }))
}

pub async fn show(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Bytes,
) -> Result<Json<ShowSecretsResponse>, ApiError> {
    let req: ShowSecretsRequest = super::sandbox_ops::optional_body(&body)?;
    let name = req.bundle.unwrap_or_else(|| app.config.secrets_bundle.clone());
    let loaded = load(&app, &name).await?;
    let plaintext = match req.reveal {
        false => None,
        true => {
            let event = NewEvent::new(EventKind::SecretsRevealed, Stage::Lifecycle, format!("bundle {name} revealed"))
                .payload(serde_json::json!({ "bundle": name }))
                .by(peer.uid);
            // The audit record first: no record, no values.
            app.store.append_event(&event)?;
            let (dir, key_path, bundle_name) =
                (app.config.secrets_dir.clone(), app.config.secrets_age_key_path.clone(), name.clone());
            let plaintext = blocking(move || {
                let key = AgeKey::load(&key_path)?;
                let located = agentlab_secrets::locate(&dir, &bundle_name)?;
                agentlab_secrets::decrypt_located(&located, &key)
            })
            .await?
            .map_err(|e| refused(&name, &e))?;
            Some(String::from_utf8_lossy(&plaintext).into_owned())
        }
    };
    Ok(Json(ShowSecretsResponse {
        bundle: name,
        path: loaded.path.display().to_string(),
        format: format_name(loaded.format).to_string(),
        summary: summary_value(&loaded.bundle.summary())?,
        plaintext,
    }))
}

pub async fn edit(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    StrictJson(req): StrictJson<EditSecretsRequest>,
) -> Result<Json<EditSecretsResponse>, ApiError> {
    let entry = req.change.entry();
    let change = bundle_change(req.change)?;
    let op = change.describe().0;
    let edited = change_bundle(&app, peer.uid, &req.bundle, vec![change]).await?;
    Ok(Json(EditSecretsResponse {
        bundle: req.bundle,
        path: edited.path.display().to_string(),
        format: format_name(edited.format).to_string(),
        created: edited.created,
        op: op.to_string(),
        entry,
        summary: summary_value(&edited.summary)?,
    }))
}

/// Applies `changes` to bundle `name` (one re-seal) and records a `secrets.changed` event per
/// change, naming the entry, never the value.
pub(super) async fn change_bundle(
    app: &AppState,
    peer_uid: Option<u32>,
    name: &str,
    changes: Vec<BundleChange>,
) -> Result<agentlab_secrets::Edited, ApiError> {
    let (dir, key_path, bundle_name) =
        (app.config.secrets_dir.clone(), app.config.secrets_age_key_path.clone(), name.to_string());
    let described: Vec<(&'static str, String)> = changes.iter().map(BundleChange::describe).collect();
    let edited = blocking(move || {
        let key = AgeKey::load(&key_path)?;
        agentlab_secrets::edit_bundle_all(&dir, &bundle_name, &key, &changes)
    })
    .await?
    .map_err(|e| refused(name, &e))?;
    let format = format_name(edited.format);
    for (op, entry) in described {
        tracing::info!(bundle = %name, op, entry = %entry, "secrets bundle changed");
        let event = NewEvent::new(EventKind::SecretsChanged, Stage::Lifecycle, format!("bundle {name}: {op} {entry}"))
            .payload(serde_json::json!({ "bundle": name, "op": op, "entry": entry, "format": format, "created": edited.created }))
            .by(peer_uid);
        app.store.append_event(&event)?;
    }
    Ok(edited)
}

pub async fn rotate_key(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Result<Json<RotateKeyResponse>, ApiError> {
    let (dir, key_path) = (app.config.secrets_dir.clone(), app.config.secrets_age_key_path.clone());
    let result = blocking(move || agentlab_secrets::rotate_key(&dir, &key_path)).await?;
    let key_path = app.config.secrets_age_key_path.display().to_string();
    match result {
        Ok(rotated) => {
            let event = NewEvent::new(
                EventKind::SecretsKeyRotated,
                Stage::Lifecycle,
                format!("age key rotated to {}; {} bundles re-sealed", rotated.recipient, rotated.bundles.len()),
            )
            .payload(serde_json::json!({
                "recipient": rotated.recipient, "retired": rotated.retired, "bundles": rotated.bundles,
            }))
            .by(peer.uid);
            app.store.append_event(&event)?;
            Ok(Json(RotateKeyResponse {
                key_path,
                recipient: rotated.recipient,
                retired: rotated.retired,
                bundles: rotated.bundles,
            }))
        }
        Err(e) => {
            let event = NewEvent::new(EventKind::SecretsRotateFailed, Stage::Lifecycle, e.to_string()).by(peer.uid);
            app.store.append_event(&event)?;
            Err(ApiError::new(ErrorCode::SecretsInvalid, format!("key rotation stopped: {e}"))
                .with_details(serde_json::json!({ "reason": e.code() })))
        }
    }
}

/// The wire change as the secrets crate's; an unknown git field is refused here.
fn bundle_change(change: SecretsChange) -> Result<BundleChange, ApiError> {
    Ok(match change {
        SecretsChange::SetEnv { name, value } => BundleChange::SetEnv { name, value },
        SecretsChange::UnsetEnv { name } => BundleChange::UnsetEnv { name },
        SecretsChange::SetGit { field, value } => {
            let field = GitField::from_name(&field).ok_or_else(|| {
                let known: Vec<&str> = GitField::ALL.iter().map(|f| f.name()).collect();
                ApiError::new(
                    ErrorCode::InvalidValue,
                    format!("git field `{field}` is not one of {}", known.join(", ")),
                )
            })?;
            BundleChange::SetGit { field, value }
        }
        SecretsChange::AddSshKey { name, key, key_type, comment } => {
            BundleChange::AddSshKey { name, key, key_type, comment }
        }
        SecretsChange::RemoveSshKey { name } => BundleChange::RemoveSshKey { name },
    })
}

pub(super) async fn load(app: &AppState, name: &str) -> Result<agentlab_secrets::LoadedBundle, ApiError> {
    let (dir, key, bundle_name) =
        (app.config.secrets_dir.clone(), app.config.secrets_age_key_path.clone(), name.to_string());
    blocking(move || agentlab_secrets::load_bundle(&dir, &bundle_name, &key)).await?.map_err(|e| refused(name, &e))
}

pub(super) fn refused(name: &str, e: &BundleError) -> ApiError {
    ApiError::new(ErrorCode::SecretsInvalid, format!("bundle `{name}`: {e}"))
        .with_details(serde_json::json!({"bundle": name, "reason": e.code()}))
}

fn format_name(format: BundleFormat) -> &'static str {
    match format {
        BundleFormat::Age => "age",
        BundleFormat::Sops => "sops",
    }
}

fn summary_value(summary: &agentlab_secrets::BundleSummary) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(summary)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot summarise the bundle: {e}")))
}

/// Runs file and crypto work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("secrets task failed: {e}")))
}
