//! Running the agent: its own process group, stdout and stderr merged into one pipe read in
//! chunks, a deadline (SIGTERM to the group, SIGKILL after a grace period), and a regular
//! tick for the caller (log streaming).
//!
//! A reader thread turns the pipe into a channel so the main thread can wait for output,
//! the deadline and the tick at once without an async runtime.

use crate::clock::Stopwatch;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// The exit code of a run stopped at its deadline (`timeout`'s code).
pub const TIMEOUT_EXIT_CODE: i32 = 124;
/// After the agent exits, how long its leftover children may keep the pipe open before
/// they are killed (the VM is disposable; their output would be lost anyway).
const LINGER: Duration = Duration::from_secs(2);
const CHUNK: usize = 64 * 1024;

pub struct Limits {
    /// `None`: no deadline.
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    /// How often [`Watcher::tick`] is called at the least.
    pub tick: Duration,
}

/// What the caller does with the agent's output and time passing.
pub trait Watcher {
    fn output(&mut self, chunk: &[u8]);
    fn tick(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The exit code; `128 + signal` for a signal; [`TIMEOUT_EXIT_CODE`] after the deadline.
    pub exit_code: i32,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// Starts `command` (stdout and stderr are replaced by the pipe) and supervises it to the end.
pub fn run(mut command: Command, limits: &Limits, watcher: &mut dyn Watcher) -> io::Result<Finished> {
    let (mut reader, writer) = io::pipe()?;
    command.stdout(writer.try_clone()?).stderr(writer);
    command.process_group(0);
    let mut child = command.spawn()?;
    // The command holds the pipe's write ends: drop it, or the pipe never reaches EOF.
    drop(command);
    let group = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = vec![0; CHUNK];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });

    let started = Stopwatch::start();
    let wait = limits.tick.clamp(Duration::from_millis(10), Duration::from_millis(200));
    let mut status: Option<ExitStatus> = None;
    let mut exited_at: Option<Duration> = None;
    let mut pipe_open = true;
    let mut term_sent_at: Option<Duration> = None;
    let mut killed = false;
    let mut leftovers_killed = false;
    loop {
        match rx.recv_timeout(wait) {
            Ok(chunk) => watcher.output(&chunk),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => pipe_open = false,
        }
        watcher.tick();
        if status.is_none() {
            status = child.try_wait()?;
            if status.is_some() {
                exited_at = Some(started.elapsed());
            }
        }
        let now = started.elapsed();
        if status.is_none() {
            if let (Some(limit), None) = (limits.timeout, term_sent_at)
                && now >= limit
            {
                signal_group(group, Signal::SIGTERM);
                term_sent_at = Some(now);
            }
            if let Some(sent) = term_sent_at
                && !killed
                && now >= sent + limits.kill_grace
            {
                signal_group(group, Signal::SIGKILL);
                killed = true;
            }
        }
        match (exited_at, pipe_open) {
            (Some(_), false) => break,
            (Some(at), true) if !leftovers_killed && now >= at + LINGER => {
                // Background children still hold the pipe: end them.
                signal_group(group, Signal::SIGKILL);
                leftovers_killed = true;
            }
            (Some(at), true) if now >= at + LINGER + LINGER => break,
            _ => {}
        }
    }
    // Whatever is already in the channel.
    while let Ok(chunk) = rx.try_recv() {
        watcher.output(&chunk);
    }
    let elapsed = started.elapsed();
    let timed_out = term_sent_at.is_some();
    let exit_code = match status {
        _ if timed_out => TIMEOUT_EXIT_CODE,
        Some(status) => status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1),
        None => 1,
    };
    Ok(Finished { exit_code, timed_out, elapsed })
}

fn signal_group(group: Pid, signal: Signal) {
    // ESRCH (the group is gone) is fine: nothing left to stop.
    let _ = killpg(group, signal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        output: Vec<u8>,
        ticks: usize,
    }

    impl Watcher for Collect {
        fn output(&mut self, chunk: &[u8]) {
            self.output.extend_from_slice(chunk);
        }
        fn tick(&mut self) {
            self.ticks += 1;
        }
    }

    fn sh(script: &str, timeout: Option<u64>, grace: u64) -> (Finished, Collect) {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]);
        let limits = Limits {
            timeout: timeout.map(Duration::from_millis),
            kill_grace: Duration::from_millis(grace),
            tick: Duration::from_millis(20),
        };
        let mut collect = Collect::default();
        let finished = run(command, &limits, &mut collect).unwrap();
        (finished, collect)
    }

    #[test]
    fn stdout_and_stderr_are_merged_and_the_exit_code_kept() {
        let (finished, out) = sh("echo out; echo err >&2; exit 3", None, 0);
        assert_eq!((finished.exit_code, finished.timed_out), (3, false));
        assert_eq!(String::from_utf8_lossy(&out.output), "out\nerr\n");
        assert!(out.ticks >= 1);
        let (finished, _) = sh("kill -9 $$", None, 0);
        assert_eq!(finished.exit_code, 128 + 9);
    }

    #[test]
    fn the_deadline_terminates_the_whole_group() {
        let (finished, out) = sh("echo started; sleep 30 & sleep 30; echo never", Some(300), 5000);
        assert_eq!((finished.exit_code, finished.timed_out), (TIMEOUT_EXIT_CODE, true));
        assert_eq!(String::from_utf8_lossy(&out.output), "started\n");
        assert!(finished.elapsed < Duration::from_secs(10), "{:?}", finished.elapsed);
    }

    #[test]
    fn an_agent_ignoring_sigterm_is_killed_after_the_grace() {
        let (finished, _) = sh("trap '' TERM; sleep 30", Some(200), 300);
        assert_eq!(finished.exit_code, TIMEOUT_EXIT_CODE);
        assert!(finished.elapsed >= Duration::from_millis(500), "{:?}", finished.elapsed);
        assert!(finished.elapsed < Duration::from_secs(10), "{:?}", finished.elapsed);
    }

    #[test]
    fn leftover_children_holding_the_pipe_do_not_hang_the_runner() {
        let (finished, out) = sh("(sleep 60) & echo bye", None, 0);
        assert_eq!((finished.exit_code, finished.timed_out), (0, false));
        assert_eq!(String::from_utf8_lossy(&out.output), "bye\n");
        assert!(finished.elapsed < Duration::from_secs(10), "{:?}", finished.elapsed);
    }
}
