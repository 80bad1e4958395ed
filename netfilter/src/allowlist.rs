//! Allowlist entries (`network.allowlist` in a profile): addresses or networks taken as
//! they are, domain names resolved to their `A` records and looked up again when the
//! answer's TTL runs out. Time is the caller's (`now` in seconds on a monotonic clock), so
//! refreshes can be tested on a paused clock.

use crate::dns::{self, Answer, DnsError};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum AllowEntry {
    Net(Ipv4Net),
    Domain(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("allowlist entry `{0}` is neither an IPv4 address or network nor a domain name")]
pub struct BadEntry(pub String);

impl std::str::FromStr for AllowEntry {
    type Err = BadEntry;
    fn from_str(s: &str) -> Result<AllowEntry, BadEntry> {
        let s = s.trim();
        if let Ok(net) = s.parse::<Ipv4Net>() {
            return Ok(AllowEntry::Net(net.trunc()));
        }
        if let Ok(addr) = s.parse::<Ipv4Addr>() {
            return Ok(AllowEntry::Net(Ipv4Net::from(addr)));
        }
        let looks_numeric = s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'/');
        if !looks_numeric && dns::valid_name(s) && s.contains('.') {
            return Ok(AllowEntry::Domain(s.trim_end_matches('.').to_ascii_lowercase()));
        }
        Err(BadEntry(s.to_string()))
    }
}

/// A TTL floor and ceiling: a 0-second TTL must not become a query storm, a week-long one
/// must not keep a moved service's old address.
pub const MIN_TTL: u64 = 30;
pub const MAX_TTL: u64 = 3600;
/// After a failed lookup, the last good addresses are kept and the next try is this soon.
pub const RETRY_AFTER: u64 = 30;

#[derive(Debug, Clone, Default)]
struct Resolved {
    addrs: Vec<Ipv4Addr>,
    next_lookup: u64,
}

/// The domains of every allowlist in use, with their current addresses.
#[derive(Debug, Default)]
pub struct DomainCache {
    domains: BTreeMap<String, Resolved>,
    /// Overrides MIN_TTL (tests use short TTLs).
    min_ttl: Option<u64>,
}

impl DomainCache {
    pub fn with_min_ttl(min_ttl: u64) -> DomainCache {
        DomainCache { domains: BTreeMap::new(), min_ttl: Some(min_ttl) }
    }

    /// Makes the cache track exactly these domains (new ones are due at once).
    pub fn track<'a>(&mut self, domains: impl IntoIterator<Item = &'a str>) {
        let wanted: BTreeMap<String, ()> = domains.into_iter().map(|d| (d.to_string(), ())).collect();
        self.domains.retain(|d, _| wanted.contains_key(d));
        for d in wanted.into_keys() {
            self.domains.entry(d).or_default();
        }
    }

    /// Seconds (on the caller's clock) of the next due lookup, if any domain is tracked.
    pub fn next_due(&self) -> Option<u64> {
        self.domains.values().map(|r| r.next_lookup).min()
    }

    /// Looks up every domain that is due. Returns whether any address set changed, and
    /// the failures (the previous addresses stay in force for a failed domain).
    pub fn refresh(
        &mut self,
        now: u64,
        mut lookup: impl FnMut(&str) -> Result<Vec<Answer>, DnsError>,
    ) -> (bool, Vec<DnsError>) {
        let min_ttl = self.min_ttl.unwrap_or(MIN_TTL);
        let mut changed = false;
        let mut errors = Vec::new();
        for (name, entry) in self.domains.iter_mut().filter(|(_, r)| r.next_lookup <= now) {
            match lookup(name) {
                Ok(answers) => {
                    // A domain cannot open the LAN, the tailnet or the host: an answer in a
                    // private, shared, loopback or link-local range is dropped (an operator
                    // who means such a place lists its address explicitly).
                    let mut addrs: Vec<Ipv4Addr> = answers.iter().map(|a| a.addr).filter(is_public).collect();
                    addrs.sort();
                    addrs.dedup();
                    let ttl = answers.iter().map(|a| u64::from(a.ttl)).min().unwrap_or(min_ttl);
                    entry.next_lookup = now + ttl.clamp(min_ttl, MAX_TTL);
                    changed |= addrs != entry.addrs;
                    entry.addrs = addrs;
                }
                Err(e) => {
                    entry.next_lookup = now + RETRY_AFTER.min(min_ttl.max(1));
                    errors.push(e);
                }
            }
        }
        (changed, errors)
    }

    /// The networks `entries` stand for now (domains not yet resolved stand for nothing).
    pub fn networks(&self, entries: &[AllowEntry]) -> Vec<Ipv4Net> {
        let mut out: Vec<Ipv4Net> = entries
            .iter()
            .flat_map(|e| match e {
                AllowEntry::Net(n) => vec![*n],
                AllowEntry::Domain(d) => {
                    self.domains.get(d).map(|r| r.addrs.iter().map(|a| Ipv4Net::from(*a)).collect()).unwrap_or_default()
                }
            })
            .collect();
        out.sort();
        out.dedup();
        // nft refuses overlapping intervals in one set: keep only the widest.
        let nets = out.clone();
        out.retain(|n| !nets.iter().any(|m| m != n && m.contains(n)));
        out
    }
}

