//! Which node a sandbox runs on, and which node its clone is asked on.
//!
//! Proxmox loads a clone's source config on the node in the request path, so the clone is
//! always POSTed to the template's node; it lands elsewhere only with `target`, which needs
//! every volume of the template on shared storage (qemu-server `src/PVE/API2/Qemu.pm`
//! clone_vm, 4436-4500: "can't clone VM to node '<n>' (VM uses local storage)"). So:
//! - a node named by the profile or by `proxmox_node` is used as it is, refused at once when
//!   the template's storage cannot reach it;
//! - otherwise, with the template on shared storage, the allowed node with the most free
//!   memory (online, holding the template's storages, and able to read our snippets);
//! - otherwise the template's node.

use super::SandboxContext;
use super::error::SandboxError;
use crate::model::{Profile, SandboxState};
use agentlab_proxmox::types::StorageConfig;
use std::collections::BTreeMap;

/// Where the clone is asked (`clone_on`) and where the VM ends up (`node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub clone_on: String,
    pub node: String,
}

impl Placement {
    /// The clone's `target`, when the VM goes to another node than the template's.
    pub fn target(&self) -> Option<String> {
        (self.node != self.clone_on).then(|| self.node.clone())
    }
}

/// What the decision needs to know, gathered from Proxmox and the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub template: u32,
    pub template_node: String,
    /// A node the profile (or `proxmox_node`) insists on, and which setting said so.
    pub pinned: Option<(String, &'static str)>,
    /// The template's volumes' storages: every one shared, and the nodes all of them reach
    /// (`None`: every node). The first local storage, when there is one.
    pub local_storage: Option<String>,
    pub storage_nodes: Option<Vec<String>>,
    /// Nodes that can read the snippets the daemon writes (`None`: every node).
    pub snippet_nodes: Option<Vec<String>>,
    /// Online nodes and their free memory in bytes (already less what our own sandboxes
    /// on them will take once they start).
    pub free_memory: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "{setting} asks for node `{wanted}`, but template VM {template} is on node `{template_node}` with volumes on node-local storage `{storage}`, and Proxmox clones to another node only from shared storage: set {setting} to `{template_node}`, remove it, or move the template to shared storage"
    )]
    TemplateNotShared { setting: &'static str, wanted: String, template: u32, template_node: String, storage: String },
}

/// The placement for these facts (pure; `place` gathers them).
pub fn decide(facts: &Facts) -> Result<Placement, PlacementError> {
    let on = |node: &str| Placement { clone_on: facts.template_node.clone(), node: node.to_string() };
    if let Some((wanted, setting)) = &facts.pinned {
        if *wanted == facts.template_node {
            return Ok(on(wanted));
        }
        return match &facts.local_storage {
            Some(storage) => Err(PlacementError::TemplateNotShared {
                setting,
                wanted: wanted.clone(),
                template: facts.template,
                template_node: facts.template_node.clone(),
                storage: storage.clone(),
            }),
            None => Ok(on(wanted)),
        };
    }
    if facts.local_storage.is_some() {
        return Ok(on(&facts.template_node));
    }
    let allowed = |node: &str| {
        let within = |nodes: &Option<Vec<String>>| nodes.as_ref().is_none_or(|n| n.iter().any(|x| x == node));
        within(&facts.storage_nodes) && within(&facts.snippet_nodes)
    };
    // Most free memory first; ties go to the template's node, then by name.
    let best = facts
        .free_memory
        .iter()
        .filter(|(node, _)| allowed(node))
        .max_by(|(a, fa), (b, fb)| {
            fa.cmp(fb)
                .then_with(|| (*a == &facts.template_node).cmp(&(*b == &facts.template_node)))
                .then_with(|| b.cmp(a))
        })
        .map(|(node, _)| node.clone());
    Ok(on(best.as_deref().unwrap_or(&facts.template_node)))
}

/// The rule in force, in words, for `status`.
pub fn describe(pinned: Option<&str>) -> String {
    match pinned {
        Some(node) => format!(
            "node `{node}` (proxmox_node; a profile's `node` overrides it); clones are asked on the template's node, with `target` when it differs (needs shared storage)"
        ),
        None => "the node with the most free memory when the template's volumes are on shared storage (among online nodes that hold them and can read the snippets), else the template's node; a profile's `node` or proxmox_node pins it".into(),
    }
}

/// The template's node, from the cluster's VM list.
pub async fn template_node(ctx: &SandboxContext, profile: &Profile) -> Result<String, SandboxError> {
    let template = profile.template_vmid;
    let vms = ctx.gateway.cluster_vms().await.map_err(SandboxError::pve("listing the cluster's VMs"))?;
    vms.into_iter()
        .find(|v| v.is_qemu() && v.vmid == u64::from(template))
        .map(|v| v.node)
        .ok_or_else(|| SandboxError::TemplateMissing { template, profile: profile.name.clone() })
}

