//! API permission checks, for privilege-separated tokens.
//!
//! A token named in `SimConfig::token_privileges` stands for a token with `privsep=1` and
//! one ACL: those privileges on `/`, propagated (what `pveum acl modify / --tokens T
//! --roles R` gives). Every other token acts as a token without privilege separation of
//! `root@pam`, which may do anything (pve-access-control `src/PVE/RPCEnvironment.pm`
//! `permissions` 136-161: root@pam has every privilege; a non-privsep token has its user's).
//!
//! The checks are the contract's `permissions.check` of each endpoint, evaluated as
//! `exec_api2_perm_check` does (RPCEnvironment.pm 459-492: `and`, `or`, `perm` with `any`
//! and `require_param`; `check`/`check_any` 291-326), with its error text (pve-common
//! `src/PVE/Exception.pm` raise_perm_exc 53-62: 403 `Permission check failed (PATH, PRIV)`).
//! Endpoints whose permissions are only a description (e.g. `POST /nodes/{node}/qemu`,
//! whose handler checks `VM.Allocate` itself) are not checked here.

use crate::engine::SimError;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Every privilege of PVE 9.1's `Administrator` role (pve-access-control
/// `src/PVE/AccessControl.pm` `$privgroups` 1057-1170; Administrator has all of them).
pub const ADMINISTRATOR: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// The paths `get_effective_permissions` always lists (RPCEnvironment.pm 244-254).
const TOP_PATHS: &[&str] = &["/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"];

/// What `user` (`user@realm!token`, or `root@pam` for the CLI) may do; `None`: anything.
pub fn privileges_of<'a>(
    token_privileges: &'a BTreeMap<String, BTreeSet<String>>,
    user: &str,
) -> Option<&'a BTreeSet<String>> {
    token_privileges.get(user)
}

/// `exec_api2_perm_check` of an endpoint's `check` for a token holding `privs` on `/`.
/// `params` are the path and body parameters (for `{vmid}` in paths and `require_param`).
pub fn check(check: &Value, privs: &BTreeSet<String>, params: &BTreeMap<String, String>) -> Result<(), SimError> {
    if evaluate(check, privs, params)? { Ok(()) } else { Err(denied(None)) }
}

fn denied(what: Option<String>) -> SimError {
    match what {
        Some(what) => SimError::status(403, format!("Permission check failed ({what})")),
        None => SimError::status(403, "Permission check failed"),
    }
}

/// True when allowed; an `Err` carries the exception `perm` raises (`noerr` unset).
fn evaluate(check: &Value, privs: &BTreeSet<String>, params: &BTreeMap<String, String>) -> Result<bool, SimError> {
    let Some(list) = check.as_array() else { return Ok(true) };
    match list.first().and_then(Value::as_str) {
        Some("and") => {
            for sub in &list[1..] {
                if !evaluate(sub, privs, params)? {
                    return Err(denied(None));
                }
            }
            Ok(true)
        }
        Some("or") => Ok(list[1..].iter().any(|sub| evaluate(sub, privs, params).unwrap_or(false))),
        Some("perm") => {
            let template = list.get(1).and_then(Value::as_str).unwrap_or("/");
            let wanted: Vec<&str> =
                list.get(2).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            let mut options = BTreeMap::new();
            for pair in list[3.min(list.len())..].chunks(2) {
                if let [key, value] = pair
                    && let Some(key) = key.as_str()
                {
                    options.insert(key, value.clone());
                }
            }
            if let Some(param) = options.get("require_param").and_then(Value::as_str)
                && !params.contains_key(param)
            {
                return Err(denied(None));
            }
            let path = fill(template, params);
            let any = options.get("any").is_some_and(|v| v.as_u64() == Some(1) || v.as_bool() == Some(true));
            if any {
                if wanted.iter().any(|p| privs.contains(*p)) {
                    Ok(true)
                } else {
                    Err(denied(Some(format!("{path}, {}", wanted.join("|")))))
                }
            } else {
                match wanted.iter().find(|p| !privs.contains(**p)) {
                    None => Ok(true),
                    Some(missing) => Err(denied(Some(format!("{path}, {missing}")))),
                }
            }
        }
        // Checks AgentLab's endpoints do not use (userid-group, userid-param, …).
        _ => Ok(true),
    }
}

/// `PVE::Tools::template_replace`: `{name}` → the parameter's value.
fn fill(template: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = template.to_string();
    for (key, value) in params {
        out = out.replace(&format!("{{{key}}}"), value);
    }
    out
}

