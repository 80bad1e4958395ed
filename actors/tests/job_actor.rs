//! The job actor in process, on tokio's paused clock: what a job does when its sandbox
//! ends under it. Each notice ends the job at once, long before its deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use agentlab_actors::model::{JobState, SandboxState};
use agentlab_actors::sandbox::SandboxMsg;
use std::time::Duration;
use support::{Harness, MINUTE, PROBE_INTERVAL, eventually};

/// A job with a READY sandbox (no runner reports: the simulated VMs run no guest here).
async fn job_with_sandbox(h: &Harness) -> (String, u32) {
    let job = h.create_job(false).await;
    eventually("the job's sandbox is READY", 10 * MINUTE, || {
        h.job(&job.id).sandbox_vmid.is_some_and(|vmid| h.sandbox(vmid).state == SandboxState::Ready)
    })
    .await;
    let vmid = h.job(&job.id).sandbox_vmid.unwrap();
    assert_eq!(h.job(&job.id).status, JobState::Queued);
    (job.id, vmid)
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_vm_is_deleted_outside_agentlab_fails_at_once() {
    let h = Harness::start().await;
    let (id, vmid) = job_with_sandbox(&h).await;
    let deadline = h.job(&id).deadline_at;
    assert!(h.sim.vanish_vm(vmid));
    eventually("the job failed", 3 * PROBE_INTERVAL, || h.job(&id).status == JobState::Failed).await;
    let job = h.job(&id);
    let error = job.error.unwrap_or_default();
    assert!(error.contains(&format!("sandbox {vmid} vanished")), "{error}");
    assert!(job.updated_at < deadline, "ended long before its deadline {deadline}");
    eventually("the job released its sandbox", MINUTE, || h.job(&id).sandbox_released).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_sandbox_is_destroyed_fails_at_once() {
    let h = Harness::start().await;
    let (id, vmid) = job_with_sandbox(&h).await;
    let destroyed = h
        .sandbox_actor(vmid)
        .call(|reply| SandboxMsg::Destroy { force: true, by: Some(0), reply }, Some(10 * MINUTE))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(destroyed.state, SandboxState::Destroyed);
    eventually("the job failed", Duration::from_secs(5), || h.job(&id).status == JobState::Failed).await;
    let error = h.job(&id).error.unwrap_or_default();
    assert!(error.contains(&format!("sandbox {vmid} was destroyed")), "{error}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_sandbox_lease_expires_times_out() {
    let h = Harness::start().await;
    let (id, vmid) = job_with_sandbox(&h).await;
    // Shorten the sandbox's lease behind the job's back, as an expired lease would be.
    let soon = h.sandboxes.settings.clock.now() + MINUTE;
    let patch = agentlab_actors::store::SandboxPatch { lease_expires_at: Some(Some(soon)), ..Default::default() };
    h.store.patch_sandbox(vmid, &patch, None).unwrap();
    h.sandbox_actor(vmid).send_message(SandboxMsg::Reconcile).unwrap();
    eventually("the job timed out", 5 * MINUTE, || h.job(&id).status == JobState::Timeout).await;
    assert!(h.job(&id).error.unwrap_or_default().contains(&format!("lease of sandbox {vmid} expired")));
    eventually("the sandbox is destroyed", 5 * MINUTE, || h.sandbox(vmid).state == SandboxState::Destroyed).await;
    h.stop().await;
}
