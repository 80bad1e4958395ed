//! What health probing costs Proxmox: 100 READY sandboxes, then ten minutes of probing on
//! tokio's paused clock, counting the simulator's requests. Prints requests per minute and
//! by endpoint; fails if probing takes more than a tenth of the gateway's rate limit.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::Harness;

const SANDBOXES: usize = 100;

#[tokio::test(start_paused = true)]
async fn probing_a_hundred_sandboxes_stays_far_below_the_rate_limit() {
    let h = Harness::start().await;
    let mut vmids = Vec::new();
    for _ in 0..SANDBOXES {
        vmids.push(h.create_sandbox("small", Some(24 * 60), false).await);
    }
    for vmid in &vmids {
        assert!(matches!(h.settled(*vmid).await, agentlab_actors::sandbox::Settled::Ready(_)), "{vmid}");
    }
    // Let the boot-time checks and the resources lag settle, then count.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let before = h.sim.requests().len();
    let minutes = 10;
    tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
    let requests = h.sim.requests();
    let mut by_endpoint: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests[before..] {
        *by_endpoint.entry(r.endpoint.clone().unwrap_or_else(|| r.path.clone())).or_default() += 1;
    }
    let per_minute = (requests.len() - before) as f64 / minutes as f64;
    println!("{SANDBOXES} READY sandboxes, probe interval {:?}: {per_minute:.1} requests/min", support::PROBE_INTERVAL);
    for (endpoint, n) in &by_endpoint {
        println!("  {:>6.1}/min  {endpoint}", *n as f64 / minutes as f64);
    }
    let limit_per_minute = 20.0 * 60.0;
    assert!(per_minute < limit_per_minute / 10.0, "{per_minute:.1} requests/min for probes: {by_endpoint:?}");
    h.stop().await;
}
