//! A hostile guest against a real `agentlabd` through its real guest listener
//! (`../shared/reference/security-findings.md`): the test plays the guest, holding the
//! runner and artifact tokens a compromised VM would hold, and prints the figures it saw.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use agentlab_e2e::eventually;
use agentlab_e2e::jobs::JobBench;
use std::process::Command;
use std::time::Duration;

use agentlab_e2e::guest_post as call;

/// The guest's side of one job: its ids and the tokens a compromised VM holds.
struct Guest {
    job: String,
    vmid: u64,
    runner_token: String,
    artifact_token: String,
    report_url: String,
    upload_url: String,
}

impl Guest {
    /// Starts a job and fetches its bootstrap payload with the token from its snippet.
    fn start(bench: &JobBench) -> Guest {
        Guest::start_for(bench, 60)
    }

    /// The same with a TTL in minutes (scaled by the bench's `test_time_scale`).
    fn start_for(bench: &JobBench, ttl_minutes: u32) -> Guest {
        let job = bench.start_job("main", ttl_minutes, &[]);
        let ready = eventually(Duration::from_secs(60), || {
            bench.job(&job)["timeline"].as_array().is_some_and(|t| t.iter().any(|p| p["phase"] == "sandbox_ready"))
        });
        assert!(ready, "{}", bench.job(&job));
        let vmid = bench.job(&job)["sandbox_vmid"].as_u64().unwrap_or(0);
        let token = bench.bootstrap_token(vmid);
        let guest = format!("http://127.0.0.1:{}", bench.bootstrap_port);
        let body = serde_json::json!({"token": token, "vmid": vmid}).to_string();
        let (code, payload) = call(&format!("{guest}/v1/bootstrap/fetch"), None, body.as_bytes(), "application/json");
        assert_eq!(code, 200, "{payload}");
        let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
        Guest {
            job,
            vmid,
            runner_token: payload["runner_token"].as_str().unwrap_or_default().to_string(),
            artifact_token: payload["artifact"]["token"].as_str().unwrap_or_default().to_string(),
            report_url: format!("{guest}/v1/runner/report"),
            upload_url: payload["artifact"]["endpoint"].as_str().unwrap_or_default().to_string(),
        }
    }

    fn report(&self, status: &str, log: Option<&str>, offset: Option<u64>) -> (u16, String) {
        let mut body = serde_json::json!({"job_id": self.job, "vmid": self.vmid, "status": status});
        if let Some(log) = log {
            body["log"] = log.into();
            body["log_offset"] = offset.unwrap_or(0).into();
        }
        if status == "COMPLETED" {
            body["exit_code"] = 0.into();
        }
        call(&self.report_url, Some(&self.runner_token), body.to_string().as_bytes(), "application/json")
    }

    fn upload(&self, path: &str, body: &[u8]) -> (u16, String) {
        call(&format!("{}?path={path}", self.upload_url), Some(&self.artifact_token), body, "application/octet-stream")
    }
}

