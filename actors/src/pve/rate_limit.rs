//! A token bucket in front of the Proxmox transport: every HTTP request (task polls
//! included) takes a token, so Proxmox never sees more than `rate` requests in any second.

use agentlab_proxmox::PveFuture;
use agentlab_proxmox::transport::{Method, Params, Transport};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `rate` requests in any one-second window, as the receiver sees them: a sliding
/// log of the last `rate` grants keeps any window of `WINDOW` (a second plus a margin for
/// transit jitter) to `rate` grants, and grants are spaced at least a quarter of 1/rate
/// apart, so a burst is spread out (never many connections opened at once) while a chain of
/// dependent requests is not held at the sustained pace: at 1/rate spacing every one of a
/// sandbox's ~35 serial requests waited 50 ms, 1.4 s of its creation (`agentlab-bench
/// trace`). A plain token bucket would let a refilled burst exceed the rate within one second.
#[derive(Debug)]
pub struct TokenBucket {
    rate: usize,
    window: Duration,
    spacing: Duration,
    grants: Mutex<VecDeque<Instant>>,
}

/// A second plus a margin: a request on a fresh TLS connection arrives tens of
/// milliseconds later than one on a warm connection.
const WINDOW: Duration = Duration::from_millis(1200);

impl TokenBucket {
    pub fn new(rate_per_second: u32, _burst: u32) -> TokenBucket {
        let rate = rate_per_second.max(1);
        TokenBucket {
            rate: rate as usize,
            window: WINDOW,
            spacing: Duration::from_secs(1) / (4 * rate),
            grants: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits for a slot and takes it. Waiters are served in order (the mutex is fair).
    pub async fn acquire(&self) {
        let mut grants = self.grants.lock().await;
        if let Some(last) = grants.back().copied()
            && last + self.spacing > Instant::now()
        {
            tokio::time::sleep_until(last + self.spacing).await;
        }
        if grants.len() >= self.rate
            && let Some(oldest) = grants.front().copied()
        {
            let free_at = oldest + self.window;
            if free_at > Instant::now() {
                tokio::time::sleep_until(free_at).await;
            }
            grants.pop_front();
        }
        grants.push_back(Instant::now());
    }
}

/// Any transport, rate limited.
pub struct RateLimitedTransport<T> {
    inner: T,
    bucket: Arc<TokenBucket>,
}

impl<T: Transport> RateLimitedTransport<T> {
    pub fn new(inner: T, bucket: Arc<TokenBucket>) -> Self {
        RateLimitedTransport { inner, bucket }
    }
}

impl<T: Transport> Transport for RateLimitedTransport<T> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn endpoint(&self) -> String {
        self.inner.endpoint()
    }

    fn call(&self, method: Method, path: String, params: Params) -> PveFuture<'_, Value> {
        Box::pin(async move {
            self.bucket.acquire().await;
            self.inner.call(method, path, params).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_rate_in_any_second() {
        let bucket = Arc::new(TokenBucket::new(20, 20));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..100 {
            let b = Arc::clone(&bucket);
            handles.push(tokio::spawn(async move {
                b.acquire().await;
                Instant::now().duration_since(start)
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap_or_default());
        }
        times.sort();
        for (i, t) in times.iter().enumerate() {
            let window_end = *t + Duration::from_secs(1);
            let in_window = times[i..].iter().take_while(|u| **u < window_end).count();
            assert!(in_window <= 20, "{in_window} acquisitions within one second starting at {t:?}");
        }
        assert!(times[99] >= Duration::from_millis(4950), "100 grants at 20/s take about 5 s: {:?}", times[99]);
        // Spread, never simultaneous: a quarter of 1/rate apart at least.
        assert!(times.windows(2).all(|w| w[1] - w[0] >= Duration::from_micros(12_499)), "{times:?}");
        assert!(times[19] < Duration::from_millis(300), "a chain of 20 is not held at 50 ms each: {:?}", times[19]);
    }
}
