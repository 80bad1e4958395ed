//! Age-encrypted bundle files: decrypting (binary or ASCII-armored) and encrypting.

use std::io::{Read, Write};
use std::path::Path;

use age::armor::{ArmoredReader, ArmoredWriter, Format};

use crate::age_key::AgeKey;
use crate::error::BundleError;

/// Largest plaintext bundle accepted; real bundles are a few KiB.
pub const MAX_PLAINTEXT_BYTES: u64 = 1024 * 1024;

/// Largest encrypted file read: armor grows the payload by 4/3, plus header and chunk tags.
pub(crate) const MAX_CIPHERTEXT_BYTES: u64 = 2 * MAX_PLAINTEXT_BYTES;

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
