//! The simulator's TLS identity: a self-signed certificate generated on first use and kept
//! in the state directory, so its fingerprint stays the same across restarts (as a
//! Proxmox host's does) and can be pinned.

use agentlab_proxmox::api::Fingerprint;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub fingerprint: Fingerprint,
}

/// Loads `<dir>/pve-ssl.pem` and `pve-ssl.key`, generating them if missing.
pub fn load_or_create(dir: &Path) -> Result<Identity, String> {
    let cert_path = dir.join("pve-ssl.pem");
    let key_path = dir.join("pve-ssl.key");
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "pve-sim".to_string()];
        let generated =
            rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot generate a certificate: {e}"))?;
        std::fs::write(&cert_path, generated.cert.pem())
            .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
        write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    }
    let cert = CertificateDer::from_pem_file(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let fingerprint = Fingerprint::of_der(cert.as_ref());
    Ok(Identity { cert, key, fingerprint })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn server_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| format!("bad certificate or key: {e}"))?;
    Ok(Arc::new(config))
}
