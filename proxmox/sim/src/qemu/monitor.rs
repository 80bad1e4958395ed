//! The two JSON-lines sockets of a QEMU VM: QMP (the monitor: stop, cont, quit,
//! system_powerdown) and the guest agent's virtio-serial port (qemu-guest-agent inside the
//! VM). Both are Unix sockets QEMU listens on; every call has a deadline.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::timeout;

struct Lines {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Lines {
    async fn connect(path: &Path) -> Result<Lines, String> {
        let stream = UnixStream::connect(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
        let (read, writer) = stream.into_split();
        Ok(Lines { reader: BufReader::new(read), writer })
    }

    async fn send(&mut self, message: &Value) -> Result<(), String> {
        let mut line = message.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await.map_err(|e| e.to_string())
    }

    /// The next JSON object; lines that are not JSON (a guest agent's leftovers) are skipped.
    async fn receive(&mut self) -> Result<Value, String> {
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the socket closed".into());
            }
            // A `guest-sync-delimited` answer is preceded by a 0xFF byte (not UTF-8).
            line.retain(|b| *b != 0xff);
            if let Ok(value) = serde_json::from_slice::<Value>(line.trim_ascii()) {
                return Ok(value);
            }
        }
    }
}

/// The result of a `{"return": …}` answer, or the error QEMU or the agent gave.
fn result_of(answer: Value) -> Result<Value, String> {
    if let Some(error) = answer.get("error") {
        let class = error["class"].as_str().unwrap_or("GenericError");
        let desc = error["desc"].as_str().unwrap_or("unknown error");
        return Err(format!("{class}: {desc}"));
    }
    Ok(answer.get("return").cloned().unwrap_or(Value::Null))
}

/// Runs one QMP command (after the greeting and `qmp_capabilities`).
pub async fn qmp(socket: &Path, command: &str, arguments: Option<Value>, limit: Duration) -> Result<Value, String> {
    timeout(limit, async {
        let mut lines = Lines::connect(socket).await?;
        let greeting = lines.receive().await?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        lines.send(&json!({"execute": "qmp_capabilities"})).await?;
        result_of(lines.receive().await?)?;
        let mut message = json!({"execute": command});
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        lines.send(&message).await?;
        // Asynchronous events (`{"event": …}`) may arrive before the answer.
        loop {
            let answer = lines.receive().await?;
            if answer.get("event").is_none() {
                return result_of(answer);
            }
        }
    })
    .await
    .map_err(|_| format!("QMP {command}: no answer within {limit:?}"))?
}

/// Runs one guest-agent command. The port is a byte stream that may hold a previous
/// client's unread answer, so the exchange starts with `guest-sync` and a fresh id, and
/// everything before that id's echo is discarded (what qemu-server does too,
/// `src/PVE/QMPClient.pm`, guest-sync-delimited before each command).
pub async fn guest_agent(
    socket: &Path,
    command: &str,
    arguments: Option<Value>,
    limit: Duration,
) -> Result<Value, String> {
    timeout(limit, async {
        let mut lines = Lines::connect(socket).await?;
        let id = sync_id();
        lines.send(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}})).await?;
        loop {
            let answer = lines.receive().await?;
            if answer.get("return").and_then(Value::as_u64) == Some(id) {
                break;
            }
        }
        let mut message = json!({"execute": command});
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        lines.send(&message).await?;
        result_of(lines.receive().await?)
    })
    .await
    .map_err(|_| format!("guest agent {command}: no answer within {limit:?}"))?
}

fn sync_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(1);
    (nanos % 1_000_000_000) as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_errors() {
        assert_eq!(result_of(json!({"return": {"a": 1}})), Ok(json!({"a": 1})));
        assert_eq!(
            result_of(json!({"error": {"class": "CommandNotFound", "desc": "The command x has not been found"}})),
            Err("CommandNotFound: The command x has not been found".into())
        );
    }

    #[tokio::test]
    async fn a_guest_agent_exchange_skips_stale_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qga.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut line = String::new();
            read.read_line(&mut line).await.unwrap();
            let sync: Value = serde_json::from_str(&line).unwrap();
            let id = sync["arguments"]["id"].clone();
            // A previous client's answer, then the delimiter and the echo.
            write.write_all(b"{\"return\": {\"stale\": true}}\n\xff").await.unwrap();
            write.write_all(format!("{{\"return\": {id}}}\n").as_bytes()).await.unwrap();
            line.clear();
            read.read_line(&mut line).await.unwrap();
            assert!(line.contains("guest-ping"));
            write.write_all(b"{\"return\": {}}\n").await.unwrap();
        });
        let answer = guest_agent(&path, "guest-ping", None, Duration::from_secs(5)).await;
        assert_eq!(answer, Ok(json!({})));
        server.await.unwrap();
    }
}
