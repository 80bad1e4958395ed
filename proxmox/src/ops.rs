//! The typed Proxmox operations AgentLab needs, written once over a `Transport`. Every call
//! that returns a UPID is waited on until the task has stopped (`OK` or `WARNINGS: n` is
//! success); a failed task becomes a classified `PveError` carrying Proxmox's text.

use crate::transport::{Method, Params, Transport, decode, flag, segment};
use crate::types::*;
use crate::{PveError, PveFuture, PveVersion, Upid};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long and how often task status is polled.
///
/// How a task is waited on. The poll interval grows with the time already waited (an eighth
/// of it, between `first_poll` and `max_poll`), so a step ends within about 12% of its
/// task's end whatever the task's length, instead of up to double with doubling intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPolicy {
    pub first_poll: Duration,
    pub max_poll: Duration,
    /// Give up waiting (the task may still finish on the host).
    pub deadline: Duration,
}

impl Default for TaskPolicy {
    fn default() -> Self {
        TaskPolicy {
            first_poll: Duration::from_millis(50),
            max_poll: Duration::from_secs(2),
            deadline: Duration::from_secs(600),
        }
    }
}

fn p(pairs: &[(&str, String)]) -> Params {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn qemu(node: &str, vmid: u32) -> String {
    format!("/nodes/{}/qemu/{vmid}", segment(node))
}

/// Everything AgentLab does to Proxmox. Implementors provide the transport; the operations
/// are shared, so both backends behave the same. There is one implementor, `PveClient`:
/// the seam that varies is `Transport` (HTTPS, `pvesh`, the in-process simulator); the
/// trait exists so the gateway holds an `Arc<dyn Pve>` and tests can wrap a client.
pub trait Pve: Send + Sync {
    fn transport(&self) -> &dyn Transport;
    fn task_policy(&self) -> TaskPolicy;

    fn backend(&self) -> &'static str {
        self.transport().kind()
    }

    fn endpoint(&self) -> String {
        self.transport().endpoint()
    }

    fn version(&self) -> PveFuture<'_, PveVersion> {
        Box::pin(
            async move { decode(self.transport().call(Method::Get, "/version".into(), vec![]).await?, "GET /version") },
        )
    }

    /// The caller's effective privileges, path → privilege → propagate
    /// (`GET /access/permissions`).
    fn permissions(
        &self,
    ) -> PveFuture<'_, std::collections::BTreeMap<String, std::collections::BTreeMap<String, Value>>> {
        Box::pin(async move {
            decode(
                self.transport().call(Method::Get, "/access/permissions".into(), vec![]).await?,
                "GET /access/permissions",
            )
        })
    }

    fn nodes(&self) -> PveFuture<'_, Vec<NodeInfo>> {
        Box::pin(
            async move { decode(self.transport().call(Method::Get, "/nodes".into(), vec![]).await?, "GET /nodes") },
        )
    }

    /// `wanted`: is this VMID free? (Err(AlreadyExists) if not.) None: the lowest free one.
    fn next_vmid(&self, wanted: Option<u32>) -> PveFuture<'_, u32> {
        Box::pin(async move {
            let params = wanted.map(|v| p(&[("vmid", v.to_string())])).unwrap_or_default();
            let value =
                self.transport().call(Method::Get, "/cluster/nextid".into(), params).await.map_err(|e| match e {
                    PveError::Validation { param, message }
                        if param == "vmid" && message.contains("already exists") =>
                    {
                        PveError::AlreadyExists(message)
                    }
                    other => other,
                })?;
            let id = value.as_u64().or_else(|| value.as_str().and_then(|s| s.parse().ok()));
            id.map(|v| v as u32).ok_or_else(|| PveError::Other(format!("unexpected nextid answer {value}")))
        })
    }

    fn cluster_vms(&self) -> PveFuture<'_, Vec<ClusterVm>> {
        Box::pin(async move {
            let value =
                self.transport().call(Method::Get, "/cluster/resources".into(), p(&[("type", "vm".into())])).await?;
            decode(value, "GET /cluster/resources")
        })
    }

    fn list_vms<'a>(&'a self, node: &'a str) -> PveFuture<'a, Vec<VmStatus>> {
        Box::pin(async move {
            decode(
                self.transport().call(Method::Get, format!("/nodes/{}/qemu", segment(node)), vec![]).await?,
                "GET qemu",
            )
        })
    }

    fn clone_vm<'a>(&'a self, node: &'a str, source: u32, spec: &'a CloneSpec) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let mut params = p(&[("newid", spec.newid.to_string())]);
            let optional = [
                ("name", spec.name.clone()),
                ("description", spec.description.clone()),
                ("full", spec.full.map(flag)),
                ("target", spec.target_node.clone()),
                ("storage", spec.storage.clone()),
                ("pool", spec.pool.clone()),
                ("snapname", spec.snapname.clone()),
            ];
            params.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))));
            self.run_task(node, Method::Post, format!("{}/clone", qemu(node, source)), params).await
        })
    }

    /// `POST /nodes/{node}/qemu` (`qm create`): a new VM with `config` (its disks as
    /// `STORAGE:SIZE_GiB`, allocated by Proxmox under the new VMID).
    fn create_vm<'a>(
        &'a self,
        node: &'a str,
        vmid: u32,
        config: &'a BTreeMap<String, String>,
    ) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let mut params = p(&[("vmid", vmid.to_string())]);
            params.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
            self.run_task(node, Method::Post, format!("/nodes/{}/qemu", segment(node)), params).await
        })
    }

    fn vm_config<'a>(&'a self, node: &'a str, vmid: u32) -> PveFuture<'a, VmConfig> {
        Box::pin(async move {
            let value = self.transport().call(Method::Get, format!("{}/config", qemu(node, vmid)), vec![]).await?;
            let object = value.as_object().ok_or_else(|| PveError::Other("config is not an object".into()))?;
            let mut values: BTreeMap<String, String> = object
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect();
            let digest = values.remove("digest");
            Ok(VmConfig { values, digest })
        })
    }

    /// Synchronous `PUT config`.
    fn update_config<'a>(&'a self, node: &'a str, vmid: u32, change: &'a ConfigChange) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let mut params: Params = change.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            if !change.delete.is_empty() {
                params.push(("delete".into(), change.delete.join(",")));
            }
            if let Some(digest) = &change.digest {
                params.push(("digest".into(), digest.clone()));
            }
            self.transport().call(Method::Put, format!("{}/config", qemu(node, vmid)), params).await.map(|_| ())
        })
    }

    fn resize_disk<'a>(&'a self, node: &'a str, vmid: u32, disk: &'a str, size: &'a str) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let params = p(&[("disk", disk.into()), ("size", size.into())]);
            self.run_task(node, Method::Put, format!("{}/resize", qemu(node, vmid)), params).await
        })
    }

    fn vm_action<'a>(&'a self, node: &'a str, vmid: u32, action: VmAction) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            self.run_task(node, Method::Post, format!("{}/status/{}", qemu(node, vmid), action.path()), vec![]).await
        })
    }

    fn vm_status<'a>(&'a self, node: &'a str, vmid: u32) -> PveFuture<'a, VmStatus> {
        Box::pin(async move {
            let value =
                self.transport().call(Method::Get, format!("{}/status/current", qemu(node, vmid)), vec![]).await?;
            decode(value, "GET status/current")
        })
    }

    fn destroy_vm<'a>(&'a self, node: &'a str, vmid: u32, options: DestroyOptions) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let mut params = Params::new();
            if options.purge {
                params.push(("purge".into(), flag(true)));
            }
            if options.destroy_unreferenced_disks {
                params.push(("destroy-unreferenced-disks".into(), flag(true)));
            }
            if options.skiplock {
                params.push(("skiplock".into(), flag(true)));
            }
            self.run_task(node, Method::Delete, qemu(node, vmid), params).await
        })
    }

    /// The keys whose change waits for the VM's next start (`GET …/pending` entries with a
    /// `pending` value or `delete`).
    fn pending_keys<'a>(&'a self, node: &'a str, vmid: u32) -> PveFuture<'a, Vec<String>> {
        Box::pin(async move {
            let value = self.transport().call(Method::Get, format!("{}/pending", qemu(node, vmid)), vec![]).await?;
            let entries = value.as_array().cloned().unwrap_or_default();
            Ok(entries
                .iter()
                .filter(|e| e.get("pending").is_some() || e.get("delete").is_some_and(|d| d != 0 && d != "0"))
                .filter_map(|e| e.get("key").and_then(Value::as_str).map(str::to_string))
                .collect())
        })
    }

    fn snapshots<'a>(&'a self, node: &'a str, vmid: u32) -> PveFuture<'a, Vec<Snapshot>> {
        Box::pin(async move {
            let value = self.transport().call(Method::Get, format!("{}/snapshot", qemu(node, vmid)), vec![]).await?;
            let all: Vec<Snapshot> = decode(value, "GET snapshot")?;
            // Proxmox always lists a pseudo entry `current` ("You are here!").
            Ok(all.into_iter().filter(|s| s.name != "current").collect())
        })
    }

    fn create_snapshot<'a>(
        &'a self,
        node: &'a str,
        vmid: u32,
        name: &'a str,
        description: Option<&'a str>,
    ) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let mut params = p(&[("snapname", name.into())]);
            if let Some(d) = description {
                params.push(("description".into(), d.into()));
            }
            self.run_task(node, Method::Post, format!("{}/snapshot", qemu(node, vmid)), params).await
        })
    }

    fn rollback_snapshot<'a>(&'a self, node: &'a str, vmid: u32, name: &'a str) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let path = format!("{}/snapshot/{}/rollback", qemu(node, vmid), segment(name));
            self.run_task(node, Method::Post, path, vec![]).await
        })
    }

    fn delete_snapshot<'a>(&'a self, node: &'a str, vmid: u32, name: &'a str) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let path = format!("{}/snapshot/{}", qemu(node, vmid), segment(name));
            self.run_task(node, Method::Delete, path, vec![]).await
        })
    }

    fn agent_ping<'a>(&'a self, node: &'a str, vmid: u32) -> PveFuture<'a, ()> {
        Box::pin(async move {
            self.transport().call(Method::Post, format!("{}/agent/ping", qemu(node, vmid)), vec![]).await.map(|_| ())
        })
    }

    fn agent_interfaces<'a>(&'a self, node: &'a str, vmid: u32) -> PveFuture<'a, Vec<GuestInterface>> {
        Box::pin(async move {
            let path = format!("{}/agent/network-get-interfaces", qemu(node, vmid));
            let value = self.transport().call(Method::Get, path, vec![]).await?;
            decode(value.get("result").cloned().unwrap_or(Value::Null), "network-get-interfaces")
        })
    }

    fn storages<'a>(&'a self, node: &'a str) -> PveFuture<'a, Vec<StorageInfo>> {
        Box::pin(async move {
            decode(
                self.transport().call(Method::Get, format!("/nodes/{}/storage", segment(node)), vec![]).await?,
                "GET storage",
            )
        })
    }

    /// One storage's definition. Read from the index (`GET /storage`), which returns the
    /// same `api_storage_config` as `GET /storage/{storage}` but needs only `Datastore.Audit`
    /// where the latter needs `Datastore.Allocate` (pve-storage `API2/Storage/Config.pm`):
    /// a privilege that may also create and remove storages, which the daemon never needs.
    fn storage_config<'a>(&'a self, storage: &'a str) -> PveFuture<'a, StorageConfig> {
        Box::pin(async move {
            let value = self.transport().call(Method::Get, "/storage".into(), vec![]).await?;
            let all: Vec<StorageConfig> = decode(value, "GET storage index")?;
            all.into_iter().find(|s| s.storage == storage).ok_or_else(|| {
                PveError::NotFound(format!(
                    "storage '{storage}' does not exist (or the token may not see it: Datastore.Audit)"
                ))
            })
        })
    }

    fn storage_status<'a>(&'a self, node: &'a str, storage: &'a str) -> PveFuture<'a, StorageInfo> {
        Box::pin(async move {
            let path = format!("/nodes/{}/storage/{}/status", segment(node), segment(storage));
            let mut value = self.transport().call(Method::Get, path, vec![]).await?;
            if let Some(object) = value.as_object_mut() {
                object.entry("storage").or_insert_with(|| Value::String(storage.to_string()));
            }
            decode(value, "GET storage status")
        })
    }

    fn storage_content<'a>(
        &'a self,
        node: &'a str,
        storage: &'a str,
        content: Option<&'a str>,
    ) -> PveFuture<'a, Vec<Volume>> {
        Box::pin(async move {
            let path = format!("/nodes/{}/storage/{}/content", segment(node), segment(storage));
            let params = content.map(|c| p(&[("content", c.into())])).unwrap_or_default();
            decode(self.transport().call(Method::Get, path, params).await?, "GET storage content")
        })
    }

    /// Allocates `filename` (`vm-<vmid>-…` on LVM-thin/ZFS) of `size` (e.g. `10G`); the volid.
    fn alloc_volume<'a>(
        &'a self,
        node: &'a str,
        storage: &'a str,
        vmid: u32,
        filename: &'a str,
        size: &'a str,
    ) -> PveFuture<'a, String> {
        Box::pin(async move {
            let path = format!("/nodes/{}/storage/{}/content", segment(node), segment(storage));
            let params = p(&[("vmid", vmid.to_string()), ("filename", filename.into()), ("size", size.into())]);
            let value = self.transport().call(Method::Post, path, params).await?;
            value
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| PveError::Other(format!("unexpected alloc answer {value}")))
        })
    }

    fn free_volume<'a>(&'a self, node: &'a str, storage: &'a str, volume: &'a str) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let path = format!("/nodes/{}/storage/{}/content/{}", segment(node), segment(storage), segment(volume));
            let value = self.transport().call(Method::Delete, path, vec![]).await?;
            if let Some(upid) = value.as_str() {
                self.wait_task(node, upid).await?;
            }
            Ok(())
        })
    }

    /// `move_disk target-vmid=…`: reassigns a disk to another VM (renamed to the new owner).
    fn reassign_disk<'a>(
        &'a self,
        node: &'a str,
        vmid: u32,
        disk: &'a str,
        target_vmid: u32,
        target_disk: &'a str,
    ) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let params = p(&[
                ("disk", disk.into()),
                ("target-vmid", target_vmid.to_string()),
                ("target-disk", target_disk.into()),
            ]);
            self.run_task(node, Method::Post, format!("{}/move_disk", qemu(node, vmid)), params).await
        })
    }

    fn unlink_disks<'a>(&'a self, node: &'a str, vmid: u32, idlist: &'a [String], force: bool) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let mut params = p(&[("idlist", idlist.join(","))]);
            if force {
                params.push(("force".into(), flag(true)));
            }
            self.transport().call(Method::Put, format!("{}/unlink", qemu(node, vmid)), params).await.map(|_| ())
        })
    }

    fn cluster_firewall_options(&self) -> PveFuture<'_, serde_json::Map<String, Value>> {
        Box::pin(async move {
            let value = self.transport().call(Method::Get, "/cluster/firewall/options".into(), vec![]).await?;
            Ok(value.as_object().cloned().unwrap_or_default())
        })
    }

    fn set_cluster_firewall<'a>(&'a self, params: &'a [(&'a str, String)]) -> PveFuture<'a, ()> {
        Box::pin(async move {
            self.transport().call(Method::Put, "/cluster/firewall/options".into(), p(params)).await.map(|_| ())
        })
    }

    fn vm_firewall_options<'a>(&'a self, node: &'a str, vmid: u32) -> PveFuture<'a, serde_json::Map<String, Value>> {
        Box::pin(async move {
            let value =
                self.transport().call(Method::Get, format!("{}/firewall/options", qemu(node, vmid)), vec![]).await?;
            Ok(value.as_object().cloned().unwrap_or_default())
        })
    }

    fn set_vm_firewall<'a>(&'a self, node: &'a str, vmid: u32, params: &'a [(&'a str, String)]) -> PveFuture<'a, ()> {
        Box::pin(async move {
            self.transport()
                .call(Method::Put, format!("{}/firewall/options", qemu(node, vmid)), p(params))
                .await
                .map(|_| ())
        })
    }

    fn security_groups(&self) -> PveFuture<'_, Vec<SecurityGroup>> {
        Box::pin(async move {
            decode(self.transport().call(Method::Get, "/cluster/firewall/groups".into(), vec![]).await?, "GET groups")
        })
    }

    fn create_security_group<'a>(&'a self, name: &'a str, comment: &'a str) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let params = p(&[("group", name.into()), ("comment", comment.into())]);
            self.transport().call(Method::Post, "/cluster/firewall/groups".into(), params).await.map(|_| ())
        })
    }

    fn group_rules<'a>(&'a self, name: &'a str) -> PveFuture<'a, Vec<FirewallRule>> {
        Box::pin(async move {
            let path = format!("/cluster/firewall/groups/{}", segment(name));
            decode(self.transport().call(Method::Get, path, vec![]).await?, "GET group rules")
        })
    }

    fn add_group_rule<'a>(&'a self, name: &'a str, params: &'a [(&'a str, String)]) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let path = format!("/cluster/firewall/groups/{}", segment(name));
            self.transport().call(Method::Post, path, p(params)).await.map(|_| ())
        })
    }

    /// `DELETE /cluster/firewall/groups/{group}/{pos}`: `pos` as `group_rules` lists it.
    fn delete_group_rule<'a>(&'a self, group: &'a str, pos: u64) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let path = format!("/cluster/firewall/groups/{}/{pos}", segment(group));
            self.transport().call(Method::Delete, path, vec![]).await.map(|_| ())
        })
    }

    /// Refused while the group has rules (`Security group '<name>' is not empty`); whether
    /// VMs still use it is not checked.
    fn delete_security_group<'a>(&'a self, name: &'a str) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let path = format!("/cluster/firewall/groups/{}", segment(name));
            self.transport().call(Method::Delete, path, vec![]).await.map(|_| ())
        })
    }

    /// The cluster IP sets (rules name them `+<name>`; Proxmox stores names lower-cased).
    fn ipsets(&self) -> PveFuture<'_, Vec<IpSet>> {
        Box::pin(async move {
            decode(self.transport().call(Method::Get, "/cluster/firewall/ipset".into(), vec![]).await?, "GET ipset")
        })
    }

    /// An existing name is a 400 `IPSet '<name>' already exists` (`PveError::is_already_there`).
    fn create_ipset<'a>(&'a self, name: &'a str, comment: Option<&'a str>) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let mut params = p(&[("name", name.into())]);
            if let Some(c) = comment {
                params.push(("comment".into(), c.into()));
            }
            self.transport().call(Method::Post, "/cluster/firewall/ipset".into(), params).await.map(|_| ())
        })
    }

    /// The members of a cluster IP set, sorted by their text.
    fn ipset_entries<'a>(&'a self, name: &'a str) -> PveFuture<'a, Vec<IpSetEntry>> {
        Box::pin(async move {
            let path = format!("/cluster/firewall/ipset/{}", segment(name));
            decode(self.transport().call(Method::Get, path, vec![]).await?, "GET ipset entries")
        })
    }

    /// Adds `cidr` (an address, a network or an alias name). Proxmox stores it as
    /// `types::ipset_cidr` gives it; one already there is a 400 `address '<cidr>' already
    /// exists` (`PveError::is_already_there`).
    fn add_ipset_entry<'a>(&'a self, name: &'a str, cidr: &'a str, comment: Option<&'a str>) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let path = format!("/cluster/firewall/ipset/{}", segment(name));
            let mut params = p(&[("cidr", cidr.into())]);
            if let Some(c) = comment {
                params.push(("comment".into(), c.into()));
            }
            self.transport().call(Method::Post, path, params).await.map(|_| ())
        })
    }

    /// Removes the member `cidr`, written as the caller likes (`10.0.0.5/32` and `10.0.0.5`
    /// are the same member): Proxmox matches the stored text exactly and answers success for
    /// a member it does not have (IPSet.pm remove_ip, 375-381), so the text is normalised as
    /// Proxmox stores it first. The CIDR's `/` travels inside the last path segment: the API
    /// gets it percent-encoded, pvesh raw, and both reach the member (the set's path takes
    /// the rest of the path, IPSet.pm 763-768).
    fn delete_ipset_entry<'a>(&'a self, name: &'a str, cidr: &'a str) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let path = format!("/cluster/firewall/ipset/{}/{}", segment(name), segment(&ipset_cidr(cidr)));
            self.transport().call(Method::Delete, path, vec![]).await.map(|_| ())
        })
    }

    /// The host firewall rules of `node` (`/etc/pve/nodes/<node>/host.fw`).
    fn node_firewall_rules<'a>(&'a self, node: &'a str) -> PveFuture<'a, Vec<FirewallRule>> {
        Box::pin(async move {
            let path = format!("/nodes/{}/firewall/rules", segment(node));
            decode(self.transport().call(Method::Get, path, vec![]).await?, "GET node firewall rules")
        })
    }

    /// Adds a host rule (`type` in|out|forward|group, `iface` any interface name); it goes to
    /// position 0 whatever `pos` says, disabled unless `enable=1`.
    fn add_node_firewall_rule<'a>(&'a self, node: &'a str, params: &'a [(&'a str, String)]) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let path = format!("/nodes/{}/firewall/rules", segment(node));
            self.transport().call(Method::Post, path, p(params)).await.map(|_| ())
        })
    }

    fn delete_node_firewall_rule<'a>(&'a self, node: &'a str, pos: u64) -> PveFuture<'a, ()> {
        Box::pin(async move {
            let path = format!("/nodes/{}/firewall/rules/{pos}", segment(node));
            self.transport().call(Method::Delete, path, vec![]).await.map(|_| ())
        })
    }

    /// The host firewall options of `node` as set (plus `digest`); an absent `enable` means
    /// on once the datacenter firewall is on.
    fn node_firewall_options<'a>(&'a self, node: &'a str) -> PveFuture<'a, serde_json::Map<String, Value>> {
        Box::pin(async move {
            let path = format!("/nodes/{}/firewall/options", segment(node));
            let value = self.transport().call(Method::Get, path, vec![]).await?;
            Ok(value.as_object().cloned().unwrap_or_default())
        })
    }

    fn vm_firewall_rules<'a>(&'a self, node: &'a str, vmid: u32) -> PveFuture<'a, Vec<FirewallRule>> {
        Box::pin(async move {
            decode(
                self.transport().call(Method::Get, format!("{}/firewall/rules", qemu(node, vmid)), vec![]).await?,
                "GET rules",
            )
        })
    }

    fn add_vm_firewall_rule<'a>(
        &'a self,
        node: &'a str,
        vmid: u32,
        params: &'a [(&'a str, String)],
    ) -> PveFuture<'a, ()> {
        Box::pin(async move {
            self.transport()
                .call(Method::Post, format!("{}/firewall/rules", qemu(node, vmid)), p(params))
                .await
                .map(|_| ())
        })
    }

    fn task_status<'a>(&'a self, node: &'a str, upid: &'a str) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let path = format!("/nodes/{}/tasks/{}/status", segment(node), segment(upid));
            decode(self.transport().call(Method::Get, path, vec![]).await?, "GET task status")
        })
    }

    fn task_log<'a>(&'a self, node: &'a str, upid: &'a str) -> PveFuture<'a, Vec<String>> {
        Box::pin(async move {
            let path = format!("/nodes/{}/tasks/{}/log", segment(node), segment(upid));
            let value = self.transport().call(Method::Get, path, p(&[("limit", "0".into())])).await?;
            let lines = value.as_array().cloned().unwrap_or_default();
            Ok(lines.iter().filter_map(|l| l["t"].as_str().map(str::to_string)).collect())
        })
    }

    /// Starts an async call and waits for its task.
    fn run_task<'a>(
        &'a self,
        node: &'a str,
        method: Method,
        path: String,
        params: Params,
    ) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let value = self.transport().call(method, path.clone(), params).await?;
            let upid = value
                .as_str()
                .ok_or_else(|| {
                    PveError::Other(format!("{} {path} answered without a task id: {value}", method.as_str()))
                })?
                .to_string();
            self.wait_task(node, &upid).await
        })
    }

    /// Polls a task with back-off until it stops; Err with Proxmox's text if it failed.
    fn wait_task<'a>(&'a self, node: &'a str, upid: &'a str) -> PveFuture<'a, TaskStatus> {
        Box::pin(async move {
            let policy = self.task_policy();
            // The task runs on the node in its UPID, whatever node the call went to.
            let task_node = Upid::parse(upid).map(|u| u.node).unwrap_or_else(|_| node.to_string());
            let started = tokio::time::Instant::now();
            let mut delay = policy.first_poll;
            loop {
                let status = match self.task_status(&task_node, upid).await {
                    Ok(status) => status,
                    // A failed poll is not a failed task: keep asking until the deadline.
                    // A brand-new task can briefly be unknown on another node.
                    Err(e) if poll_error_is_passing(&e) && started.elapsed() < policy.deadline => {
                        tokio::time::sleep(delay).await;
                        delay = policy.next_poll(started.elapsed());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if !status.is_running() {
                    return if status.succeeded() {
                        Ok(status)
                    } else {
                        let text = status.exitstatus.clone().unwrap_or_else(|| "task failed without a status".into());
                        Err(PveError::from_status(500, &text, None))
                    };
                }
                if started.elapsed() >= policy.deadline {
                    return Err(PveError::Timeout(policy.deadline));
                }
                tokio::time::sleep(delay).await;
                delay = policy.next_poll(started.elapsed());
            }
        })
    }
}

impl TaskPolicy {
    /// The wait before the next poll, `waited` into the task.
    pub fn next_poll(&self, waited: Duration) -> Duration {
        (waited / 8).clamp(self.first_poll, self.max_poll.max(self.first_poll))
    }
}

fn poll_error_is_passing(e: &PveError) -> bool {
    match e {
        PveError::Transient(_) | PveError::Timeout(_) => true,
        PveError::Validation { message, .. } => message.contains("no such task"),
        _ => false,
    }
}

/// The one `Pve` implementation: a transport and a task policy.
pub struct PveClient {
    transport: Box<dyn Transport>,
    policy: TaskPolicy,
}

impl PveClient {
    pub fn new(transport: impl Transport, policy: TaskPolicy) -> PveClient {
        PveClient { transport: Box::new(transport), policy }
    }
}

impl Pve for PveClient {
    fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    fn task_policy(&self) -> TaskPolicy {
        self.policy
    }
}