/// `GET /access/permissions` for a caller with `privs` (`None`: root, every privilege):
/// each top path (and `path`, when asked for one path only) with its privileges, all
/// propagated from `/`.
pub fn effective(privs: Option<&BTreeSet<String>>, path: Option<&str>) -> Value {
    let privileges: BTreeSet<String> = match privs {
        Some(set) => set.clone(),
        None => ADMINISTRATOR.iter().map(|p| p.to_string()).collect(),
    };
    let map: serde_json::Map<String, Value> = privileges.into_iter().map(|p| (p, Value::from(1))).collect();
    let paths: Vec<&str> = match path {
        Some(path) => vec![path],
        None => TOP_PATHS.to_vec(),
    };
    if map.is_empty() {
        return Value::Object(Default::default());
    }
    Value::Object(paths.into_iter().map(|p| (p.to_string(), Value::Object(map.clone()))).collect())
}

/// The privileges `POST|PUT …/config` needs for one option (qemu-server
/// `src/PVE/API2/Qemu.pm` `$check_vm_modify_config_perm` 995-1040 with its option sets
/// 788-861, and `$check_drive_perms` 2273-2289 for drives: a cloud-init drive needs both
/// `VM.Config.Cloudinit` and `VM.Config.CDROM`). `(privileges, any of them suffices)`.
/// `None`: not checked here (tags, serial ports, …) or only root may set it (checked by the
/// handler).
pub fn config_option_privileges(key: &str, value: Option<&str>) -> Option<(&'static [&'static str], bool)> {
    const CPU: &[&str] = &["cores", "cpu", "runningcpu", "cpulimit", "cpuunits", "numa", "smp", "sockets", "vcpus"];
    const MEMORY: &[&str] = &["memory", "balloon", "shares", "allow-ksm"];
    const HWTYPE: &[&str] = &[
        "acpi",
        "hotplug",
        "kvm",
        "machine",
        "runningmachine",
        "scsihw",
        "smbios1",
        "tablet",
        "vga",
        "watchdog",
        "audio0",
        "rng0",
    ];
    const GENERAL: &[&str] = &[
        "agent",
        "autostart",
        "bios",
        "description",
        "keyboard",
        "localtime",
        "migrate_downtime",
        "migrate_speed",
        "name",
        "onboot",
        "ostype",
        "protection",
        "reboot",
        "startdate",
        "startup",
        "tdf",
        "template",
    ];
    const DISK: &[&str] = &["boot", "bootdisk", "vmstatestorage"];
    const CLOUDINIT: &[&str] =
        &["cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain", "sshkeys"];
    if crate::world::is_disk_key(key) {
        let value = value.unwrap_or_default();
        return Some(
            if value
                .split(',')
                .next()
                .is_some_and(|v| v.ends_with(":cloudinit") || v.contains("vm-") && v.ends_with("-cloudinit"))
            {
                (&["VM.Config.Cloudinit", "VM.Config.CDROM"], false)
            } else if value.split(',').any(|p| p == "media=cdrom")
                || value.starts_with("none")
                || value.starts_with("cdrom")
            {
                (&["VM.Config.CDROM"], false)
            } else {
                (&["VM.Config.Disk"], false)
            },
        );
    }
    let in_set = |set: &[&str]| set.contains(&key);
    let numbered =
        |prefix: &str| key.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if in_set(CPU) || numbered("numa") {
        Some((&["VM.Config.CPU"], false))
    } else if in_set(MEMORY) {
        Some((&["VM.Config.Memory"], false))
    } else if in_set(HWTYPE) {
        Some((&["VM.Config.HWType"], false))
    } else if in_set(GENERAL) {
        Some((&["VM.Config.Options"], false))
    } else if key == "freeze" {
        Some((&["VM.PowerMgmt"], false))
    } else if in_set(DISK) {
        Some((&["VM.Config.Disk"], false))
    } else if numbered("net") {
        Some((&["VM.Config.Network"], false))
    } else if in_set(CLOUDINIT) || numbered("ipconfig") {
        Some((&["VM.Config.Cloudinit", "VM.Config.Network"], true))
    } else {
        None
    }
}

/// `check_vm_perm` of every option of a config change, for a token holding `privs`.
pub fn check_config<'a>(
    options: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    vmid: u32,
    privs: &BTreeSet<String>,
) -> Result<(), SimError> {
    for (key, value) in options {
        let Some((needed, any)) = config_option_privileges(key, value) else { continue };
        let path = format!("/vms/{vmid}");
        if any {
            if !needed.iter().any(|p| privs.contains(*p)) {
                return Err(denied(Some(format!("{path}, {}", needed.join("|")))));
            }
        } else if let Some(missing) = needed.iter().find(|p| !privs.contains(**p)) {
            return Err(denied(Some(format!("{path}, {missing}"))));
        }
    }
    Ok(())
}

