//! The egress record: what the host ruleset dropped, per sandbox and destination, folded
//! in from the kernel's counters by the host-table keeper (`crate::net`).

use super::{Store, StoreResult};
use crate::model::time_format;
use crate::protocol::EgressDrop;
use rusqlite::params;
use time::OffsetDateTime;

/// The most destinations one sandbox's record keeps: a guest scanning the internet must
/// not grow the database without bound (further destinations are still dropped).
pub const MAX_DESTINATIONS_PER_SANDBOX: u32 = 1000;

impl Store {
    /// Adds `packets` dropped attempts from `vmid` to `destination:port/protocol`.
    pub fn add_egress_drops(
        &self,
        vmid: u32,
        destination: &str,
        protocol: &str,
        port: u16,
        packets: u64,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let now = time_format::format(now);
        let packets = i64::try_from(packets).unwrap_or(i64::MAX);
        self.write(|tx| {
            let updated = tx
                .execute(
                    "UPDATE egress_drops SET packets = packets + ?5, last_seen = ?6
                      WHERE vmid = ?1 AND destination = ?2 AND protocol = ?3 AND port = ?4",
                    params![vmid, destination, protocol, port, packets, now],
                )
                .map_err(|e| self.err(e))?;
            if updated == 0 {
                let count: u32 = tx
                    .query_row("SELECT COUNT(*) FROM egress_drops WHERE vmid = ?1", [vmid], |r| r.get(0))
                    .map_err(|e| self.err(e))?;
                if count < MAX_DESTINATIONS_PER_SANDBOX {
                    tx.execute(
                        "INSERT INTO egress_drops VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        params![vmid, destination, protocol, port, packets, now],
                    )
                    .map_err(|e| self.err(e))?;
                }
            }
            Ok(())
        })
    }

    /// The sandbox's record, most attempts first; `since` limits it to attempts seen from
    /// then on (a job's window).
    pub fn egress_drops(&self, vmid: u32, since: Option<&str>) -> StoreResult<Vec<EgressDrop>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT destination, protocol, port, packets, first_seen, last_seen FROM egress_drops
                      WHERE vmid = ?1 AND last_seen >= ?2 ORDER BY packets DESC, destination LIMIT 200",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![vmid, since.unwrap_or("")], |r| {
                    Ok(EgressDrop {
                        destination: r.get(0)?,
                        protocol: r.get(1)?,
                        port: r.get(2)?,
                        packets: r.get::<_, i64>(3)?.max(0) as u64,
                        first_seen: r.get(4)?,
                        last_seen: r.get(5)?,
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::temp_store;
    use time::OffsetDateTime;

    #[test]
    fn attempts_add_up_per_destination_and_the_record_is_bounded() {
        let (_dir, store) = temp_store();
        let now = OffsetDateTime::now_utc();
        store.add_egress_drops(101, "192.168.1.1", "tcp", 22, 2, now).unwrap();
        store.add_egress_drops(101, "192.168.1.1", "tcp", 22, 3, now).unwrap();
        store.add_egress_drops(101, "10.0.0.1", "udp", 53, 1, now).unwrap();
        let record = store.egress_drops(101, None).unwrap();
        assert_eq!(record.len(), 2);
        assert_eq!((record[0].destination.as_str(), record[0].packets), ("192.168.1.1", 5));
        assert!(store.egress_drops(102, None).unwrap().is_empty());
        for i in 0..super::MAX_DESTINATIONS_PER_SANDBOX + 5 {
            store.add_egress_drops(103, &format!("198.51.{}.{}", i / 256, i % 256), "tcp", 80, 1, now).unwrap();
        }
        let count: usize = store.egress_drops(103, None).unwrap().len();
        assert_eq!(count, 200, "a page is capped");
    }
}