/// Not private (RFC 1918), shared (CGNAT, the tailnet), loopback, link-local, multicast,
/// broadcast or unspecified.
pub fn is_public(a: &Ipv4Addr) -> bool {
    let [x, y, ..] = a.octets();
    !(a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_unspecified()
        || (x == 100 && (64..128).contains(&y))
        || x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_networks_or_domains_and_nothing_else() {
        assert_eq!("140.82.112.0/20".parse(), Ok(AllowEntry::Net("140.82.112.0/20".parse().expect("net"))));
        assert_eq!("203.0.113.7".parse(), Ok(AllowEntry::Net("203.0.113.7/32".parse().expect("net"))));
        assert_eq!("GitHub.com.".parse(), Ok(AllowEntry::Domain("github.com".into())));
        for bad in ["", "localhost", "1.2.3", "a b.com", "*.github.com", "::1", "10.0.0.0/33"] {
            assert!(bad.parse::<AllowEntry>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_domain_is_looked_up_again_when_its_ttl_runs_out_and_keeps_its_addresses_on_failure() {
        let mut cache = DomainCache::with_min_ttl(1);
        cache.track(["a.test"]);
        let entries =
            vec![AllowEntry::Domain("a.test".into()), AllowEntry::Net("198.51.100.0/24".parse().expect("net"))];
        let answer = |ip: [u8; 4], ttl| Ok(vec![Answer { addr: Ipv4Addr::from(ip), ttl }]);
        let (changed, errors) = cache.refresh(0, |_| answer([203, 0, 113, 1], 5));
        assert!(changed && errors.is_empty());
        assert_eq!(cache.next_due(), Some(5));
        assert_eq!(cache.networks(&entries).len(), 2);
        let (changed, _) = cache.refresh(4, |_| panic!("not due yet"));
        assert!(!changed);
        let (changed, _) = cache.refresh(5, |_| answer([203, 0, 113, 2], 5));
        assert!(changed);
        assert!(cache.networks(&entries).contains(&"203.0.113.2/32".parse().expect("net")));
        let (changed, errors) = cache.refresh(10, |name| Err(DnsError::BadName(name.into())));
        assert!(!changed && errors.len() == 1);
        assert!(cache.networks(&entries).contains(&"203.0.113.2/32".parse().expect("net")), "kept on failure");
    }

    #[test]
    fn a_domain_answering_with_a_lan_or_tailnet_address_opens_nothing() {
        let mut cache = DomainCache::with_min_ttl(1);
        cache.track(["evil.test"]);
        let entries = vec![AllowEntry::Domain("evil.test".into())];
        let answers = ["192.168.1.1", "100.100.100.100", "127.0.0.1", "169.254.169.254", "10.77.0.1", "203.0.113.9"]
            .iter()
            .map(|a| Answer { addr: a.parse().expect("ip"), ttl: 60 })
            .collect::<Vec<_>>();
        cache.refresh(0, |_| Ok(answers.clone()));
        assert_eq!(cache.networks(&entries), vec!["203.0.113.9/32".parse::<Ipv4Net>().expect("net")]);
    }

    #[test]
    fn overlapping_networks_collapse_to_the_widest() {
        let cache = DomainCache::default();
        let entries: Vec<AllowEntry> =
            ["10.1.0.0/16", "10.1.2.3", "10.1.2.0/24"].iter().map(|e| e.parse().expect("entry")).collect();
        assert_eq!(cache.networks(&entries), vec!["10.1.0.0/16".parse::<Ipv4Net>().expect("net")]);
    }
}
