//! `GET /v1/openapi.json`: the control API's OpenAPI 3 document, served by the daemon, and
//! every operation it lists answered by a route (no `route_not_found`/`method_not_allowed`).
//! The unit test beside the router checks the other direction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentlab_e2e::Workspace;
use std::process::Command;

/// `curl` over the control socket: (HTTP status, body).
fn call(ws: &Workspace, method: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-X", method, "--unix-socket"])
        .arg(ws.socket())
        .args(["-H", "content-type: application/json", "-w", "\n%{http_code}"])
        .args(if method == "GET" { vec![] } else { vec!["--data", "{}"] })
        .arg(format!("http://agentlab{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn the_daemon_serves_its_openapi_document_and_every_operation_in_it() {
    let ws = Workspace::new();
    let _daemon = ws.start_daemon();
    let (status, body) = call(&ws, "GET", "/v1/openapi.json");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/status") && paths.contains_key("/v1/jobs/{id}"), "{paths:?}");

    let mut checked = 0;
    for (path, item) in paths {
        // Parameters get values that name nothing: the route must still be found.
        let concrete = path.replace("{vmid}", "1999").replace("{action}", "start").replace("{id}", "job_none");
        let concrete = concrete.replace("{name}", "none").replace("{key}", "NONE");
        for method in item.as_object().unwrap().keys() {
            let (status, body) = call(&ws, &method.to_uppercase(), &concrete);
            assert!(status != 0, "{method} {concrete}: no answer");
            assert!(
                !body.contains("route_not_found") && !body.contains("method_not_allowed"),
                "{method} {concrete} is documented but not routed: {status} {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations checked");
}
