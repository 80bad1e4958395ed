//! Proxmox task ids: `UPID:node:pid:pstart:starttime:type:id:user:` (pve-common UPID.pm).
//! Parsed with the anchored rule, never by splitting on `:` blindly (the id may be empty).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: u64,
    pub task_type: String,
    pub id: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse worker upid `{0}`")]
pub struct UpidParseError(pub String);

fn is_node(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn hex(s: &str, widths: &[usize]) -> Option<u64> {
    (widths.contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

impl Upid {
    pub fn parse(text: &str) -> Result<Upid, UpidParseError> {
        let err = || UpidParseError(text.to_string());
        let body = text.strip_prefix("UPID:").and_then(|b| b.strip_suffix(':')).ok_or_else(err)?;
        // node, pid, pstart, starttime, type come first and contain no ':'; the user is last;
        // the id (possibly empty) is whatever sits between.
        let mut head = body.splitn(6, ':');
        let node = head.next().ok_or_else(err)?;
        let pid = head.next().ok_or_else(err)?;
        let pstart = head.next().ok_or_else(err)?;
        let starttime = head.next().ok_or_else(err)?;
        let task_type = head.next().ok_or_else(err)?;
        let rest = head.next().ok_or_else(err)?;
        let (id, user) = rest.rsplit_once(':').ok_or_else(err)?;
        let clean = |s: &str| !s.chars().any(|c| c == ':' || c == '/' || c.is_whitespace());
        if !is_node(node) || task_type.is_empty() || !clean(task_type) || !clean(id) || user.is_empty() || !clean(user)
        {
            return Err(err());
        }
        Ok(Upid {
            node: node.to_string(),
            pid: hex(pid, &[8]).ok_or_else(err)? as u32,
            pstart: hex(pstart, &[8, 9]).ok_or_else(err)?,
            starttime: hex(starttime, &[8]).ok_or_else(err)?,
            task_type: task_type.to_string(),
            id: id.to_string(),
            user: user.to_string(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.task_type, self.id, self.user
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_upid_and_round_trips() {
        let text = "UPID:pve-mp:00000ACD:00006AE8:679A423B:qmclone:112:capmox@pve!capi:";
        let upid = Upid::parse(text).unwrap();
        assert_eq!((upid.node.as_str(), upid.pid, upid.pstart, upid.starttime), ("pve-mp", 2765, 27368, 1738162747));
        assert_eq!(
            (upid.task_type.as_str(), upid.id.as_str(), upid.user.as_str()),
            ("qmclone", "112", "capmox@pve!capi")
        );
        assert_eq!(upid.to_string(), text);
    }

    #[test]
    fn accepts_an_empty_id_and_refuses_malformed_text() {
        let upid = Upid::parse("UPID:pve:00000001:00000002:00000003:imgcopy::root@pam:");
        assert_eq!(upid.map(|u| u.id), Ok(String::new()));
        for bad in [
            "UPID:pve:1:2:3:x:y:z:",
            "pve:00000001:00000002:00000003:t:i:u:",
            "UPID:pve:00000001:00000002:00000003:t:i:u",
            "UPID:-pve:00000001:00000002:00000003:t:i:u:",
        ] {
            assert!(Upid::parse(bad).is_err(), "{bad}");
        }
    }
}
