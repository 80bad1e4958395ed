//! Where a sandbox's cloud-init snippet must be written so that Proxmox reads it.
//!
//! Proxmox reads `cicustom`'s files at start, on the VM's node, from
//! `<storage path>/<content-dirs.snippets // snippets>/<file>` (qemu-server Cloudinit.pm
//! read_cloudinit_snippets_file → pve-storage `src/PVE/Storage/Plugin.pm` get_subdir,
//! 853-864). Snippets cannot be uploaded through the API (pve-storage
//! `API2/Storage/Status.pm` upload: `iso, vztmpl, import` only), so the daemon writes the
//! file itself: into that directory, on its own host. The storage's definition
//! (`GET /storage/{id}`) therefore decides the directory, and whether a VM on another node
//! can see the file at all. A mismatch is an error here, before the VM is started, never a
//! start that fails with "volume … does not exist".

use agentlab_proxmox::types::StorageConfig;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnippetStorageError {
    #[error(
        "snippet_storage `{storage}` does not hold snippets (its content is `{content}`): add them (`pvesm set {storage} --content {content},snippets`) or point snippet_storage at a storage that does"
    )]
    NoSnippetContent { storage: String, content: String },
    #[error(
        "snippet_storage `{storage}` (type {kind}) has no directory: snippets live on file storages (dir, nfs, cifs, cephfs); point snippet_storage at one"
    )]
    NoPath { storage: String, kind: String },
    #[error(
        "snippets_dir is {configured} but Proxmox reads snippet_storage `{storage}`'s snippets from {derived}: set snippets_dir to {derived}, or remove it and AgentLab uses that directory"
    )]
    DirMismatch { storage: String, configured: String, derived: String },
    #[error(
        "snippet_storage `{storage}` is node-local and AgentLab writes snippets on node `{host}`, but this sandbox is on node `{node}`, which would not find it: use a shared storage (NFS, CephFS) for snippet_storage, or keep sandboxes on `{host}`"
    )]
    NodeLocal { storage: String, node: String, host: String },
    #[error(
        "snippet_storage `{storage}` is not available on node `{node}` (its nodes are {nodes}): add the node to the storage or choose another snippet_storage"
    )]
    NotOnNode { storage: String, node: String, nodes: String },
}

/// The directory snippets go to: the storage's, which `configured` (`snippets_dir`) must
/// equal when it is set.
pub fn snippets_dir(storage: &StorageConfig, configured: Option<&Path>) -> Result<PathBuf, SnippetStorageError> {
    if !storage.has_content("snippets") {
        return Err(SnippetStorageError::NoSnippetContent {
            storage: storage.storage.clone(),
            content: storage.content.clone(),
        });
    }
    let Some(path) = storage.path.as_deref().filter(|p| !p.is_empty()) else {
        return Err(SnippetStorageError::NoPath { storage: storage.storage.clone(), kind: storage.kind.clone() });
    };
    let derived = Path::new(path).join(storage.content_dir("snippets"));
    match configured {
        Some(dir) if normalized(dir) != normalized(&derived) => Err(SnippetStorageError::DirMismatch {
            storage: storage.storage.clone(),
            configured: dir.display().to_string(),
            derived: derived.display().to_string(),
        }),
        _ => Ok(derived),
    }
}

/// Whether a VM on `node` reads the file the daemon (on `host`) writes.
pub fn check_node(storage: &StorageConfig, node: &str, host: &str) -> Result<(), SnippetStorageError> {
    if !storage.on_node(node) {
        return Err(SnippetStorageError::NotOnNode {
            storage: storage.storage.clone(),
            node: node.to_string(),
            nodes: storage.nodes.clone().unwrap_or_default(),
        });
    }
    if !storage.shared && node != host {
        return Err(SnippetStorageError::NodeLocal {
            storage: storage.storage.clone(),
            node: node.to_string(),
            host: host.to_string(),
        });
    }
    Ok(())
}

/// `a/b/` and `a//b` are `a/b`.
fn normalized(path: &Path) -> PathBuf {
    path.components().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> StorageConfig {
        StorageConfig {
            storage: "local".into(),
            kind: "dir".into(),
            content: "iso,vztmpl,snippets".into(),
            path: Some("/var/lib/vz".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_directory_is_the_storages_and_honours_content_dirs() {
        assert_eq!(snippets_dir(&local(), None), Ok(PathBuf::from("/var/lib/vz/snippets")));
        assert_eq!(snippets_dir(&local(), Some(Path::new("/var/lib/vz/snippets/"))), Ok("/var/lib/vz/snippets".into()));
        let moved = StorageConfig { content_dirs: Some("iso=isos,snippets=ci".into()), ..local() };
        assert_eq!(snippets_dir(&moved, None), Ok(PathBuf::from("/var/lib/vz/ci")));
        let err = snippets_dir(&moved, Some(Path::new("/var/lib/vz/snippets"))).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("set snippets_dir to /var/lib/vz/ci")));
    }

    #[test]
    fn a_storage_without_snippets_or_directory_is_refused_with_the_fix() {
        let iso_only = StorageConfig { content: "iso".into(), ..local() };
        let err = snippets_dir(&iso_only, None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("pvesm set local --content iso,snippets"), "{err}");
        let lvm = StorageConfig { kind: "lvmthin".into(), content: "snippets".into(), path: None, ..local() };
        assert!(matches!(snippets_dir(&lvm, None), Err(SnippetStorageError::NoPath { .. })));
    }

    #[test]
    fn a_node_local_storage_serves_only_the_daemons_node() {
        assert_eq!(check_node(&local(), "pve1", "pve1"), Ok(()));
        assert!(matches!(check_node(&local(), "pve2", "pve1"), Err(SnippetStorageError::NodeLocal { .. })));
        let nfs = StorageConfig { storage: "nfs".into(), shared: true, nodes: Some("pve1,pve2".into()), ..local() };
        assert_eq!(check_node(&nfs, "pve2", "pve1"), Ok(()));
        assert!(matches!(check_node(&nfs, "pve3", "pve1"), Err(SnippetStorageError::NotOnNode { .. })));
    }
}
