//! Random secrets and what the store keeps of them. Bootstrap, runner and artifact tokens
//! are 256 random bits; the store holds only their SHA-256 (a leaked database grants
//! nothing), and ids (job ids, snippet names) use shorter random hex.

use sha2::{Digest, Sha256};
use std::io::Read;

/// 256 random bits, hex (64 characters).
pub fn random_token() -> std::io::Result<String> {
    random_hex(32)
}

/// `bytes` random bytes from the kernel, hex.
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the store keeps instead of the token.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
        assert_eq!(random_hex(6).unwrap().len(), 12);
    }
}
