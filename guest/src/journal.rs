//! Everything the runner prints or logs, redacted.
//!
//! Runner messages go to stderr with an `agent-runner:` prefix; agent output is echoed to
//! stdout. Both are appended to `agent-runner.log` once it is open. Nothing reaches a
//! terminal or the log without passing the redactor: agent output through a
//! [`StreamRedactor`] (a secret may be split across two reads of the pipe), runner messages
//! whole.

use agentlab_model::model::redact::{Redactor, StreamRedactor};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const PREFIX: &str = "agent-runner: ";

pub struct Journal {
    redactor: Redactor,
    stream: StreamRedactor,
    log: Option<LogFile>,
    /// Echo agent output to the runner's stdout (the VM's journal keeps it).
    echo: bool,
}

struct LogFile {
    file: File,
    path: PathBuf,
    len: u64,
    /// Set after the first write error, which is reported once on stderr.
    broken: bool,
}

impl Journal {
    pub fn new(redactor: Redactor) -> Journal {
        Journal { stream: StreamRedactor::new(redactor.clone()), redactor, log: None, echo: true }
    }

    /// Replaces the secrets to hide (once the payload is known). Call between agent runs:
    /// any output the old stream redactor held back is flushed first.
    pub fn set_redactor(&mut self, redactor: Redactor) {
        self.finish_agent_output();
        self.stream = StreamRedactor::new(redactor.clone());
        self.redactor = redactor;
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Appends to `path` (created 0600, never through a symlink) from now on.
    pub fn open_log(&mut self, path: &Path) -> io::Result<()> {
        let file = crate::files::open_private_append(path)?;
        let len = file.metadata()?.len();
        self.log = Some(LogFile { file, path: path.to_path_buf(), len, broken: false });
        Ok(())
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_ref().map(|log| log.path.as_path())
    }

    /// Bytes in the log file so far.
    pub fn log_len(&self) -> u64 {
        self.log.as_ref().map_or(0, |log| log.len)
    }

    /// A runner message: stderr and the log, one prefixed line per line of text.
    pub fn say(&mut self, message: &str) {
        let text = self.redactor.redact(message);
        let mut lines = String::new();
        for line in text.lines() {
            lines.push_str(PREFIX);
            lines.push_str(line);
            lines.push('\n');
        }
        let _ = io::stderr().write_all(lines.as_bytes());
        self.append(lines.as_bytes());
    }

    /// A chunk of the agent's output, redacted as a stream.
    pub fn agent_output(&mut self, chunk: &[u8]) {
        let safe = self.stream.push(chunk);
        self.emit(&safe);
    }

    /// End of the agent's output: what the stream redactor held back.
    pub fn finish_agent_output(&mut self) {
        let rest = self.stream.finish();
        self.emit(&rest);
    }

    fn emit(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.echo {
            let mut out = io::stdout().lock();
            let _ = out.write_all(bytes).and_then(|()| out.flush());
        }
        self.append(bytes);
    }

    fn append(&mut self, bytes: &[u8]) {
        let Some(log) = self.log.as_mut() else { return };
        match log.file.write_all(bytes) {
            Ok(()) => log.len += bytes.len() as u64,
            Err(e) if !log.broken => {
                log.broken = true;
                let _ = writeln!(io::stderr(), "{PREFIX}cannot write {}: {e}", log.path.display());
            }
            Err(_) => {}
        }
    }

    #[cfg(test)]
    pub fn quiet(mut self) -> Journal {
        self.echo = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::test_dir;

    #[test]
    fn messages_and_agent_output_reach_the_log_redacted() {
        let dir = test_dir("journal");
        let secret = "s3cr3t-value-123";
        let mut journal = Journal::new(Redactor::new(["bootstrap-token-xyz"])).quiet();
        journal.say("before the log is open: bootstrap-token-xyz");
        let path = dir.join("agent-runner.log");
        journal.open_log(&path).unwrap();
        journal.set_redactor(Redactor::new([secret]));
        journal.say(&format!("cloning with {secret}\nsecond line"));
        journal.agent_output(&secret.as_bytes()[..5]);
        journal.agent_output(&secret.as_bytes()[5..]);
        journal.agent_output(b" done s3cr");
        journal.finish_agent_output();
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(log, "agent-runner: cloning with [REDACTED]\nagent-runner: second line\n[REDACTED] done s3cr");
        assert_eq!(journal.log_len(), log.len() as u64);
        let mode = std::fs::metadata(&path).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let _ = std::fs::remove_dir_all(dir);
    }
}
