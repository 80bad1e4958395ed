//! systemd's readiness protocol (`Type=notify`, sd_notify(3)): one datagram per state
//! change to the socket named by `NOTIFY_SOCKET`. Written here instead of linking libsystemd:
//! the protocol is a line of text on a Unix datagram socket.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;

/// Where systemd listens, read once at start. `None` outside systemd: every call is a no-op.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<NotifySocket>,
}

#[derive(Debug, Clone)]
enum NotifySocket {
    Path(PathBuf),
    /// `@name`: Linux's abstract namespace.
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From `NOTIFY_SOCKET`. The variable stays in the environment (changing it is not
    /// thread-safe); `NotifyAccess=main` makes systemd ignore messages from our children.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|value| {
            use std::os::unix::ffi::OsStrExt;
            let bytes = value.as_bytes();
            match bytes.first() {
                Some(b'@') => Some(NotifySocket::Abstract(bytes[1..].to_vec())),
                Some(b'/') => Some(NotifySocket::Path(PathBuf::from(&value))),
                _ => {
                    tracing::warn!(?value, "NOTIFY_SOCKET is neither a path nor @abstract; not notifying systemd");
                    None
                }
            }
        });
        Notifier { socket }
    }

    /// Every listener is bound and the actor root is up.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\nMAINPID={}\n", std::process::id()));
    }

    /// Shutdown has begun: systemd waits for the exit instead of calling it a crash.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping\n");
    }

    /// `WatchdogSec=`: how often systemd wants `WATCHDOG=1` (`WATCHDOG_USEC`, for this
    /// process when `WATCHDOG_PID` is set). `None`: no watchdog.
    pub fn watchdog_interval(&self) -> Option<std::time::Duration> {
        self.socket.as_ref()?;
        if let Some(pid) = std::env::var_os("WATCHDOG_PID")
            && pid.to_string_lossy().trim() != std::process::id().to_string()
        {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
        (usec > 0).then(|| std::time::Duration::from_micros(usec))
    }

    /// The daemon is alive (see `daemon::keep_watchdog` for what that means).
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1\n");
    }

    /// A one-line state for `systemctl status` (e.g. after a profile reload).
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}\n"));
    }

    /// A failed send is logged, never fatal: the daemon works without systemd watching.
    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else { return };
        let result = UnixDatagram::unbound().and_then(|datagram| {
            let addr = match socket {
                NotifySocket::Path(path) => SocketAddr::from_pathname(path)?,
                NotifySocket::Abstract(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name)?
                }
            };
            datagram.send_to_addr(message.as_bytes(), &addr)
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}
