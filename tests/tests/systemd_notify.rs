//! `Type=notify`: agentlabd tells systemd READY=1 only once its control socket and guest
//! listeners are bound (units ordered after it, and `systemctl start`, rely on that), and
//! STOPPING=1 when it begins to shut down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentlab_e2e::Workspace;
use std::net::TcpStream;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

/// Every datagram until one containing `want`, or none within `limit` (then panics).
fn receive_until(socket: &UnixDatagram, want: &str, limit: Duration, seen: &mut Vec<String>) -> String {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no `{want}` from agentlabd ({e}); got {seen:?}"));
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        seen.push(message.clone());
        if message.lines().any(|l| l == want) {
            return message;
        }
    }
}

fn check_ready_then_stopping(ws: &Workspace, notify_socket: &str, receiver: &UnixDatagram) {
    let metrics_port = agentlab_e2e::jobs::free_port();
    ws.write_config(&format!("metrics_listen: 127.0.0.1:{metrics_port}\n"));
    let mut daemon = ws.spawn_daemon(&[("NOTIFY_SOCKET", notify_socket)]);
    let mut seen = Vec::new();
    let ready = receive_until(receiver, "READY=1", Duration::from_secs(60), &mut seen);
    // The moment READY=1 arrives, everything it promises must already hold.
    assert!(UnixStream::connect(ws.socket()).is_ok(), "control socket not bound at READY=1");
    for (what, port) in [("bootstrap", ws.bootstrap_port), ("artifact", ws.artifact_port), ("metrics", metrics_port)] {
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok(), "{what} listener not bound at READY=1");
    }
    assert!(ready.contains(&format!("MAINPID={}", daemon.pid())), "{ready}");
    assert!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready}");
    assert!(daemon.exited().is_none(), "agentlabd exited; log:\n{}", daemon.log());

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    receive_until(receiver, "STOPPING=1", Duration::from_secs(30), &mut seen);
    assert!(daemon.stop().success());
}

#[test]
fn ready_is_sent_only_once_every_listener_is_bound_and_stopping_at_shutdown() {
    let ws = Workspace::new();
    let path = ws.path().join("notify.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    check_ready_then_stopping(&ws, &path.display().to_string(), &receiver);
}

/// `WatchdogSec=`: systemd passes `WATCHDOG_USEC`; the daemon pings at half of it.
#[test]
fn with_a_watchdog_the_daemon_keeps_pinging() {
    let ws = Workspace::new();
    let path = ws.path().join("notify.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    let notify = path.display().to_string();
    let mut daemon = ws.spawn_daemon(&[("NOTIFY_SOCKET", notify.as_str()), ("WATCHDOG_USEC", "400000")]);
    let mut seen = Vec::new();
    receive_until(&receiver, "READY=1", Duration::from_secs(60), &mut seen);
    for _ in 0..3 {
        receive_until(&receiver, "WATCHDOG=1", Duration::from_secs(10), &mut seen);
    }
    assert!(daemon.exited().is_none());
    // A watchdog meant for another process (WATCHDOG_PID) is not ours.
    drop(daemon);
    let mut other =
        ws.spawn_daemon(&[("NOTIFY_SOCKET", notify.as_str()), ("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "1")]);
    let mut seen = Vec::new();
    receive_until(&receiver, "READY=1", Duration::from_secs(60), &mut seen);
    receiver.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n) = receiver.recv(&mut buf) {
        assert!(!String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1"), "pinged for another pid");
    }
    assert!(other.exited().is_none());
}

#[test]
fn an_abstract_notify_socket_works_too() {
    use std::os::linux::net::SocketAddrExt;
    let ws = Workspace::new();
    let name = format!("agentlab-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let receiver = UnixDatagram::bind_addr(&addr).unwrap();
    check_ready_then_stopping(&ws, &format!("@{name}"), &receiver);
}
