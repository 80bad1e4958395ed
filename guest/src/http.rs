//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! The runner makes a handful of POSTs to the daemon (fetch, reports, one upload), so one
//! request per connection (`Connection: close`) is enough. No TLS and no async runtime keep
//! the binary small; the daemon's guest listeners speak plain HTTP on the agent bridge.
//! Responses are parsed with `Content-Length`, `Transfer-Encoding: chunked` (hyper/axum
//! use it) or read to EOF, with the body capped.

pub mod url;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use url::Url;

/// Largest response body accepted: the daemon's answers are small JSON documents.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Longest status or header line accepted.
const MAX_LINE: u64 = 16 * 1024;
const MAX_HEADERS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`{0}` is an https:// URL, but this runner speaks plain HTTP on the agent bridge: use http://")]
    Https(String),
    #[error("`{url}` is not an http://host:port/path URL: {why}")]
    BadUrl { url: String, why: &'static str },
    #[error("a header value contains a line break")]
    BadHeader,
    #[error("cannot resolve {authority}: {source}")]
    Resolve { authority: String, source: io::Error },
    #[error("cannot connect to {authority}: {source}")]
    Connect { authority: String, source: io::Error },
    #[error("talking to {authority}: {source}")]
    Io { authority: String, source: io::Error },
    #[error("bad response from {authority}: {why}")]
    BadResponse { authority: String, why: String },
    #[error("the response from {authority} is larger than {limit} bytes")]
    TooLarge { authority: String, limit: usize },
}

impl HttpError {
    /// Worth trying again later: the daemon may be restarting or the network flapping.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HttpError::Resolve { .. }
                | HttpError::Connect { .. }
                | HttpError::Io { .. }
                | HttpError::BadResponse { .. }
        )
    }
}

/// What a request carries.
pub enum Body<'a> {
    Bytes(&'a [u8]),
    /// Streamed as is; exactly `len` bytes are sent (`Content-Length`).
    Reader {
        reader: &'a mut dyn Read,
        len: u64,
    },
}

pub struct Request<'a> {
    pub url: &'a Url,
    pub bearer: Option<&'a str>,
    pub content_type: &'a str,
    pub body: Body<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `error` field of the daemon's JSON error body, if any.
    pub fn error_field(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value.get("error")?.as_str().map(str::to_string)
    }

    /// A one-line description of a failed answer: the daemon's `message` (or `error`), else
    /// the start of the body.
    pub fn error_message(&self) -> String {
        let value: Option<serde_json::Value> = serde_json::from_slice(&self.body).ok();
        let field = |name: &str| value.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str()).map(str::to_string);
        let text = field("message").or_else(|| field("error")).unwrap_or_else(|| {
            let body = String::from_utf8_lossy(&self.body);
            body.trim().chars().take(300).collect()
        });
        format!("HTTP {}: {}", self.status, text.replace(['\r', '\n'], " "))
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub connect_timeout: Duration,
    /// Applies to each read and write: a stalled daemon fails the request, never hangs it.
    pub io_timeout: Duration,
    pub max_body: usize,
}

impl Default for Client {
    fn default() -> Client {
        Client { connect_timeout: Duration::from_secs(10), io_timeout: Duration::from_secs(60), max_body: MAX_BODY }
    }
}

impl Client {
    pub fn post(&self, request: Request<'_>) -> Result<Response, HttpError> {
        let url = request.url;
        let authority = url.authority.clone();
        let io_err = |source: io::Error| HttpError::Io { authority: authority.clone(), source };
        for value in [Some(request.content_type), request.bearer].into_iter().flatten() {
            if value.contains(['\r', '\n']) {
                return Err(HttpError::BadHeader);
            }
        }
        let mut stream = self.connect(url)?;
        stream.set_read_timeout(Some(self.io_timeout)).map_err(io_err)?;
        stream.set_write_timeout(Some(self.io_timeout)).map_err(io_err)?;
        let len = match &request.body {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Reader { len, .. } => *len,
        };
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: agent-runner/{}\r\nAccept: application/json\r\nConnection: close\r\nContent-Type: {}\r\nContent-Length: {len}\r\n",
            url.target,
            url.authority,
            env!("CARGO_PKG_VERSION"),
            request.content_type,
        );
        if let Some(token) = request.bearer {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        let written = write_request(&mut stream, head.as_bytes(), request.body);
        match (written, read_response(&mut stream, &authority, self.max_body)) {
            // A server may answer (413, 401) before reading the whole body and close: its
            // answer is what matters.
            (_, Ok(response)) => Ok(response),
            (Err(e), Err(_)) => Err(io_err(e)),
            (Ok(()), Err(e)) => Err(e),
        }
    }

