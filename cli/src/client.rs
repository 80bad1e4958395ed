//! HTTP/1.1 over the daemon's Unix socket.

use agentlab_actors::model::{ErrorCode, ErrorEnvelope};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::{UnixConnector, Uri};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

/// The client reads at most this much of an answer.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// A finished download.
pub struct Downloaded {
    pub size: u64,
    pub sha256: String,
    pub declared_sha256: Option<String>,
}

pub struct DaemonClient {
    socket: PathBuf,
    timeout: Duration,
    http: Client<UnixConnector, Full<Bytes>>,
}

/// Why a request failed; `envelope()` gives what `--json` prints.
#[derive(Debug)]
pub enum ClientError {
    NotRunning {
        socket: PathBuf,
        cause: String,
    },
    PermissionDenied {
        socket: PathBuf,
    },
    Timeout(Duration),
    Transport(String),
    Api {
        status: u16,
        envelope: ErrorEnvelope,
    },
    BadResponse(String),
    /// A command line that cannot be sent (exit code 2).
    Usage(String),
}

impl ClientError {
    pub fn envelope(&self) -> ErrorEnvelope {
        match self {
            ClientError::Api { envelope, .. } => envelope.clone(),
            ClientError::NotRunning { .. } | ClientError::PermissionDenied { .. } | ClientError::Transport(_) => {
                ErrorEnvelope::new(ErrorCode::DaemonUnavailable, self.message())
            }
            ClientError::Timeout(_) => ErrorEnvelope::new(ErrorCode::ClientTimeout, self.message()),
            ClientError::BadResponse(_) => ErrorEnvelope::new(ErrorCode::BadResponse, self.message()),
            ClientError::Usage(_) => ErrorEnvelope::new(ErrorCode::BadRequest, self.message()),
        }
    }

    pub fn message(&self) -> String {
        match self {
            ClientError::NotRunning { socket, cause } => format!(
                "agentlabd is not running ({cause} at {}): start it with `systemctl start agentlabd` \
                 (or `agentlabd --config /etc/agentlab/config.yaml`), or point --socket / AGENTLAB_SOCKET at its socket",
                socket.display()
            ),
            ClientError::PermissionDenied { socket } => {
                format!("permission denied on {}: run as root or as a member of group agentlab", socket.display())
            }
            ClientError::Timeout(t) => {
                format!("agentlabd did not answer within {}; raise --timeout", humantime::format_duration(*t))
            }
            ClientError::Transport(e) => format!("talking to agentlabd failed: {e}"),
            ClientError::Api { envelope, .. } => envelope.message.clone(),
            ClientError::BadResponse(e) => format!("unexpected answer from agentlabd: {e}"),
            ClientError::Usage(e) => e.clone(),
        }
    }
}

impl DaemonClient {
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        let http = Client::builder(TokioExecutor::new()).build(UnixConnector);
        DaemonClient { socket, timeout, http }
    }

    /// GET `path_and_query`, decoding a 2xx JSON body or the error envelope.
    pub async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, ClientError> {
        let bytes = self.get_raw(path_and_query).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// GET returning the raw JSON value (what `--json` prints).
    pub async fn get_value(&self, path_and_query: &str) -> Result<serde_json::Value, ClientError> {
        self.get(path_and_query).await
    }

    /// POST a JSON body; the answer's JSON.
    pub async fn post_value(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, ClientError> {
        let bytes = self.send(hyper::Method::POST, path, Bytes::from(body.to_string())).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// GET a file into `out` (written to a temporary name, renamed when complete), hashing
    /// it on the way. The daemon's `X-Artifact-Sha256` comes back for the caller to compare.
    pub async fn download(&self, path_and_query: &str, out: &std::path::Path) -> Result<Downloaded, ClientError> {
        use sha2::{Digest, Sha256};
        use tokio::io::AsyncWriteExt;
        self.preflight()?;
        let uri: hyper::Uri = Uri::new(&self.socket, path_and_query).into();
        let request = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(uri)
            .header("user-agent", concat!("agentlab/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| self.connect_error(&e))?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| ClientError::Transport(format!("reading the answer: {e}")))?
                    .to_bytes();
                let envelope = serde_json::from_slice::<ErrorEnvelope>(&body)
                    .unwrap_or_else(|_| ErrorEnvelope::new(ErrorCode::BadResponse, format!("HTTP {status}")));
                return Err(ClientError::Api { status, envelope });
            }
            let declared =
                response.headers().get("x-artifact-sha256").and_then(|v| v.to_str().ok()).map(str::to_string);
            let partial = out.with_extension("partial");
            let io = |e: std::io::Error| ClientError::Transport(format!("writing {}: {e}", partial.display()));
            let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
            let mut body = response.into_body();
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| ClientError::Transport(format!("download interrupted: {e}")))?;
                if let Some(chunk) = frame.data_ref() {
                    hasher.update(chunk);
                    size += chunk.len() as u64;
                    file.write_all(chunk).await.map_err(io)?;
                }
            }
            file.sync_all().await.map_err(io)?;
            tokio::fs::rename(&partial, out).await.map_err(io)?;
            let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
            Ok(Downloaded { size, sha256, declared_sha256: declared })
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn get_raw(&self, path_and_query: &str) -> Result<Bytes, ClientError> {
        self.send(hyper::Method::GET, path_and_query, Bytes::new()).await
    }

    async fn send(&self, method: hyper::Method, path_and_query: &str, body: Bytes) -> Result<Bytes, ClientError> {
        self.preflight()?;
        let uri: hyper::Uri = Uri::new(&self.socket, path_and_query).into();
        let request = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .header("user-agent", concat!("agentlab/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| self.connect_error(&e))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| ClientError::Transport(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, ClientError>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(self.timeout, exchange).await.map_err(|_| ClientError::Timeout(self.timeout))??;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let envelope = serde_json::from_slice::<ErrorEnvelope>(&body).unwrap_or_else(|_| {
            ErrorEnvelope::new(
                ErrorCode::BadResponse,
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()),
            )
        });
        Err(ClientError::Api { status, envelope })
    }

    /// Tells "not running" and "not allowed" apart before hyper hides the io error kind.
    fn preflight(&self) -> Result<(), ClientError> {
        match std::os::unix::net::UnixStream::connect(&self.socket) {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Err(ClientError::NotRunning { socket: self.socket.clone(), cause: "no socket".into() })
                }
                std::io::ErrorKind::ConnectionRefused => Err(ClientError::NotRunning {
                    socket: self.socket.clone(),
                    cause: "stale socket, nobody listening".into(),
                }),
                std::io::ErrorKind::PermissionDenied => {
                    Err(ClientError::PermissionDenied { socket: self.socket.clone() })
                }
                _ => Err(ClientError::Transport(format!("{}: {e}", self.socket.display()))),
            },
        }
    }

    fn connect_error(&self, e: &hyper_util::client::legacy::Error) -> ClientError {
        if e.is_connect() {
            ClientError::NotRunning { socket: self.socket.clone(), cause: "connection failed".into() }
        } else {
            ClientError::Transport(e.to_string())
        }
    }
}
