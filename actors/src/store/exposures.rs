//! Port exposures: one row per published guest port, with the host port it got.

use super::{FromRow, RowError, Store, StoreError, StoreResult, time_at};
use crate::model::time_format;
use crate::protocol::ExposureView;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureRecord {
    pub name: String,
    pub vmid: u32,
    pub guest_port: u16,
    pub host_port: u16,
    /// `requested` (recorded, not yet published), `serving`, `failed`.
    pub state: String,
    pub url: Option<String>,
    /// `ip:port` last published to.
    pub target: Option<String>,
    pub error: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "name, vmid, guest_port, host_port, state, url, target, error, created_at, updated_at";

impl FromRow for ExposureRecord {
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, RowError> {
        let name: String = row.get(0)?;
        let record = format!("exposure {name}");
        Ok(ExposureRecord {
            vmid: row.get(1)?,
            guest_port: row.get(2)?,
            host_port: row.get(3)?,
            state: row.get(4)?,
            url: row.get(5)?,
            target: row.get(6)?,
            error: row.get(7)?,
            created_at: time_at(row, 8).map_err(|e| e.of(&record))?,
            updated_at: time_at(row, 9).map_err(|e| e.of(&record))?,
            name,
        })
    }
}

impl ExposureRecord {
    pub fn view(&self, target_ip: Option<String>) -> ExposureView {
        ExposureView {
            name: self.name.clone(),
            vmid: self.vmid,
            port: self.guest_port,
            host_port: self.host_port,
            target_ip,
            url: self.url.clone(),
            state: self.state.clone(),
            error: self.error.clone(),
            created_at: time_format::format(self.created_at),
            updated_at: time_format::format(self.updated_at),
        }
    }
}

impl Store {
    /// Records a new exposure under the lowest free host port of `ports`; refuses a name in
    /// use. One transaction, so two requests cannot take the same port.
    pub fn insert_exposure(
        &self,
        name: &str,
        vmid: u32,
        guest_port: u16,
        ports: std::ops::RangeInclusive<u16>,
        now: OffsetDateTime,
    ) -> StoreResult<ExposureRecord> {
        let now_text = time_format::format(now);
        self.write(|tx| {
            let taken: Option<String> = tx
                .query_row("SELECT name FROM exposures WHERE name = ?1", [name], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?;
            if taken.is_some() {
                return Err(StoreError::ExposureExists(name.to_string()));
            }
            let mut stmt = tx.prepare("SELECT host_port FROM exposures").map_err(|e| self.err(e))?;
            let used: Vec<u16> = stmt
                .query_map([], |r| r.get(0))
                .map_err(|e| self.err(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(e))?;
            let host_port = ports
                .clone()
                .find(|p| !used.contains(p))
                .ok_or(StoreError::NoFreeHostPort { first: *ports.start(), last: *ports.end() })?;
            tx.execute(
                &format!(
                    "INSERT INTO exposures ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, 'requested', NULL, NULL, NULL, ?5, ?5)"
                ),
                params![name, vmid, guest_port, host_port, now_text],
            )
            .map_err(|e| self.err(e))?;
            Ok(ExposureRecord {
                name: name.to_string(),
                vmid,
                guest_port,
                host_port,
                state: "requested".into(),
                url: None,
                target: None,
                error: None,
                created_at: now,
                updated_at: now,
            })
        })
    }

    pub fn get_exposure(&self, name: &str) -> StoreResult<Option<ExposureRecord>> {
        self.read(|conn| {
            let sql = format!("SELECT {COLUMNS} FROM exposures WHERE name = ?1");
            Ok(self.query::<ExposureRecord>(conn, &sql, &[&name])?.into_iter().next())
        })
    }

    /// Every exposure, or those of one sandbox.
    pub fn list_exposures(&self, vmid: Option<u32>) -> StoreResult<Vec<ExposureRecord>> {
        self.read(|conn| match vmid {
            Some(vmid) => {
                let sql = format!("SELECT {COLUMNS} FROM exposures WHERE vmid = ?1 ORDER BY name");
                self.query(conn, &sql, &[&vmid])
            }
            None => self.query(conn, &format!("SELECT {COLUMNS} FROM exposures ORDER BY name"), &[]),
        })
    }

    /// Records the outcome of a publish.
    pub fn set_exposure_state(
        &self,
        name: &str,
        state: &str,
        url: Option<&str>,
        target: Option<&str>,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE exposures SET state = ?2, url = COALESCE(?3, url), target = COALESCE(?4, target), error = ?5,
                        updated_at = ?6 WHERE name = ?1",
                params![name, state, url, target, error, time_format::format(now)],
            )
            .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    pub fn delete_exposure(&self, name: &str) -> StoreResult<bool> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM exposures WHERE name = ?1", [name]).map_err(|e| self.err(e))?;
            Ok(n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::StoreError;
    use crate::store::test_support::temp_store;
    use time::OffsetDateTime;

    #[test]
    fn each_exposure_gets_its_own_host_port_and_names_are_unique() {
        let (_dir, store) = temp_store();
        let now = OffsetDateTime::now_utc();
        let a = store.insert_exposure("sbx-1001-8080", 1001, 8080, 10000..=10001, now).unwrap();
        let b = store.insert_exposure("sbx-1002-8080", 1002, 8080, 10000..=10001, now).unwrap();
        assert_ne!(a.host_port, b.host_port, "the same guest port on two sandboxes");
        assert!(matches!(
            store.insert_exposure("sbx-1001-8080", 1001, 8080, 10000..=10001, now),
            Err(StoreError::ExposureExists(_))
        ));
        assert!(matches!(
            store.insert_exposure("sbx-1003-8080", 1003, 8080, 10000..=10001, now),
            Err(StoreError::NoFreeHostPort { .. })
        ));
        assert!(store.delete_exposure("sbx-1001-8080").unwrap());
        let c = store.insert_exposure("sbx-1003-8080", 1003, 8080, 10000..=10001, now).unwrap();
        assert_eq!(c.host_port, a.host_port, "a freed port is reused");
        assert_eq!(store.list_exposures(Some(1003)).unwrap().len(), 1);
    }
}
