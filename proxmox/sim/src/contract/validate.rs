//! Parameter validation in Proxmox's order and words (pve-common JSONSchema.pm): per
//! parameter type → format → pattern → maxLength → minLength → maximum → minimum → enum;
//! the first failure wins per parameter; all parameters are checked and reported together.

use super::{Contract, Endpoint, formats, property_string};
use serde_json::Value;
use std::collections::BTreeMap;

/// Parameters of one request, as strings. Form and query encodings repeat a key for arrays;
/// a JSON body's values are turned into strings (`json` remembers that booleans may then
/// be `true`/`false`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub values: BTreeMap<String, Vec<String>>,
    pub json: bool,
}

impl Params {
    pub fn first(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        self.values.entry(name.to_string()).or_default().push(value.into());
    }

    /// From `a=1&b=2&b=3` (query string or form body).
    pub fn from_urlencoded(text: &str) -> Params {
        let mut params = Params::default();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(&form_decode(k), form_decode(v));
        }
        params
    }

    /// From a JSON object body; arrays become repeated values.
    pub fn from_json(value: &Value) -> Option<Params> {
        let object = value.as_object()?;
        let mut params = Params { json: true, ..Params::default() };
        for (k, v) in object {
            match v {
                Value::Array(items) => items.iter().for_each(|i| params.insert(k, scalar(i))),
                other => params.insert(k, scalar(other)),
            }
        }
        Some(params)
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn form_decode(s: &str) -> String {
    super::percent_decode(&s.replace('+', " "))
}

/// Parameter name → Proxmox's error text.
pub type ParamErrors = BTreeMap<String, String>;

pub const NOT_IN_SCHEMA: &str = "property is not defined in schema and the schema does not allow additional properties";
pub const MISSING: &str = "property is missing and it is not optional";

pub(super) fn validate(
    contract: &Contract,
    endpoint: &Endpoint,
    path_params: &BTreeMap<String, String>,
    params: &Params,
) -> Result<(), ParamErrors> {
    let mut errors = ParamErrors::new();
    let mut all = params.values.clone();
    for (name, value) in path_params {
        if let Some(given) = params.values.get(name)
            && given.iter().any(|g| g != value)
        {
            errors.insert(name.clone(), "duplicate parameter (already defined in URI) with conflicting values!".into());
        }
        all.insert(name.clone(), vec![value.clone()]);
    }
    for (name, values) in &all {
        if errors.contains_key(name) {
            continue;
        }
        match schema_for(endpoint, name) {
            None if !endpoint.additional_properties => {
                errors.insert(name.clone(), NOT_IN_SCHEMA.into());
            }
            None => {}
            Some(schema) => {
                if let Err(e) = check_param(contract, name, values, schema, params.json) {
                    errors.insert(name.clone(), e);
                }
            }
        }
    }
    for (name, schema) in &endpoint.parameters {
        let optional = schema["optional"].as_bool().unwrap_or(false);
        if !optional && !name.contains("[n]") && !all.contains_key(name) {
            errors.insert(name.clone(), MISSING.into());
        }
        if let Some(required) = schema["requires"].as_str()
            && all.contains_key(name)
            && !all.contains_key(required)
        {
            errors.entry(required.to_string()).or_insert_with(|| format!("missing property required by '{name}'"));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The schema of `name`: exact, or an indexed family such as `net[n]` for `net0`.
pub(super) fn schema_for<'a>(endpoint: &'a Endpoint, name: &str) -> Option<&'a Value> {
    if let Some(schema) = endpoint.parameters.get(name) {
        return (!name.contains("[n]")).then_some(schema);
    }
    let split = name.find(|c: char| c.is_ascii_digit())?;
    let (prefix, index) = name.split_at(split);
    let index: u64 = index.parse().ok()?;
    let schema = endpoint.parameters.get(&format!("{prefix}[n]"))?;
    let range = &schema["x-indexed"];
    let (min, max) = (range["min"].as_u64().unwrap_or(0), range["max"].as_u64().unwrap_or(0));
    (min..=max).contains(&index).then_some(schema)
}

fn check_param(contract: &Contract, name: &str, values: &[String], schema: &Value, json: bool) -> Result<(), String> {
    let kind = schema["type"].as_str().unwrap_or("string");
    if kind == "array" {
        let items = &schema["items"];
        for value in values {
            check_value(contract, name, value, items, json, false)?;
        }
        return Ok(());
    }
    match values {
        [single] => check_value(contract, name, single, schema, json, false),
        _ => Err(format!("type check ('{kind}') failed - got ARRAY")),
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// One value against one schema. `in_property_string` relaxes booleans as Proxmox does.
pub(super) fn check_value(
    contract: &Contract,
    name: &str,
    value: &str,
    schema: &Value,
    json: bool,
    in_property_string: bool,
) -> Result<(), String> {
    let kind = schema["type"].as_str().unwrap_or("string");
    match kind {
        "boolean" => {
            let ok = match value {
                "0" | "1" => true,
                "true" | "false" => json || in_property_string,
                "on" | "off" | "yes" | "no" => in_property_string,
                _ => false,
            };
            if !ok {
                return Err(format!("type check ('boolean') failed - got '{value}'"));
            }
        }
        "integer" if !formats::is_integer(value) => {
            return Err(format!("type check ('integer') failed - got '{value}'"));
        }
        "number" if !formats::is_number(value) => {
            return Err(format!("type check ('number') failed - got '{value}'"));
        }
        _ => {}
    }
    match &schema["format"] {
        Value::String(format) => {
            formats::check(contract, format, value).map_err(|e| format!("invalid format - {e}"))?;
        }
        Value::Object(keys) => {
            property_string::check(contract, name, value, keys).map_err(|lines| {
                let mut text = String::from("invalid format - format error\n");
                for line in lines {
                    text.push_str(&line);
                    text.push('\n');
                }
                text
            })?;
        }
        _ => {}
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        let anchored = format!("^(?:{pattern})$");
        if !regex::Regex::new(&anchored).is_ok_and(|re| re.is_match(value)) {
            return Err("value does not match the regex pattern".into());
        }
    }
    let length = value.chars().count() as u64;
    if let Some(max) = number(&schema["maxLength"])
        && length > max as u64
    {
        return Err(format!("value may only be {max} characters long"));
    }
    if let Some(min) = number(&schema["minLength"])
        && length < min as u64
    {
        return Err(format!("value must be at least {min} characters long"));
    }
    if matches!(kind, "integer" | "number") {
        let v: f64 = value.parse().unwrap_or(0.0);
        if let Some(max) = number(&schema["maximum"])
            && v > max
        {
            return Err(format!("value must have a maximum value of {max}"));
        }
        if let Some(min) = number(&schema["minimum"])
            && v < min
        {
            return Err(format!("value must have a minimum value of {min}"));
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        let names: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
        if !names.contains(&value) {
            return Err(format!("value '{value}' does not have a value in the enumeration '{}'", names.join(", ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, path: &str, query: &str) -> Result<(), ParamErrors> {
        let contract = Contract::get();
        let (endpoint, path_params) = contract.find(method, path).unwrap_or_else(|| panic!("{method} {path}"));
        contract.validate(endpoint, &path_params, &Params::from_urlencoded(query))
    }

    fn error_of(result: Result<(), ParamErrors>, param: &str) -> String {
        result.err().and_then(|e| e.get(param).cloned()).unwrap_or_else(|| "no error".into())
    }

    #[test]
    fn a_good_clone_passes() {
        assert_eq!(
            check("POST", "/nodes/pve/qemu/9000/clone", "newid=1001&name=sbx-1001&full=0&description=x"),
            Ok(())
        );
    }

    #[test]
    fn unknown_parameters_and_true_instead_of_1_are_refused() {
        let result = check("POST", "/nodes/pve/qemu/9000/clone", "newid=1001&full=true&bogus=1");
        assert_eq!(error_of(result.clone(), "full"), "type check ('boolean') failed - got 'true'");
        assert_eq!(error_of(result, "bogus"), NOT_IN_SCHEMA);
    }

    #[test]
    fn missing_and_out_of_range_values_use_proxmox_texts() {
        assert_eq!(error_of(check("POST", "/nodes/pve/qemu/9000/clone", ""), "newid"), MISSING);
        assert_eq!(
            error_of(check("POST", "/nodes/pve/qemu/9000/clone", "newid=99"), "newid"),
            "invalid format - value does not look like a valid VM ID"
        );
        assert_eq!(
            error_of(check("POST", "/nodes/pve/qemu/9000/clone", "newid=1001&format=vhd"), "format"),
            "value 'vhd' does not have a value in the enumeration 'raw, qcow2, vmdk'"
        );
    }

    #[test]
    fn fwgroup_is_not_a_net0_property() {
        let ok = check("POST", "/nodes/pve/qemu/1001/config", "net0=virtio%2Cbridge%3Dvmbr1%2Cfirewall%3D1");
        assert_eq!(ok, Ok(()));
        let bad =
            check("POST", "/nodes/pve/qemu/1001/config", "net0=virtio%2Cbridge%3Dvmbr1%2Cfwgroup%3Dagent_nat_default");
        let text = error_of(bad, "net0");
        assert!(text.starts_with("invalid format - format error\nnet0.fwgroup: property is not defined"), "{text}");
    }

    #[test]
    fn indexed_keys_are_accepted_only_in_range() {
        assert_eq!(check("POST", "/nodes/pve/qemu/1001/config", "scsi1=local-lvm%3A8"), Ok(()));
        assert_eq!(error_of(check("POST", "/nodes/pve/qemu/1001/config", "net32=virtio"), "net32"), NOT_IN_SCHEMA);
        assert_eq!(
            error_of(check("POST", "/nodes/pve/qemu/1001/config", "net%5Bn%5D=virtio"), "net[n]"),
            NOT_IN_SCHEMA
        );
    }

    #[test]
    fn group_names_are_capped_at_18_characters() {
        let text = error_of(check("POST", "/cluster/firewall/groups", "group=agent_nat_allowlist"), "group");
        assert_eq!(text, "value may only be 18 characters long");
        assert_eq!(check("POST", "/cluster/firewall/groups", "group=agent_nat_allow"), Ok(()));
    }

    #[test]
    fn snippets_cannot_be_uploaded() {
        let text =
            error_of(check("POST", "/nodes/pve/storage/local/upload", "content=snippets&filename=a.yaml"), "content");
        assert!(text.starts_with("value 'snippets' does not have a value in the enumeration"), "{text}");
    }

    #[test]
    fn conflicting_path_and_body_parameters_are_refused() {
        let text = error_of(check("POST", "/nodes/pve/qemu/9000/clone", "newid=1001&vmid=9001"), "vmid");
        assert_eq!(text, "duplicate parameter (already defined in URI) with conflicting values!");
    }

    #[test]
    fn json_bodies_may_use_true_and_arrays() {
        let contract = Contract::get();
        let (endpoint, path) = contract.find("POST", "/nodes/pve/qemu/9000/clone").unwrap_or_else(|| panic!());
        let params = Params::from_json(&serde_json::json!({"newid": 1001, "full": true})).unwrap_or_default();
        assert_eq!(contract.validate(endpoint, &path, &params), Ok(()));
        let (endpoint, path) = contract.find("POST", "/nodes/pve/qemu/101/agent/exec").unwrap_or_else(|| panic!());
        let params = Params::from_json(&serde_json::json!({"command": ["/bin/sh", "-c", "id"]})).unwrap_or_default();
        assert_eq!(contract.validate(endpoint, &path, &params), Ok(()));
    }
}
