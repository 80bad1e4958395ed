//! The runner's HTTP client: one request per TCP connection to the daemon's guest listeners.
//!
//! The exchange itself (framing, caps) is `agentlab-http1`, shared with the CLI; this module
//! connects, applies timeouts and names the daemon's address in every error. No TLS: the
//! guest listeners speak plain HTTP on the agent bridge.

pub mod url;

use agentlab_http1::{ReadError, RequestHead, read_response, write_request};
use std::io::{self, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use agentlab_http1::{Body, Response};
pub use url::Url;

/// Largest response body accepted: the daemon's answers are small JSON documents.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

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

pub struct Request<'a> {
    pub url: &'a Url,
    pub bearer: Option<&'a str>,
    pub content_type: &'a str,
    pub body: Body<'a>,
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
        let user_agent = concat!("agent-runner/", env!("CARGO_PKG_VERSION"));
        let head = RequestHead {
            method: "POST",
            target: &url.target,
            host: &url.authority,
            user_agent,
            content_type: Some(request.content_type),
            bearer: request.bearer,
        };
        if !head.is_valid() {
            return Err(HttpError::BadHeader);
        }
        let mut stream = self.connect(url)?;
        stream.set_read_timeout(Some(self.io_timeout)).map_err(io_err)?;
        stream.set_write_timeout(Some(self.io_timeout)).map_err(io_err)?;
        let written = write_request(&mut stream, &head, request.body);
        let answer = read_response(&mut BufReader::new(&mut stream), self.max_body).map_err(|e| match e {
            ReadError::Io(source) => io_err(source),
            ReadError::Bad(why) => HttpError::BadResponse { authority: authority.clone(), why },
            ReadError::TooLarge { .. } => HttpError::TooLarge { authority: authority.clone(), limit: self.max_body },
        });
        match (written, answer) {
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

#[cfg(test)]
mod tests;
