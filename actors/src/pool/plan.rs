//! What the warm pool does next, as a pure function of the profiles' pool sizes and the
//! pooled records: which sandboxes to drain (and why) and which profiles to add one to.
//!
//! The rules: a pooled sandbox whose profile no longer has a pool, or changed since it was
//! built, or that is neither provisioning nor READY, is drained; each profile keeps at most
//! `size` (READY ones first, then the lowest VMIDs), all pools together at most the cap; at
//! most `concurrency` pooled sandboxes provision at once, so refills leave Proxmox's clone
//! slots to user requests.

use crate::model::{Intent, SandboxState};
use crate::store::SandboxRecord;
use std::collections::BTreeMap;

/// A profile that wants a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub profile: String,
    pub size: u32,
    pub fingerprint: String,
}

/// The pool's limits from the daemon's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `pool_max_total`: every pool together.
    pub max_total: u32,
    /// `pool_refill_concurrency`: pooled sandboxes provisioning at once.
    pub concurrency: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// VMIDs to destroy, with the reason recorded in the `pool.drained` event.
    pub drain: Vec<(u32, String)>,
    /// Profiles to add one sandbox to (a profile may appear more than once).
    pub fill: Vec<String>,
}

/// Refills asked for whose record is not written yet, by profile. They count toward their
/// profile's size and the cap like the records they become: a look between the ask and the
/// record must not ask again (that over-filled the pool).
pub type InFlight = BTreeMap<String, u32>;

