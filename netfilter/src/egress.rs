//! The egress record: what sandboxes tried to reach and the host ruleset dropped, read from
//! the `egress_drops` set (one element per source MAC, destination, protocol and port, each
//! with a packet counter; bounded in size and aged out by the kernel).

use crate::host::MacAddr;
use crate::nft::NftError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const EGRESS_SET: &str = "egress_drops";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedAttempt {
    pub mac: MacAddr,
    pub destination: Ipv4Addr,
    /// `tcp`, `udp`, `icmp`, … as nft names it.
    pub protocol: String,
    /// 0 for protocols without ports.
    pub port: u16,
    pub packets: u64,
}

/// Where a sandbox tried to go: MAC, destination, protocol, port.
pub type AttemptKey = (MacAddr, Ipv4Addr, String, u16);

/// Running totals across reads of the set. Reloading the ruleset empties the set (and a
/// kernel ages entries out), so each read is folded in: a counter that went down was
/// reset, and counts from zero again.
#[derive(Debug, Default, Clone)]
pub struct EgressRecord {
    totals: BTreeMap<AttemptKey, u64>,
    last_read: BTreeMap<AttemptKey, u64>,
}

impl EgressRecord {
    /// Folds one read of the set in; returns the attempts whose totals grew, with the growth.
    pub fn fold(&mut self, read: &[DroppedAttempt]) -> Vec<(AttemptKey, u64)> {
        let mut grown = Vec::new();
        let mut seen = BTreeMap::new();
        for d in read {
            let key = (d.mac, d.destination, d.protocol.clone(), d.port);
            let before = self.last_read.get(&key).copied().unwrap_or(0);
            let delta = if d.packets >= before { d.packets - before } else { d.packets };
            if delta > 0 {
                *self.totals.entry(key.clone()).or_default() += delta;
                grown.push((key.clone(), delta));
            }
            seen.insert(key, d.packets);
        }
        self.last_read = seen;
        grown
    }

    /// Call after loading a ruleset: the set starts empty again.
    pub fn set_was_reloaded(&mut self) {
        self.last_read.clear();
    }

    pub fn totals(&self) -> impl Iterator<Item = (&AttemptKey, u64)> {
        self.totals.iter().map(|(k, v)| (k, *v))
    }
}

/// Both records of the host ruleset, read into one list: the inet table's dropped
/// connections and the bridge table's ARP requests for other guests (protocol `arp`).
pub fn read(nft: &crate::nft::Nft) -> Result<Vec<DroppedAttempt>, NftError> {
    let mut all = parse(&nft.list_set_json(EGRESS_SET)?)?;
    all.extend(parse(&nft.list_family_set_json("bridge", crate::host::ARP_SET)?)?);
    Ok(all)
}

/// Parses `nft -j list set inet agentlab egress_drops` (or the bridge table's `guest_arp`).
pub fn parse(json: &str) -> Result<Vec<DroppedAttempt>, NftError> {
    let value: Value = serde_json::from_str(json).map_err(|e| NftError::Json(e.to_string()))?;
    let mut out = Vec::new();
    let sets = value["nftables"].as_array().into_iter().flatten().filter_map(|v| v.get("set"));
    for elem in sets.flat_map(|s| s["elem"].as_array().into_iter().flatten()) {
        // An element with a counter is `{"elem": {"val": …, "counter": …}}`.
        let inner = elem.get("elem").unwrap_or(elem);
        let Some(parts) = inner["val"]["concat"].as_array() else { continue };
        // The bridge table's ARP record has no protocol or port.
        let arp = [Value::from("arp"), Value::from(0)];
        let (mac, dest, proto, port) = match parts.as_slice() {
            [mac, dest, proto, port] => (mac, dest, proto, port),
            [mac, dest] => (mac, dest, &arp[0], &arp[1]),
            _ => continue,
        };
        let (Some(mac), Some(dest)) =
            (mac.as_str().and_then(|m| m.parse().ok()), dest.as_str().and_then(|d| d.parse().ok()))
        else {
            continue;
        };
        let protocol = match proto {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let port = port.as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
        let packets = inner["counter"]["packets"].as_u64().unwrap_or(0);
        out.push(DroppedAttempt { mac, destination: dest, protocol, port, packets });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nfts_json_of_a_counted_concatenated_set() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "egress_drops",
          "table": "agentlab", "elem": [
            {"elem": {"val": {"concat": ["02:00:00:00:01:01", "100.100.0.2", "tcp", 80]}, "expires": 3555,
                      "counter": {"packets": 2, "bytes": 120}}},
            {"elem": {"val": {"concat": ["02:00:00:00:01:02", "192.168.50.2", "icmp", 0]},
                      "counter": {"packets": 5, "bytes": 420}}},
            {"elem": {"val": {"concat": ["not-a-mac", "192.168.50.2", "tcp", 1]}}},
            {"elem": {"val": {"concat": ["02:00:00:00:01:01", "10.77.0.9"]}, "counter": {"packets": 1, "bytes": 42}}}]}}]}"#;
        let drops = parse(json).expect("parse");
        assert_eq!(drops.len(), 3);
        assert_eq!(
            (drops[2].protocol.as_str(), drops[2].port, drops[2].destination.to_string()),
            ("arp", 0, "10.77.0.9".into())
        );
        assert_eq!(drops[0].destination.to_string(), "100.100.0.2");
        assert_eq!((drops[0].protocol.as_str(), drops[0].port, drops[0].packets), ("tcp", 80, 2));
        assert_eq!((drops[1].protocol.as_str(), drops[1].port, drops[1].packets), ("icmp", 0, 5));
    }

    #[test]
    fn folding_survives_a_reload_and_does_not_count_twice() {
        let attempt = |packets| DroppedAttempt {
            mac: "02:00:00:00:01:01".parse().expect("mac"),
            destination: "192.168.1.1".parse().expect("ip"),
            protocol: "tcp".into(),
            port: 22,
            packets,
        };
        let mut record = EgressRecord::default();
        assert_eq!(record.fold(&[attempt(2)]).len(), 1);
        assert!(record.fold(&[attempt(2)]).is_empty(), "the same read adds nothing");
        record.fold(&[attempt(5)]);
        record.set_was_reloaded();
        record.fold(&[attempt(1)]);
        assert_eq!(record.totals().map(|(_, n)| n).sum::<u64>(), 6);
        record.fold(&[]);
        record.fold(&[attempt(1)]); // aged out, then seen again
        assert_eq!(record.totals().map(|(_, n)| n).sum::<u64>(), 7);
    }
}
