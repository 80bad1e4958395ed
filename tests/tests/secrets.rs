//! Secrets bundles end to end, with the real daemon, CLI and runner on pve-sim: a sops bundle
//! sealed by `agentlabd secrets seal` serves a job exactly as an age bundle does, and a
//! tampered one stops the job at the request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use agentlab_e2e::bin;
use agentlab_e2e::jobs::{JobBench, SECRET, run};
use std::process::Command;

/// Replaces the bench's age bundle with a sops one holding the same secret.
fn seal_sops_bundle(bench: &JobBench) -> std::path::PathBuf {
    let root = bench.ws.path();
    let plain = root.join("bundle.yaml");
    std::fs::write(&plain, format!("version: 1\nenv:\n  DEMO_SECRET: \"{SECRET}\"\n")).unwrap();
    let out = root.join("secrets/default.sops.yaml");
    run(Command::new(bin("agentlabd"))
        .args(["secrets", "seal", "--key"])
        .arg(root.join("keys/age.key"))
        .arg("--in")
        .arg(&plain)
        .arg("--out")
        .arg(&out));
    std::fs::remove_file(&plain).unwrap();
    std::fs::remove_file(root.join("secrets/default.age")).unwrap();
    out
}

#[test]
fn a_sops_bundle_serves_a_job_and_a_tampered_one_is_refused_at_the_request() {
    let bench = JobBench::with_runner();
    let sops = seal_sops_bundle(&bench);
    let text = std::fs::read_to_string(&sops).unwrap();
    assert!(text.contains("ENC[AES256_GCM,") && !text.contains(SECRET), "{text}");
    let _daemon = bench.ws.start_daemon();

    let validate = bench.ws.cli(&["secrets", "validate"]);
    assert_eq!(validate.code, 0, "{validate:?}");
    assert!(validate.stdout.contains("DEMO_SECRET") && !validate.stdout.contains(SECRET), "{validate:?}");

    let out = bench.run_job("bundle", 60, &["--follow"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", bench.guest_logs());
    assert!(out.stdout.contains("from the bundle: [REDACTED]"), "{out:?}");
    let id = out.stderr.split_whitespace().find(|w| w.starts_with("job_")).unwrap_or_default().to_string();
    let logs = bench.ws.cli(&["logs", &id, "--tail", "1000"]);
    assert!(logs.stdout.contains("[REDACTED]") && !logs.stdout.contains(SECRET), "{logs:?}");
    assert!(!bench.job(&id).to_string().contains(SECRET));

    // One character of the value's ciphertext changed: the request is refused, naming the key.
    let line = text.lines().find(|l| l.contains("\"DEMO_SECRET\":")).unwrap();
    let at = line.find("data:").unwrap() + 5;
    let mut tampered_line = line.to_string();
    let replacement = if &line[at..=at] == "A" { "B" } else { "A" };
    tampered_line.replace_range(at..=at, replacement);
    std::fs::write(&sops, text.replace(line, &tampered_line)).unwrap();
    let refused = bench.run_job("main", 60, &[]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("v1/secrets/decrypt_failed"), "{refused:?}");
    assert!(
        refused.stderr.contains("env.DEMO_SECRET") && refused.stderr.contains("authentication failed"),
        "{refused:?}"
    );
    let jobs = bench.ws.cli(&["--json", "job", "list"]);
    assert_eq!(jobs.json()["jobs"].as_array().map(Vec::len), Some(1), "no job was recorded: {jobs:?}");
}

/// The first 16 hex digits of the value's SHA-256: what the `secret-hash` job prints.
fn sha16(value: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(value.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()[..16].to_string()
}

/// Every process's argv that contains one of `needles`, read from /proc.
fn argv_holding(needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if needles.iter().any(|n| argv.contains(n)) {
            hits.push(format!("pid {}: {argv}", entry.file_name().to_string_lossy()));
        }
    }
    hits
}

/// Scans /proc until told to stop; every argv that held a needle.
struct ArgvWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl ArgvWatch {
    fn start(needles: Vec<String>) -> ArgvWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            let (mut scans, mut hits) = (0, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                hits.extend(argv_holding(&needles));
                scans += 1;
                agentlab_e2e::pause(std::time::Duration::from_millis(2));
            }
            (scans, hits)
        });
        ArgvWatch { stop, thread }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

#[test]
fn secrets_commands_change_bundles_and_no_value_reaches_argv_events_or_logs() {
    const NEW: &str = "n3w-VALUE-set-through-stdin-81c2";
    const TOKEN: &str = "ghp_t0ken-through-stdin-5d1e";
    const SSH_KEY: &str = "ssh-ed25519 AAAAssh-key-body-through-stdin-77aa ops@laptop\n";
    let bench = JobBench::with_runner();
    let _daemon = bench.ws.start_daemon();
    let ws = &bench.ws;
    let watch = ArgvWatch::start(vec![NEW.into(), TOKEN.into(), "ssh-key-body-through-stdin".into(), SECRET.into()]);

    let list = ws.cli(&["secrets", "list"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert!(list.stdout.contains("default (age) ok") && list.stdout.contains("DEMO_SECRET"), "{list:?}");

    // A value piped in: argv is clean while the CLI waits for it and while the daemon works.
    let mut child = ws.cli_piped(&["secrets", "set-env", "default", "DEMO_SECRET"]);
    agentlab_e2e::pause(std::time::Duration::from_millis(300));
    assert_eq!(child.try_wait().unwrap(), None, "the CLI waits for the value on stdin");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{NEW}\n").as_bytes()).unwrap();
    }
    let set = agentlab_e2e::CliOutput::from(child.wait_with_output().unwrap());
    assert_eq!(set.code, 0, "{set:?}");
    assert!(set.stdout.contains("changed: set_env env.DEMO_SECRET") && !set.stdout.contains(NEW), "{set:?}");

    // The next job gets the new value (its hash; the value itself is redacted from the log).
    let job = bench.run_job("secret-hash", 60, &["--follow"]);
    assert_eq!(job.code, 0, "{job:?}\n{}", bench.guest_logs());
    assert!(job.stdout.contains(&format!("secret sha256: {}", sha16(NEW))), "{job:?}");

    let set_git = ws.cli_stdin(&["secrets", "set-git", "default", "token"], TOKEN);
    assert_eq!(set_git.code, 0, "{set_git:?}");
    let add_key = ws.cli_stdin(&["secrets", "add-ssh-key", "default", "deploy"], SSH_KEY);
    assert_eq!(add_key.code, 0, "{add_key:?}");
    let duplicate = ws.cli_stdin(&["secrets", "add-ssh-key", "default", "deploy"], SSH_KEY);
    assert_eq!(duplicate.code, 1, "{duplicate:?}");
    assert!(duplicate.stderr.contains("ssh.keys.deploy is already in the bundle"), "{duplicate:?}");
    let nothing = ws.cli_stdin(&["secrets", "set-env", "default", "EMPTY"], "");
    assert_eq!(nothing.code, 2, "{nothing:?}");
    assert!(nothing.stderr.contains("no value for env.EMPTY on stdin"), "{nothing:?}");

    // show: names only; --reveal shows the values and is recorded first.
    let show = ws.cli(&["secrets", "show", "default"]);
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.contains("env: DEMO_SECRET") && show.stdout.contains("git: token"), "{show:?}");
    assert!(show.stdout.contains("ssh keys: deploy") && !show.stdout.contains(NEW), "{show:?}");
    let reveal = ws.cli(&["secrets", "show", "default", "--reveal"]);
    assert_eq!(reveal.code, 0, "{reveal:?}");
    assert!(reveal.stdout.contains(NEW) && reveal.stdout.contains(TOKEN), "{reveal:?}");
    assert!(reveal.stderr.contains("secrets.revealed"), "{reveal:?}");

    let unset = ws.cli(&["secrets", "remove-ssh-key", "default", "deploy"]);
    assert_eq!(unset.code, 0, "{unset:?}");
    let missing = ws.cli(&["secrets", "unset-env", "default", "NOPE"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("env.NOPE is not in the bundle"), "{missing:?}");

    // The audit trail: every change and the reveal, by name.
    let audit = ws.cli(&["--json", "secrets", "list"]);
    let kinds: Vec<String> = audit.json()["audit"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["kind"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds,
        ["secrets.changed", "secrets.revealed", "secrets.changed", "secrets.changed", "secrets.changed"],
        "{audit:?}"
    );
    assert!(
        audit.stdout.contains("set_git git.token") && audit.stdout.contains("add_ssh_key ssh.keys.deploy"),
        "{audit:?}"
    );

    // Rotation: a new key, every bundle re-sealed to it alone; jobs go on with the same values.
    let old_key = ws.path().join("old.key");
    std::fs::copy(ws.path().join("keys/age.key"), &old_key).unwrap();
    let refused = ws.cli(&["secrets", "rotate-key"]);
    assert_eq!(refused.code, 2, "without --yes and no terminal: {refused:?}");
    let rotated = ws.cli(&["--json", "secrets", "rotate-key", "--yes"]);
    assert_eq!(rotated.code, 0, "{rotated:?}");
    let recipient = rotated.json()["recipient"].as_str().unwrap_or_default().to_string();
    let now = run(Command::new("age-keygen").arg("-y").arg(ws.path().join("keys/age.key")));
    assert_eq!(now.trim(), recipient, "the identity file holds the new key alone");
    let old_open = Command::new("age")
        .args(["-d", "-i"])
        .arg(&old_key)
        .arg(ws.path().join("secrets/default.age"))
        .output()
        .unwrap();
    assert!(!old_open.status.success(), "the old key still opens the bundle");
    let after = bench.run_job("secret-hash", 60, &["--follow"]);
    assert_eq!(after.code, 0, "{after:?}");
    assert!(after.stdout.contains(&format!("secret sha256: {}", sha16(NEW))), "{after:?}");

    // Nowhere: argv (scanned throughout), events, the daemon's log, the database.
    let (scans, hits) = watch.finish();
    assert!(scans > 10, "/proc was scanned {scans} times");
    assert!(hits.is_empty(), "a secret in a process's argv: {hits:?}");
    let everything = ws.cli(&["--json", "secrets", "list"]).stdout;
    let log = std::fs::read_to_string(ws.path().join("agentlabd.log")).unwrap_or_default();
    for value in [NEW, TOKEN, "ssh-key-body-through-stdin", SECRET] {
        assert!(!everything.contains(value), "{value} in secrets list");
        assert!(!log.contains(value), "{value} in the daemon's log");
        let hits = agentlab_e2e::files_containing(&ws.path().join("data"), value.as_bytes());
        assert!(hits.is_empty(), "{value} in {hits:?}");
    }
}

#[test]
fn kill_9_while_a_bundle_is_resealed_leaves_one_that_opens() {
    let bench = JobBench::with_runner();
    let ws = &bench.ws;
    let bundle = ws.path().join("secrets/default.age");
    let key = ws.path().join("keys/age.key");
    // What the bundle holds, read with the age CLI (a reader independent of the daemon).
    let current = || {
        let out = Command::new("age").args(["-d", "-i"]).arg(&key).arg(&bundle).output().unwrap();
        assert!(out.status.success(), "the bundle does not open: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("\"DEMO_SECRET\": ").or_else(|| l.trim().strip_prefix("DEMO_SECRET: ")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let mut previous = SECRET.to_string();
    let temp_files = || {
        std::fs::read_dir(ws.path().join("secrets"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect::<Vec<String>>()
    };
    let (mut kept, mut replaced, mut mid_write) = (0, 0, 0);
    for round in 0..24u64 {
        let daemon = ws.start_daemon();
        let value = format!("value-of-round-{round}");
        let mut child = ws.cli_piped(&["secrets", "set-env", "default", "DEMO_SECRET"]);
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
        }
        // From at once to well after the request would have been answered.
        agentlab_e2e::pause(std::time::Duration::from_millis(round * 2));
        daemon.kill9();
        let _ = child.wait();
        // A temp file left behind: the kill landed between writing the new bundle and
        // renaming it over the old one.
        mid_write += usize::from(!temp_files().is_empty());
        let now = current();
        assert!(now == previous || now == value, "round {round}: the bundle holds {now:?}");
        if now == value {
            replaced += 1
        } else {
            kept += 1
        }
        previous = now;
    }
    eprintln!(
        "kill -9 during set-env: {kept} rounds kept the old bundle, {replaced} had the new one, {mid_write} were \
         killed mid-write"
    );
    // A change after the crashes leaves no temp file behind.
    let _daemon = ws.start_daemon();
    let done = ws.cli_stdin(&["secrets", "set-env", "default", "DEMO_SECRET"], "final");
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(current(), "final");
    assert!(temp_files().is_empty(), "{:?}", temp_files());
}

/// `curl` over the control socket with a JSON body: (HTTP status, JSON answer).
fn api(bench: &JobBench, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--max-time", "30", "-X", method, "--unix-socket"]).arg(bench.ws.socket());
    curl.args(["-H", "content-type: application/json", "-w", "\n%{http_code}"]);
    if let Some(body) = body {
        // The body through stdin, not argv: it holds secret values.
        curl.args(["--data-binary", "@-"]);
        curl.stdin(std::process::Stdio::piped());
        curl.stdout(std::process::Stdio::piped());
        let mut child = curl.arg(format!("http://agentlab{path}")).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(body.to_string().as_bytes()).unwrap();
        return answer(&child.wait_with_output().unwrap().stdout);
    }
    answer(&curl.arg(format!("http://agentlab{path}")).output().unwrap().stdout)
}

fn answer(stdout: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn the_go_versions_secrets_routes_work_on_the_default_bundle_and_never_show_a_value() {
    let bench = JobBench::with_runner();
    let _daemon = bench.ws.start_daemon();
    let (status, view) = api(&bench, "GET", "/v1/secrets", None);
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["bundle"], "default");
    assert_eq!(view["secrets"]["env"]["DEMO_SECRET"], "[REDACTED]", "{view}");

    let env = serde_json::json!({"env": {"A_KEY": "value-a-123456", "B_KEY": "value-b-123456"}});
    let (status, view) = api(&bench, "PUT", "/v1/secrets/env", Some(env));
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view["secrets"]["env"],
        serde_json::json!({"A_KEY": "[REDACTED]", "B_KEY": "[REDACTED]", "DEMO_SECRET": "[REDACTED]"})
    );
    let (status, view) = api(&bench, "DELETE", "/v1/secrets/env/A_KEY", None);
    assert_eq!(status, 200, "{view}");
    assert!(view["secrets"]["env"].get("A_KEY").is_none(), "{view}");
    let (status, _) = api(&bench, "DELETE", "/v1/secrets/env/NOT_THERE", None);
    assert_eq!(status, 200, "removing what is not there changes nothing, as in the Go version");
    let (status, refused) = api(&bench, "PUT", "/v1/secrets/env", Some(serde_json::json!({"env": {}})));
    assert_eq!(status, 400, "{refused}");

    let git = serde_json::json!({"username": "bot", "token": "ghp_go-route-token-1234"});
    let (status, view) = api(&bench, "PUT", "/v1/secrets/git", Some(git));
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["secrets"]["git"]["username"], "bot");
    assert_eq!(view["secrets"]["git"]["token"], "[REDACTED]");

    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIgo user@laptop";
    let (status, view) =
        api(&bench, "POST", "/v1/secrets/ssh-keys", Some(serde_json::json!({"name": "laptop", "key": key})));
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view["secrets"]["ssh"]["laptop"],
        serde_json::json!({"key": key, "type": "ssh-ed25519", "comment": "user@laptop"})
    );
    let other = "ssh-rsa AAAAB3NzaC1yc2E other@desk";
    let (status, view) =
        api(&bench, "POST", "/v1/secrets/ssh-keys", Some(serde_json::json!({"name": "laptop", "key": other})));
    assert_eq!((status, view["secrets"]["ssh"]["laptop"]["type"].clone()), (200, "ssh-rsa".into()), "replaced: {view}");
    let (status, view) = api(&bench, "DELETE", "/v1/secrets/ssh-keys/laptop", None);
    assert_eq!(status, 200, "{view}");
    assert!(view["secrets"].get("ssh").is_none(), "{view}");
    let (status, _) = api(&bench, "GET", "/v1/secrets/env", None);
    assert_eq!(status, 405, "GET on /v1/secrets/env, as in the Go version");

    // The values are in the bundle (the next job's), and nowhere else.
    let reveal = bench.ws.cli(&["secrets", "show", "--reveal"]);
    assert!(
        reveal.stdout.contains("value-b-123456") && reveal.stdout.contains("ghp_go-route-token-1234"),
        "{reveal:?}"
    );
    let audit = bench.ws.cli(&["--json", "secrets", "list"]).stdout;
    assert!(audit.contains("set_env env.B_KEY") && audit.contains("remove_ssh_key ssh.keys.laptop"), "{audit}");
    let log = std::fs::read_to_string(bench.ws.path().join("agentlabd.log")).unwrap_or_default();
    for value in ["value-a-123456", "value-b-123456", "ghp_go-route-token-1234"] {
        assert!(!audit.contains(value) && !log.contains(value), "{value} leaked");
    }
}
