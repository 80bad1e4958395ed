//! The simulator without sockets: a `Transport` that hands each call to the API handler
//! directly, as the HTTPS transport would over the network, and decodes the answer with
//! the same `decode_answer`.
//!
//! Why: in-process actor tests run on tokio's paused clock, which advances whenever the
//! runtime is idle — and a runtime waiting on a socket is idle, so every HTTP timeout would
//! fire at once. With no I/O in the path, simulated latencies and task durations still
//! elapse (on the paused clock), and every request is still validated against the contract.

use crate::engine::Sim;
use crate::http::{self, DROP_HEADER};
use crate::server::initial_world;
use crate::{SimConfig, TEST_TOKEN};
use agentlab_proxmox::api::{decode_answer, urlencode};
use agentlab_proxmox::transport::{Method, Params, Transport};
use agentlab_proxmox::{PveError, PveFuture};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Uri};
use serde_json::Value;
use std::sync::Arc;

/// A simulator reached by function call; `sim` is the same state the admin API exposes.
#[derive(Clone)]
pub struct InProcessTransport {
    pub sim: Arc<Sim>,
    auth: HeaderValue,
}

impl InProcessTransport {
    /// A simulator built from `config` (its `listen` addresses are unused), authenticated
    /// with the first of its tokens (`TEST_TOKEN` if it has none).
    pub fn start(config: SimConfig) -> Result<InProcessTransport, String> {
        let world = initial_world(&config)?;
        let token = config.tokens.first().cloned().unwrap_or_else(|| TEST_TOKEN.to_string());
        let auth = HeaderValue::from_str(&format!("PVEAPIToken={token}")).map_err(|e| format!("token: {e}"))?;
        Ok(InProcessTransport { sim: Arc::new(Sim::new(config, world, "in-process".into())), auth })
    }

    async fn send(&self, method: Method, path: String, params: Params) -> Result<Value, PveError> {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", self.auth.clone());
        let (target, body) = match method {
            Method::Get | Method::Delete if !params.is_empty() => {
                (format!("/api2/json{path}?{}", urlencode(&params)), Bytes::new())
            }
            Method::Get | Method::Delete => (format!("/api2/json{path}"), Bytes::new()),
            Method::Post | Method::Put => {
                headers.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded"));
                (format!("/api2/json{path}"), Bytes::from(urlencode(&params)))
            }
        };
        let uri: Uri = target.parse().map_err(|e| PveError::Other(format!("bad request path {target}: {e}")))?;
        let method =
            axum::http::Method::from_bytes(method.as_str().as_bytes()).map_err(|e| PveError::Other(e.to_string()))?;
        let response = http::api(Arc::clone(&self.sim), method, uri, headers, body).await;
        if response.headers().contains_key(DROP_HEADER) {
            // The fault a socket would show as a connection closed without an answer.
            return Err(PveError::Transient("connection closed before an answer (simulated)".into()));
        }
        let status = response.status().as_u16();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| PveError::Transient(format!("reading the simulated answer: {e}")))?;
        decode_answer(status, reason, &bytes)
    }
}

impl Transport for InProcessTransport {
    fn kind(&self) -> &'static str {
        "api"
    }

    fn endpoint(&self) -> String {
        "pve-sim (in process)".into()
    }

    fn call(&self, method: Method, path: String, params: Params) -> PveFuture<'_, Value> {
        Box::pin(self.send(method, path, params))
    }
}
