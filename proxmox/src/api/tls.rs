//! How the API client trusts the Proxmox certificate.
//!
//! A Proxmox host serves a self-signed certificate by default, so the usual choice is to
//! pin its SHA-256 fingerprint (the colon hex Proxmox shows under node > Certificates).
//! A mismatch names both fingerprints so an operator can tell a re-issued certificate from
//! an impostor.

use crate::PveError;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// A SHA-256 certificate fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses `AB:CD:…` (32 bytes; colons optional, any case).
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let hex: String = text.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "`{text}` is not a SHA-256 fingerprint: expected 32 colon-separated hex bytes like AB:CD:…"
            ));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Fingerprint(bytes))
    }

    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        f.write_str(&parts.join(":"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// The platform's trust store (a certificate from a public CA).
    System,
    /// Exactly this end-entity certificate.
    Fingerprint(Fingerprint),
    /// Certificates signed by the CA in this PEM file.
    CaFile(PathBuf),
    /// No verification at all (`proxmox_tls_insecure: true`); the daemon warns at every start.
    Insecure,
}

const MISMATCH_MARK: &str = "certificate fingerprint mismatch";

impl TlsTrust {
    pub(crate) fn apply(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, PveError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config_builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| PveError::Config(e.to_string()))?;
        let config = match self {
            TlsTrust::System => return Ok(builder),
            TlsTrust::Fingerprint(expected) => config_builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier { expected: Some(*expected), provider }))
                .with_no_client_auth(),
            TlsTrust::Insecure => config_builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier { expected: None, provider }))
                .with_no_client_auth(),
            TlsTrust::CaFile(path) => {
                use rustls::pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| PveError::Config(format!("proxmox_tls_ca_path {}: {e}", path.display())))?;
                for cert in certs {
                    let cert =
                        cert.map_err(|e| PveError::Config(format!("proxmox_tls_ca_path {}: {e}", path.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| PveError::Config(format!("proxmox_tls_ca_path {}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(PveError::Config(format!(
                        "proxmox_tls_ca_path {} holds no certificate",
                        path.display()
                    )));
                }
                config_builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(builder.tls_backend_preconfigured(config))
    }
}

/// Pulls our mismatch sentence out of an error chain.
pub(crate) fn take_mismatch(chain: &str) -> Option<String> {
    let start = chain.find(MISMATCH_MARK)?;
    let rest = &chain[start..];
    let end = rest.find(" (pin").map(|i| i + rest[i..].find(')').map_or(0, |j| j + 1)).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// Accepts the one certificate whose fingerprint is pinned (or, with `None`, any), and
/// still checks the handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct PinnedVerifier {
    expected: Option<Fingerprint>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(expected) = self.expected else {
            return Ok(ServerCertVerified::assertion());
        };
        let actual = Fingerprint::of_der(end_entity.as_ref());
        if actual == expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "{MISMATCH_MARK}: expected {expected}, server presented {actual} (pin the new one in proxmox_tls_fingerprint only if you re-issued the certificate)"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_and_print_as_proxmox_shows_them() {
        let text = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let fp = Fingerprint::parse(text).unwrap();
        assert_eq!(fp.to_string(), text);
        assert_eq!(Fingerprint::parse(&text.to_lowercase().replace(':', "")), Ok(fp));
        assert!(Fingerprint::parse("AB:CD").is_err());
    }

    #[test]
    fn mismatch_text_is_found_in_a_chain() {
        let chain = "error sending request: invalid peer certificate: Other(certificate fingerprint mismatch: expected AA, server presented BB (pin the new one only if you re-issued the certificate))";
        let found = take_mismatch(chain).unwrap_or_default();
        assert!(found.starts_with("certificate fingerprint mismatch: expected AA, server presented BB"), "{found}");
    }
}