    fn connect(&self, url: &Url) -> Result<TcpStream, HttpError> {
        let authority = url.authority.clone();
        let addrs = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|source| HttpError::Resolve { authority: authority.clone(), source })?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(stream) => {
                    // Small requests: do not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(HttpError::Connect { authority, source: last })
    }
}

fn write_request(stream: &mut TcpStream, head: &[u8], body: Body<'_>) -> io::Result<()> {
    stream.write_all(head)?;
    match body {
        Body::Bytes(bytes) => stream.write_all(bytes)?,
        Body::Reader { reader, len } => {
            let sent = io::copy(&mut reader.take(len), stream)?;
            if sent != len {
                // The declared length was wrong: the request is unusable.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {sent} of {len} bytes"),
                ));
            }
        }
    }
    stream.flush()
}

fn read_response(stream: &mut TcpStream, authority: &str, max_body: usize) -> Result<Response, HttpError> {
    let bad = |why: String| HttpError::BadResponse { authority: authority.to_string(), why };
    let io_err = |source: io::Error| HttpError::Io { authority: authority.to_string(), source };
    let mut reader = BufReader::new(stream);
    let (status, headers) = loop {
        let line =
            read_line(&mut reader).map_err(io_err)?.ok_or_else(|| bad("connection closed before an answer".into()))?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts.next().and_then(|s| s.parse::<u16>().ok()).filter(|s| (100..600).contains(s));
        let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
            return Err(bad(format!("not an HTTP/1.x status line: {}", line.chars().take(80).collect::<String>())));
        };
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut reader)
                .map_err(io_err)?
                .ok_or_else(|| bad("connection closed in the headers".into()))?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| bad(format!("bad header line `{line}`")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            if headers.len() > MAX_HEADERS {
                return Err(bad("too many headers".into()));
            }
        }
        // Skip informational answers (100 Continue).
        if !(100..200).contains(&status) {
            break (status, headers);
        }
    };
    let mut response = Response { status, headers, body: Vec::new() };
    if status == 204 || status == 304 {
        return Ok(response);
    }
    let too_large = || HttpError::TooLarge { authority: authority.to_string(), limit: max_body };
    let chunked = response.header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        response.body = read_chunked(&mut reader, max_body).map_err(|e| match e {
            ChunkError::Io(e) => io_err(e),
            ChunkError::Bad(why) => bad(why),
            ChunkError::TooLarge => too_large(),
        })?;
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad(format!("bad Content-Length `{len}`")))?;
        if len > max_body {
            return Err(too_large());
        }
        response.body = vec![0; len];
        reader.read_exact(&mut response.body).map_err(io_err)?;
    } else {
        let limit = max_body as u64 + 1;
        reader.take(limit).read_to_end(&mut response.body).map_err(io_err)?;
        if response.body.len() > max_body {
            return Err(too_large());
        }
    }
    Ok(response)
}

/// One CRLF- (or LF-) terminated line without its terminator; `None` at a clean EOF.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    reader.take(MAX_LINE).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long or cut short"));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

enum ChunkError {
    Io(io::Error),
    Bad(String),
    TooLarge,
}

fn read_chunked(reader: &mut impl BufRead, max_body: usize) -> Result<Vec<u8>, ChunkError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader).map_err(ChunkError::Io)?.ok_or_else(|| ChunkError::Bad("cut short".into()))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| ChunkError::Bad(format!("bad chunk size `{size}`")))?;
        if size == 0 {
            // Trailers until the empty line; a server that just closes is fine too.
            while let Some(line) = read_line(reader).map_err(ChunkError::Io)? {
                if line.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len().saturating_add(size) > max_body {
            return Err(ChunkError::TooLarge);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).map_err(ChunkError::Io)?;
        match read_line(reader).map_err(ChunkError::Io)? {
            Some(empty) if empty.is_empty() => {}
            _ => return Err(ChunkError::Bad("chunk not followed by CRLF".into())),
        }
    }
}

#[cfg(test)]
mod tests;
