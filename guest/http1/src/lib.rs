//! One HTTP/1.1 request and its answer over any byte stream (`TcpStream`, `UnixStream`).
//!
//! Both callers make a handful of requests to agentlabd, one per connection
//! (`Connection: close`), so there is no pooling, no TLS and no async runtime: a blocking
//! exchange keeps `agentlab` and `agent-runner` small (the release `agentlab` is 2.9 MB on
//! this exchange; it was 4.6 MB on hyper and tokio, with fewer commands) and a one-shot CLI
//! call starts no runtime. Answers are parsed with
//! `Content-Length`, `Transfer-Encoding: chunked` (what hyper/axum send for streamed
//! bodies) or read to EOF; every line, header count and buffered body is capped.

mod read;
mod write;

pub use read::{Head, ReadError, read_head, read_response, stream_body};
pub use write::{Body, RequestHead, write_request};

/// Longest status or header line accepted.
pub const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted in one answer.
pub const MAX_HEADERS: usize = 100;

/// A whole answer, its body buffered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
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

/// The value of header `name` (case-insensitive) in a lower-cased header list.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests;
