//! The Proxmox API contract (`contract/endpoints.json`, embedded): endpoint lookup by method
//! and path, and parameter validation with Proxmox's exact error texts. `pve-sim` refuses
//! every request this rejects, so a client that passes the simulator passes Proxmox's
//! schema checks too.

mod formats;
mod property_string;
mod validate;

pub use validate::{ParamErrors, Params};

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const ENDPOINTS_JSON: &str = include_str!("../../../contract/endpoints.json");

/// One endpoint of the schema.
#[derive(Debug)]
pub struct Endpoint {
    pub id: String,
    pub method: String,
    pub path: String,
    segments: Vec<Segment>,
    pub is_async: bool,
    pub task_type: Option<String>,
    pub parameters: BTreeMap<String, Value>,
    pub additional_properties: bool,
    /// The endpoint's `permissions` (`check` is evaluated for privilege-separated tokens).
    pub permissions: Value,
    /// `x-path-rest`: the last path parameter takes the rest of the path, `/`s included
    /// (a subclass registered with `fragmentDelimiter => ''`: pve-common
    /// `src/PVE/RESTHandler.pm` map_path_to_methods, 413-424, joins the remaining
    /// fragments; pve-firewall `src/PVE/API2/Firewall/IPSet.pm` 763-768 does so for
    /// `ipset/{name}`, "because CIDR address contain a slash").
    pub rest_param: bool,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug)]
pub struct Contract {
    pub endpoints: Vec<Endpoint>,
    pub formats: BTreeMap<String, Value>,
}

impl Contract {
    /// The embedded contract, parsed once.
    pub fn get() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(|| Contract::parse(ENDPOINTS_JSON))
    }

    fn parse(text: &str) -> Contract {
        // The file is part of the build; a parse failure is a build defect caught by tests.
        let root: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let formats = root["formats"].as_object().map(|m| m.clone().into_iter().collect()).unwrap_or_default();
        let endpoints = root["endpoints"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        let path = e["path"].as_str().unwrap_or_default().to_string();
                        Endpoint {
                            id: e["id"].as_str().unwrap_or_default().to_string(),
                            method: e["method"].as_str().unwrap_or_default().to_string(),
                            segments: path
                                .split('/')
                                .filter(|s| !s.is_empty())
                                .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                                    Some(name) => Segment::Param(name.to_string()),
                                    None => Segment::Literal(s.to_string()),
                                })
                                .collect(),
                            path,
                            is_async: e["async"].as_bool().unwrap_or(false),
                            task_type: e["task"]["upid_type"].as_str().map(str::to_string),
                            parameters: e["parameters"]
                                .as_object()
                                .map(|m| m.clone().into_iter().collect())
                                .unwrap_or_default(),
                            additional_properties: e["additionalProperties"].as_bool().unwrap_or(false),
                            permissions: e["permissions"].clone(),
                            rest_param: e["x-path-rest"].is_string(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Contract { endpoints, formats }
    }

    /// The endpoint for `method` and a concrete `path` (relative to `/api2/json`), with the
    /// path parameters it captured (percent-decoded).
    pub fn find(&self, method: &str, path: &str) -> Option<(&Endpoint, BTreeMap<String, String>)> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        'endpoints: for endpoint in self.endpoints.iter().filter(|e| e.method == method) {
            let n = endpoint.segments.len();
            if n != parts.len() && !(endpoint.rest_param && parts.len() > n) {
                continue;
            }
            let mut captured = BTreeMap::new();
            for (i, segment) in endpoint.segments.iter().enumerate() {
                let part = if i + 1 == n && endpoint.rest_param {
                    parts[i..].iter().map(|p| percent_decode(p)).collect::<Vec<_>>().join("/")
                } else {
                    percent_decode(parts[i])
                };
                match segment {
                    Segment::Literal(lit) if *lit == part => {}
                    Segment::Literal(_) => continue 'endpoints,
                    Segment::Param(name) => {
                        captured.insert(name.clone(), part);
                    }
                }
            }
            return Some((endpoint, captured));
        }
        None
    }

    /// Validates every parameter (path parameters included) as Proxmox does: all errors are
    /// returned together, one per parameter, with Proxmox's texts.
    pub fn validate(
        &self,
        endpoint: &Endpoint,
        path_params: &BTreeMap<String, String>,
        params: &Params,
    ) -> Result<(), ParamErrors> {
        validate::validate(self, endpoint, path_params, params)
    }
}

/// UPIDs and volume ids travel percent-encoded in paths; decoded as the client encodes.
pub use agentlab_proxmox::transport::percent_decode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_contract_has_every_endpoint() {
        let contract = Contract::get();
        assert_eq!(contract.endpoints.len(), 104);
        assert!(contract.formats.contains_key("pve-vmid"));
    }

    #[test]
    fn finds_endpoints_and_captures_path_parameters() {
        let contract = Contract::get();
        let (endpoint, params) =
            contract.find("POST", "/nodes/pve1/qemu/9000/clone").unwrap_or_else(|| panic!("clone not found"));
        assert_eq!(endpoint.id, "POST /nodes/{node}/qemu/{vmid}/clone");
        assert!(endpoint.is_async);
        assert_eq!(endpoint.task_type.as_deref(), Some("qmclone"));
        assert_eq!(params.get("node").map(String::as_str), Some("pve1"));
        assert_eq!(params.get("vmid").map(String::as_str), Some("9000"));
        let (_, params) = contract
            .find("GET", "/nodes/pve1/tasks/UPID%3Apve1%3A00000001%3A/status")
            .unwrap_or_else(|| panic!("task status not found"));
        assert_eq!(params.get("upid").map(String::as_str), Some("UPID:pve1:00000001:"));
        assert!(contract.find("GET", "/nodes/pve1/qemu/100/bogus").is_none());
        // An IP set member's CIDR takes the rest of the path, raw or encoded.
        for path in
            ["/cluster/firewall/ipset/agent_allow/10.0.0.0/8", "/cluster/firewall/ipset/agent_allow/10.0.0.0%2F8"]
        {
            let (endpoint, params) = contract.find("DELETE", path).unwrap_or_else(|| panic!("{path} not found"));
            assert_eq!(endpoint.id, "DELETE /cluster/firewall/ipset/{name}/{cidr}");
            assert_eq!(params.get("cidr").map(String::as_str), Some("10.0.0.0/8"));
        }
        assert!(contract.find("GET", "/cluster/firewall/groups/g/0/1").is_none(), "only IP set paths do so");
        assert!(contract.find("PATCH", "/version").is_none());
    }
}
