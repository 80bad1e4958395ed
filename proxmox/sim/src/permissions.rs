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
    fn effective_permissions_list_the_top_paths() {
        let all = effective(None, None);
        assert_eq!(all["/vms"]["VM.Allocate"], 1);
        assert_eq!(all.as_object().unwrap().len(), TOP_PATHS.len());
        let some = effective(Some(&privs(&["VM.Audit"])), Some("/vms/101"));
        assert_eq!(some, json!({"/vms/101": {"VM.Audit": 1}}));
        assert_eq!(effective(Some(&privs(&[])), None), json!({}));
    }
}
