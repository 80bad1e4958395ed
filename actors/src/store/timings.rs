//! How long each provisioning phase of a sandbox took, from its events.

use super::{EventPage, Store, StoreResult};
use crate::model::time_format;
use crate::protocol::PhaseTiming;

impl Store {
    /// Milliseconds between successive provisioning events (each step's start, then READY),
    /// named by the step that ran: what `sandbox new` prints and the phase benchmark reads.
    pub fn provision_timings(&self, vmid: u32) -> StoreResult<Vec<PhaseTiming>> {
        let events = self.sandbox_events(vmid, EventPage::Tail(200))?;
        let marks: Vec<(String, time::OffsetDateTime)> = events
            .iter()
            .filter_map(|e| {
                let phase = match e.kind.as_str() {
                    "sandbox.provision.step" => e.json["step"].as_str().map(str::to_string),
                    "sandbox.state" if e.json["to_state"] == "READY" => Some("ready".to_string()),
                    _ => None,
                }?;
                time_format::parse(&e.ts).ok().map(|t| (phase, t))
            })
            .collect();
        Ok(marks
            .windows(2)
            .map(|w| PhaseTiming { phase: w[0].0.clone(), ms: (w[1].1 - w[0].1).whole_milliseconds().max(0) as u64 })
            .collect())
    }
}