/// Gathers the facts and decides.
pub async fn place(ctx: &SandboxContext, profile: &Profile) -> Result<Placement, SandboxError> {
    let template_node = template_node(ctx, profile).await?;
    let pinned = profile
        .node
        .clone()
        .map(|n| (n, "the profile's `node`"))
        .or_else(|| ctx.settings.node.clone().map(|n| (n, "proxmox_node")));
    let mut facts = Facts {
        template: profile.template_vmid,
        template_node: template_node.clone(),
        pinned,
        local_storage: None,
        storage_nodes: None,
        snippet_nodes: None,
        free_memory: BTreeMap::new(),
    };
    if facts.pinned.as_ref().is_some_and(|(n, _)| *n == template_node) {
        return Ok(decide(&facts)?);
    }
    let config = ctx
        .gateway
        .vm_config(&template_node, profile.template_vmid)
        .await
        .map_err(SandboxError::pve("reading the template's config"))?;
    for storage in super::vm_volumes::volume_storages(&config, false) {
        let definition = storage_config(ctx, &storage).await?;
        if !definition.shared {
            facts.local_storage.get_or_insert(storage);
        }
        facts.storage_nodes = intersect(facts.storage_nodes, node_list(&definition));
    }
    if facts.pinned.is_some() || facts.local_storage.is_some() {
        return Ok(decide(&facts)?);
    }
    let snippets = storage_config(ctx, &ctx.settings.snippet_storage).await?;
    facts.snippet_nodes =
        if snippets.shared { node_list(&snippets) } else { Some(vec![ctx.settings.host_node.clone()]) };
    let reserved = reserved_memory(ctx)?;
    let nodes = ctx.gateway.nodes().await.map_err(SandboxError::pve("listing the cluster's nodes"))?;
    for node in nodes.into_iter().filter(|n| n.status == "online") {
        let pending = reserved.get(&node.node).copied().unwrap_or(0);
        facts.free_memory.insert(node.node.clone(), node.maxmem.saturating_sub(node.mem).saturating_sub(pending));
    }
    Ok(decide(&facts)?)
}

async fn storage_config(ctx: &SandboxContext, storage: &str) -> Result<StorageConfig, SandboxError> {
    ctx.gateway.storage_config(storage).await.map_err(SandboxError::pve("reading a storage's definition"))
}

/// Memory of our sandboxes placed on a node but not up yet: Proxmox counts a VM's memory
/// only once it runs, so sandboxes created together would all pick the same node (a
/// booting one may be counted twice for a moment; erring towards spreading).
fn reserved_memory(ctx: &SandboxContext) -> Result<BTreeMap<String, u64>, SandboxError> {
    let mut reserved = BTreeMap::new();
    for state in [SandboxState::Requested, SandboxState::Provisioning, SandboxState::Booting] {
        for rec in ctx.store.list_sandboxes(Some(state))? {
            if let Some(node) = rec.node {
                *reserved.entry(node).or_insert(0) += u64::from(rec.memory_mb) * 1024 * 1024;
            }
        }
    }
    Ok(reserved)
}

fn node_list(storage: &StorageConfig) -> Option<Vec<String>> {
    storage.nodes.as_ref().map(|n| n.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn intersect(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (None, other) | (other, None) => other,
        (Some(a), Some(b)) => Some(a.into_iter().filter(|n| b.contains(n)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    fn facts() -> Facts {
        Facts {
            template: 9000,
            template_node: "pve1".into(),
            pinned: None,
            local_storage: None,
            storage_nodes: None,
            snippet_nodes: None,
            free_memory: [
                ("pve1".to_string(), 10 * GIB),
                ("pve2".to_string(), 30 * GIB),
                ("pve3".to_string(), 20 * GIB),
            ]
            .into(),
        }
    }

    #[test]
    fn shared_storage_goes_to_the_most_free_memory_among_allowed_nodes() {
        assert_eq!(
            decide(&facts()).map(|p| (p.clone_on.clone(), p.target())),
            Ok(("pve1".into(), Some("pve2".into())))
        );
        let limited = Facts { storage_nodes: Some(vec!["pve1".into(), "pve3".into()]), ..facts() };
        assert_eq!(decide(&limited).map(|p| p.node), Ok("pve3".into()));
        let snippets_here = Facts { snippet_nodes: Some(vec!["pve1".into()]), ..facts() };
        assert_eq!(decide(&snippets_here).map(|p| p.target()), Ok(None));
    }

    #[test]
    fn local_storage_stays_on_the_templates_node() {
        let local = Facts { local_storage: Some("local-lvm".into()), ..facts() };
        assert_eq!(decide(&local), Ok(Placement { clone_on: "pve1".into(), node: "pve1".into() }));
    }

    #[test]
    fn a_pinned_node_is_used_or_refused_with_the_fix() {
        let pinned = Facts { pinned: Some(("pve3".into(), "proxmox_node")), ..facts() };
        assert_eq!(decide(&pinned).map(|p| p.target()), Ok(Some("pve3".into())));
        let local = Facts { local_storage: Some("local-lvm".into()), ..pinned };
        let err = decide(&local).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("proxmox_node asks for node `pve3`") && err.contains("set proxmox_node to `pve1`"),
            "{err}"
        );
        let here = Facts { pinned: Some(("pve1".into(), "proxmox_node")), ..local };
        assert_eq!(decide(&here).map(|p| p.target()), Ok(None));
    }
}
