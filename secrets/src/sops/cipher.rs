//! One sops value: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, AES-256-GCM with a 32-byte
//! nonce and the value's key path as additional data (getsops/sops `aes/cipher.go`: nonceSize
//! 32, `NewGCMWithNonceSize`; the tag is the last 16 bytes of the sealed text, split off into
//! `tag:`; standard base64 with padding). The plaintext is the value's text; `type:` says how
//! to read it back (`sops.go` `ToBytes`: booleans are `True`/`False`, floats their shortest
//! decimal form).

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::tree::Node;

/// sops's nonce size; a different one is not what sops writes.
const NONCE_BYTES: usize = 32;
const TAG_BYTES: usize = 16;

type SopsAes = AesGcm<Aes256, U32>;

/// The 32-byte key every value of a file is encrypted with (sealed to each recipient).
pub(crate) struct DataKey(pub(crate) [u8; 32]);

impl DataKey {
    pub(crate) fn random() -> std::io::Result<DataKey> {
        let mut key = [0u8; 32];
        random_bytes(&mut key)?;
        Ok(DataKey(key))
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0 = [0; 32];
    }
}

/// The bytes sops hashes and encrypts for a scalar (`ToBytes`), with its `type:` name; `None`
/// for null and collections.
pub(crate) fn scalar_bytes(node: &Node) -> Option<(Vec<u8>, &'static str)> {
    match node {
        Node::Str(s) => Some((s.as_bytes().to_vec(), "str")),
        Node::Int(i) => Some((i.to_string().into_bytes(), "int")),
        // Go's FormatFloat(f, 'f', -1, 64) and Rust's Display both give the shortest decimal
        // that reads back as the same float, never an exponent.
        Node::Float(f) => Some((f.to_string().into_bytes(), "float")),
        Node::Bool(b) => Some(((if *b { "True" } else { "False" }).as_bytes().to_vec(), "bool")),
        Node::Map(_) | Node::Seq(_) | Node::Null => None,
    }
}

/// Encrypts a scalar under `aad` (its key path, or `lastmodified` for the MAC).
pub(crate) fn encrypt(node: &Node, key: &DataKey, aad: &str) -> Result<String, String> {
    let (plaintext, kind) = scalar_bytes(node).ok_or("only scalars are encrypted")?;
    let mut nonce = [0u8; NONCE_BYTES];
    random_bytes(&mut nonce).map_err(|e| format!("cannot read random bytes: {e}"))?;
    let cipher = SopsAes::new_from_slice(&key.0).map_err(|_| "bad key length")?;
    let sealed = cipher
        .encrypt(Nonce::<U32>::from_slice(&nonce), Payload { msg: &plaintext, aad: aad.as_bytes() })
        .map_err(|_| "AES-GCM encryption failed")?;
    let (data, tag) = sealed.split_at(sealed.len() - TAG_BYTES);
    Ok(format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        STANDARD.encode(data),
        STANDARD.encode(nonce),
        STANDARD.encode(tag)
    ))
}

/// Decrypts an `ENC[…]` string into the scalar it was. Errors never quote the value.
pub(crate) fn decrypt(text: &str, key: &DataKey, aad: &str) -> Result<Node, String> {
    let inner = text
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or("not an ENC[AES256_GCM,…] value (the value is not encrypted, or not by sops)")?;
    let mut parts = inner.split(',');
    let mut field = |name: &str| {
        parts.next().and_then(|part| part.strip_prefix(name)).ok_or(format!("the ENC[…] value has no {name}"))
    };
    let (data, iv, tag, kind) = (field("data:")?, field("iv:")?, field("tag:")?, field("type:")?);
    let decode = |what: &str, b64: &str| STANDARD.decode(b64).map_err(|_| format!("its {what} is not base64"));
    let (mut sealed, iv, tag) = (decode("data", data)?, decode("iv", iv)?, decode("tag", tag)?);
    if iv.len() != NONCE_BYTES || tag.len() != TAG_BYTES {
        return Err(format!(
            "its iv is {} bytes and its tag {} (sops writes {NONCE_BYTES} and {TAG_BYTES})",
            iv.len(),
            tag.len()
        ));
    }
    sealed.extend_from_slice(&tag);
    let cipher = SopsAes::new_from_slice(&key.0).map_err(|_| "bad key length")?;
    let plaintext =
        cipher.decrypt(Nonce::<U32>::from_slice(&iv), Payload { msg: &sealed, aad: aad.as_bytes() }).map_err(
            |_| "authentication failed: the value was altered, moved to another key, or sealed with another data key",
        )?;
    let text = String::from_utf8(plaintext).map_err(|_| "the decrypted value is not UTF-8")?;
    let unreadable = |what: &str| format!("the decrypted value is not {what} (type:{kind})");
    match kind {
        "str" | "bytes" | "time" => Ok(Node::Str(text)),
        "int" => text.parse().map(Node::Int).map_err(|_| unreadable("an integer")),
        "float" => text.parse().map(Node::Float).map_err(|_| unreadable("a float")),
        // Go's strconv.ParseBool.
        "bool" => match text.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Node::Bool(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Node::Bool(false)),
            _ => Err(unreadable("a boolean")),
        },
        other => Err(format!("type:{other} is not a type sops writes")),
    }
}

fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_and_the_path_is_bound() {
        let key = DataKey::random().unwrap();
        for node in [Node::Str("s3cr3t".into()), Node::Int(-42), Node::Float(1234.56789), Node::Bool(false)] {
            let sealed = encrypt(&node, &key, "env:A:").unwrap();
            assert_eq!(decrypt(&sealed, &key, "env:A:").unwrap(), node);
            assert!(decrypt(&sealed, &key, "env:B:").unwrap_err().contains("authentication failed"));
        }
        let other = DataKey::random().unwrap();
        let sealed = encrypt(&Node::Str("x".into()), &key, "a:").unwrap();
        assert!(decrypt(&sealed, &other, "a:").is_err());
        assert!(decrypt("plain", &key, "a:").unwrap_err().contains("not an ENC"));
    }
}
