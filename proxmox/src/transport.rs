//! The seam between the typed operations and a backend: one call = method, path (relative
//! to `/api2/json`), parameters, answer = the `data` member. The API backend speaks HTTPS;
//! the shell backend runs `pvesh`, which calls the same handlers on the host.

use crate::{PveError, PveFuture};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// Parameters in order; a repeated key is an array parameter.
pub type Params = Vec<(String, String)>;

pub trait Transport: Send + Sync + 'static {
    /// `api` or `shell`.
    fn kind(&self) -> &'static str;
    /// Where it talks to, for status output.
    fn endpoint(&self) -> String;
    /// One call; the answer's `data` (`Null` for `returns: null`).
    fn call(&self, method: Method, path: String, params: Params) -> PveFuture<'_, Value>;
}

/// Percent-encodes one path segment (UPIDs and volume ids carry `:` and `/`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; anything else (a lone `%`, bad hex) stays as it is.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Booleans go on the wire as `0`/`1` (Proxmox rejects `true` in forms and queries).
pub fn flag(b: bool) -> String {
    if b { "1".into() } else { "0".into() }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, PveError> {
    serde_json::from_value(value).map_err(|e| PveError::Other(format!("unexpected answer to {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("UPID:pve:0001:"), "UPID%3Apve%3A0001%3A");
        assert_eq!(segment("local-lvm:vm-101-disk-0"), "local-lvm%3Avm-101-disk-0");
        assert_eq!(segment("local:snippets/a b.yaml"), "local%3Asnippets%2Fa%20b.yaml");
        assert_eq!(flag(true), "1");
        assert_eq!(percent_decode(&segment("local:snippets/a b.yaml")), "local:snippets/a b.yaml");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
