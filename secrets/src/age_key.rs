//! The daemon's age identity file (`secrets_age_key_path`): loading it safely, and creating one
//! in the format `age-keygen` writes.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;

use crate::atomic_write::{Existing, write_private_file};
use crate::error::BundleError;

/// An identity file is a few lines; anything bigger is not one.
const MAX_IDENTITY_FILE_BYTES: u64 = 64 * 1024;

/// The X25519 identities of one age identity file, and the path they came from.
///
/// Plugin identities are not supported (the daemon runs unattended; a plugin could prompt).
pub struct AgeKey {
    path: PathBuf,
    identities: Vec<x25519::Identity>,
}

impl AgeKey {
    /// Reads an identity file: `#` comment lines, blank lines and `AGE-SECRET-KEY-1…` lines.
    ///
    /// Refuses a file that group or others may read: a key that other users could have copied
    /// protects nothing.
    pub fn load(path: &Path) -> Result<AgeKey, BundleError> {
        let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BundleError::key(
                path,
                format!(
                    "the file does not exist; create it with `age-keygen -o {0} && chmod 600 {0}` \
                     or point secrets_age_key_path at the daemon's key",
                    path.display()
                ),
            ),
            _ => BundleError::key(path, e.to_string()),
        })?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(BundleError::key(
                path,
                format!("mode {mode:04o} lets group or others read it; run `chmod 600 {}`", path.display()),
            ));
        }
        if !metadata.is_file() {
            return Err(BundleError::key(path, "not a regular file"));
        }
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_IDENTITY_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| BundleError::key(path, e.to_string()))?;
        if text.len() as u64 > MAX_IDENTITY_FILE_BYTES {
            return Err(BundleError::key(path, format!("larger than {MAX_IDENTITY_FILE_BYTES} bytes")));
        }
        AgeKey::parse(path, &text)
    }

    /// The identities in `text` (an identity file's contents), as if read from `path`.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<AgeKey, BundleError> {
        let identities = parse_identities(text).map_err(|reason| BundleError::key(path, reason))?;
        Ok(AgeKey { path: path.to_path_buf(), identities })
    }

    /// The identity file this key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public recipients (`age1…`) of this key's identities, in file order.
    pub fn recipients(&self) -> Vec<x25519::Recipient> {
        self.identities.iter().map(x25519::Identity::to_public).collect()
    }

    /// The first recipient as text: what `age -r` needs to encrypt a bundle to this daemon.
    pub fn recipient(&self) -> String {
        // `parse_identities` guarantees at least one identity.
        self.identities.first().map(|i| i.to_public().to_string()).unwrap_or_default()
    }

    pub(crate) fn identities(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities.iter().map(|i| i as &dyn age::Identity)
    }
}

impl std::fmt::Debug for AgeKey {
    /// The path and public recipients only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let recipients: Vec<String> = self.recipients().iter().map(ToString::to_string).collect();
        f.debug_struct("AgeKey").field("path", &self.path).field("recipients", &recipients).finish_non_exhaustive()
    }
}

/// Parses identity lines; errors give a line number, never the line (it may be a key).
fn parse_identities(text: &str) -> Result<Vec<x25519::Identity>, String> {
    let mut identities = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.parse::<x25519::Identity>() {
            Ok(identity) => identities.push(identity),
            Err(_) => {
                return Err(format!(
                    "line {} is not an age X25519 identity (expected AGE-SECRET-KEY-1…; plugin identities are not supported)",
                    index + 1
                ));
            }
        }
    }
    if identities.is_empty() {
        return Err("contains no AGE-SECRET-KEY-1… identity".to_string());
    }
    Ok(identities)
}

/// A new identity as `age-keygen` writes it (`# created`, `# public key`, the secret key
/// line), and its public recipient.
pub fn generate_identity() -> (SecretString, String) {
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let created = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let text = format!("# created: {created}\n# public key: {recipient}\n{}\n", identity.to_string().expose_secret());
    (SecretString::from(text), recipient)
}

/// Creates a new identity file at `path` (mode 0600, atomically) and returns its recipient.
/// An existing file is never overwritten: it may be the only copy of the key bundles are
/// encrypted to.
pub fn write_identity(path: &Path) -> Result<String, BundleError> {
    let (secret, recipient) = generate_identity();
    write_private_file(path, secret.expose_secret().as_bytes(), Existing::Refuse)?;
    Ok(recipient)
}
