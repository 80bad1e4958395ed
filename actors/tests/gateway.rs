//! The `pve` gateway against `pve-sim`: concurrent clones under the storage lock, faults,
//! no retry of validation errors, and the request rate Proxmox sees.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use agentlab_actors::pve::rate_limit::{RateLimitedTransport, TokenBucket};
use agentlab_actors::pve::{Gateway, GatewayLimits, PveGateway, PveGatewayArgs, PveMsg, RetryPolicy};
use agentlab_proxmox::types::{CloneSpec, ConfigChange, DestroyOptions, VmAction};
use agentlab_proxmox::{ErrorClass, Pve, PveClient, TaskPolicy};
use agentlab_pve_sim::{FaultConfig, SimConfig, SimHandle, TEST_TOKEN};
use ractor::{Actor, ActorRef};
use std::sync::Arc;
use std::time::Duration;

struct Setup {
    sim: SimHandle,
    _dir: tempfile::TempDir,
    gateway: Gateway,
    actor: ActorRef<PveMsg>,
}

fn client(sim: &SimHandle, rps: u32) -> Arc<dyn Pve> {
    let transport = sim.api_transport(TEST_TOKEN, Duration::from_secs(10)).unwrap();
    let limited = RateLimitedTransport::new(transport, Arc::new(TokenBucket::new(rps, rps)));
    let policy = TaskPolicy {
        first_poll: Duration::from_millis(10),
        max_poll: Duration::from_millis(100),
        deadline: Duration::from_secs(60),
    };
    Arc::new(PveClient::new(limited, policy))
}

async fn setup(latency_factor: f64, faults: FaultConfig, rps: u32, clone_concurrency: usize) -> Setup {
    agentlab_proxmox::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::for_tests(dir.path().join("sim"));
    config.latency.factor = latency_factor;
    config.faults = faults;
    let sim = agentlab_pve_sim::start(config).await.unwrap();
    let limits = GatewayLimits {
        max_concurrent_tasks: 8,
        clone_concurrency,
        retry: RetryPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(500),
            deadline: Duration::from_secs(60),
        },
    };
    let args = PveGatewayArgs { pve: client(&sim, rps), probe_interval: Duration::from_secs(3600), limits };
    let (actor, _) = Actor::spawn(None, PveGateway, args).await.unwrap();
    let target = actor.clone();
    let gateway = Gateway::new(move |job| {
        target
            .send_message(PveMsg::Submit(job))
            .map_err(|_| agentlab_proxmox::PveError::Transient("gateway gone".into()))
    });
    Setup { sim, _dir: dir, gateway, actor }
}

/// Every request passed the simulator's schema validation.
fn assert_all_requests_valid(sim: &SimHandle) {
    let refused = sim.sim.refused_requests();
    assert!(refused.is_empty(), "{refused:?}");
}

