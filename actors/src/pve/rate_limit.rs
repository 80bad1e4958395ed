//! A token bucket in front of the Proxmox transport: every HTTP request (task polls
//! included) takes a token, so Proxmox never sees more than `rate` requests in any second.

use agentlab_proxmox::transport::{Method, Params, Transport};
use agentlab_proxmox::PveFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A bucket that starts empty, so no burst can exceed `rate` in the first second either.
    pub fn new(rate_per_second: u32, burst: u32) -> TokenBucket {
        let rate = f64::from(rate_per_second.max(1));
        TokenBucket { rate, burst: f64::from(burst.max(1)), state: Mutex::new((0.0, Instant::now())) }
    }

    /// Waits until a token is available and takes it. Waiters are served in order (the
    /// mutex is fair), each sleeping only as long as its token needs.
    pub async fn acquire(&self) {
        let mut state = self.state.lock().await;
        let (tokens, last) = *state;
        let now = Instant::now();
        let refilled = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            return;
        }
        let wait = Duration::from_secs_f64((1.0 - refilled) / self.rate);
        tokio::time::sleep(wait).await;
        *state = (0.0, now + wait);
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
        assert!(times[99] >= Duration::from_millis(4900), "100 tokens at 20/s take about 5 s: {:?}", times[99]);
    }
}
