//! `metrics_listen`: Prometheus's view of a job. Scraped before and after a whole job
//! against the simulator, the counters and gauges that job touches must have moved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentlab_e2e::jobs::{JobBench, free_port};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// `GET /metrics` over a plain socket: (content type, body).
fn scrape(port: u16) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    (content_type, dechunk(body))
}

/// The body of a `Transfer-Encoding: chunked` answer, or the body as it is.
fn dechunk(body: &str) -> String {
    if body.ends_with("# EOF\n") {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

/// Series name with labels → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap())))
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[test]
fn a_job_moves_the_counters_prometheus_scrapes() {
    let port = free_port();
    let bench = JobBench::with_runner_config(&format!("metrics_listen: 127.0.0.1:{port}\n"));
    let _daemon = bench.ws.start_daemon();
    // The control socket is bound first; the metrics port a moment later.
    let open = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(agentlab_e2e::eventually(std::time::Duration::from_secs(20), open), "metrics port never opened");

    let (content_type, text) = scrape(port);
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    for family in [
        "agentlab_sandboxes_created",
        "agentlab_gateway_queue_depth",
        "agentlab_artifact_disk_bytes",
        "agentlab_free_bytes",
        "agentlab_jobs_duration_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing:\n{text}");
    }
    let before = samples(&text);

    let out = bench.run_job("main", 60, &["--follow"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", bench.guest_logs());

    let (_, text) = scrape(port);
    let after = samples(&text);
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(moved("agentlab_jobs_total{status=\"COMPLETED\"}"), 1.0, "{text}");
    assert_eq!(moved("agentlab_sandboxes_created_total"), 1.0, "{text}");
    assert_eq!(moved("agentlab_bootstrap_fetches_total{outcome=\"ok\"}"), 1.0, "{text}");
    assert_eq!(moved("agentlab_jobs_duration_seconds_count"), 1.0, "{text}");
    assert!(moved("agentlab_proxmox_request_duration_seconds_count{operation=\"clone\"}") >= 1.0, "{text}");
    assert!(moved("agentlab_artifact_uploaded_bytes_total") > 0.0, "{text}");
    assert!(value(&after, "agentlab_artifact_disk_bytes") > 0.0, "{text}");
    assert_eq!(value(&after, "agentlab_gateway_queue_depth"), 0.0, "nothing waits once the job is done: {text}");
    assert!(after.keys().any(|k| k.starts_with("agentlab_sandboxes_total{state=")), "sandboxes by state: {text}");

    // A guest refused: a fetch with a token that was never issued counts by its code.
    let url = format!("http://127.0.0.1:{}/v1/bootstrap/fetch", bench.bootstrap_port);
    let (status, _) = agentlab_e2e::guest_post(&url, None, br#"{"token":"nope","vmid":1000}"#, "application/json");
    assert!(status >= 400, "{status}");
    let after_refusal = samples(&scrape(port).1);
    let refused: f64 = after_refusal
        .iter()
        .filter(|(k, _)| k.starts_with("agentlab_guest_refusals_total{"))
        .map(|(_, v)| *v)
        .sum::<f64>()
        - after.iter().filter(|(k, _)| k.starts_with("agentlab_guest_refusals_total{")).map(|(_, v)| *v).sum::<f64>();
    assert_eq!(refused, 1.0, "{after_refusal:?}");
    let fetch_refusals: f64 = after_refusal
        .iter()
        .filter(|(k, _)| k.starts_with("agentlab_bootstrap_fetches_total{") && !k.contains("\"ok\""))
        .map(|(_, v)| *v)
        .sum();
    assert!(fetch_refusals >= 1.0, "{after_refusal:?}");
}
