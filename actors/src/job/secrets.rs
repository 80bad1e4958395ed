//! A job's secrets: the age bundle its profile names (else the daemon's `secrets_bundle`),
//! decrypted in memory only when it is needed — to check it at job creation, to build the
//! bootstrap payload, and to redact what the guest sends back.

use super::SecretsSettings;
use crate::model::redact::Redactor;
use crate::profiles::ProfileRegistry;
use agentlab_secrets::{BundleError, SecretsBundle};

/// Which bundle a profile uses, and whether it must exist.
fn bundle_name(settings: &SecretsSettings, profiles: &ProfileRegistry, profile: &str) -> (String, bool) {
    let named = profiles.snapshot().get(profile).and_then(|p| p.profile.secrets_bundle.clone());
    match named {
        Some(name) => (name, true),
        None => (settings.default_bundle.clone(), false),
    }
}

/// The job's bundle; `Ok(None)` when the profile names none and the daemon's default
/// bundle does not exist (a job without secrets).
pub fn load(
    settings: &SecretsSettings,
    profiles: &ProfileRegistry,
    profile: &str,
) -> Result<Option<SecretsBundle>, BundleError> {
    let (name, required) = bundle_name(settings, profiles, profile);
    match agentlab_secrets::load_bundle(&settings.dir, &name, &settings.identity_path) {
        Ok(loaded) => Ok(Some(loaded.bundle)),
        Err(BundleError::NotFound { .. }) if !required => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn check(settings: &SecretsSettings, profiles: &ProfileRegistry, profile: &str) -> Result<(), BundleError> {
    load(settings, profiles, profile).map(|_| ())
}

/// Redacts every secret value of the job's bundle. A bundle that cannot be opened any more
/// gives an empty redactor (the runner redacted already); the reason is logged.
pub fn redactor_for(settings: &SecretsSettings, profiles: &ProfileRegistry, profile: &str) -> Redactor {
    match load(settings, profiles, profile) {
        Ok(Some(bundle)) => Redactor::new(bundle.secret_values()),
        Ok(None) => Redactor::default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the job's secrets bundle to redact reports");
            Redactor::default()
        }
    }
}
