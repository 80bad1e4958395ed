//! The HTTPS API backend: `Authorization: PVEAPIToken=…`, the `{"data": …}` envelope,
//! TLS pinned by certificate fingerprint, by a CA file, or (only when asked) unverified.

mod tls;

pub use tls::{Fingerprint, TlsTrust};

use crate::transport::{Method, Params, Transport, segment};
use crate::{PveError, PveFuture};
use serde_json::Value;
use std::time::Duration;

/// How to reach and authenticate to the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// e.g. `https://pve.example:8006`; `/api2/json` is appended when missing.
    pub url: String,
    /// `USER@REALM!TOKENID=SECRET`.
    pub token: String,
    pub trust: TlsTrust,
    /// Deadline of one HTTP request.
    pub timeout: Duration,
}

/// HTTPS to the Proxmox API with an API token.
pub struct ApiTransport {
    base: String,
    auth_header: String,
    http: reqwest::Client,
    timeout: Duration,
    trust: TlsTrust,
}

impl std::fmt::Debug for ApiTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ApiTransport").field("base", &self.base).finish_non_exhaustive()
    }
}

/// Checks the shape Proxmox accepts: `USER@REALM!TOKENID=SECRET` (split at the last `=`).
pub fn validate_token(token: &str) -> Result<(), String> {
    let Some((id, secret)) = token.rsplit_once('=') else {
        return Err("must be USER@REALM!TOKENID=SECRET (no `=` before the secret)".into());
    };
    let Some((user_realm, token_name)) = id.split_once('!') else {
        return Err("must be USER@REALM!TOKENID=SECRET (no `!` before the token name)".into());
    };
    let Some((user, realm)) = user_realm.rsplit_once('@') else {
        return Err("must be USER@REALM!TOKENID=SECRET (no `@` between user and realm)".into());
    };
    let name_ok = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c == ':' || c == '/') {
        return Err("the user part is empty or has spaces, `:` or `/`".into());
    }
    if !name_ok(realm) || !name_ok(token_name) {
        return Err("realm and token name must start with a letter and use letters, digits, `.`, `-`, `_`".into());
    }
    if secret.is_empty() {
        return Err("the secret after `=` is empty".into());
    }
    Ok(())
}

/// `application/x-www-form-urlencoded`, also used for query strings.
pub fn urlencode(params: &Params) -> String {
    params.iter().map(|(k, v)| format!("{}={}", segment(k), segment(v))).collect::<Vec<_>>().join("&")
}

impl ApiTransport {
    pub fn new(config: ApiConfig) -> Result<ApiTransport, PveError> {
        crate::install_crypto_provider();
        validate_token(&config.token).map_err(|e| PveError::Config(format!("proxmox_api_token {e}")))?;
        let url = config.url.trim_end_matches('/');
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(PveError::Config(format!("proxmox_api_url `{url}` must start with https://")));
        }
        let base = if url.ends_with("/api2/json") { url.to_string() } else { format!("{url}/api2/json") };
        let builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)));
        let builder = config.trust.apply(builder)?;
        let http = builder.build().map_err(|e| PveError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(ApiTransport {
            base,
            auth_header: format!("PVEAPIToken={}", config.token),
            http,
            timeout: config.timeout,
            trust: config.trust,
        })
    }

    async fn send(&self, method: Method, path: String, params: Params) -> Result<Value, PveError> {
        let mut url = format!("{}{path}", self.base);
        let request = match method {
            Method::Get | Method::Delete => {
                if !params.is_empty() {
                    url.push('?');
                    url.push_str(&urlencode(&params));
                }
                let m = if method == Method::Get { reqwest::Method::GET } else { reqwest::Method::DELETE };
                self.http.request(m, url)
            }
            Method::Post | Method::Put => {
                let m = if method == Method::Post { reqwest::Method::POST } else { reqwest::Method::PUT };
                self.http
                    .request(m, url)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(urlencode(&params))
            }
        };
        let response = request
            .header(reqwest::header::AUTHORIZATION, &self.auth_header)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        decode(response).await
    }

    fn transport_error(&self, e: reqwest::Error) -> PveError {
        if e.is_timeout() {
            return PveError::Timeout(self.timeout);
        }
        let chain = error_chain(&e);
        if let Some(mismatch) = tls::take_mismatch(&chain) {
            return PveError::Tls(mismatch);
        }
        let lower = chain.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            let hint = match &self.trust {
                TlsTrust::System => {
                    "; pin the certificate with proxmox_tls_fingerprint (Datacenter > node > Certificates) or set proxmox_tls_ca_path"
                }
                _ => "",
            };
            return PveError::Tls(format!("{chain}{hint}"));
        }
        PveError::Transient(chain)
    }
}

impl Transport for ApiTransport {
    fn kind(&self) -> &'static str {
        "api"
    }

    fn endpoint(&self) -> String {
        self.base.clone()
    }

    fn call(&self, method: Method, path: String, params: Params) -> PveFuture<'_, Value> {
        Box::pin(self.send(method, path, params))
    }
}

/// The whole source chain in one line (reqwest's own Display hides the cause).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Value,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Option<serde_json::Map<String, Value>>,
}

async fn decode(response: reqwest::Response) -> Result<Value, PveError> {
    let status = response.status().as_u16();
    let reason = response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
    let bytes = response.bytes().await.map_err(|e| PveError::Transient(error_chain(&e)))?;
    decode_answer(status, reason, &bytes)
}

/// An answer of Proxmox's API: the `data` member of the `{"data": …}` envelope, or a
/// classified error. Error text: `message` (PVE 8.3+), else the reason phrase (older hosts
/// put the text only there), else the status. Every transport that speaks the HTTP API
/// decodes through here, so errors are classified the same way.
pub fn decode_answer(status: u16, reason: Option<String>, bytes: &[u8]) -> Result<Value, PveError> {
    if (200..300).contains(&status) {
        let envelope: Envelope = serde_json::from_slice(bytes)
            .map_err(|e| PveError::Other(format!("unexpected answer from proxmox ({e})")))?;
        return Ok(envelope.data);
    }
    let envelope: Option<Envelope> = serde_json::from_slice(bytes).ok();
    let (message, errors) = match envelope {
        Some(env) => (env.message, env.errors),
        None => (None, None),
    };
    let canonical =
        || reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").to_string();
    let text = message.filter(|m| !m.trim().is_empty()).or(reason).unwrap_or_else(canonical);
    Err(PveError::from_status(status, &text, errors.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes() {
        assert!(validate_token("root@pam!agentlab=0d08f8bc-0a12-4072-8f18-264a33793bb9").is_ok());
        assert!(validate_token("root@pam!agentlab").is_err());
        assert!(validate_token("root@pam=abc").is_err());
        assert!(validate_token("root!agentlab=abc").is_err());
        assert!(validate_token("root@pam!1bad=abc").is_err());
        assert!(validate_token("root@pam!ok=").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_host_is_a_transient_error_saying_why() {
        let client = crate::PveClient::new(
            ApiTransport::new(ApiConfig {
                url: "https://127.0.0.1:1".into(),
                token: "root@pam!t=secret".into(),
                trust: TlsTrust::Insecure,
                timeout: Duration::from_secs(5),
            })
            .unwrap(),
            crate::TaskPolicy::default(),
        );
        let err = crate::Pve::version(&client).await.err();
        assert_eq!(err.as_ref().map(PveError::class), Some(crate::ErrorClass::Transient), "{err:?}");
        assert!(err.map(|e| e.to_string()).unwrap_or_default().to_lowercase().contains("refused"));
    }
}
