//! Who is on the other end of the control socket (SO_PEERCRED), for the audit trail of
//! mutating requests.

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peer {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => Peer { uid: Some(cred.uid()), gid: Some(cred.gid()), pid: cred.pid() },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read peer credentials");
                Peer::default()
            }
        }
    }
}
