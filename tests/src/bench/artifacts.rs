//! `artifacts`: one big upload through the guest listener (the bench plays the guest, with
//! the job's real artifact token) and its download through the CLI, with the daemon's
//! resident memory before and at its peak.

use super::{Run, against, round, rss_mib, timed};
use crate::jobs::JobBench;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// The upload and download, with the artifacts (and the download) on the workspace's disk,
/// then on tmpfs (`/dev/shm`, when it has room): the disk's own write speed bounds the
/// first; the second is the daemon's and the CLI's path alone.
pub fn artifacts(run: Run) -> Value {
    let bytes = run.count(1024, 128) as u64 * 1024 * 1024;
    let disk = measure(bytes, None);
    let shm = std::path::Path::new("/dev/shm");
    let room = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(shm)
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1).and_then(|l| l.trim().parse::<u64>().ok()));
    let tmpfs = if room.is_some_and(|r| r > 3 * bytes) {
        let dir = tempfile::tempdir_in(shm).expect("a directory on /dev/shm");
        let figures = measure(bytes, Some(dir.path()));
        drop(dir);
        figures
    } else {
        json!({"skipped": "/dev/shm is missing or too small"})
    };
    let rate = tmpfs["upload_mb_per_s"].as_f64().or(disk["upload_mb_per_s"].as_f64()).unwrap_or(0.0);
    let growth = disk["daemon_rss_growth_mib"]
        .as_f64()
        .unwrap_or(f64::MAX)
        .max(tmpfs["daemon_rss_growth_mib"].as_f64().unwrap_or(0.0));
    json!({
        "scenario": "artifacts",
        "bytes": bytes,
        "disk": disk,
        "tmpfs": tmpfs,
        "targets": {
            "upload_mb_per_s": against(rate, ">= 500 (tmpfs: the daemon's path, not the disk)", rate >= 500.0),
            "rss_growth_mib": against(growth, "<= 32", growth <= 32.0),
        },
    })
}

fn measure(bytes: u64, artifact_dir: Option<&std::path::Path>) -> Value {
    let mut config = format!("artifact_max_bytes: {bytes}\nartifact_max_total_bytes: {}\n", 2 * bytes);
    if let Some(dir) = artifact_dir {
        config.push_str(&format!("artifact_dir: {}\n", dir.join("artifacts").display()));
    }
    let bench = JobBench::test_plays_the_guest(&config);
    let daemon = bench.ws.spawn_daemon(&[("AGENTLAB_LOG", "info")]);
    assert!(crate::eventually(Duration::from_secs(30), || std::os::unix::net::UnixStream::connect(bench.ws.socket())
        .is_ok()));
    let id = bench.start_job("sleep", 60, &[]);
    let ready = crate::eventually(Duration::from_secs(60), || {
        bench.job(&id)["timeline"].as_array().is_some_and(|t| t.iter().any(|p| p["phase"] == "sandbox_ready"))
    });
    assert!(ready, "the job's sandbox did not come up");
    let vmid = bench.job(&id)["sandbox_vmid"].as_u64().unwrap_or(0);
    let fetch = format!("http://127.0.0.1:{}/v1/bootstrap/fetch", bench.bootstrap_port);
    let body = json!({"token": bench.bootstrap_token(vmid), "vmid": vmid}).to_string();
    let (code, text) = crate::guest_post(&fetch, None, body.as_bytes(), "application/json");
    assert_eq!(code, 200, "{text}");
    let payload: Value = serde_json::from_str(&text).unwrap_or_default();
    let endpoint = payload["artifact"]["endpoint"].as_str().unwrap_or_default().to_string();
    let token = payload["artifact"]["token"].as_str().unwrap_or_default().to_string();

    // A file of that size (sparse: reading it costs the page cache, not the disk).
    let file = bench.ws.path().join("big.bin");
    std::fs::File::create(&file).and_then(|f| f.set_len(bytes)).expect("the upload file");
    let pid = daemon.pid();
    let (rss_before, _) = rss_mib(pid);
    let (out, upload) = timed(|| {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/octet-stream",
            ])
            .args(["-H", &format!("Authorization: Bearer {token}"), "-T"])
            .arg(&file)
            .arg(format!("{endpoint}?path=big.bin"))
            .output()
            .expect("curl")
    });
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(status, "201", "the upload was refused");
    let (_, rss_peak) = rss_mib(pid);
    std::fs::remove_file(&file).ok();
    let dest = artifact_dir.unwrap_or(bench.ws.path()).join("downloaded.bin");
    let (got, download) = timed(|| {
        let dest = dest.display().to_string();
        bench.ws.cli(&["job", "artifacts", "download", &id, "--name", "big.bin", "--out", &dest])
    });
    assert_eq!(got.code, 0, "{got:?}");
    let downloaded = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    std::fs::remove_file(&dest).ok();
    let mb = bytes as f64 / 1_000_000.0;
    let up_rate = mb / upload.as_secs_f64();
    let growth = rss_peak - rss_before;
    json!({
        "upload_seconds": round(upload.as_secs_f64(), 3),
        "upload_mb_per_s": round(up_rate, 1),
        "daemon_rss_before_mib": round(rss_before, 1),
        "daemon_rss_peak_mib": round(rss_peak, 1),
        "daemon_rss_growth_mib": round(growth, 1),
        "download_seconds": round(download.as_secs_f64(), 3),
        "download_mb_per_s": round(mb / download.as_secs_f64(), 1),
        "downloaded_bytes": downloaded,
    })
}
