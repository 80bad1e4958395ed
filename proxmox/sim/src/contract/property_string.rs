//! Property strings (`key=value,key=value`, one key may be given bare as the default key;
//! alias keys such as `virtio=MAC` set `model=virtio` and `macaddr=MAC`). Unknown keys are
//! errors: this is what rejects `fwgroup=` on `net0`.

use super::Contract;
use super::validate::{MISSING, NOT_IN_SCHEMA, check_value};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Checks `value` against the property-string `keys`; errors are `<param>.<key>: <msg>` lines.
pub fn check(contract: &Contract, param: &str, value: &str, keys: &Map<String, Value>) -> Result<(), Vec<String>> {
    let default_key = keys.iter().find(|(_, s)| s["default_key"].as_u64() == Some(1)).map(|(k, _)| k.as_str());
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    let mut errors = Vec::new();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        let (key, val) = match part.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match default_key {
                Some(d) => (d.to_string(), part.to_string()),
                None => {
                    errors.push(format!("{param}: value without key, but schema does not define a default key"));
                    continue;
                }
            },
        };
        let Some(schema) = keys.get(&key) else {
            errors.push(format!("{param}.{key}: {NOT_IN_SCHEMA}"));
            continue;
        };
        let (key, val) = match (schema["alias"].as_str(), schema["keyAlias"].as_str()) {
            (Some(alias), Some(key_alias)) => {
                insert(&mut given, &mut errors, param, key_alias, key.clone());
                (alias.to_string(), val)
            }
            (Some(alias), None) => (alias.to_string(), val),
            _ => (key, val),
        };
        insert(&mut given, &mut errors, param, &key, val);
    }
    for (key, val) in &given {
        if let Some(schema) = keys.get(key)
            && let Err(e) = check_value(contract, &format!("{param}.{key}"), val, schema, false, true)
        {
            errors.push(format!("{param}.{key}: {e}"));
        }
    }
    for (key, schema) in keys {
        let optional = schema["optional"].as_bool().unwrap_or(false) || schema["optional"].as_u64() == Some(1);
        if schema["alias"].is_null() && !optional && !given.contains_key(key) {
            errors.push(format!("{param}.{key}: {MISSING}"));
        }
        if let Some(required) = schema["requires"].as_str()
            && given.contains_key(key)
            && !given.contains_key(required)
        {
            errors.push(format!("{param}.{required}: missing property required by '{key}'"));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn insert(given: &mut BTreeMap<String, String>, errors: &mut Vec<String>, param: &str, key: &str, val: String) {
    if given.insert(key.to_string(), val).is_some() {
        errors.push(format!("{param}.{key}: duplicate key in comma-separated list property"));
    }
}
