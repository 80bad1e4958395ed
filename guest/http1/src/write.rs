//! Writing a request: the head, then a body of known length.

use std::io::{self, Read, Write};

/// What a request carries.
pub enum Body<'a> {
    Bytes(&'a [u8]),
    /// Streamed as is; exactly `len` bytes are sent (`Content-Length`).
    Reader {
        reader: &'a mut dyn Read,
        len: u64,
    },
}

impl Body<'_> {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Reader { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The request line and headers. `Connection: close` and `Content-Length` are always sent.
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// Path and query, starting with `/`.
    pub target: &'a str,
    /// The `Host` header (`localhost` over a Unix socket).
    pub host: &'a str,
    pub user_agent: &'a str,
    pub content_type: Option<&'a str>,
    pub bearer: Option<&'a str>,
}

impl RequestHead<'_> {
    /// The head's bytes; `None` if a value would break the request (a line break in a
    /// header or a target that is not a path).
    fn render(&self, len: u64) -> Option<String> {
        let values = [
            Some(self.method),
            Some(self.target),
            Some(self.host),
            Some(self.user_agent),
            self.content_type,
            self.bearer,
        ];
        if values.into_iter().flatten().any(|v| v.contains(['\r', '\n']))
            || !self.target.starts_with('/')
            || self.target.contains(' ')
        {
            return None;
        }
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {len}\r\n",
            self.method, self.target, self.host, self.user_agent
        );
        if let Some(content_type) = self.content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if let Some(token) = self.bearer {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        Some(head)
    }

    /// Whether the head can be sent as is (see `render`).
    pub fn is_valid(&self) -> bool {
        self.render(0).is_some()
    }
}

/// Sends the head and the body, then flushes. A head that `is_valid` refuses is an
/// `InvalidInput` error and nothing is written.
pub fn write_request(stream: &mut impl Write, head: &RequestHead<'_>, body: Body<'_>) -> io::Result<()> {
    let len = body.len();
    let head = head
        .render(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a header value contains a line break"))?;
    match body {
        // One write for the whole request: a server that answers from the head alone (a
        // route that takes no body) and closes cannot leave a second write to fail with
        // EPIPE after the answer is already there.
        Body::Bytes(bytes) => {
            let mut request = Vec::with_capacity(head.len() + bytes.len());
            request.extend_from_slice(head.as_bytes());
            request.extend_from_slice(bytes);
            stream.write_all(&request)?;
        }
        Body::Reader { reader, len } => {
            stream.write_all(head.as_bytes())?;
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
