//! Test support for `runner_flow`: a fake daemon serving the three guest routes on
//! 127.0.0.1 and recording what it got, a scratch directory, and a local git origin.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

/// One request as the fake daemon saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Head and body as received, for searching secrets.
    pub raw: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("report body is not JSON")
    }
}

#[derive(Debug, Default)]
pub struct State {
    /// Answer to a fetch: status and body.
    pub fetch_answer: (u16, String),
    pub fetches: Vec<Seen>,
    pub reports: Vec<Seen>,
    pub uploads: Vec<Seen>,
    /// Answer 503 to this many fetches first.
    pub fail_fetches: usize,
    /// Answer 503 to this many reports first.
    pub fail_reports: usize,
    /// Answer 503 to this many uploads first, then a wrong sha256 to `wrong_sha_uploads`.
    pub fail_uploads: usize,
    pub wrong_sha_uploads: usize,
    /// Every request, raw.
    pub raw: Vec<u8>,
    /// A directory whose entries are counted when a final report (not RUNNING) arrives.
    pub watch_dir: Option<std::path::PathBuf>,
    /// The entries `watch_dir` held at each final report.
    pub watched_at_final: Vec<usize>,
}

pub struct FakeDaemon {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeDaemon {
    pub fn start(fetch_answer: (u16, String)) -> FakeDaemon {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { fetch_answer, ..State::default() }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &shared);
            }
        });
        FakeDaemon { url, state }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn upload_endpoint(&self) -> String {
        format!("{}/upload", self.url)
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Some(seen) = read_request(&stream) else { return };
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.raw.extend_from_slice(&seen.raw);
    let path = seen.target.split('?').next().unwrap_or_default().to_string();
    let (status, body, chunked) = match path.as_str() {
        "/v1/bootstrap/fetch" => {
            state.fetches.push(seen);
            if state.fail_fetches > 0 {
                state.fail_fetches -= 1;
                (503, r#"{"error":"starting","code":"v1/internal/error","message":"starting"}"#.into(), false)
            } else {
                let (status, body) = state.fetch_answer.clone();
                (status, body, false)
            }
        }
        "/v1/runner/report" => {
            let is_final = serde_json::from_slice::<serde_json::Value>(&seen.body)
                .is_ok_and(|report| report["status"] != "RUNNING");
            if let (true, Some(dir)) = (is_final, state.watch_dir.clone()) {
                let entries = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
                state.watched_at_final.push(entries);
            }
            state.reports.push(seen);
            if state.fail_reports > 0 {
                state.fail_reports -= 1;
                (503, r#"{"error":"restarting","code":"v1/internal/error","message":"restarting"}"#.into(), false)
            } else {
                // hyper answers small JSON bodies chunked at times: exercise that path.
                (200, r#"{"job_status":"running"}"#.into(), true)
            }
        }
        "/upload" => {
            let sha: String = Sha256::digest(&seen.body).iter().map(|b| format!("{b:02x}")).collect();
            let size = seen.body.len();
            state.uploads.push(seen);
            if state.fail_uploads > 0 {
                state.fail_uploads -= 1;
                (503, "busy".into(), false)
            } else {
                let sha = if state.wrong_sha_uploads > 0 {
                    state.wrong_sha_uploads -= 1;
                    "0".repeat(64)
                } else {
                    sha
                };
                let body = serde_json::json!({
                    "job_id": "job_test",
                    "artifact": {"name": "agentlab-artifacts.tar.gz", "path": "job_test/agentlab-artifacts.tar.gz",
                                 "size_bytes": size, "sha256": sha, "mime": "application/gzip"}
                });
                (201, body.to_string(), false)
            }
        }
        _ => (
            404,
            r#"{"error":"route not found","code":"v1/resource/route_not_found","message":"route not found"}"#.into(),
            false,
        ),
    };
    drop(state);
    let mut stream = stream;
    let head = if chunked {
        format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
    } else {
        format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len())
    };
    let mut answer = head.into_bytes();
    if chunked {
        answer.extend(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).into_bytes());
    } else {
        answer.extend(body.into_bytes());
    }
    let _ = stream.write_all(&answer);
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut raw = Vec::new();
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    raw.extend_from_slice(request_line.as_bytes());
    let target = request_line.split(' ').nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        raw.extend_from_slice(line.as_bytes());
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    raw.extend_from_slice(&body);
    Some(Seen { target, headers, body, raw })
}

/// A fresh scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("agent-runner-flow-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A git repository at `dir` with one commit holding an executable `.agentlab/run.sh`.
pub fn origin_with_run_sh(dir: &Path, script: &str) -> String {
    let run_sh = dir.join(".agentlab").join("run.sh");
    std::fs::create_dir_all(run_sh.parent().unwrap_or(dir)).unwrap();
    std::fs::write(&run_sh, script).unwrap();
    std::fs::write(dir.join("README"), "test repository\n").unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(dir, &["update-index", "--chmod=+x", ".agentlab/run.sh"]);
    git(dir, &["commit", "-qm", "test"]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.email=test@example.invalid", "-c", "user.name=test", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}
