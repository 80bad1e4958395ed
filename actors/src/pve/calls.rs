//! The typed front of the gateway: one method per Proxmox operation the actors use, each
//! with its scheduling spec and the retry rules that are specific to it (an earlier attempt
//! may have done the work: a clone whose target exists, a start of a running VM, a destroy
//! of a VM that is gone).

use super::gateway::{Gateway, OpSpec};
use agentlab_proxmox::types::{
    CloneSpec, ClusterVm, ConfigChange, DestroyOptions, GuestInterface, NodeInfo, Snapshot, StorageConfig, TaskStatus,
    VmAction, VmConfig, VmStatus,
};
use agentlab_proxmox::{Pve, PveError, PveVersion};
use std::time::Duration;

/// How many times the config of a VM still locked by a clone from before a crash is read
/// before the caller gives up on it (Proxmox's own clone of a large disk takes minutes).
pub const CLONE_LOCK_POLLS: u32 = 600;

impl Gateway {
    pub async fn version(&self) -> Result<PveVersion, PveError> {
        self.run(OpSpec::read("version"), |pve, _| Box::pin(async move { pve.version().await })).await
    }

    pub async fn cluster_firewall_options(&self) -> Result<serde_json::Map<String, serde_json::Value>, PveError> {
        self.run(OpSpec::read("cluster_firewall_options"), |pve, _| {
            Box::pin(async move { pve.cluster_firewall_options().await })
        })
        .await
    }

