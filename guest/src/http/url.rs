//! `http://host:port/path?query` URLs: the only kind the runner talks to.
//!
//! The daemon's guest and artifact listeners sit on the agent bridge and speak plain HTTP;
//! the runner carries no TLS stack, so an `https://` URL is refused with a clear message.

use super::HttpError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host name or IP address, without IPv6 brackets (what the resolver wants).
    pub host: String,
    pub port: u16,
    /// `host:port` as written in the URL (what the `Host` header carries).
    pub authority: String,
    /// Path and query, always starting with `/`.
    pub target: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let bad = |why: &'static str| HttpError::BadUrl { url: url.to_string(), why };
        if url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")) {
            return Err(HttpError::Https(url.to_string()));
        }
        let Some(rest) = url.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")).map(|_| &url[7..]) else {
            return Err(bad("it must start with http://"));
        };
        // Anything that could break the request line or a header.
        if rest.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("it contains spaces or control characters"));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let target = match target.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{target}"),
            Some(_) => target.to_string(),
        };
        if authority.is_empty() {
            return Err(bad("it has no host"));
        }
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("unclosed `[` in the host"))?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(|| bad("junk after the IPv6 address"))?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("it has no host"));
        }
        let port = match port {
            None => 80,
            Some(port) => {
                port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port is not a number"))?
            }
        };
        Ok(Url { host: host.to_string(), port, authority: authority.to_string(), target })
    }

    /// This URL with `path` appended to its path (a controller base URL plus a route).
    pub fn join(&self, path: &str) -> Url {
        let base = self.target.split('?').next().unwrap_or_default().trim_end_matches('/');
        Url { target: format!("{base}{path}"), ..self.clone() }
    }

    /// This URL with `key=value` added to its query, percent-encoded.
    pub fn with_query(&self, key: &str, value: &str) -> Url {
        let separator = if self.target.contains('?') { '&' } else { '?' };
        Url { target: format!("{}{separator}{}={}", self.target, encode(key), encode(value)), ..self.clone() }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.target)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Url {
        Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn hosts_ports_and_targets_are_split() {
        let u = parse("http://10.77.0.1:8844");
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str(), u.target.as_str()),
            ("10.77.0.1", 8844, "10.77.0.1:8844", "/")
        );
        let u = parse("http://daemon/upload?x=1#frag");
        assert_eq!((u.host.as_str(), u.port, u.target.as_str()), ("daemon", 80, "/upload?x=1"));
        let u = parse("http://[::1]:9000?q");
        assert_eq!((u.host.as_str(), u.port, u.target.as_str()), ("::1", 9000, "/?q"));
        assert_eq!(parse("HTTP://h:1/p").to_string(), "http://h:1/p");
    }

    #[test]
    fn https_and_malformed_urls_are_refused_with_a_reason() {
        let err = Url::parse("https://10.77.0.1:8844").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("plain HTTP on the agent bridge"), "{err}");
        for bad in [
            "ftp://h",
            "http://",
            "http://:80/",
            "http://h:x/",
            "http://h:0/",
            "http://u:p@h/",
            "http://h/a b",
            "http://[::1/",
        ] {
            assert!(matches!(Url::parse(bad), Err(HttpError::BadUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn join_and_query_build_routes() {
        let base = parse("http://h:1/prefix/");
        assert_eq!(base.join("/v1/runner/report").target, "/prefix/v1/runner/report");
        assert_eq!(parse("http://h:1").join("/v1/x").target, "/v1/x");
        let upload = parse("http://h:2/upload").with_query("path", "agentlab-artifacts.tar.gz");
        assert_eq!(upload.target, "/upload?path=agentlab-artifacts.tar.gz");
        assert_eq!(parse("http://h/u?a=1").with_query("path", "a b/c").target, "/u?a=1&path=a%20b%2Fc");
    }
}
