//! Rotating the daemon's age key: every bundle re-sealed to a new identity, the old one kept
//! until all of them are.
//!
//! 1. Every bundle is decrypted with the current key, in memory; if one cannot be, nothing is
//!    changed.
//! 2. The identity file becomes the new identity followed by the old ones (the daemon tries
//!    every identity in the file, so each bundle reads whichever key it is sealed to).
//! 3. Each bundle is re-sealed to the new recipient alone (a sops file keeps its other age
//!    recipients, a team's: only the daemon's old key is dropped), checked to open with the
//!    new identity alone, and renamed into place.
//! 4. Only when all are: the identity file becomes the new identity alone.
//!
//! A crash (or a failed bundle) between 2 and 4 leaves the file with both keys and every
//! bundle readable; running the rotation again finishes it with yet another key.

use std::path::Path;

use age::secrecy::ExposeSecret;

use crate::age_key::{AgeKey, generate_identity};
use crate::atomic_write::{Existing, remove_stale_temps, write_private_file};
use crate::bundle::SecretsBundle;
use crate::edit::{DirLock, merge, reseal};
use crate::error::BundleError;
use crate::load::{Sealing, decrypt_located};
use crate::locate::{BundleFormat, bundle_names, locate};
use crate::sops::SopsLayout;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The new recipient, the only one the identity file holds now.
    pub recipient: String,
    /// The recipients that were dropped from the identity file.
    pub retired: Vec<String>,
    /// The bundles re-sealed, by name.
    pub bundles: Vec<String>,
}

/// Rotates the identity at `identity_path` and re-seals every bundle in `secrets_dir`.
pub fn rotate_key(secrets_dir: &Path, identity_path: &Path) -> Result<Rotated, BundleError> {
    let _lock = DirLock::take(secrets_dir)?;
    let old = AgeKey::load(identity_path)?;
    let old_text = std::fs::read_to_string(identity_path).map_err(|e| BundleError::io("reading", identity_path, e))?;
    let old_recipients: Vec<String> = old.recipients().iter().map(ToString::to_string).collect();

    let mut opened = Vec::new();
    for name in bundle_names(secrets_dir) {
        let located = locate(secrets_dir, &name)?;
        let plaintext = decrypt_located(&located, &old)?;
        let text = String::from_utf8(plaintext.clone()).map_err(|_| BundleError::InvalidBundle {
            origin: located.path.display().to_string(),
            message: "not UTF-8 text".into(),
        })?;
        let bundle = SecretsBundle::parse_yaml(&text, &located.path.display().to_string())?;
        // A sops file keeps its layout and its other recipients (a team's); the daemon's old
        // key goes.
        let layout = match located.format {
            BundleFormat::Age => None,
            BundleFormat::Sops => Some(SopsLayout::of_file(&located.path)?),
        };
        opened.push((name, located, plaintext, bundle, layout));
    }

    let (new_text, recipient) = generate_identity();
    let new_key = AgeKey::parse(identity_path, new_text.expose_secret())?;
    let both = format!("{}{old_text}", new_text.expose_secret());
    remove_stale_temps(identity_path);
    write_private_file(identity_path, both.as_bytes(), Existing::Replace)?;

    let mut bundles = Vec::new();
    for (name, located, plaintext, bundle, layout) in opened {
        let sealing = match layout {
            None => Sealing::Age(new_key.recipients()),
            Some(layout) => {
                let others =
                    layout.recipients().iter().filter(|r| !old_recipients.contains(&r.to_string())).cloned().collect();
                Sealing::Sops(layout.with_recipients(merge(new_key.recipients(), others)))
            }
        };
        reseal(&located, &new_key, &sealing, &plaintext, &bundle)?;
        bundles.push(name);
    }
    write_private_file(identity_path, new_text.expose_secret().as_bytes(), Existing::Replace)?;
    Ok(Rotated { recipient, retired: old_recipients, bundles })
}
