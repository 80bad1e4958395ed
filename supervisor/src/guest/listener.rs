//! The guest listeners' accept loop, with the limits a hostile guest needs (security review
//! F4: 200 slow-header and idle connections stayed open for minutes, and with the fd limit
//! reached the control socket stopped answering):
//!
//! - at most `MAX_PER_SOURCE` connections per source address and `MAX_CONNECTIONS` in all
//!   (beyond, a connection is closed at once, so one guest cannot starve the others or the
//!   daemon's file descriptors);
//! - a connection that does not send a complete request head within `HEADER_READ_TIMEOUT`
//!   (a fresh one, or one idle between requests) is closed;
//! - bodies: the JSON routes have `REQUEST_TIMEOUT` for the whole request, an upload
//!   `upload::BODY_IDLE` between two pieces.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub const MAX_CONNECTIONS: usize = 512;
pub const MAX_PER_SOURCE: usize = 16;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A fetch or report, body included (a report may wait up to 30 s for its job actor).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Open connections per source address.
#[derive(Default)]
struct PerSource(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in its source's count; given back on drop.
struct SourceSlot {
    counts: Arc<PerSource>,
    ip: IpAddr,
}

impl SourceSlot {
    fn claim(counts: &Arc<PerSource>, ip: IpAddr) -> Option<SourceSlot> {
        let mut map = agentlab_actors::sync::lock(&counts.0);
        let open = map.entry(ip).or_insert(0);
        if *open >= MAX_PER_SOURCE {
            return None;
        }
        *open += 1;
        Some(SourceSlot { counts: Arc::clone(counts), ip })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = agentlab_actors::sync::lock(&self.counts.0);
        if let Some(open) = map.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown`. Sources outside `agent_subnet` are closed
/// before they count against anyone's share (the router refuses them too, with a 403).
pub async fn serve(listener: TcpListener, router: Router, agent_subnet: ipnet::IpNet, shutdown: CancellationToken) {
    let total = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_source = Arc::new(PerSource::default());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(error = %e, "guest listener cannot accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !super::guard::source_allowed(&agent_subnet, peer.ip()) {
            tracing::warn!(source = %peer.ip(), "guest connection from outside the agent subnet closed");
            agentlab_actors::metrics::metrics().guest_refused("connection_outside_agent_subnet");
            continue;
        }
        let Ok(permit) = Arc::clone(&total).try_acquire_owned() else {
            tracing::warn!(source = %peer.ip(), "guest connection refused: {MAX_CONNECTIONS} connections open");
            agentlab_actors::metrics::metrics().guest_refused("connection_limit");
            continue;
        };
        let Some(slot) = SourceSlot::claim(&per_source, peer.ip()) else {
            tracing::warn!(source = %peer.ip(), "guest connection refused: {MAX_PER_SOURCE} open from this source");
            agentlab_actors::metrics::metrics().guest_refused("connection_limit_per_source");
            continue;
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
            drop(slot);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_holds_at_most_its_share_and_gets_it_back() {
        let counts = Arc::new(PerSource::default());
        let ip: IpAddr = [10, 77, 0, 9].into();
        let slots: Vec<SourceSlot> = (0..MAX_PER_SOURCE).filter_map(|_| SourceSlot::claim(&counts, ip)).collect();
        assert_eq!(slots.len(), MAX_PER_SOURCE);
        assert!(SourceSlot::claim(&counts, ip).is_none());
        assert!(SourceSlot::claim(&counts, [10, 77, 0, 10].into()).is_some(), "another source is not affected");
        drop(slots);
        assert!(SourceSlot::claim(&counts, ip).is_some());
    }
}