fn db_bytes(bench: &JobBench) -> u64 {
    ["data/agentlab.db", "data/agentlab.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(bench.ws.path().join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// F1, F16: a report flood is rate-limited per job, one report carries at most 64 KiB of
/// log, the stored log stops at `job_log_max_bytes` with one marker, and a bogus offset is
/// refused.
#[test]
fn a_report_flood_is_limited_and_the_stored_log_is_capped() {
    let bench = JobBench::test_plays_the_guest(
        "job_log_max_bytes: 300000\nreport_rate_limit_qps: 20\nreport_rate_limit_burst: 20\n",
    );
    let _daemon = bench.ws.start_daemon();
    let guest = Guest::start(&bench);
    let (code, body) = guest.report("RUNNING", Some(&"x".repeat(256 * 1024 + 1)), Some(0));
    assert_eq!(code, 413, "a log piece over 256 KiB of text: {body}");
    let (code, body) = guest.report("RUNNING", Some("x"), Some(u64::MAX));
    assert_eq!(code, 400, "an offset far past the log (F16): {body}");

    let before = db_bytes(&bench);
    let chunk = "y".repeat(60 * 1024);
    let (mut offset, mut accepted, mut limited) = (0u64, 0, 0);
    let deadline = std::time::SystemTime::now() + Duration::from_secs(10);
    while std::time::SystemTime::now() < deadline {
        match guest.report("RUNNING", Some(&chunk), Some(offset)).0 {
            200 => {
                accepted += 1;
                offset += chunk.len() as u64;
            }
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    let growth = db_bytes(&bench).saturating_sub(before);
    println!(
        "report flood, 10 s: {accepted} accepted ({} KiB sent), {limited} refused with 429; database grew {} KiB (job_log_max_bytes 293 KiB)",
        offset / 1024,
        growth / 1024
    );
    assert!(limited > 0, "the per-job limit must refuse some");
    assert!(offset > 300_000, "the flood sent more than the cap ({offset} bytes)");
    let events = bench.ws.cli(&["--json", "logs", &guest.job, "--tail", "1000"]).stdout;
    let stored: usize = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "job.log")
        .map(|e| e["msg"].as_str().unwrap_or_default().len())
        .sum();
    assert!(stored <= 300_000, "stored {stored} bytes of log");
    assert_eq!(events.matches("job.log.truncated").count(), 1, "one marker");
    assert!(growth < 2 * 1024 * 1024, "database grew {growth} bytes");
    // The job ran on (once its bucket refilled).
    assert!(eventually(Duration::from_secs(5), || guest.report("RUNNING", None, None).0 == 200));
}

/// F2, F8, F18: a stored artifact is never replaced (the same bytes again are accepted as a
/// retry), names with bidi or control characters are refused, and after the job ends the
/// artifact token no longer works: the bundle's SHA-256 is unchanged.
#[test]
fn artifacts_are_immutable_and_the_token_dies_with_the_job() {
    let bench = JobBench::test_plays_the_guest("");
    let _daemon = bench.ws.start_daemon();
    let guest = Guest::start(&bench);
    let (code, body) = guest.upload("agentlab-artifacts.tar.gz", b"the real bundle");
    assert_eq!(code, 201, "{body}");
    let (code, _) = guest.upload("agentlab-artifacts.tar.gz", b"the real bundle");
    assert_eq!(code, 200, "a retry of the same bytes");
    let (code, body) = guest.upload("agentlab-artifacts.tar.gz", b"replaced bundle!");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("v1/artifact/exists"), "{body}");
    let (code, body) = guest.upload("evil%E2%80%AEgpj.sh", b"x");
    assert_eq!(code, 400, "a bidi override in a name: {body}");

    assert_eq!(guest.report("COMPLETED", None, None).0, 200);
    let listed = bench.ws.cli(&["--json", "job", "artifacts", &guest.job]).json();
    let sha_before = listed.to_string();
    let (code, body) = guest.upload("late.txt", b"late artifact body");
    assert!(code == 401 || code == 403, "after the end: {code} {body}");
    let (code, body) = guest.upload("agentlab-artifacts.tar.gz", b"replaced bundle!");
    assert!(code == 401 || code == 403, "after the end: {code} {body}");
    let listed = bench.ws.cli(&["--json", "job", "artifacts", &guest.job]).json();
    assert_eq!(listed.to_string(), sha_before, "the bundle is unchanged");
    let out = bench.ws.path().join("bundle.tgz");
    let download = bench.ws.cli(&["job", "artifacts", "download", &guest.job, "--out", &out.display().to_string()]);
    assert_eq!(download.code, 0, "{download:?}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the real bundle");
}

/// F3: a job cannot store more than its quota; below the free-space floor guest writes
/// get 507 while the CLI keeps working.
#[test]
fn a_guest_cannot_store_past_its_quota_or_the_free_space_floor() {
    let bench = JobBench::test_plays_the_guest("artifact_max_bytes: 100000\nartifact_max_total_bytes: 250000\n");
    let _daemon = bench.ws.start_daemon();
    let guest = Guest::start(&bench);
    let mut stored = 0;
    let mut refused = Vec::new();
    for i in 0..6 {
        let (code, body) = guest.upload(&format!("fill/{i}.bin"), &vec![b'z'; 90_000]);
        match code {
            201 => stored += 90_000,
            _ => refused.push((code, body)),
        }
    }
    println!("quota 250000 bytes: the guest stored {stored} bytes in 90000-byte uploads; {} refused", refused.len());
    assert_eq!(stored, 180_000);
    assert!(
        refused.iter().all(|(code, body)| *code == 413 && body.contains("v1/artifact/quota_exceeded")),
        "{refused:?}"
    );
    let on_disk: u64 = std::fs::read_dir(bench.ws.path().join("data/artifacts").join(&guest.job).join("fill"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert_eq!(on_disk, 180_000, "nothing of a refused upload is kept");
}

#[test]
fn below_the_free_space_floor_guest_writes_get_507_and_the_cli_works() {
    // A floor no disk meets.
    let bench = JobBench::test_plays_the_guest("min_free_bytes: 1000000000000000000\n");
    let _daemon = bench.ws.start_daemon();
    let guest = Guest::start(&bench);
    let (code, body) = guest.report("RUNNING", Some("some log\n"), Some(0));
    assert_eq!(code, 507, "{body}");
    let (code, body) = guest.upload("a.txt", b"abc");
    assert_eq!(code, 507, "{body}");
    assert!(!body.contains(&bench.ws.path().display().to_string()), "no host path in the answer: {body}");
    assert_eq!(bench.ws.cli(&["status"]).code, 0, "the CLI keeps working");
}

/// F7: escape sequences a guest writes into its log are shown, not obeyed; `--json` keeps
/// them as data.
#[test]
fn escape_sequences_in_a_guest_log_are_printed_escaped() {
    let bench = JobBench::test_plays_the_guest("");
    let _daemon = bench.ws.start_daemon();
    let guest = Guest::start(&bench);
    let hostile = "title \u{1b}]0;pwned\u{7} clear \u{1b}[2J back\rFAKE \u{202e}txt.exe\n";
    assert_eq!(guest.report("RUNNING", Some(hostile), Some(0)).0, 200);
    let logs = bench.ws.cli(&["logs", &guest.job, "--tail", "100"]).stdout;
    assert!(!logs.contains('\u{1b}') && !logs.contains('\r') && !logs.contains('\u{202e}'), "{logs:?}");
    assert!(logs.contains("\\x1b]0;pwned\\x07") && logs.contains("\\x1b[2J") && logs.contains("\\u{202e}"), "{logs}");
    let json = bench.ws.cli(&["--json", "logs", &guest.job, "--tail", "100"]).stdout;
    assert!(json.contains("\\u001b]0;pwned"), "JSON keeps the data: {json}");
}

/// Whether the server has closed `stream` (a read sees EOF or a reset).
fn closed(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let _ = stream.set_nonblocking(true);
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// F4: 1000 slow connections from one guest (127.0.0.1): the listener keeps a few, closes
/// the rest at once and the kept ones at the header timeout; another guest (127.0.0.6) and
/// the control socket answer throughout.
#[test]
fn a_thousand_slow_connections_leave_other_guests_and_the_cli_unaffected() {
    use std::io::Write;
    let bench = JobBench::test_plays_the_guest("");
    let _daemon = bench.ws.start_daemon();
    let mut held = Vec::new();
    for _ in 0..1000 {
        // A refused connect (the kernel's backlog momentarily full while the listener
        // closes the excess, longer on a loaded machine) is tried again for up to a second,
        // as a flooding guest would.
        let mut stream = None;
        eventually(Duration::from_secs(1), || {
            stream = std::net::TcpStream::connect(("127.0.0.1", bench.bootstrap_port)).ok();
            stream.is_some()
        });
        if let Some(mut stream) = stream {
            let _ = stream.write_all(b"POST /v1/runner/report HTTP/1.1\r\nHost: x\r\n");
            held.push(stream);
        }
    }
    assert!(held.len() >= 900, "connected {}", held.len());
    let started = std::time::SystemTime::now();
    let status = bench.ws.cli(&["status"]);
    let latency = started.elapsed().unwrap_or_default();
    assert_eq!(status.code, 0, "{status:?}");
    let other = Command::new("curl")
        .args(["-s", "--interface", "127.0.0.6", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/healthz", bench.bootstrap_port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout), "200", "another guest is served");
    let open = |held: &mut Vec<std::net::TcpStream>| held.iter_mut().map(closed).filter(|c| !c).count();
    assert!(eventually(Duration::from_secs(5), || open(&mut held) <= 16));
    let open_now = open(&mut held);
    println!(
        "1000 slow connections from one guest: {open_now} kept open, `agentlab status` answered in {} ms",
        latency.as_millis()
    );
    assert!(latency < Duration::from_secs(1), "status took {latency:?}");
    assert!(
        eventually(Duration::from_secs(20), || held.iter_mut().all(closed)),
        "the kept ones are closed at the header timeout"
    );
}

/// One keep-alive HTTP/1.1 connection to the guest listener, for floods curl is too slow for.
struct RawClient {
    stream: std::net::TcpStream,
}

impl RawClient {
    fn connect(port: u16) -> RawClient {
        RawClient { stream: std::net::TcpStream::connect(("127.0.0.1", port)).unwrap() }
    }

    /// POSTs JSON; the status code.
    fn post(&mut self, path: &str, bearer: &str, body: &str) -> u16 {
        use std::io::{Read, Write};
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if self.stream.read(&mut byte).unwrap_or(0) == 0 {
                return 0;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).unwrap();
        head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

/// F5, F6: a guest that sends 1 GiB of log (32 MiB kept) cannot make readers blow the
/// daemon's memory: pages are capped by bytes, and `logs` still shows the job.
#[test]
fn readers_of_a_huge_log_keep_the_daemon_small() {
    let bench = JobBench::test_plays_the_guest("job_log_max_bytes: 33554432\nreport_rate_limit_qps: 0\n");
    let daemon = bench.ws.start_daemon();
    let guest = Guest::start_for(&bench, 1000);
    let mut client = RawClient::connect(bench.bootstrap_port);
    let chunk = "z".repeat(64 * 1024);
    for i in 0..16384u64 {
        let body = serde_json::json!({"job_id": guest.job, "vmid": guest.vmid, "status": "RUNNING",
            "log": chunk, "log_offset": i * 64 * 1024})
        .to_string();
        assert_eq!(client.post("/v1/runner/report", &guest.runner_token, &body), 200, "report {i}");
    }
    let baseline = rss_kib(daemon.pid());
    let readers: Vec<std::process::Child> =
        (0..3).map(|_| bench.ws.cli_background(&["--json", "logs", &guest.job, "--tail", "1000"])).collect();
    let mut peak = baseline;
    let mut readers = readers;
    while readers.iter_mut().any(|r| matches!(r.try_wait(), Ok(None))) {
        peak = peak.max(rss_kib(daemon.pid()));
        agentlab_e2e::pause(Duration::from_millis(10));
    }
    println!(
        "1 GiB of log sent, 32 MiB kept; three readers at once: daemon RSS {} MiB before, peak {} MiB",
        baseline / 1024,
        peak / 1024
    );
    assert!(peak.saturating_sub(baseline) < 64 * 1024, "readers added {} MiB", (peak - baseline) / 1024);
    let shown = bench.ws.cli(&["logs", &guest.job, "--tail", "1000"]);
    assert_eq!(shown.code, 0, "{:?}", shown.stderr);
    assert!(!shown.stdout.is_empty() && shown.stdout.len() <= 2 * 1024 * 1024, "a page, not the whole log");
    let job = bench.ws.cli(&["job", "show", &guest.job]);
    assert_eq!(job.code, 0, "job show still works: {:?}", job.stderr);
    // F11: status reads recent failures through an index, whatever the log volume.
    let started = std::time::SystemTime::now();
    assert_eq!(bench.ws.cli(&["status"]).code, 0);
    let took = started.elapsed().unwrap_or_default();
    println!("agentlab status with 32 MiB of stored log events: {} ms", took.as_millis());
    assert!(took < Duration::from_secs(1), "status took {took:?}");
}

/// F9: the daemon redacts a job's log as one stream (a secret split across two reports is
/// caught), redacts the final report's commit and artifact names, and refuses an upload
/// whose name carries a secret; the secret is in no log, event or database file.
#[test]
fn secrets_split_across_reports_or_in_names_are_redacted() {
    use agentlab_e2e::jobs::SECRET;
    let bench = JobBench::test_plays_the_guest("");
    let _daemon = bench.ws.start_daemon();
    let guest = Guest::start(&bench);
    let (head, tail) = SECRET.split_at(SECRET.len() / 2);
    let first = format!("split across reports {head}");
    let second = format!("{tail} and on\n");
    assert_eq!(guest.report("RUNNING", Some(&first), Some(0)).0, 200);
    assert_eq!(guest.report("RUNNING", Some(&second), Some(first.len() as u64)).0, 200);
    let (code, body) = guest.upload(&format!("leak-{SECRET}.txt"), b"x");
    assert_eq!(code, 400, "{body}");
    assert!(!body.contains(SECRET), "{body}");
    let done = serde_json::json!({"job_id": guest.job, "vmid": guest.vmid, "status": "COMPLETED", "exit_code": 0,
        "commit": format!("commit-{SECRET}"),
        "artifacts": [{"name": format!("n-{SECRET}"), "path": format!("p-{SECRET}"), "size_bytes": 1, "sha256": "00", "mime": "text/plain"}]});
    let (code, body) =
        call(&guest.report_url, Some(&guest.runner_token), done.to_string().as_bytes(), "application/json");
    assert_eq!(code, 200, "{body}");
    let events = bench.ws.cli(&["--json", "logs", &guest.job, "--tail", "100"]).stdout;
    let log: String = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "job.log")
        .map(|e| e["msg"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(log, "split across reports [REDACTED] and on\n", "{events}");
    let shown = bench.ws.cli(&["--json", "job", "show", &guest.job]).stdout;
    assert!(!shown.contains(SECRET) && shown.contains("commit-[REDACTED]"), "{shown}");
    for file in ["data/agentlab.db", "data/agentlab.db-wal", "daemon.log"] {
        let bytes = std::fs::read(bench.ws.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "{file} holds the secret");
    }
}

/// F17: conflicting names get 409 without a host path; a bad query gets the JSON envelope.
#[test]
fn upload_conflicts_and_bad_queries_get_clear_answers_without_host_paths() {
    let bench = JobBench::test_plays_the_guest("");
    let _daemon = bench.ws.start_daemon();
    let guest = Guest::start(&bench);
    assert_eq!(guest.upload("plainfile", b"x").0, 201);
    let host = bench.ws.path().display().to_string();
    for path in ["plainfile/child", "dir/a"] {
        let _ = guest.upload(path, b"y");
    }
    let (code, body) = guest.upload("plainfile/child", b"z");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("v1/artifact/path_conflict") && !body.contains(&host), "{body}");
    let (code, body) = guest.upload("dir", b"z");
    assert_eq!(code, 409, "a directory: {body}");
    assert!(!body.contains(&host), "{body}");
    let (code, body) = call(&format!("{}?foo=1", guest.upload_url), Some(&guest.artifact_token), b"x", "text/plain");
    assert_eq!(code, 400, "{body}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["code"] == "v1/validation/bad_request"),
        "{body}"
    );
}

/// F12: temporary files of uploads a crash interrupted are removed when the daemon starts.
#[test]
fn upload_leftovers_of_a_crash_are_removed_at_start() {
    let bench = JobBench::test_plays_the_guest("");
    let leftover = bench.ws.path().join("data/artifacts/job_0123456789abcdef/.upload-deadbeef.tmp");
    std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    std::fs::write(&leftover, vec![0u8; 100_000]).unwrap();
    let _daemon = bench.ws.start_daemon();
    assert!(eventually(Duration::from_secs(10), || !leftover.exists()), "the leftover is gone");
}

/// F10: a job that completes without its result bundle says so: COMPLETED with an error,
/// and a `job.bundle.missing` event among recent failures.
#[test]
fn a_completed_job_without_its_bundle_says_so() {
    let bench = JobBench::test_plays_the_guest("");
    let _daemon = bench.ws.start_daemon();
    let guest = Guest::start(&bench);
    let done = serde_json::json!({"job_id": guest.job, "vmid": guest.vmid, "status": "COMPLETED", "exit_code": 0,
        "message": "agent finished; artifact upload failed: 507"});
    let (code, body) =
        call(&guest.report_url, Some(&guest.runner_token), done.to_string().as_bytes(), "application/json");
    assert_eq!(code, 200, "{body}");
    let job = bench.job(&guest.job);
    assert_eq!(job["status"], "COMPLETED");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("result bundle was not uploaded") && error.contains("507"), "{job}");
    let status = bench.ws.cli(&["--json", "status"]).json();
    assert!(status["recent_failures"].to_string().contains("job.bundle.missing"), "{status}");
}

/// F8: two uploads of one job at once: the second is refused (429, retried) while the first runs, so the
/// stored file and its record stay in step.
#[test]
fn concurrent_uploads_of_one_job_cannot_interleave() {
    use std::io::{Read, Write};
    let bench = JobBench::test_plays_the_guest("");
    let _daemon = bench.ws.start_daemon();
    let guest = Guest::start(&bench);
    let url = guest.upload_url.clone();
    let path = url.split("127.0.0.1:").nth(1).and_then(|r| r.split_once('/')).map(|(_, p)| format!("/{p}")).unwrap();
    let port = bench.artifact_port;
    let mut first = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST {path}?path=race.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 200000\r\n\r\n",
        guest.artifact_token
    );
    first.write_all(head.as_bytes()).unwrap();
    first.write_all(&vec![b'a'; 100_000]).unwrap();
    agentlab_e2e::pause(Duration::from_millis(300));
    let (code, body) = guest.upload("race.bin", &vec![b'b'; 1000]);
    assert_eq!(code, 429, "a second writer while the first runs waits its turn (the runner retries 429): {body}");
    first.write_all(&vec![b'a'; 100_000]).unwrap();
    let mut answer = [0u8; 12];
    first.read_exact(&mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("201"), "{}", String::from_utf8_lossy(&answer));
    let stored = std::fs::read(bench.ws.path().join("data/artifacts").join(&guest.job).join("race.bin")).unwrap();
    assert!(stored.len() == 200_000 && stored.iter().all(|b| *b == b'a'), "the file is the first upload");
    let listed = bench.ws.cli(&["--json", "job", "artifacts", &guest.job]).json();
    assert!(listed.to_string().contains("200000"), "the record matches the file: {listed}");
}