/// The most clone tasks that ran at the same moment.
fn max_concurrent_clones(sim: &SimHandle) -> usize {
    let tasks: Vec<(u64, u64)> = sim
        .sim
        .tasks()
        .into_iter()
        .filter(|t| t.task_type == "qmclone")
        .map(|t| (t.started_ms, t.ended_ms.unwrap_or(u64::MAX)))
        .collect();
    tasks.iter().map(|(start, _)| tasks.iter().filter(|(s, e)| s <= start && start < e).count()).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_linked_clones_at_once_all_succeed_within_the_clone_cap() {
    // Storage lock timeout 10 s × 0.05 = 0.5 s; a linked clone holds it 1.5 s × 0.05 = 75 ms.
    let s = setup(0.05, FaultConfig::default(), 1000, 2).await;
    let clones = (0..20u32).map(|i| {
        let gateway = s.gateway.clone();
        async move {
            let spec = CloneSpec { newid: 1000 + i, name: Some(format!("sbx-{}", 1000 + i)), ..Default::default() };
            gateway.clone_vm("pve1", 9000, spec).await
        }
    });
    let results = futures::future::join_all(clones).await;
    let failures: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert!(failures.is_empty(), "{failures:?}");
    let concurrent = max_concurrent_clones(&s.sim);
    println!("20 linked clones: at most {concurrent} clone tasks at once on local-lvm");
    assert!(concurrent <= 2, "{concurrent} clones ran at once; the cap is 2");
    let lock_timeouts =
        s.sim.sim.tasks().iter().filter(|t| t.exitstatus.as_deref().is_some_and(|e| e.contains("got timeout"))).count();
    assert_eq!(lock_timeouts, 0, "no clone task hit the storage lock timeout");
    assert_all_requests_valid(&s.sim);
    s.actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_gateway_twenty_clones_hit_the_storage_lock_timeout() {
    // The control experiment for the test above: the same load straight at Proxmox.
    let s = setup(0.05, FaultConfig::default(), 1000, 2).await;
    let pve = client(&s.sim, 1000);
    let clones = (0..20u32).map(|i| {
        let pve = Arc::clone(&pve);
        async move { pve.clone_vm("pve1", 9000, &CloneSpec { newid: 2000 + i, ..Default::default() }).await }
    });
    let results = futures::future::join_all(clones).await;
    let timeouts =
        results.iter().filter(|r| r.as_ref().err().is_some_and(|e| e.class() == ErrorClass::LockTimeout)).count();
    println!("20 direct clones: {timeouts} failed with the storage lock timeout");
    assert!(timeouts > 0, "the simulator must serialise clones on the storage lock as Proxmox does");
    s.actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clone_start_destroy_sequences_complete_under_ten_percent_faults() {
    let faults = FaultConfig { error_rate: 0.05, lock_timeout_rate: 0.05, ..FaultConfig::default() };
    let s = setup(0.01, faults, 1000, 2).await;
    let sequences = (0..50u32).map(|i| {
        let gateway = s.gateway.clone();
        async move {
            let vmid = 3000 + i;
            gateway.clone_vm("pve1", 9000, CloneSpec { newid: vmid, ..Default::default() }).await?;
            gateway.vm_action("pve1", vmid, VmAction::Start).await?;
            gateway.vm_action("pve1", vmid, VmAction::Stop).await?;
            gateway
                .destroy_vm(
                    "pve1",
                    vmid,
                    DestroyOptions { purge: true, destroy_unreferenced_disks: true, skiplock: false },
                )
                .await?;
            Ok::<u32, agentlab_proxmox::PveError>(vmid)
        }
    });
    let results = futures::future::join_all(sequences).await;
    let failures: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert!(failures.is_empty(), "{} of 50 failed: {failures:?}", failures.len());
    let requests = s.sim.sim.requests();
    let faulted = requests.iter().filter(|r| r.verdict.starts_with("fault:")).count();
    println!("50 sequences completed; {faulted} of {} requests got an injected fault", requests.len());
    assert!(faulted > 0, "faults were injected");
    let left: Vec<u32> = s.sim.sim.world().vms.keys().copied().filter(|v| *v != 9000).collect();
    assert!(left.is_empty(), "VMs left behind: {left:?}");
    assert_all_requests_valid(&s.sim);
    s.actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_error_is_returned_at_once_and_never_retried() {
    let s = setup(0.01, FaultConfig::default(), 1000, 2).await;
    s.gateway.clone_vm("pve1", 9000, CloneSpec { newid: 1001, ..Default::default() }).await.unwrap();
    let bad = ConfigChange::default().set("bogus_key", "1");
    let err = s.gateway.update_config("pve1", 1001, bad).await.err().unwrap_or_else(|| panic!("must fail"));
    assert_eq!(err.class(), ErrorClass::Validation);
    let puts =
        s.sim.sim.requests().into_iter().filter(|r| r.method == "PUT" && r.path.ends_with("/qemu/1001/config")).count();
    assert_eq!(puts, 1, "sent exactly once");
    s.actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_never_sees_more_requests_per_second_than_the_limit() {
    let s = setup(0.01, FaultConfig::default(), 10, 2).await;
    let work = (0..30u32).map(|i| {
        let gateway = s.gateway.clone();
        async move {
            if i % 3 == 0 {
                gateway.clone_vm("pve1", 9000, CloneSpec { newid: 4000 + i, ..Default::default() }).await.map(|_| ())
            } else {
                gateway.version().await.map(|_| ())
            }
        }
    });
    let results = futures::future::join_all(work).await;
    assert!(results.iter().all(Result::is_ok));
    let times: Vec<u64> = s.sim.sim.requests().iter().map(|r| r.at_ms).collect();
    if std::env::var("GATEWAY_DEBUG").is_ok() {
        for r in s.sim.sim.requests() {
            println!("{} {} {} {}", r.seq, r.at_ms, r.method, r.path);
        }
    }
    let worst = times.iter().map(|t| times.iter().filter(|u| **u >= *t && **u < t + 1000).count()).max().unwrap_or(0);
    println!("{} requests; at most {worst} in any one-second window (limit 10)", times.len());
    assert!(worst <= 10, "{worst} requests within one second");
    assert_all_requests_valid(&s.sim);
    s.actor.stop(None);
}
