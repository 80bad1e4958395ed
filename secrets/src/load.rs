//! A named bundle end to end: found in the secrets directory, decrypted in memory (age or
//! sops) and parsed; and a plaintext bundle sealed into the directory's formats.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::age_file::{MAX_PLAINTEXT_BYTES, decrypt_file, encrypt_to};
use crate::age_key::AgeKey;
use crate::atomic_write::{Existing, write_private_file};
use crate::bundle::SecretsBundle;
use crate::error::BundleError;
use crate::locate::{BundleFormat, Located, is_sops_path, locate};
use crate::sops::{SopsLayout, decrypt_sops_file, encrypt_sops};
use crate::summary::BundleSummary;

/// A decrypted, parsed bundle and the file it came from.
#[derive(Debug)]
pub struct LoadedBundle {
    pub path: PathBuf,
    pub format: BundleFormat,
    pub bundle: SecretsBundle,
}

/// What [`seal`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The recipient the bundle was encrypted to.
    pub recipient: String,
    pub summary: BundleSummary,
}

/// Finds bundle `name` in `secrets_dir`, decrypts it with the identity file at
/// `identity_path` and parses it.
pub fn load_bundle(secrets_dir: &Path, name: &str, identity_path: &Path) -> Result<LoadedBundle, BundleError> {
    let located = match locate(secrets_dir, name) {
        Ok(located) => located,
        // With the key at hand the "encrypt it like this" command can name the real recipient.
        Err(BundleError::PlaintextRefused { plaintext, target, .. }) => {
            let key = AgeKey::load(identity_path).ok();
            return Err(BundleError::PlaintextRefused {
                plaintext,
                target,
                recipient: key.as_ref().map(AgeKey::recipient),
                key_path: Some(identity_path.to_path_buf()),
            });
        }
        Err(e) => return Err(e),
    };
    let key = AgeKey::load(identity_path)?;
    load_located(located, &key)
}

/// [`load_bundle`] with a key the caller already loaded.
pub fn load_bundle_with_key(secrets_dir: &Path, name: &str, key: &AgeKey) -> Result<LoadedBundle, BundleError> {
    let located = locate(secrets_dir, name).map_err(|e| match e {
        BundleError::PlaintextRefused { plaintext, target, .. } => BundleError::PlaintextRefused {
            plaintext,
            target,
            recipient: Some(key.recipient()),
            key_path: Some(key.path().to_path_buf()),
        },
        other => other,
    })?;
    load_located(located, key)
}

/// The plaintext of a located bundle file, in memory.
pub fn decrypt_located(located: &Located, key: &AgeKey) -> Result<Vec<u8>, BundleError> {
    match located.format {
        BundleFormat::Age => decrypt_file(&located.path, key),
        BundleFormat::Sops => decrypt_sops_file(&located.path, key),
    }
}

fn load_located(located: Located, key: &AgeKey) -> Result<LoadedBundle, BundleError> {
    let plaintext = decrypt_located(&located, key)?;
    let origin = located.path.display().to_string();
    let text = String::from_utf8(plaintext).map_err(|_| BundleError::InvalidBundle {
        origin: origin.clone(),
        message: "decrypted bundle is not UTF-8 text".to_string(),
    })?;
    let bundle = SecretsBundle::parse_yaml(&text, &origin)?;
    Ok(LoadedBundle { path: located.path, format: located.format, bundle })
}

/// How a bundle is sealed: an age file to its recipients, or a sops file with its layout.
#[derive(Debug, Clone)]
pub enum Sealing {
    Age(Vec<age::x25519::Recipient>),
    Sops(SopsLayout),
}

impl Sealing {
    /// A new bundle in `format` to `recipients` (a sops file gets sops's default rule).
    pub fn new(format: BundleFormat, recipients: Vec<age::x25519::Recipient>) -> Sealing {
        match format {
            BundleFormat::Age => Sealing::Age(recipients),
            BundleFormat::Sops => Sealing::Sops(SopsLayout::new(recipients)),
        }
    }

    pub fn format(&self) -> BundleFormat {
        match self {
            Sealing::Age(_) => BundleFormat::Age,
            Sealing::Sops(_) => BundleFormat::Sops,
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, BundleError> {
        match self {
            Sealing::Age(recipients) => encrypt_to(recipients, plaintext),
            Sealing::Sops(layout) => encrypt_sops(layout, plaintext),
        }
    }
}

/// Encrypts the plaintext bundle at `plaintext_path` to the identity file's recipients and
/// writes it to `out_path` (mode 0600, atomically): a sops file when `out_path` is
/// `*.sops.yaml` or `*.sops.yml`, else an age file. A bundle that does not parse is refused:
/// sealing it would only move the error to the first job that uses it.
pub fn seal(identity_path: &Path, plaintext_path: &Path, out_path: &Path) -> Result<Sealed, BundleError> {
    let key = AgeKey::load(identity_path)?;
    let format = if is_sops_path(out_path) { BundleFormat::Sops } else { BundleFormat::Age };
    if format == BundleFormat::Sops && out_path.extension().is_some_and(|ext| ext == "json") {
        return Err(BundleError::Unsupported {
            path: out_path.to_path_buf(),
            reason: "sops bundles are sealed as YAML; name the file *.sops.yaml".to_string(),
        });
    }
    let file = std::fs::File::open(plaintext_path).map_err(|e| BundleError::io("opening", plaintext_path, e))?;
    let mut plaintext = Vec::new();
    file.take(MAX_PLAINTEXT_BYTES + 1)
        .read_to_end(&mut plaintext)
        .map_err(|e| BundleError::io("reading", plaintext_path, e))?;
    if plaintext.len() as u64 > MAX_PLAINTEXT_BYTES {
        return Err(BundleError::TooLarge { path: plaintext_path.to_path_buf(), limit: MAX_PLAINTEXT_BYTES });
    }
    let origin = plaintext_path.display().to_string();
    let text = std::str::from_utf8(&plaintext)
        .map_err(|_| BundleError::InvalidBundle { origin: origin.clone(), message: "not UTF-8 text".to_string() })?;
    let bundle = SecretsBundle::parse_yaml(text, &origin)?;
    let ciphertext = Sealing::new(format, key.recipients()).seal(&plaintext)?;
    write_private_file(out_path, &ciphertext, Existing::Replace)?;
    Ok(Sealed { recipient: key.recipient(), summary: bundle.summary() })
}
