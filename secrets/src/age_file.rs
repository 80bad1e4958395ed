//! Age-encrypted bundle files: decrypting (binary or ASCII-armored), encrypting, sealing a
//! plaintext bundle, and loading a named bundle end to end.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};

use crate::age_key::AgeKey;
use crate::atomic_write::{Existing, write_private_file};
use crate::bundle::SecretsBundle;
use crate::error::BundleError;
use crate::locate::locate;
use crate::summary::BundleSummary;

/// Largest plaintext bundle accepted; real bundles are a few KiB.
pub const MAX_PLAINTEXT_BYTES: u64 = 1024 * 1024;

/// Largest encrypted file read: armor grows the payload by 4/3, plus header and chunk tags.
const MAX_CIPHERTEXT_BYTES: u64 = 2 * MAX_PLAINTEXT_BYTES;

/// A decrypted, parsed bundle and the file it came from.
#[derive(Debug)]
pub struct LoadedBundle {
    pub path: PathBuf,
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
    let path = match locate(secrets_dir, name) {
        Ok(path) => path,
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
    load_located(path, &key)
}

/// [`load_bundle`] with a key the caller already loaded.
pub fn load_bundle_with_key(secrets_dir: &Path, name: &str, key: &AgeKey) -> Result<LoadedBundle, BundleError> {
    let path = locate(secrets_dir, name).map_err(|e| match e {
        BundleError::PlaintextRefused { plaintext, target, .. } => BundleError::PlaintextRefused {
            plaintext,
            target,
            recipient: Some(key.recipient()),
            key_path: Some(key.path().to_path_buf()),
        },
        other => other,
    })?;
    load_located(path, key)
}

fn load_located(path: PathBuf, key: &AgeKey) -> Result<LoadedBundle, BundleError> {
    let plaintext = decrypt_file(&path, key)?;
    let origin = path.display().to_string();
    let text = String::from_utf8(plaintext).map_err(|_| BundleError::InvalidBundle {
        origin: origin.clone(),
        message: "decrypted bundle is not UTF-8 text".to_string(),
    })?;
    let bundle = SecretsBundle::parse_yaml(&text, &origin)?;
    Ok(LoadedBundle { path, bundle })
}

/// Decrypts the age file at `path` (binary or ASCII-armored) with `key`.
pub fn decrypt_file(path: &Path, key: &AgeKey) -> Result<Vec<u8>, BundleError> {
    let file = std::fs::File::open(path).map_err(|e| BundleError::io("opening", path, e))?;
    let size = file.metadata().map_err(|e| BundleError::io("reading", path, e))?.len();
    if size > MAX_CIPHERTEXT_BYTES {
        return Err(BundleError::TooLarge { path: path.to_path_buf(), limit: MAX_CIPHERTEXT_BYTES });
    }
    let failed = |reason: String| BundleError::DecryptFailed { path: path.to_path_buf(), reason };
    // ArmoredReader passes binary age files through unchanged and decodes armored ones.
    let input = ArmoredReader::new(std::io::BufReader::new(file.take(MAX_CIPHERTEXT_BYTES)));
    let decryptor = age::Decryptor::new(input).map_err(|e| failed(format!("not a valid age file: {e}")))?;
    let mut reader = decryptor.decrypt(key.identities()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => failed(format!(
            "the bundle was not encrypted to this daemon's key (recipient {recipient}, identity file {key_path}); \
             re-encrypt it with `age -r {recipient}`",
            recipient = key.recipient(),
            key_path = key.path().display()
        )),
        other => failed(other.to_string()),
    })?;
    let mut plaintext = Vec::new();
    (&mut reader)
        .take(MAX_PLAINTEXT_BYTES + 1)
        .read_to_end(&mut plaintext)
        .map_err(|e| failed(format!("the encrypted payload is damaged: {e}")))?;
    if plaintext.len() as u64 > MAX_PLAINTEXT_BYTES {
        return Err(BundleError::TooLarge { path: path.to_path_buf(), limit: MAX_PLAINTEXT_BYTES });
    }
    Ok(plaintext)
}

/// Encrypts `plaintext` to `recipients` as an ASCII-armored age file.
pub fn encrypt_to(recipients: &[age::x25519::Recipient], plaintext: &[u8]) -> Result<Vec<u8>, BundleError> {
    let in_memory = Path::new("<in-memory age file>");
    let io = |e: std::io::Error| BundleError::io("encrypting", in_memory, e);
    if recipients.is_empty() {
        return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "no recipients")));
    }
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let armored = ArmoredWriter::wrap_output(Vec::new(), Format::AsciiArmor).map_err(io)?;
    let mut writer = encryptor.wrap_output(armored).map_err(io)?;
    writer.write_all(plaintext).map_err(io)?;
    writer.finish().and_then(ArmoredWriter::finish).map_err(io)
}

/// Encrypts the plaintext bundle at `plaintext_path` to the identity file's recipients and
/// writes it to `out_path` (mode 0600, atomically). A bundle that does not parse is refused:
/// sealing it would only move the error to the first job that uses it.
pub fn seal(identity_path: &Path, plaintext_path: &Path, out_path: &Path) -> Result<Sealed, BundleError> {
    let key = AgeKey::load(identity_path)?;
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
    let ciphertext = encrypt_to(&key.recipients(), &plaintext)?;
    write_private_file(out_path, &ciphertext, Existing::Replace)?;
    Ok(Sealed { recipient: key.recipient(), summary: bundle.summary() })
}
