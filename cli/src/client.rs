//! HTTP/1.1 over the daemon's Unix socket: one blocking exchange per request
//! (`agentlab-http1`), bounded by `--timeout` on every read and write.

use agentlab_http1::{Body, Head, ReadError, RequestHead, read_head, stream_body, write_request};
use agentlab_model::model::{ErrorCode, ErrorEnvelope};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The client reads at most this much of an answer: `sandbox list --json` of 10,000
/// sandboxes is about 5 MiB (4 MiB refused it, `agentlab-bench scale`); 64 MiB holds well
/// over 100,000 and still bounds what a confused daemon can make the CLI buffer.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// A finished download.
pub struct Downloaded {
    pub size: u64,
    pub sha256: String,
    pub declared_sha256: Option<String>,
}

pub struct DaemonClient {
    socket: PathBuf,
    timeout: Duration,
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
    /// The answer, already printed, says the thing checked is not well (exit code 1; with
    /// --json nothing more is printed).
    Reported(String),
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
            ClientError::Reported(_) => ErrorEnvelope::new(ErrorCode::Conflict, self.message()),
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
            ClientError::Usage(e) | ClientError::Reported(e) => e.clone(),
        }
    }
}

impl DaemonClient {
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        DaemonClient { socket, timeout }
    }

    /// GET `path_and_query`, decoding a 2xx JSON body or the error envelope.
    pub fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, ClientError> {
        let bytes = self.send("GET", path_and_query, b"")?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// GET returning the raw JSON value (what `--json` prints).
    pub fn get_value(&self, path_and_query: &str) -> Result<serde_json::Value, ClientError> {
        self.get(path_and_query)
    }

    /// POST a request body (a `protocol` type); the answer's JSON.
    pub fn post_value(&self, path: &str, body: &impl Serialize) -> Result<serde_json::Value, ClientError> {
        let body =
            serde_json::to_vec(body).map_err(|e| ClientError::Usage(format!("cannot encode the request: {e}")))?;
        let bytes = self.send("POST", path, &body)?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// DELETE; success has no body.
    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send("DELETE", path, b"").map(|_| ())
    }

    /// GET a file into `out` (written to `<out>.partial`, renamed when complete, removed on
    /// failure), hashing it on the way. The daemon's `X-Artifact-Sha256` comes back for the
    /// caller to compare.
    pub fn download(&self, path_and_query: &str, out: &Path) -> Result<Downloaded, ClientError> {
        use sha2::{Digest, Sha256};
        let (mut reader, head) = self.exchange("GET", path_and_query, b"")?;
        if !(200..300).contains(&head.status) {
            return Err(self.api_error(&mut reader, &head));
        }
        let declared = head.header("x-artifact-sha256").map(str::to_string);
        let partial = out.with_extension("partial");
        let written = (|| {
            let io = |e: std::io::Error| ClientError::Transport(format!("writing {}: {e}", partial.display()));
            let file = std::fs::File::create(&partial).map_err(io)?;
            let mut sink = HashingWriter { file, hasher: Sha256::new() };
            let size = stream_body(&mut reader, &head, &mut sink, u64::MAX)
                .map_err(|e| self.read_error(e, "download interrupted"))?;
            sink.file.sync_all().map_err(io)?;
            std::fs::rename(&partial, out).map_err(io)?;
            let sha256 = sink.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
            Ok(Downloaded { size, sha256, declared_sha256: declared })
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written
    }

    fn send(&self, method: &str, path_and_query: &str, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        let (mut reader, head) = self.exchange(method, path_and_query, body)?;
        if !(200..300).contains(&head.status) {
            return Err(self.api_error(&mut reader, &head));
        }
        let mut bytes = Vec::new();
        stream_body(&mut reader, &head, &mut bytes, MAX_RESPONSE_BYTES)
            .map_err(|e| self.read_error(e, "reading the answer"))?;
        Ok(bytes)
    }

    /// Connects, sends the request and reads the answer's head; the body is the caller's.
    fn exchange(&self, method: &str, target: &str, body: &[u8]) -> Result<(BufReader<UnixStream>, Head), ClientError> {
        let head = RequestHead {
            method,
            target,
            host: "localhost",
            user_agent: concat!("agentlab/", env!("CARGO_PKG_VERSION")),
            content_type: (method == "POST").then_some("application/json"),
            bearer: None,
        };
        if !head.is_valid() {
            return Err(ClientError::Usage(format!("`{target}` cannot be sent as a request path")));
        }
        let mut stream = self.connect()?;
        let transport = |e: std::io::Error| self.io_error(e);
        stream.set_read_timeout(Some(self.timeout)).map_err(transport)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(transport)?;
        write_request(&mut stream, &head, Body::Bytes(body)).map_err(transport)?;
        // Large reads: a download streams through this buffer.
        let mut reader = BufReader::with_capacity(256 * 1024, stream);
        let head = read_head(&mut reader).map_err(|e| self.read_error(e, "reading the answer"))?;
        Ok((reader, head))
    }

    /// The error envelope of a non-2xx answer (or one made from its status and text).
    fn api_error(&self, reader: &mut BufReader<UnixStream>, head: &Head) -> ClientError {
        let status = head.status;
        let mut body = Vec::new();
        if let Err(e) = stream_body(reader, head, &mut body, MAX_RESPONSE_BYTES) {
            return self.read_error(e, "reading the answer");
        }
        let envelope = serde_json::from_slice::<ErrorEnvelope>(&body).unwrap_or_else(|_| {
            ErrorEnvelope::new(
                ErrorCode::BadResponse,
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()),
            )
        });
        ClientError::Api { status, envelope }
    }

    /// Tells "not running" and "not allowed" apart by the connect error's kind.
    fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.socket).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                ClientError::NotRunning { socket: self.socket.clone(), cause: "no socket".into() }
            }
            std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { socket: self.socket.clone(), cause: "stale socket, nobody listening".into() }
            }
            std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { socket: self.socket.clone() },
            _ => ClientError::Transport(format!("{}: {e}", self.socket.display())),
        })
    }

    fn io_error(&self, e: std::io::Error) -> ClientError {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ClientError::Timeout(self.timeout),
            _ => ClientError::Transport(e.to_string()),
        }
    }

    fn read_error(&self, e: ReadError, doing: &str) -> ClientError {
        match e {
            ReadError::Io(e) => match self.io_error(e) {
                ClientError::Transport(e) => ClientError::Transport(format!("{doing}: {e}")),
                other => other,
            },
            ReadError::Bad(why) => ClientError::BadResponse(why),
            ReadError::TooLarge { limit } => {
                ClientError::BadResponse(format!("the answer is larger than {limit} bytes"))
            }
        }
    }
}

/// Writes to the file and hashes what it wrote.
struct HashingWriter {
    file: std::fs::File,
    hasher: sha2::Sha256,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Percent-encodes `text` for a URL: unreserved characters and those in `keep` stay.
pub fn percent_encode(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
