//! `pool`: a claim from the warm pool against a cold create, in the same run.

use super::sandboxes::{cold_ideal_seconds, create};
use super::{Rig, Run, against, median_p95, round, timed};
use serde_json::{Value, json};
use std::time::Duration;

pub fn pool(run: Run) -> Value {
    let size = run.count(10, 3);
    let profile = format!(
        "name: bench-pooled\ntemplate_vmid: 9000\nresources:\n  cores: 1\n  memory_mb: 512\npool:\n  size: {size}\n"
    );
    let rig = Rig::start(run, "pool_refill_concurrency: 2\npool_check_interval: 5s\n", &profile);
    let ready = || {
        let status = rig.ws.cli(&["--json", "pool", "status"]).json();
        status["profiles"][0]["ready"].as_u64().unwrap_or(0)
    };
    let (filled, fill) = timed(|| crate::eventually(Duration::from_secs(3600), || ready() == size as u64));
    assert!(filled, "the pool did not fill");
    let mut failures = Vec::new();
    let mut claims = Vec::new();
    for _ in 0..size {
        let (got, took) = timed(|| create(&rig, "bench-pooled"));
        match got {
            Ok(_) => claims.push(took.as_secs_f64() * 1000.0),
            Err(e) => failures.push(e),
        }
    }
    let mut colds = Vec::new();
    for _ in 0..run.count(3, 2) {
        let (got, took) = timed(|| create(&rig, "bench"));
        match got {
            Ok(_) => colds.push(took.as_secs_f64() * 1000.0),
            Err(e) => failures.push(e),
        }
    }
    let (claim_median, claim_p95) = median_p95(&mut claims);
    let (cold_median, _) = median_p95(&mut colds);
    let measured = failures.is_empty() && !claims.is_empty() && !colds.is_empty();
    let speedup = if claim_median > 0.0 { cold_median / claim_median } else { 0.0 };
    json!({
        "scenario": "pool",
        "pool_size": size,
        "latency_factor": run.factor,
        "failures": failures,
        "fill_seconds": round(fill.as_secs_f64(), 2),
        "claim_ms": {"median": round(claim_median, 1), "p95": round(claim_p95, 1)},
        "cold_create_ms": {"median": round(cold_median, 1)},
        "cold_ideal_ms": round(cold_ideal_seconds(run) * 1000.0, 1),
        "speedup": round(speedup, 1),
        "targets": {
            "claim_median_ms": against(round(claim_median, 1), "<= 150", measured && claim_median <= 150.0),
            "speedup": against(round(speedup, 1), ">= 100 (at latency factor 1)", measured && speedup >= 100.0),
        },
    })
}
