//! Proxmox's named formats (`formats` in endpoints.json), checked with their own error texts.
//! Formats the file does not describe (`pve-qm-boot`, …) accept any string, as the contract
//! notes allow.

use super::{Contract, property_string};
use regex::Regex;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

pub fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

pub fn is_number(s: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$").ok())
        .as_ref()
        .is_some_and(|re| re.is_match(s))
}

/// Regexes of the regex formats, compiled once.
fn regexes(contract: &Contract) -> &'static HashMap<String, Regex> {
    static CACHE: OnceLock<HashMap<String, Regex>> = OnceLock::new();
    CACHE.get_or_init(|| {
        contract
            .formats
            .iter()
            .filter_map(|(name, f)| {
                let pattern = f["regex"].as_str()?;
                let flags = if f["flags"].as_str() == Some("i") { "(?i)" } else { "" };
                Regex::new(&format!("{flags}{pattern}")).ok().map(|re| (name.clone(), re))
            })
            .collect()
    })
}

/// The format's error text with its placeholder replaced by the value.
fn error_text(format: &Value, value: &str, alternative: usize) -> String {
    let text = format["error"].as_str().unwrap_or("invalid format");
    let text = text.split(" / ").nth(alternative).unwrap_or(text);
    ["<id>", "<volid>", "<text>", "<size>", "<name>", "<ct>"].iter().fold(text.to_string(), |t, p| t.replace(p, value))
}

pub fn check(contract: &Contract, name: &str, value: &str) -> Result<(), String> {
    match name {
        "ipv4" => {
            return value
                .parse::<std::net::Ipv4Addr>()
                .map(|_| ())
                .map_err(|_| "value does not look like a valid IPv4 address".to_string());
        }
        "ipv6" => {
            return value
                .parse::<std::net::Ipv6Addr>()
                .map(|_| ())
                .map_err(|_| "value does not look like a valid IPv6 address".to_string());
        }
        "pve-ipv4-config" => {
            return if matches!(value, "dhcp" | "manual") || cidr(value, Some(true), 8).is_ok() {
                Ok(())
            } else {
                Err("value does not look like a valid IPv4 network configuration".into())
            };
        }
        "pve-ipv6-config" => {
            return if matches!(value, "auto" | "dhcp" | "manual") || cidr(value, Some(false), 0).is_ok() {
                Ok(())
            } else {
                Err("value does not look like a valid IPv6 network configuration".into())
            };
        }
        _ => {}
    }
    let Some(format) = contract.formats.get(name) else {
        return Ok(());
    };
    if let Some(inner) = format["list_of"].as_str() {
        let separators: &[char] =
            if name == "pve-tag-list" { &[';', ',', ' '] } else { &[',', ';', ' ', '\t', '\n', '\0'] };
        for item in value.split(separators).filter(|i| !i.is_empty()) {
            check(contract, inner, item)?;
        }
        return Ok(());
    }
    if let Some(keys) = format["property_string"].as_object() {
        return property_string::check(contract, name, value, keys)
            .map_err(|lines| format!("format error\n{}", lines.join("\n")));
    }
    if let Some(options) = format["enum_like"].as_array() {
        let known: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
        for item in value.split(',').filter(|i| !i.is_empty()) {
            if !known.contains(&item) {
                return Err(error_text(format, item, 0));
            }
        }
        return Ok(());
    }
    if let Some(re) = regexes(contract).get(name) {
        if let Some(min) = format["min_length"].as_u64()
            && (value.len() as u64) < min
        {
            return Err(error_text(format, value, 1));
        }
        if let Some(max) = format["max_length"].as_u64()
            && (value.len() as u64) > max
        {
            return Err(format!("value may only be {max} characters long"));
        }
        return if re.is_match(value) { Ok(()) } else { Err(error_text(format, value, 0)) };
    }
    match name {
        "CIDR" => cidr(value, None, 8).map_err(|_| error_text(format, value, 0)),
        "pve-volume-id-or-qm-path" => {
            volume_or_path(contract, value, true).map_err(|_| format!("invalid volume ID or path '{value}'"))
        }
        "pve-volume-id-or-absolute-path" => {
            volume_or_path(contract, value, false).map_err(|_| format!("invalid volume ID or path '{value}'"))
        }
        "IPorCIDRorAlias" => ip_cidr_or_alias(value).map_err(|_| error_text(format, value, 0)),
        "pve-fw-addr-spec" => fw_addr_spec(value).map_err(|e| e.to_string()),
        "pve-fw-dport-spec" | "pve-fw-sport-spec" => fw_port_spec(value),
        "pve-fw-protocol-spec" => {
            if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !value.is_empty() {
                Ok(())
            } else {
                Err(format!("unknown protocol '{value}'"))
            }
        }
        _ => Ok(()),
    }
}

