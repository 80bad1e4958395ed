//! Storages and volumes, with Proxmox's naming rules (LVM-thin/ZFS volumes must be named
//! `vm-<vmid>-*`) and snippets read from the `local` storage's `snippets/` directory.

use super::{Answer, Sim};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{Storage, StorageKind, VolumeEntry, World};
use serde_json::{Value, json};
use std::sync::Arc;

fn storage_json(s: &Storage) -> Value {
    let mut v = json!({
        "storage": s.id, "type": s.kind.as_str(), "content": s.content.join(","), "active": 1, "enabled": 1,
        "shared": u8::from(s.shared), "total": s.total, "used": s.used(), "avail": s.total.saturating_sub(s.used()),
    });
    if let Some(path) = &s.path {
        v["path"] = path.display().to_string().into();
    }
    v
}

/// `GET /storage`: each storage's definition, as `GET /storage/{storage}` gives it (both
/// return `api_storage_config`), listing only storages the caller has `Datastore.Audit` or
/// `Datastore.AllocateSpace` on (pve-storage `src/PVE/API2/Storage/Config.pm` index).
pub fn cluster_storages(sim: &Arc<Sim>, req: &Req) -> Answer {
    let privs = crate::permissions::privileges_of(&sim.config.token_privileges, &req.user);
    let visible =
        |_: &Storage| privs.is_none_or(|p| p.contains("Datastore.Audit") || p.contains("Datastore.AllocateSpace"));
    let world = sim.world();
    Ok(Value::Array(world.storages.values().filter(|s| visible(s)).map(definition).collect()))
}

fn get<'a>(world: &'a World, req: &Req) -> Result<&'a Storage, SimError> {
    let id = req.get("storage").unwrap_or_default();
    world.storages.get(id).ok_or_else(|| SimError::die(format!("storage '{id}' does not exist")))
}

pub fn cluster_storage(sim: &Arc<Sim>, req: &Req) -> Answer {
    let world = sim.world();
    Ok(definition(get(&world, req)?))
}

fn definition(s: &Storage) -> Value {
    // storage.cfg as `GET /storage/{storage}` returns it (pve-storage API2/Storage/Config.pm
    // read): options only when set, `content-dirs` as a property string, `nodes` as a list.
    let mut v = json!({"storage": s.id, "type": s.kind.as_str(), "content": s.content.join(","), "digest": "0"});
    if let Some(p) = &s.path {
        v["path"] = p.display().to_string().into();
    }
    if s.shared {
        v["shared"] = 1.into();
    }
    if let Some(nodes) = &s.nodes {
        v["nodes"] = nodes.join(",").into();
    }
    if !s.content_dirs.is_empty() {
        let dirs: Vec<String> = s.content_dirs.iter().map(|(k, d)| format!("{k}={d}")).collect();
        v["content-dirs"] = dirs.join(",").into();
    }
    v
}

pub fn node_storages(sim: &Arc<Sim>, req: &Req) -> Answer {
    let world = sim.world();
    let content = req.get("content");
    Ok(Value::Array(
        world
            .storages
            .values()
            .filter(|s| content.is_none_or(|c| s.content.iter().any(|sc| sc == c)))
            .map(storage_json)
            .collect(),
    ))
}

pub fn status(sim: &Arc<Sim>, req: &Req) -> Answer {
    let world = sim.world();
    Ok(storage_json(get(&world, req)?))
}

/// Volumes of a storage, plus the files in `<path>/snippets/` for directory storages.
pub fn content(sim: &Arc<Sim>, req: &Req) -> Answer {
    let world = sim.world();
    let s = get(&world, req)?;
    let filter = req.get("content");
    let vmid: Option<u32> = req.get("vmid").and_then(|v| v.parse().ok());
    let mut out: Vec<Value> = s
        .volumes
        .values()
        .filter(|v| filter.is_none_or(|f| f == v.content))
        .filter(|v| vmid.is_none_or(|id| v.owner == Some(id)))
        .map(|v| {
            let mut item = json!({"volid": format!("{}:{}", s.id, v.volname), "content": v.content, "format": v.format, "size": v.size});
            if let Some(owner) = v.owner {
                item["vmid"] = owner.into();
            }
            item
        })
        .collect();
    if let Some(path) = &s.path
        && filter.is_none_or(|f| f == "snippets")
        && vmid.is_none()
        && let Ok(entries) = std::fs::read_dir(s.snippets_dir().unwrap_or_else(|| path.join("snippets")))
    {
        for entry in entries.filter_map(Result::ok) {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let name = entry.file_name().to_string_lossy().into_owned();
            out.push(json!({"volid": format!("{}:snippets/{name}", s.id), "content": "snippets", "format": "snippet", "size": size}));
        }
    }
    Ok(Value::Array(out))
}

