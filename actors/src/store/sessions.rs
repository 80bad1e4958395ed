//! Sessions: a workspace, a profile, and the sandbox running them now.

use super::{FromRow, RowError, Store, StoreError, StoreResult, time_at};
use crate::model::time_format;
use crate::protocol::SessionView;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub name: String,
    pub profile: String,
    pub workspace_id: String,
    pub current_vmid: Option<u32>,
    /// `running` or `stopped`.
    pub state: String,
    pub error: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, name, profile, workspace_id, current_vmid, state, error, created_at, updated_at";

impl FromRow for SessionRecord {
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, RowError> {
        let id: String = row.get(0)?;
        let record = format!("session {id}");
        Ok(SessionRecord {
            name: row.get(1)?,
            profile: row.get(2)?,
            workspace_id: row.get(3)?,
            current_vmid: row.get(4)?,
            state: row.get(5)?,
            error: row.get(6)?,
            created_at: time_at(row, 7).map_err(|e| e.of(&record))?,
            updated_at: time_at(row, 8).map_err(|e| e.of(&record))?,
            id,
        })
    }
}

impl SessionRecord {
    pub fn view(&self) -> SessionView {
        SessionView {
            id: self.id.clone(),
            name: self.name.clone(),
            profile: self.profile.clone(),
            workspace_id: self.workspace_id.clone(),
            current_vmid: self.current_vmid,
            state: self.state.clone(),
            error: self.error.clone(),
            created_at: time_format::format(self.created_at),
            updated_at: time_format::format(self.updated_at),
        }
    }
}

impl Store {
    /// Records a session (`stopped`, no sandbox yet); refuses a name in use.
    pub fn insert_session(&self, rec: &SessionRecord) -> StoreResult<()> {
        self.write(|tx| {
            let taken: Option<String> = tx
                .query_row("SELECT id FROM sessions WHERE name = ?1", [&rec.name], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?;
            if taken.is_some() {
                return Err(StoreError::SessionExists(rec.name.clone()));
            }
            tx.execute(
                &format!("INSERT INTO sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"),
                params![
                    rec.id,
                    rec.name,
                    rec.profile,
                    rec.workspace_id,
                    rec.current_vmid,
                    rec.state,
                    rec.error,
                    time_format::format(rec.created_at)
                ],
            )
            .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    /// By id, or else by name.
    pub fn find_session(&self, id_or_name: &str) -> StoreResult<Option<SessionRecord>> {
        self.read(|conn| {
            let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC");
            Ok(self.query::<SessionRecord>(conn, &sql, &[&id_or_name])?.into_iter().next())
        })
    }

    pub fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        self.read(|conn| self.query(conn, &format!("SELECT {COLUMNS} FROM sessions ORDER BY name"), &[]))
    }

    /// Writes the session's sandbox, state and error as they are now.
    pub fn save_session(&self, rec: &SessionRecord, now: OffsetDateTime) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE sessions SET current_vmid = ?2, state = ?3, error = ?4, updated_at = ?5 WHERE id = ?1",
                params![rec.id, rec.current_vmid, rec.state, rec.error, time_format::format(now)],
            )
            .map_err(|e| self.err(e))?;
            Ok(())
        })
    }
}
