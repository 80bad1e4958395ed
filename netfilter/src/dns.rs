//! A minimal DNS client for allowlist entries: one `A` question over UDP to a configured
//! server, answers with their TTLs. The daemon resolves domain entries itself (not with
//! the system resolver) because it needs the TTL to know when to look again.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("`{0}` is not a domain name")]
    BadName(String),
    #[error("DNS query for {name} to {server}: {source}")]
    Io { name: String, server: SocketAddr, source: std::io::Error },
    #[error("DNS answer for {name} from {server} is malformed")]
    Malformed { name: String, server: SocketAddr },
    #[error("DNS server {server} answered {name} with error code {rcode}")]
    Rcode { name: String, server: SocketAddr, rcode: u8 },
}

/// One address with the TTL its answer carried, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub addr: Ipv4Addr,
    pub ttl: u32,
}

/// Whether `name` is a hostname we would ask about (LDH labels, 1-63 each, ≤ 253 in all).
pub fn valid_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn question(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root; type A; class IN
    q
}

/// Skips a (possibly compressed) name at `pos`; returns the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xC0 == 0xC0 => return Some(pos + 2),
            l => pos += 1 + l as usize,
        }
    }
}

fn random_id() -> std::io::Result<u16> {
    use std::io::Read;
    let mut bytes = [0u8; 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u16::from_ne_bytes(bytes))
}

/// Our answer: our id, a response, and our one question (the name asked, type A).
fn parse_answer(msg: &[u8], id: u16, question: &[u8]) -> Option<Result<Vec<Answer>, u8>> {
    let be16 = |p: usize| Some(u16::from_be_bytes([*msg.get(p)?, *msg.get(p + 1)?]));
    if be16(0)? != id || msg.get(2)? & 0x80 == 0 {
        return None;
    }
    // The question section must be ours, byte for byte (names compared case-blind).
    let ours = question.get(12..)?;
    let theirs = msg.get(12..12 + ours.len())?;
    if be16(4)? != 1 || !theirs.eq_ignore_ascii_case(ours) {
        return None;
    }
    let rcode = msg.get(3)? & 0x0F;
    if rcode != 0 {
        return Some(Err(rcode));
    }
    let (qd, an) = (be16(4)?, be16(6)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = skip_name(msg, pos)?;
        let (kind, class) = (be16(pos)?, be16(pos + 2)?);
        let ttl = u32::from_be_bytes(msg.get(pos + 4..pos + 8)?.try_into().ok()?);
        let len = be16(pos + 8)? as usize;
        let data = msg.get(pos + 10..pos + 10 + len)?;
        if kind == 1 && class == 1 && len == 4 {
            out.push(Answer { addr: Ipv4Addr::new(data[0], data[1], data[2], data[3]), ttl });
        }
        pos += 10 + len;
    }
    Some(Ok(out))
}

/// Asks `server` for the `A` records of `name` (a CNAME chain is followed by the server:
/// only the `A` answers are kept).
pub fn resolve_a(server: SocketAddr, name: &str, timeout: Duration) -> Result<Vec<Answer>, DnsError> {
    if !valid_name(name) {
        return Err(DnsError::BadName(name.to_string()));
    }
    let io = |source| DnsError::Io { name: name.to_string(), server, source };
    let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|_| DnsError::Malformed { name: name.to_string(), server })?;
    let socket = UdpSocket::bind(local).map_err(io)?;
    socket.connect(server).map_err(io)?;
    socket.set_read_timeout(Some(timeout)).map_err(io)?;
    // An unpredictable id: an answer forged by a guest (it shares the host's link) must
    // guess it.
    let id = random_id().map_err(io)?;
    let query = question(id, name);
    socket.send(&query).map_err(io)?;
    let mut buf = [0u8; 1500];
    // Datagrams that are not our answer (wrong id) are skipped until the timeout.
    loop {
        let n = socket.recv(&mut buf).map_err(io)?;
        match parse_answer(&buf[..n], id, &query) {
            None => continue,
            Some(Ok(answers)) => return Ok(answers),
            Some(Err(rcode)) => return Err(DnsError::Rcode { name: name.to_string(), server, rcode }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_query() {
        assert!(valid_name("github.com") && valid_name("a-b.example.") && valid_name("x"));
        for bad in ["", "-a.com", "a..b", "a b", "a;b", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn parses_an_answer_with_a_compressed_name_and_skips_other_types() {
        let id = 0x1234;
        let mut msg = question(id, "example.test");
        msg[2] |= 0x80; // response
        msg[7] = 2; // two answers
        // CNAME (type 5) pointing nowhere useful, then an A record, both named by pointer.
        msg.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xC0, 12]);
        msg.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 203, 0, 113, 7]);
        let asked = question(id, "example.test");
        let answers = parse_answer(&msg, id, &asked).expect("ours").expect("no error");
        assert_eq!(answers, vec![Answer { addr: Ipv4Addr::new(203, 0, 113, 7), ttl: 30 }]);
        assert!(parse_answer(&msg, id + 1, &asked).is_none(), "another query's answer is not ours");
        assert!(parse_answer(&msg, id, &question(id, "other.test")).is_none(), "an answer to another name is not ours");
        let mut truncated = msg.clone();
        truncated.truncate(msg.len() - 2);
        assert!(parse_answer(&truncated, id, &asked).is_none());
    }
}