/// `a.b.c.d/n` or an IPv6 CIDR (a plain address counts as a host route when `prefix_min`
/// is 0). `v4`: Some(true) only IPv4, Some(false) only IPv6.
fn cidr(value: &str, v4: Option<bool>, prefix_min: u8) -> Result<(), ()> {
    let (ip, prefix) = match value.split_once('/') {
        Some((ip, p)) => (ip, p.parse::<u8>().map_err(|_| ())?),
        None if prefix_min == 0 => (value, 128),
        None => return Err(()),
    };
    let ip: IpAddr = ip.parse().map_err(|_| ())?;
    match (ip, v4) {
        (IpAddr::V4(_), Some(false)) | (IpAddr::V6(_), Some(true)) => Err(()),
        (IpAddr::V4(_), _) if !(prefix_min.max(8)..=32).contains(&prefix) => Err(()),
        (IpAddr::V6(_), _) if prefix > 128 => Err(()),
        _ => Ok(()),
    }
}

fn volume_or_path(contract: &Contract, value: &str, qm_path: bool) -> Result<(), ()> {
    if value.starts_with('/') {
        return Ok(());
    }
    if qm_path && matches!(value, "none" | "cdrom") {
        return Ok(());
    }
    // STORAGE:SIZE_GiB allocates a new disk.
    if qm_path
        && let Some((storage, size)) = value.split_once(':')
        && !storage.contains('/')
        && is_number(size)
    {
        return Ok(());
    }
    match regexes(contract).get("pve-volume-id") {
        Some(re) if re.is_match(value) => Ok(()),
        _ => Err(()),
    }
}

fn is_alias(value: &str) -> bool {
    let bare = value.strip_prefix("dc/").or_else(|| value.strip_prefix("guest/")).unwrap_or(value);
    let mut chars = bare.chars();
    bare.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// pve-firewall `src/PVE/Firewall.pm` pve_verify_ip_or_cidr_or_alias (92-100) and
/// pve_verify_ip_or_cidr (76-90): an alias, or an address with any prefix Net::IP takes
/// once the host bits are cleared (`0.0.0.0/0` included: IPSet.pm refuses it later).
fn ip_cidr_or_alias(value: &str) -> Result<(), ()> {
    if is_alias(value) {
        return Ok(());
    }
    let (ip, prefix) = match value.split_once('/') {
        Some((ip, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (ip, p.parse::<u32>().map_err(|_| ())?)
        }
        Some(_) => return Err(()),
        None => (value, 0),
    };
    match ip.parse::<IpAddr>().map_err(|_| ())? {
        IpAddr::V4(_) if prefix > 32 => Err(()),
        IpAddr::V6(_) if prefix > 128 => Err(()),
        _ => Ok(()),
    }
}

/// parse_address_list (pve-firewall `src/PVE/Firewall.pm` 1072-1110): `+<anything>` is only
/// checked for length here (the name and the set's existence are verify_rule's,
/// 1770-1785); an alias before a range or list.
fn fw_addr_spec(value: &str) -> Result<(), &'static str> {
    if let Some(set) = value.strip_prefix('+')
        && !set.is_empty()
        && !set.contains(char::is_whitespace)
    {
        return if value.len() > 65 { Err("ipset name too long") } else { Ok(()) };
    }
    if is_alias(value) {
        return if value.len() > 64 { Err("alias name too long") } else { Ok(()) };
    }
    if let Some((a, b)) = value.split_once('-')
        && !value.contains(',')
    {
        return match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
            (Ok(a), Ok(b)) if a.is_ipv4() == b.is_ipv4() => Ok(()),
            _ => Err("invalid IP address range"),
        };
    }
    let mut family = None;
    for item in value.split(',') {
        let ip = item.split('/').next().unwrap_or(item).parse::<IpAddr>().map_err(|_| "invalid IP address")?;
        if cidr(item, None, 0).is_err() && item.contains('/') {
            return Err("invalid IP address");
        }
        match family {
            None => family = Some(ip.is_ipv4()),
            Some(f) if f != ip.is_ipv4() => return Err("you can't mix ipv4 and ipv6 addresses in a list"),
            Some(_) => {}
        }
    }
    Ok(())
}