    pub async fn cluster_vms(&self) -> Result<Vec<ClusterVm>, PveError> {
        self.run(OpSpec::read("cluster_vms"), |pve, _| Box::pin(async move { pve.cluster_vms().await })).await
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, PveError> {
        self.run(OpSpec::read("nodes"), |pve, _| Box::pin(async move { pve.nodes().await })).await
    }

    pub async fn next_vmid(&self, wanted: Option<u32>) -> Result<u32, PveError> {
        self.run(OpSpec::read("next_vmid"), move |pve, _| Box::pin(async move { pve.next_vmid(wanted).await })).await
    }

    pub async fn vm_status(&self, node: &str, vmid: u32) -> Result<VmStatus, PveError> {
        let node = node.to_string();
        self.run(OpSpec::read("vm_status"), move |pve, _| {
            let node = node.clone();
            Box::pin(async move { pve.vm_status(&node, vmid).await })
        })
        .await
    }

    pub async fn storage_config(&self, storage: &str) -> Result<StorageConfig, PveError> {
        let storage = storage.to_string();
        self.run(OpSpec::read("storage_config"), move |pve, _| {
            let storage = storage.clone();
            Box::pin(async move { pve.storage_config(&storage).await })
        })
        .await
    }

    pub async fn vm_config(&self, node: &str, vmid: u32) -> Result<VmConfig, PveError> {
        let node = node.to_string();
        self.run(OpSpec::read("vm_config"), move |pve, _| {
            let node = node.clone();
            Box::pin(async move { pve.vm_config(&node, vmid).await })
        })
        .await
    }

    /// A clone; retried after an ambiguous failure, a target that now exists is the
    /// earlier attempt's (waited on until its `clone` lock clears).
    pub async fn clone_vm(&self, node: &str, source: u32, spec: CloneSpec) -> Result<TaskStatus, PveError> {
        let node = node.to_string();
        let op = OpSpec { name: "clone", vmid: Some(spec.newid), task: true, clone_of: Some((node.clone(), source)) };
        self.run(op, move |pve, attempt| {
            let (node, spec) = (node.clone(), spec.clone());
            Box::pin(async move {
                match pve.clone_vm(&node, source, &spec).await {
                    Err(PveError::AlreadyExists(_)) if attempt > 0 => {
                        wait_unlocked(pve.as_ref(), &node, spec.newid).await
                    }
                    other => other,
                }
            })
        })
        .await
    }

    /// A new VM; after an ambiguous failure, a VM that now exists is the earlier attempt's.
    pub async fn create_vm(
        &self,
        node: &str,
        vmid: u32,
        config: std::collections::BTreeMap<String, String>,
    ) -> Result<TaskStatus, PveError> {
        let node = node.to_string();
        self.run(OpSpec::task("create", vmid), move |pve, attempt| {
            let (node, config) = (node.clone(), config.clone());
            Box::pin(async move {
                match pve.create_vm(&node, vmid, &config).await {
                    Err(PveError::AlreadyExists(_)) if attempt > 0 => wait_unlocked(pve.as_ref(), &node, vmid).await,
                    other => other,
                }
            })
        })
        .await
    }

    pub async fn update_config(&self, node: &str, vmid: u32, change: ConfigChange) -> Result<(), PveError> {
        let node = node.to_string();
        self.run(OpSpec::change("update_config", vmid), move |pve, _| {
            let (node, change) = (node.clone(), change.clone());
            Box::pin(async move { pve.update_config(&node, vmid, &change).await })
        })
        .await
    }

    pub async fn vm_action(&self, node: &str, vmid: u32, action: VmAction) -> Result<TaskStatus, PveError> {
        let node = node.to_string();
        self.run(OpSpec::task(action.path(), vmid), move |pve, attempt| {
            let node = node.clone();
            Box::pin(async move {
                match pve.vm_action(&node, vmid, action).await {
                    // An earlier attempt that timed out may have started it.
                    Err(PveError::AlreadyRunning(_)) if attempt > 0 && action == VmAction::Start => Ok(done_task()),
                    other => other,
                }
            })
        })
        .await
    }

    /// Destroy; a VM already gone after a retried attempt is success.
    pub async fn destroy_vm(&self, node: &str, vmid: u32, options: DestroyOptions) -> Result<TaskStatus, PveError> {
        let node = node.to_string();
        self.run(OpSpec::task("destroy", vmid), move |pve, attempt| {
            let node = node.clone();
            Box::pin(async move {
                match pve.destroy_vm(&node, vmid, options).await {
                    Err(PveError::NotFound(_)) if attempt > 0 => Ok(done_task()),
                    other => other,
                }
            })
        })
        .await
    }

    pub async fn task_log(&self, node: &str, upid: &str) -> Result<Vec<String>, PveError> {
        let (node, upid) = (node.to_string(), upid.to_string());
        self.run(OpSpec::read("task_log"), move |pve, _| {
            let (node, upid) = (node.clone(), upid.clone());
            Box::pin(async move { pve.task_log(&node, &upid).await })
        })
        .await
    }

    pub async fn pending_keys(&self, node: &str, vmid: u32) -> Result<Vec<String>, PveError> {
        let node = node.to_string();
        self.run(OpSpec::read("pending_keys"), move |pve, _| {
            let node = node.clone();
            Box::pin(async move { pve.pending_keys(&node, vmid).await })
        })
        .await
    }

    pub async fn snapshots(&self, node: &str, vmid: u32) -> Result<Vec<Snapshot>, PveError> {
        let node = node.to_string();
        self.run(OpSpec::read("snapshots"), move |pve, _| {
            let node = node.clone();
            Box::pin(async move { pve.snapshots(&node, vmid).await })
        })
        .await
    }

    pub async fn agent_interfaces(&self, node: &str, vmid: u32) -> Result<Vec<GuestInterface>, PveError> {
        let node = node.to_string();
        self.run(OpSpec::read("agent_interfaces"), move |pve, _| {
            let node = node.clone();
            Box::pin(async move { pve.agent_interfaces(&node, vmid).await })
        })
        .await
    }

    /// The VM's config once no clone holds it: a clone still running (the daemon died during
    /// it) has a temporary config locked `clone` and no description yet. Read every `poll`,
    /// `CLONE_LOCK_POLLS` times at most (then the locked config is returned as it is, and
    /// the caller's ownership check refuses it). `NotFound` if there is no VM.
    pub async fn config_after_clone(&self, node: &str, vmid: u32, poll: Duration) -> Result<VmConfig, PveError> {
        let mut config = self.vm_config(node, vmid).await?;
        for _ in 0..CLONE_LOCK_POLLS {
            if config.get("lock") != Some("clone") {
                break;
            }
            tokio::time::sleep(poll).await;
            config = self.vm_config(node, vmid).await?;
        }
        Ok(config)
    }

    /// Rolls the VM back to snapshot `name`; the task is waited on.
    pub async fn rollback(&self, node: &str, vmid: u32, name: &str) -> Result<(), PveError> {
        let (node, name) = (node.to_string(), name.to_string());
        self.run(OpSpec::task("rollback", vmid), move |pve, _| {
            let (node, name) = (node.clone(), name.clone());
            Box::pin(async move { pve.rollback_snapshot(&node, vmid, &name).await.map(|_| ()) })
        })
        .await
    }

    /// Deletes snapshot `name`; one an earlier attempt deleted counts.
    pub async fn delete_snapshot(&self, node: &str, vmid: u32, name: &str) -> Result<(), PveError> {
        let (node, name) = (node.to_string(), name.to_string());
        self.run(OpSpec::task("delsnapshot", vmid), move |pve, attempt| {
            let (node, name) = (node.clone(), name.clone());
            Box::pin(async move {
                match pve.delete_snapshot(&node, vmid, &name).await {
                    Err(PveError::NotFound(_)) if attempt > 0 => Ok(()),
                    other => other.map(|_| ()),
                }
            })
        })
        .await
    }

    /// Takes snapshot `name`; an earlier attempt that took it counts (Proxmox says the name
    /// is already used).
    pub async fn create_snapshot(
        &self,
        node: &str,
        vmid: u32,
        name: &str,
        description: Option<&str>,
    ) -> Result<(), PveError> {
        let (node, name, description) = (node.to_string(), name.to_string(), description.map(str::to_string));
        self.run(OpSpec::task("snapshot", vmid), move |pve, attempt| {
            let (node, name, description) = (node.clone(), name.clone(), description.clone());
            Box::pin(async move {
                match pve.create_snapshot(&node, vmid, &name, description.as_deref()).await {
                    Err(PveError::AlreadyExists(_)) if attempt > 0 => Ok(()),
                    other => other.map(|_| ()),
                }
            })
        })
        .await
    }

    /// Grows `disk` to `size`; `WouldShrink` if it is already larger.
    pub async fn resize_disk(&self, node: &str, vmid: u32, disk: &str, size: &str) -> Result<(), PveError> {
        let (node, disk, size) = (node.to_string(), disk.to_string(), size.to_string());
        self.run(OpSpec::task("resize", vmid), move |pve, _| {
            let (node, disk, size) = (node.clone(), disk.clone(), size.clone());
            Box::pin(async move { pve.resize_disk(&node, vmid, &disk, &size).await.map(|_| ()) })
        })
        .await
    }
}

fn done_task() -> TaskStatus {
    TaskStatus { upid: String::new(), status: "stopped".into(), exitstatus: Some("OK".into()), task_type: None }
}

/// Waits until a VM's config lock is gone (an earlier clone attempt finishing).
async fn wait_unlocked(pve: &dyn Pve, node: &str, vmid: u32) -> Result<TaskStatus, PveError> {
    for _ in 0..600 {
        let status = pve.vm_status(node, vmid).await?;
        if status.lock.is_none() {
            return Ok(done_task());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(PveError::Locked(format!("VM {vmid} stayed locked after its clone")))
}