/// `POST content`: allocates a volume (naming rules per storage type, size in KiB or M/G).
pub fn alloc(sim: &Arc<Sim>, req: &Req) -> Answer {
    let vmid: u32 = req.get("vmid").and_then(|v| v.parse().ok()).unwrap_or(0);
    let size_text = req.get("size").unwrap_or_default();
    let bytes = parse_alloc_size(size_text)
        .ok_or_else(|| SimError::param("size", format!("unable to parse size '{size_text}'")))?;
    let format = req.get("format").map(str::to_string);
    let mut world = sim.world();
    let storage_id = req.get("storage").unwrap_or_default().to_string();
    let kind = get(&world, req)?.kind;
    let requested = req.get("filename").unwrap_or_default();
    let name = if requested.is_empty() {
        world.next_disk_name(&storage_id, vmid)
    } else {
        match kind {
            StorageKind::LvmThin | StorageKind::ZfsPool | StorageKind::Rbd => {
                if !requested.starts_with(&format!("vm-{vmid}-")) {
                    return Err(SimError::die(format!("illegal name '{requested}' - should be 'vm-{vmid}-*'")));
                }
                requested.to_string()
            }
            StorageKind::Dir => {
                let fmt = format.clone().unwrap_or_else(|| "raw".into());
                let ext = requested.rsplit('.').next().unwrap_or_default();
                if ext != fmt {
                    return Err(SimError::die(format!(
                        "illegal name '{requested}' - wrong extension for format ('{ext} != '{fmt}')"
                    )));
                }
                format!("{vmid}/{requested}")
            }
        }
    };
    let storage = world
        .storages
        .get_mut(&storage_id)
        .ok_or_else(|| SimError::die(format!("storage '{storage_id}' does not exist")))?;
    if storage.volumes.contains_key(&name) {
        return Err(SimError::die(match kind {
            StorageKind::Dir => format!("disk image '{name}' already exists"),
            _ => format!("volume pve/{name} already exists"),
        }));
    }
    storage
        .volumes
        .insert(name.clone(), VolumeEntry::new(&name, Some(vmid), bytes, format.as_deref().unwrap_or("raw")));
    Ok(Value::String(format!("{storage_id}:{name}")))
}

/// `\d+[MG]?`, unit KiB without a suffix.
fn parse_alloc_size(text: &str) -> Option<u64> {
    let (number, mult) = match text.chars().last()? {
        'M' => (&text[..text.len() - 1], 1024 * 1024),
        'G' => (&text[..text.len() - 1], 1024 * 1024 * 1024),
        _ => (text, 1024),
    };
    number.parse::<u64>().ok().map(|n| n * mult)
}

/// The volume name from `{volume}`, which may carry the storage prefix.
fn volume_name(req: &Req) -> Result<String, SimError> {
    let storage = req.get("storage").unwrap_or_default();
    let volume = req.get("volume").unwrap_or_default();
    match volume.split_once(':') {
        Some((s, _)) if s != storage => {
            Err(SimError::param("volume", format!("storage ID mismatch ({s} != {storage})")))
        }
        Some((_, name)) => Ok(name.to_string()),
        None => Ok(volume.to_string()),
    }
}

pub fn volume_info(sim: &Arc<Sim>, req: &Req) -> Answer {
    let name = volume_name(req)?;
    let world = sim.world();
    let s = get(&world, req)?;
    let v = s.volumes.get(&name).ok_or_else(|| SimError::die(format!("volume '{}:{name}' does not exist", s.id)))?;
    Ok(json!({"path": format!("/dev/pve/{name}"), "size": v.size, "used": v.size, "format": v.format}))
}

pub fn volume_update(sim: &Arc<Sim>, req: &Req) -> Answer {
    volume_info(sim, req).map(|_| Value::Null)
}

/// `DELETE content/{volume}`: async `imgdel`; a base volume still used by linked clones
/// cannot go. (Proxmox does not check VM configs: deleting an attached volume breaks it.)
pub fn free(sim: &Arc<Sim>, req: &Req) -> Answer {
    let name = volume_name(req)?;
    let storage = {
        let world = sim.world();
        get(&world, req)?.id.clone()
    };
    let owner = World::owner_of(&name);
    let id = owner.map_or_else(|| storage.clone(), |o| format!("{o}@{storage}"));
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "imgdel", &id, &req.user, move |_| async move {
        let _lock = task_sim.storage_lock(&storage).await?;
        tokio::time::sleep(task_sim.latency("imgdel")).await;
        let mut world = task_sim.world();
        if name.starts_with("base-") {
            let prefix = format!("{storage}:{name}/");
            if world.vms.values().flat_map(|v| v.referenced_volumes()).any(|(_, volid)| volid.starts_with(&prefix)) {
                return Err(format!("base volume '{name}' is still in use by linked clones"));
            }
        }
        if !world.free_volume(&format!("{storage}:{name}")) {
            return Err(format!("volume '{storage}:{name}' does not exist"));
        }
        Ok(vec![format!("Removed volume '{storage}:{name}'")])
    });
    Ok(Value::String(upid))
}

/// Uploads of ISO/templates are outside what AgentLab uses (snippets are refused earlier
/// by the schema's content enum, as on Proxmox).
pub fn upload() -> Answer {
    Err(SimError::die("upload is not simulated by pve-sim"))
}
