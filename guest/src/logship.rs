//! Streaming the (redacted) log to the daemon as RUNNING reports with `log` + `log_offset`.
//!
//! The log file is the queue: the shipper remembers how many bytes the daemon has and sends
//! the next piece from the file, at most once per interval and at most 64 KiB per report.
//! A failed report is simply tried again on a later tick, so no text is dropped and memory
//! stays bounded however much the agent prints. The offset lets the daemon ignore a piece
//! it already stored.

use crate::clock::Stopwatch;
use crate::config::RetryPolicy;
use crate::daemon::{CallError, Reporter, with_retries};
use crate::journal::Journal;
use agentlab_model::protocol::guest::ReportStatus;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// Largest `log` piece in one report (the daemon refuses more).
pub const MAX_LOG_REPORT: usize = agentlab_model::protocol::guest::MAX_REPORT_LOG_BYTES;

pub struct LogShipper {
    /// Bytes of the log the daemon has acknowledged.
    sent: u64,
    last_attempt: Option<Stopwatch>,
    interval: Duration,
    /// The daemon refused the log for good (or the job is final there): stop streaming.
    stopped: bool,
    /// The last tick failed (said once, not on every tick).
    failing: bool,
}

impl LogShipper {
    /// Starts at offset 0: after a restart the daemon ignores what it already has.
    pub fn new(interval: Duration) -> LogShipper {
        LogShipper { sent: 0, last_attempt: None, interval, stopped: false, failing: false }
    }

    /// Sends the next piece if the interval has passed since the last attempt.
    pub fn tick(&mut self, journal: &mut Journal, reporter: &Reporter) {
        if self.stopped || journal.log_len() <= self.sent {
            return;
        }
        if self.last_attempt.is_some_and(|last| last.elapsed() < self.interval) {
            return;
        }
        self.last_attempt = Some(Stopwatch::start());
        let Some(path) = journal.log_path().map(Path::to_path_buf) else { return };
        match self.send_next(&path, journal.log_len(), false, reporter) {
            Ok(()) => self.failing = false,
            Err(e) => self.failed(e, journal),
        }
    }

    /// Sends everything not yet sent (the agent has finished), each piece with retries.
    pub fn flush(&mut self, journal: &mut Journal, reporter: &Reporter, policy: RetryPolicy) {
        while !self.stopped && journal.log_len() > self.sent {
            let Some(path) = journal.log_path().map(Path::to_path_buf) else { return };
            let len = journal.log_len();
            let result = with_retries(policy, "log report", journal, || self.send_next(&path, len, true, reporter));
            if let Err(e) = result {
                self.failed(e, journal);
                // The whole log is in the uploaded artifacts; the final report matters more.
                self.stopped = true;
            }
        }
    }

    fn failed(&mut self, error: CallError, journal: &mut Journal) {
        match error {
            CallError::Transient(why) | CallError::GaveUp { last: why, .. } => {
                if !self.failing {
                    journal.say(&format!("log report failed, will retry: {why}"));
                }
                self.failing = true;
            }
            CallError::AlreadyFinal(why) | CallError::Refused { message: why, .. } => {
                journal.say(&format!("the daemon refused the log, not streaming it any more: {why}"));
                self.stopped = true;
            }
        }
    }

    fn send_next(&mut self, path: &Path, len: u64, at_end: bool, reporter: &Reporter) -> Result<(), CallError> {
        let chunk = read_piece(path, self.sent, len, at_end)
            .map_err(|e| CallError::Refused { status: 0, message: format!("cannot read {}: {e}", path.display()) })?;
        if chunk.is_empty() {
            return Ok(());
        }
        let mut report = reporter.blank(ReportStatus::Running);
        report.log = Some(text_of(&chunk));
        report.log_offset = Some(self.sent);
        reporter.send(report)?;
        self.sent += chunk.len() as u64;
        Ok(())
    }
}

/// The piece as text with one `?` per byte that is not UTF-8: its length stays the raw
/// byte count (the daemon reads offsets in raw bytes; U+FFFD would triple a stray byte).
fn text_of(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.push_str(text);
                return out;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len()).max(1);
                out.extend(std::iter::repeat_n('?', bad));
                bytes = &rest[bad.min(rest.len())..];
            }
        }
    }
}

/// Up to [`MAX_LOG_REPORT`] bytes of the log from `offset`, not ending inside a UTF-8
/// character unless the log is complete.
fn read_piece(path: &Path, offset: u64, len: u64, at_end: bool) -> io::Result<Vec<u8>> {
    let want = usize::try_from(len.saturating_sub(offset)).unwrap_or(usize::MAX).min(MAX_LOG_REPORT);
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut piece = vec![0; want];
    file.read_exact(&mut piece)?;
    let more_follows = !at_end || offset + (want as u64) < len;
    if let Err(e) = std::str::from_utf8(&piece)
        && e.error_len().is_none()
        && more_follows
    {
        // The last character is cut short: send it with the next piece.
        piece.truncate(e.valid_up_to());
    }
    Ok(piece)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stray_bytes_become_one_question_mark_each() {
        assert_eq!(text_of(b"ok \xff\xfe done"), "ok ?? done");
        assert_eq!(text_of(b"\xc3\xa9\xff\xc3\xa9"), "é?é");
        assert_eq!(text_of(b"cut \xc3"), "cut ?");
    }
    use crate::files::test_dir;

    #[test]
    fn pieces_are_capped_and_keep_characters_whole() {
        let dir = test_dir("logship");
        let path = dir.join("log");
        let mut text = "a".repeat(MAX_LOG_REPORT - 1).into_bytes();
        text.extend("é tail".as_bytes());
        std::fs::write(&path, &text).unwrap();
        let len = text.len() as u64;
        let first = read_piece(&path, 0, len, true).unwrap_or_default();
        assert_eq!(first.len(), MAX_LOG_REPORT - 1, "the two-byte é is not split");
        let rest = read_piece(&path, first.len() as u64, len, true).unwrap_or_default();
        assert_eq!(rest, "é tail".as_bytes());
        // Half a character at the end of the log so far waits for the rest ...
        let half = text.len() as u64 - 6;
        assert_eq!(read_piece(&path, half - 1, half, false).unwrap_or_default(), b"");
        // ... unless the log is complete.
        assert_eq!(read_piece(&path, half - 1, half, true).unwrap_or_default().len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
