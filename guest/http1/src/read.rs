//! Reading an answer: the status line and headers, then a body framed by
//! `Content-Length`, chunked encoding, or the end of the connection.

use crate::{MAX_HEADERS, MAX_LINE, Response, header};
use std::io::{self, BufRead, Read, Write};

/// Why an answer could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed or was cut.
    Io(io::Error),
    /// Not HTTP/1.x, or framing that does not add up.
    Bad(String),
    /// The body is larger than the caller accepts.
    TooLarge { limit: u64 },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Bad(why) => write!(f, "{why}"),
            ReadError::TooLarge { limit } => write!(f, "the answer is larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// A final (non-1xx) status and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn has_body(&self) -> bool {
        !(self.status == 204 || self.status == 304)
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    }
}

/// Reads up to the end of the headers of the first final answer (100 Continue skipped).
pub fn read_head(reader: &mut impl BufRead) -> Result<Head, ReadError> {
    loop {
        let line = read_line(reader)?.ok_or_else(|| ReadError::Bad("connection closed before an answer".into()))?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts.next().and_then(|s| s.parse::<u16>().ok()).filter(|s| (100..600).contains(s));
        let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
            return Err(ReadError::Bad(format!(
                "not an HTTP/1.x status line: {}",
                line.chars().take(80).collect::<String>()
            )));
        };
        let mut headers = Vec::new();
        loop {
            let line = read_line(reader)?.ok_or_else(|| ReadError::Bad("connection closed in the headers".into()))?;
            if line.is_empty() {
                break;
            }
            let (name, value) =
                line.split_once(':').ok_or_else(|| ReadError::Bad(format!("bad header line `{line}`")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            if headers.len() > MAX_HEADERS {
                return Err(ReadError::Bad("too many headers".into()));
            }
        }
        if !(100..200).contains(&status) {
            return Ok(Head { status, headers });
        }
    }
}

/// Reads a whole answer, buffering at most `max_body` bytes of body.
pub fn read_response(reader: &mut impl BufRead, max_body: usize) -> Result<Response, ReadError> {
    let head = read_head(reader)?;
    let mut body = Vec::new();
    stream_body(reader, &head, &mut body, max_body as u64)?;
    Ok(Response { status: head.status, headers: head.headers, body })
}

/// Copies the body that follows `head` into `sink`, at most `limit` bytes; returns its size.
pub fn stream_body(
    reader: &mut impl BufRead,
    head: &Head,
    sink: &mut impl Write,
    limit: u64,
) -> Result<u64, ReadError> {
    if !head.has_body() {
        return Ok(0);
    }
    if head.is_chunked() {
        return copy_chunked(reader, sink, limit);
    }
    if let Some(len) = head.header("content-length") {
        let len: u64 = len.parse().map_err(|_| ReadError::Bad(format!("bad Content-Length `{len}`")))?;
        if len > limit {
            return Err(ReadError::TooLarge { limit });
        }
        let copied = io::copy(&mut reader.take(len), sink)?;
        if copied != len {
            return Err(ReadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body cut short after {copied} of {len} bytes"),
            )));
        }
        return Ok(len);
    }
    let copied = io::copy(&mut reader.take(limit.saturating_add(1)), sink)?;
    if copied > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(copied)
}

fn copy_chunked(reader: &mut impl BufRead, sink: &mut impl Write, limit: u64) -> Result<u64, ReadError> {
    let mut total = 0u64;
    loop {
        let line = read_line(reader)?.ok_or_else(|| ReadError::Bad("chunked body cut short".into()))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| ReadError::Bad(format!("bad chunk size `{size}`")))?;
        if size == 0 {
            // Trailers until the empty line; a server that just closes is fine too.
            while let Some(line) = read_line(reader)? {
                if line.is_empty() {
                    break;
                }
            }
            return Ok(total);
        }
        if total.saturating_add(size) > limit {
            return Err(ReadError::TooLarge { limit });
        }
        let copied = io::copy(&mut reader.take(size), sink)?;
        if copied != size {
            return Err(ReadError::Bad("chunk cut short".into()));
        }
        total += size;
        match read_line(reader)? {
            Some(empty) if empty.is_empty() => {}
            _ => return Err(ReadError::Bad("chunk not followed by CRLF".into())),
        }
    }
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