/// pve-storage `src/PVE/Storage.pm` check_volume_access (619-655) for a disk image a config
/// names by volume id: Datastore.Allocate on the storage suffices; otherwise the VM's own
/// volume is fine, and another VMID's needs Datastore.Audit on the storage and
/// VM.Config.Disk on the owner. (Privileges are not per path here: one set for the token.)
pub fn check_volume_access(volid: &str, vmid: u32, owner: u32, privs: &BTreeSet<String>) -> Result<(), SimError> {
    let storage = volid.split(':').next().unwrap_or_default();
    if privs.contains("Datastore.Allocate") || owner == vmid {
        return Ok(());
    }
    if !privs.contains("Datastore.Audit") {
        return Err(denied(Some(format!("/storage/{storage}, Datastore.Audit"))));
    }
    if !privs.contains("VM.Config.Disk") {
        return Err(denied(Some(format!("/vms/{owner}, VM.Config.Disk"))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn privs(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn checks_follow_exec_api2_perm_check() {
        let params: BTreeMap<String, String> =
            [("vmid".to_string(), "101".to_string()), ("newid".to_string(), "102".to_string())].into();
        let destroy = json!(["perm", "/vms/{vmid}", ["VM.Allocate"]]);
        assert!(check(&destroy, &privs(&["VM.Allocate"]), &params).is_ok());
        let e = check(&destroy, &privs(&["VM.Audit"]), &params).unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (403, "Permission check failed (/vms/101, VM.Allocate)"));

        let rollback = json!(["perm", "/vms/{vmid}", ["VM.Snapshot", "VM.Snapshot.Rollback"], "any", 1]);
        assert!(check(&rollback, &privs(&["VM.Snapshot.Rollback"]), &params).is_ok());
        let e = check(&rollback, &privs(&[]), &params).unwrap_err();
        assert_eq!(e.message, "Permission check failed (/vms/101, VM.Snapshot|VM.Snapshot.Rollback)");

        let clone = json!([
            "and",
            ["perm", "/vms/{vmid}", ["VM.Clone"]],
            [
                "or",
                ["perm", "/vms/{newid}", ["VM.Allocate"]],
                ["perm", "/pool/{pool}", ["VM.Allocate"], "require_param", "pool"]
            ]
        ]);
        assert!(check(&clone, &privs(&["VM.Clone", "VM.Allocate"]), &params).is_ok());
        assert_eq!(check(&clone, &privs(&["VM.Clone"]), &params).unwrap_err().message, "Permission check failed");
        assert_eq!(
            check(&clone, &privs(&["VM.Allocate"]), &params).unwrap_err().message,
            "Permission check failed (/vms/101, VM.Clone)"
        );
    }

    #[test]
    fn config_options_need_their_privilege_sets() {
        let cloudinit = [("ide2", Some("local-lvm:cloudinit"))];
        let e = check_config(cloudinit, 101, &privs(&["VM.Config.Cloudinit"])).unwrap_err();
        assert_eq!(e.message, "Permission check failed (/vms/101, VM.Config.CDROM)");
        assert!(check_config(cloudinit, 101, &privs(&["VM.Config.Cloudinit", "VM.Config.CDROM"])).is_ok());
        assert!(
            check_config([("cicustom", Some("user=local:snippets/a.yaml"))], 101, &privs(&["VM.Config.Network"]))
                .is_ok()
        );
        let e = check_config([("memory", Some("2048")), ("cores", Some("2"))], 101, &privs(&["VM.Config.Memory"]));
        assert_eq!(e.unwrap_err().message, "Permission check failed (/vms/101, VM.Config.CPU)");
        assert!(
            check_config([("scsi0", Some("local-lvm:vm-101-disk-0,size=8G"))], 101, &privs(&["VM.Config.Disk"]))
                .is_ok()
        );
        assert!(check_config([("net0", Some("virtio,bridge=vmbr1"))], 101, &privs(&[])).is_err());
    }

    #[test]
    fn effective_permissions_list_the_top_paths() {
        let all = effective(None, None);
        assert_eq!(all["/vms"]["VM.Allocate"], 1);
        assert_eq!(all.as_object().unwrap().len(), TOP_PATHS.len());
        let some = effective(Some(&privs(&["VM.Audit"])), Some("/vms/101"));
        assert_eq!(some, json!({"/vms/101": {"VM.Audit": 1}}));
        assert_eq!(effective(Some(&privs(&[])), None), json!({}));
    }
}
