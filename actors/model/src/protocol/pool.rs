//! `GET /v1/pool`: the warm pool, profile by profile.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// `pool_max_total`: every pool together.
    pub max_total: u32,
    /// `pool_refill_concurrency`: pooled sandboxes provisioning at once.
    pub refill_concurrency: u32,
    /// Pooled sandboxes now, in every state.
    pub total: u32,
    pub profiles: Vec<PoolProfileStatus>,
}

/// One profile's pool (a profile whose pool was removed shows while its sandboxes drain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolProfileStatus {
    pub profile: String,
    /// `pool.size` in the profile now (0: no pool any more).
    pub size: u32,
    /// READY and claimable.
    pub ready: u32,
    pub provisioning: u32,
    /// Being destroyed: the profile changed, or the pool shrank.
    pub draining: u32,
    pub vmids: Vec<u32>,
}