fn fw_port_spec(value: &str) -> Result<(), String> {
    for item in value.split(',') {
        let ok = match item.split_once(':') {
            Some((a, b)) => a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
            None => {
                item.parse::<u16>().is_ok()
                    || (!item.is_empty() && item.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            }
        };
        if !ok {
            return Err(format!("invalid port '{item}'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_formats_accept_and_refuse_with_their_texts() {
        let c = Contract::get();
        assert_eq!(check(c, "pve-vmid", "1001"), Ok(()));
        assert_eq!(check(c, "pve-vmid", "99"), Err("value does not look like a valid VM ID".into()));
        assert_eq!(check(c, "pve-storage-id", "local-lvm"), Ok(()));
        assert_eq!(check(c, "pve-storage-id", "l"), Err("storage ID 'l' cannot be shorter than 2 characters".into()));
        assert_eq!(check(c, "pve-tag-list", "agentlab;job-42 sandbox"), Ok(()));
        assert_eq!(check(c, "pve-tag-list", "agentlab;bad/tag"), Err("invalid characters in tag".into()));
        assert_eq!(check(c, "pve-configid-list", "scsi1,unused0"), Ok(()));
        assert_eq!(check(c, "pve-volume-id-or-qm-path", "local-lvm:32"), Ok(()));
        assert_eq!(check(c, "pve-volume-id-or-qm-path", "local-zfs:base-9000-disk-0/vm-101-disk-0"), Ok(()));
        assert_eq!(check(c, "pve-qm-cicustom", "user=local:snippets/agentlab-1001-x.yaml"), Ok(()));
        assert!(check(c, "pve-qm-cicustom", "user=snippets-without-storage").is_err());
        assert_eq!(check(c, "pve-qm-ipconfig", "ip=dhcp"), Ok(()));
        assert_eq!(check(c, "pve-qm-ipconfig", "ip=10.77.0.5/16,gw=10.77.0.1"), Ok(()));
        assert!(check(c, "pve-qm-ipconfig", "gw=10.77.0.1").is_err(), "gw requires ip");
        assert_eq!(check(c, "pve-fw-addr-spec", "10.0.0.0/8,172.16.0.0/12"), Ok(()));
        assert!(check(c, "pve-fw-addr-spec", "10.0.0.0/8,fc00::/7").is_err());
        assert_eq!(check(c, "pve-fw-addr-spec", "+agent_allow"), Ok(()));
        assert_eq!(check(c, "pve-fw-addr-spec", "+bad!name"), Ok(()), "the rule check refuses it, with its own text");
        assert!(check(c, "pve-fw-addr-spec", &format!("+{}", "a".repeat(65))).is_err());
        assert_eq!(check(c, "IPorCIDRorAlias", "0.0.0.0/0"), Ok(()));
        assert_eq!(check(c, "IPorCIDRorAlias", "10.1.2.3/8"), Ok(()));
        assert_eq!(check(c, "IPorCIDRorAlias", "agent-hosts"), Ok(()));
        assert!(check(c, "IPorCIDRorAlias", "10.0.0.0/33").is_err());
        assert_eq!(check(c, "pve-fw-dport-spec", "8844,8846"), Ok(()));
        assert_eq!(check(c, "urlencoded", "ssh-ed25519%20AAAA%0A"), Ok(()));
        assert!(check(c, "urlencoded", "ssh-ed25519 AAAA").is_err());
    }
}