/// The plan for `members` (the live pooled records), given the refills `in_flight` that
/// have not produced a record yet.
pub fn plan(wants: &[Want], members: &[SandboxRecord], limits: Limits, in_flight: &InFlight) -> Plan {
    let unrecorded: u32 = in_flight.values().sum();
    let wanted: BTreeMap<&str, &Want> = wants.iter().filter(|w| w.size > 0).map(|w| (w.profile.as_str(), w)).collect();
    let mut out = Plan::default();
    let mut kept: BTreeMap<&str, Vec<&SandboxRecord>> = BTreeMap::new();
    for m in members {
        // Already being destroyed: neither kept nor drained again.
        if matches!(m.intent, Some(Intent::Destroy | Intent::Cleanup)) || m.state == SandboxState::Destroyed {
            continue;
        }
        let reason = match wanted.get(m.profile.as_str()) {
            None => Some(format!("profile `{}` has no pool now", m.profile)),
            Some(w) if m.pool.as_deref() != Some(w.fingerprint.as_str()) => {
                Some(format!("profile `{}` changed since the sandbox was built", m.profile))
            }
            Some(_) if !(m.state == SandboxState::Ready || m.state.is_provisioning()) => {
                Some(format!("the pooled sandbox is {}", m.state))
            }
            Some(_) => None,
        };
        match reason {
            Some(why) => out.drain.push((m.vmid, why)),
            None => kept.entry(m.profile.as_str()).or_default().push(m),
        }
    }
    let mut total: Vec<&SandboxRecord> = Vec::new();
    for (profile, list) in kept.iter_mut() {
        list.sort_by_key(|m| (m.state != SandboxState::Ready, m.vmid));
        let size = wanted.get(profile).map_or(0, |w| w.size) as usize;
        for extra in list.drain(size.min(list.len())..) {
            out.drain.push((extra.vmid, format!("the pool of `{profile}` is above its size ({size})")));
        }
        total.extend(list.iter().copied());
    }
    total.sort_by_key(|m| (m.state != SandboxState::Ready, m.vmid));
    let max_total = limits.max_total as usize;
    if total.len() > max_total {
        for extra in total.drain(max_total..) {
            out.drain.push((extra.vmid, format!("all pools together are above pool_max_total ({max_total})")));
            if let Some(list) = kept.get_mut(extra.profile.as_str()) {
                list.retain(|m| m.vmid != extra.vmid);
            }
        }
    }
    let provisioning = total.iter().filter(|m| m.state.is_provisioning()).count() as u32 + unrecorded;
    let mut room = limits.concurrency.saturating_sub(provisioning);
    let mut count = total.len() as u32 + unrecorded;
    // Round robin over the profiles so one big pool does not starve the others.
    let mut have: BTreeMap<&str, u32> = wanted
        .keys()
        .map(|p| {
            let recorded = kept.get(p).map_or(0, |l| l.len() as u32);
            (*p, recorded + in_flight.get(*p).copied().unwrap_or(0))
        })
        .collect();
    while room > 0 && count < limits.max_total {
        let next = wanted.values().find(|w| have.get(w.profile.as_str()).copied().unwrap_or(0) < w.size);
        let Some(w) = next.map(|w| w.profile.as_str()) else { break };
        out.fill.push(w.to_string());
        *have.entry(w).or_default() += 1;
        room -= 1;
        count += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(profile: &str, size: u32) -> Want {
        Want { profile: profile.into(), size, fingerprint: format!("{profile}-v1") }
    }

    fn member(vmid: u32, profile: &str, state: SandboxState) -> SandboxRecord {
        SandboxRecord {
            profile: profile.into(),
            pool: Some(format!("{profile}-v1")),
            ..SandboxRecord::sample(vmid, state)
        }
    }

    const ONE: Limits = Limits { max_total: 10, concurrency: 1 };

    fn none() -> InFlight {
        InFlight::new()
    }

    fn asked(profile: &str, n: u32) -> InFlight {
        InFlight::from([(profile.to_string(), n)])
    }

    #[test]
    fn an_empty_pool_fills_one_at_a_time_and_only_to_its_size() {
        assert_eq!(plan(&[want("a", 2)], &[], ONE, &none()).fill, ["a"]);
        assert_eq!(plan(&[want("a", 2)], &[], ONE, &asked("a", 1)).fill, Vec::<String>::new());
        let booting = [member(1, "a", SandboxState::Booting)];
        assert!(plan(&[want("a", 2)], &booting, ONE, &none()).fill.is_empty());
        let two = Limits { max_total: 10, concurrency: 2 };
        assert_eq!(plan(&[want("a", 2)], &booting, two, &none()).fill, ["a"]);
        let full = [member(1, "a", SandboxState::Ready), member(2, "a", SandboxState::Ready)];
        assert_eq!(plan(&[want("a", 2)], &full, two, &none()), Plan::default());
        let wide = Limits { max_total: 10, concurrency: 5 };
        assert_eq!(plan(&[want("a", 2), want("b", 1)], &[], wide, &none()).fill, ["a", "a", "b"]);
    }

    #[test]
    fn a_refill_without_its_record_yet_counts_toward_its_profile() {
        // One READY left after a claim, one refill asked for and not recorded: with room for
        // two at once, the pool must not ask for a third.
        let two = Limits { max_total: 10, concurrency: 2 };
        let one_left = [member(1, "a", SandboxState::Ready)];
        assert!(plan(&[want("a", 2)], &one_left, two, &asked("a", 1)).fill.is_empty());
        // Another profile's refill takes a concurrency slot but not this profile's size.
        assert_eq!(plan(&[want("a", 2), want("b", 1)], &one_left, two, &asked("b", 1)).fill, ["a"]);
        // And it counts toward the cap.
        let capped = Limits { max_total: 2, concurrency: 5 };
        assert!(plan(&[want("a", 5)], &one_left, capped, &asked("a", 1)).fill.is_empty());
    }

    #[test]
    fn the_cap_bounds_every_pool_together() {
        let limits = Limits { max_total: 3, concurrency: 5 };
        let members = [member(1, "a", SandboxState::Ready), member(2, "b", SandboxState::Ready)];
        assert_eq!(plan(&[want("a", 5), want("b", 5)], &members, limits, &none()).fill, ["a"]);
        let over = [
            member(1, "a", SandboxState::Ready),
            member(2, "a", SandboxState::Booting),
            member(3, "b", SandboxState::Ready),
            member(4, "b", SandboxState::Ready),
        ];
        let got = plan(&[want("a", 5), want("b", 5)], &over, limits, &none());
        assert_eq!(got.drain.iter().map(|d| d.0).collect::<Vec<_>>(), [2]);
        assert!(got.fill.is_empty());
    }

    #[test]
    fn what_the_pool_no_longer_wants_is_drained_with_its_reason() {
        let changed = SandboxRecord { pool: Some("a-v0".into()), ..member(5, "a", SandboxState::Ready) };
        let destroying = SandboxRecord { intent: Some(Intent::Destroy), ..member(6, "a", SandboxState::Ready) };
        let members = [
            member(1, "a", SandboxState::Booting),
            member(2, "a", SandboxState::Ready),
            member(3, "gone", SandboxState::Ready),
            member(4, "a", SandboxState::Failed),
            changed,
            destroying,
            member(7, "a", SandboxState::Ready),
        ];
        let got = plan(&[want("a", 1)], &members, ONE, &none());
        let table: Vec<String> = got.drain.iter().map(|(v, why)| format!("{v}: {why}")).collect();
        assert_eq!(
            table,
            [
                "3: profile `gone` has no pool now",
                "4: the pooled sandbox is FAILED",
                "5: profile `a` changed since the sandbox was built",
                // READY ones are kept first: the booting one goes.
                "7: the pool of `a` is above its size (1)",
                "1: the pool of `a` is above its size (1)",
            ]
        );
        assert!(got.fill.is_empty());
        assert_eq!(plan(&[want("a", 0)], &[member(1, "a", SandboxState::Ready)], ONE, &none()).drain.len(), 1);
    }
}
