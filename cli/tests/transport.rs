//! The CLI's HTTP over the daemon's socket against stand-in daemons on real Unix sockets:
//! a silent daemon is a timeout with its stable code, a chunked answer is read whole, and
//! an answer that is not HTTP is a bad response — never a hang or a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::process::Command;

/// Serves one connection on a fresh socket: reads the request head, then writes `answer`
/// (or, with `None`, says nothing until the client hangs up).
fn daemon(answer: Option<Vec<u8>>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agentlabd.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else { return };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            line.clear();
        }
        match answer {
            Some(bytes) => {
                let _ = (&stream).write_all(&bytes);
            }
            // Silent: block until the client closes its end.
            None => {
                let _ = reader.read_to_end(&mut Vec::new());
            }
        }
    });
    (dir, socket)
}

fn agentlab(socket: &std::path::Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_agentlab")).arg("--socket").arg(socket).args(args).output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn a_silent_daemon_is_a_timeout_with_its_code() {
    let (_dir, socket) = daemon(None);
    let (code, json) = agentlab(&socket, &["--json", "--timeout", "300ms", "status"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["code"], "v1/client/timeout", "{json}");
    assert!(json["message"].as_str().unwrap().contains("raise --timeout"), "{json}");
}

#[test]
fn a_chunked_error_answer_is_read_whole() {
    let body = r#"{"error":"sandbox 9000 not found","code":"v1/sandbox/not_found","message":"sandbox 9000 not found"}"#;
    let (first, rest) = body.split_at(20);
    let mut answer = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for chunk in [first, rest] {
        answer.extend(format!("{:x}\r\n{chunk}\r\n", chunk.len()).into_bytes());
    }
    answer.extend(b"0\r\n\r\n");
    let (_dir, socket) = daemon(Some(answer));
    let (code, json) = agentlab(&socket, &["--json", "sandbox", "show", "9000"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["code"], "v1/sandbox/not_found", "{json}");
}

#[test]
fn an_answer_that_is_not_http_is_a_bad_response() {
    let (_dir, socket) = daemon(Some(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()));
    let (code, json) = agentlab(&socket, &["--json", "status"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["code"], "v1/client/bad_response", "{json}");
}
