//! The SQLite store: one writer connection, pooled readers, WAL, foreign keys, versioned
//! migrations. Every state transition is written here before the side effect that
//! depends on it.

mod artifacts;
mod egress;
mod events;
mod exposures;
pub(crate) mod jobs;
mod migrations;
mod pool;
mod retention;
mod sandbox_updates;
mod sandboxes;
mod sessions;
mod timings;
mod tokens;
mod workspaces;

pub use artifacts::{ArtifactGrant, MintedTokens};
pub use egress::MAX_DESTINATIONS_PER_SANDBOX;
pub use events::{EventPage, NewEvent, Stage};
pub use exposures::ExposureRecord;
pub use jobs::{JobRecord, fresh_log};
pub use migrations::{MIGRATIONS, Migration, SCHEMA_VERSION};
pub use pool::{DRAINING as POOL_DRAINING, PoolClaim};
pub use retention::StoredArtifact;
pub use sandbox_updates::SandboxPatch;
pub use sandboxes::SandboxRecord;
pub use sessions::SessionRecord;
pub use workspaces::{NewWorkspace, WorkspaceIntent, WorkspaceRecord, WorkspaceState};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create database file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database {} has schema version {found} but this agentlabd knows only up to {known}: it was written by a newer agentlabd; run that version or restore a backup",
        path.display()
    )]
    TooNew { path: PathBuf, found: u32, known: u32 },
    #[error("record in database is not readable: {0}")]
    Corrupt(String),
    #[error("sandbox {vmid} is {actual}, not {expected}")]
    StateConflict { vmid: u32, expected: String, actual: String },
    #[error("sandbox {0} not found")]
    SandboxNotFound(u32),
    #[error("sandbox {0} already exists")]
    SandboxExists(u32),
    #[error("job {0} not found")]
    JobNotFound(String),
    #[error("job {id} is {actual}, not {expected}")]
    JobStateConflict { id: String, expected: String, actual: String },
    #[error("no free VMID in the configured range (vmid_min..vmid_max); destroy sandboxes or widen the range")]
    NoFreeVmid,
    #[error("an exposure named `{0}` exists; `agentlab sandbox exposed` lists them")]
    ExposureExists(String),
    #[error("every host port for exposures ({first}-{last}) is taken; unexpose one or widen exposure_port_min/max")]
    NoFreeHostPort { first: u16, last: u16 },
    #[error("a workspace named `{0}` exists; `agentlab workspace list` shows them")]
    WorkspaceExists(String),
    #[error("a session named `{0}` exists; `agentlab session list` shows them")]
    SessionExists(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Why a row could not become a record.
pub(crate) enum RowError {
    Sql(rusqlite::Error),
    /// The row was read, but a value in it is not valid (no version writes it).
    Corrupt(String),
}

impl From<rusqlite::Error> for RowError {
    fn from(e: rusqlite::Error) -> Self {
        RowError::Sql(e)
    }
}

/// A time column (RFC 3339 text); one that cannot be read is a corrupt record, never
/// "now" (a corrupt deadline must not silently mean "expire at once").
pub(crate) fn time_at(row: &rusqlite::Row<'_>, index: usize) -> Result<time::OffsetDateTime, RowError> {
    parse_time(&row.get::<_, String>(index)?)
}

/// An optional time column.
pub(crate) fn optional_time_at(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> Result<Option<time::OffsetDateTime>, RowError> {
    row.get::<_, Option<String>>(index)?.as_deref().map(parse_time).transpose()
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, RowError> {
    crate::model::time_format::parse(text).map_err(|e| RowError::Corrupt(format!("time `{text}`: {e}")))
}

impl RowError {
    /// Says which record a corrupt value belongs to (`sandbox 1001`, `job job_…`).
    pub(crate) fn of(self, record: &str) -> RowError {
        match self {
            RowError::Corrupt(why) => RowError::Corrupt(format!("{record}: {why}")),
            other => other,
        }
    }
}

/// A record read from one row of its table's column list.
pub(crate) trait FromRow: Sized {
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, RowError>;
}

/// Bound to the database path so every error names the file.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Id of the newest event inserted by the write in progress (0 = none); published to
    /// `event_watch` only once that write commits.
    pending_event: AtomicI64,
    /// The newest committed event id, for followers (`logs --follow`).
    event_watch: watch::Sender<i64>,
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_IDLE_READERS: usize = 8;

impl Store {
    /// The first column of every row `sql` returns (ids of live records).
    pub(crate) fn column<T: rusqlite::types::FromSql>(&self, sql: &str) -> StoreResult<Vec<T>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<Vec<T>>>().map_err(|e| self.err(e))
        })
    }

    /// Every row `sql` returns, as records of type `T`.
    pub(crate) fn query<T: FromRow>(
        &self,
        conn: &Connection,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> StoreResult<Vec<T>> {
        let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt.query(args).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            out.push(T::from_row(row).map_err(|e| match e {
                RowError::Sql(e) => self.err(e),
                RowError::Corrupt(why) => StoreError::Corrupt(why),
            })?);
        }
        Ok(out)
    }

    /// Opens (creating, mode 0600) and migrates the database.
    pub fn open(path: &Path) -> StoreResult<Store> {
        create_private_file(path)?;
        let mut writer = Connection::open(path).map_err(|e| sqlite(path, e))?;
        configure(&writer, path)?;
        migrations::migrate(&mut writer, path)?;
        let newest: i64 = writer
            .query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))
            .map_err(|e| sqlite(path, e))?;
        Ok(Store {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            pending_event: AtomicI64::new(0),
            event_watch: watch::Sender::new(newest),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one IMMEDIATE transaction on the writer connection; commits if it
    /// returns Ok.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = crate::sync::lock(&self.writer);
        self.pending_event.store(0, Ordering::SeqCst);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| sqlite(&self.path, e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| sqlite(&self.path, e))?;
        let newest = self.pending_event.swap(0, Ordering::SeqCst);
        if newest > 0 {
            self.event_watch.send_replace(newest);
        }
        Ok(out)
    }

    /// Notified with the newest event id after every commit that added events.
    pub fn watch_events(&self) -> watch::Receiver<i64> {
        self.event_watch.subscribe()
    }

    pub(crate) fn note_event(&self, id: i64) {
        self.pending_event.fetch_max(id, Ordering::SeqCst);
    }

    /// Runs `f` on a read-only connection (WAL: never blocked by the writer).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = crate::sync::lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| sqlite(&self.path, e))?;
                conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sqlite(&self.path, e))?;
                conn
            }
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(conn);
        }
        out
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> StoreResult<u32> {
        self.read(|c| migrations::current_version(c, &self.path))
    }

    /// Maps a rusqlite error to a StoreError naming this database.
    pub(crate) fn err(&self, e: rusqlite::Error) -> StoreError {
        sqlite(&self.path, e)
    }
}

pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite { path: path.to_path_buf(), source }
}

fn configure(conn: &Connection, path: &Path) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sqlite(path, e))?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| sqlite(path, e))?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| sqlite(path, e))?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| sqlite(path, e))?;
    Ok(())
}

/// The database holds tokens' hashes and the record of every VM: owner-only from birth.
fn create_private_file(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Create { path: path.to_path_buf(), source }),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::Store;

    /// A fresh store in a temp dir that lives as long as the returned guard.
    pub fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("agentlab.db")).expect("open");
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_in_wal_with_foreign_keys_and_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, store) = test_support::temp_store();
        let mode = store
            .read(|c| c.pragma_query_value(None, "journal_mode", |r| r.get::<_, String>(0)).map_err(|e| store.err(e)));
        assert_eq!(mode.ok().as_deref(), Some("wal"));
        let fk = store
            .write(|tx| tx.pragma_query_value(None, "foreign_keys", |r| r.get::<_, i64>(0)).map_err(|e| store.err(e)));
        assert_eq!(fk.ok(), Some(1));
        let perms = std::fs::metadata(dir.path().join("agentlab.db")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(perms.ok(), Some(0o600));
        assert_eq!(store.schema_version().ok(), Some(SCHEMA_VERSION));
    }
}
