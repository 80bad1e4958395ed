//! Versioned schema migrations. Each runs once, in its own transaction, and is recorded in
//! `schema_migrations`. Never edit a released migration: add the next one.

use super::{StoreError, StoreResult, sqlite};
use crate::model::time_format;
use rusqlite::{Connection, params};
use std::path::Path;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "sandboxes",
        sql: "
CREATE TABLE sandboxes (
    vmid             INTEGER PRIMARY KEY,
    name             TEXT NOT NULL,
    profile          TEXT NOT NULL,
    state            TEXT NOT NULL,
    ip               TEXT,
    node             TEXT,
    tags             TEXT NOT NULL DEFAULT '[]',
    keepalive        INTEGER NOT NULL DEFAULT 0,
    lease_expires_at TEXT,
    last_used_at     TEXT,
    network_mode     TEXT NOT NULL,
    cores            INTEGER NOT NULL,
    memory_mb        INTEGER NOT NULL,
    job_id           TEXT,
    workspace_id     TEXT,
    provision_step   TEXT,
    snippet_path     TEXT,
    error            TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX sandboxes_state ON sandboxes(state);
",
    },
    Migration {
        version: 2,
        name: "events",
        sql: "
CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ts           TEXT NOT NULL,
    kind         TEXT NOT NULL,
    stage        TEXT NOT NULL,
    sandbox_vmid INTEGER,
    job_id       TEXT,
    msg          TEXT NOT NULL,
    payload      TEXT NOT NULL DEFAULT '{}',
    peer_uid     INTEGER
);
CREATE INDEX events_sandbox ON events(sandbox_vmid, id);
CREATE INDEX events_job ON events(job_id, id);
CREATE INDEX events_kind ON events(kind, id);
",
    },
    Migration {
        version: 3,
        name: "bootstrap_tokens",
        sql: "
CREATE TABLE bootstrap_tokens (
    token_hash  TEXT PRIMARY KEY,
    vmid        INTEGER NOT NULL,
    expires_at  TEXT NOT NULL,
    consumed_at TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX bootstrap_tokens_vmid ON bootstrap_tokens(vmid);
ALTER TABLE sandboxes ADD COLUMN ttl_minutes INTEGER;
ALTER TABLE sandboxes ADD COLUMN description TEXT;
",
    },
    Migration {
        version: 4,
        name: "jobs_and_artifacts",
        sql: "
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    repo_url          TEXT NOT NULL,
    git_ref           TEXT,
    profile           TEXT NOT NULL,
    task              TEXT NOT NULL,
    mode              TEXT NOT NULL,
    agent             TEXT NOT NULL,
    ttl_minutes       INTEGER NOT NULL,
    keepalive         INTEGER NOT NULL,
    status            TEXT NOT NULL,
    sandbox_vmid      INTEGER,
    runner_token_hash TEXT UNIQUE,
    log_bytes         INTEGER NOT NULL DEFAULT 0,
    result            TEXT,
    error             TEXT,
    deadline_at       TEXT NOT NULL,
    sandbox_released  INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX jobs_status ON jobs(status);
CREATE TABLE artifact_tokens (
    token_hash TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL REFERENCES jobs(id),
    vmid       INTEGER NOT NULL,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE artifacts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL REFERENCES jobs(id),
    name       TEXT NOT NULL,
    path       TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    mime       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (job_id, path)
);
",
    },
    Migration {
        version: 5,
        name: "events_failure_flag",
        // Whether an event reports a failure is decided when it is written (the kind's
        // catalog entry, or a change to FAILED); rows from before are marked once, here,
        // by the rule the daemon used to apply when reading.
        sql: "
ALTER TABLE events ADD COLUMN failure INTEGER NOT NULL DEFAULT 0;
UPDATE events SET failure = 1
 WHERE kind LIKE '%failed%' OR kind LIKE '%.failure' OR payload LIKE '%\"to_state\":\"FAILED\"%';
CREATE INDEX events_failure ON events(failure, id);
",
    },
    Migration {
        version: 6,
        name: "sandbox_mac_and_egress",
        // The MAC binds a sandbox in the host ruleset before it has an address; the egress
        // record keeps what the host ruleset dropped, per sandbox and destination.
        sql: "
ALTER TABLE sandboxes ADD COLUMN mac TEXT;
CREATE TABLE egress_drops (
    vmid INTEGER NOT NULL,
    destination TEXT NOT NULL,
    protocol TEXT NOT NULL,
    port INTEGER NOT NULL,
    packets INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    PRIMARY KEY (vmid, destination, protocol, port)
);
",
    },
    Migration {
        version: 7,
        name: "exposures",
        // One row per published port: its own host port (two sandboxes can expose the same
        // guest port, the Go version's D11), the target's guest port (the address is always
        // read from the sandbox record).
        sql: "
CREATE TABLE exposures (
    name TEXT PRIMARY KEY,
    vmid INTEGER NOT NULL,
    guest_port INTEGER NOT NULL,
    host_port INTEGER NOT NULL UNIQUE,
    state TEXT NOT NULL,
    url TEXT,
    target TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX exposures_vmid ON exposures(vmid);
",
    },
    Migration {
        version: 8,
        name: "workspaces",
        // A workspace's volume is owned by its holder VM (`holder_vmid`, a config-only VM
        // that is never a sandbox), so no sandbox's destroy or rollback frees it. `intent`
        // is written before an attach or detach is sent to Proxmox (`attach:<vmid>`,
        // `detach:<vmid>`), so a restart finishes it.
        sql: "
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    node TEXT NOT NULL,
    storage TEXT NOT NULL,
    size_gb INTEGER NOT NULL,
    holder_vmid INTEGER NOT NULL UNIQUE,
    volid TEXT,
    state TEXT NOT NULL,
    attached_vmid INTEGER,
    intent TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
",
    },
    Migration {
        version: 9,
        name: "job workspaces",
        // The workspace a job's sandbox gets (`job run --workspace`).
        sql: "ALTER TABLE jobs ADD COLUMN workspace_id TEXT;",
    },
    Migration {
        version: 10,
        name: "workspace forks",
        // `<source id>` or `<source id>@<snapshot>`: a fork's holder is a clone of the
        // source's, so a restart in the middle clones again instead of making an empty one.
        sql: "ALTER TABLE workspaces ADD COLUMN fork_of TEXT;",
    },
    Migration {
        version: 11,
        name: "sessions",
        // A session: a workspace, a profile, and the sandbox running them now (if any).
        sql: "
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    profile TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    current_vmid INTEGER,
    state TEXT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
",
    },
    Migration {
        version: 12,
        name: "warm pool",
        // Set while a sandbox waits in the warm pool: the fingerprint of the profile it was
        // built from (a changed profile drains it); cleared in the claim's transaction.
        sql: "ALTER TABLE sandboxes ADD COLUMN pool TEXT;",
    },
];

pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

pub fn current_version(conn: &Connection, path: &Path) -> StoreResult<u32> {
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| sqlite(path, e))?;
    if !exists {
        return Ok(0);
    }
    conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
        .map_err(|e| sqlite(path, e))
}

/// Brings the database to `SCHEMA_VERSION`.
pub fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<u32> {
    migrate_to(conn, path, SCHEMA_VERSION)
}

/// Applies the migrations up to and including `target` (tests build old databases this way).
pub fn migrate_to(conn: &mut Connection, path: &Path, target: u32) -> StoreResult<u32> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .map_err(|e| sqlite(path, e))?;
    let current = current_version(conn, path)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found: current, known: SCHEMA_VERSION });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current && m.version <= target) {
        let tx = conn.transaction().map_err(|e| sqlite(path, e))?;
        tx.execute_batch(m.sql).map_err(|e| sqlite(path, e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, time_format::now()],
        )
        .map_err(|e| sqlite(path, e))?;
        tx.commit().map_err(|e| sqlite(path, e))?;
    }
    current_version(conn, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// Rows a user could have had at each version; each must survive every later upgrade.
    fn seed(conn: &Connection, version: u32) {
        if version >= 1 {
            conn.execute(
                "INSERT INTO sandboxes (vmid, name, profile, state, network_mode, cores, memory_mb, created_at, updated_at)
                 VALUES (1001, 'kept', 'yolo-ephemeral', 'RUNNING', 'nat', 4, 6144, '2026-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z')",
                [],
            )
            .expect("seed v1");
        }
        if version >= 2 {
            conn.execute(
                "INSERT INTO events (ts, kind, stage, sandbox_vmid, msg) VALUES ('2026-01-01T00:00:00.000000000Z', 'sandbox.state', 'lifecycle', 1001, 'kept event')",
                [],
            )
            .expect("seed v2");
        }
        if (2..5).contains(&version) {
            conn.execute(
                "INSERT INTO events (ts, kind, stage, msg) VALUES ('2026-01-01T00:00:00.000000000Z', 'sandbox.destroy.failed', 'lifecycle', 'old failure')",
                [],
            )
            .expect("seed a failure before v5");
        }
        if version >= 3 {
            conn.execute(
                "INSERT INTO bootstrap_tokens (token_hash, vmid, expires_at, created_at) VALUES ('abc', 1001, '2999-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z')",
                [],
            )
            .expect("seed v3");
        }
        if version >= 4 {
            conn.execute(
                "INSERT INTO jobs (id, repo_url, profile, task, mode, agent, ttl_minutes, keepalive, status, deadline_at, created_at, updated_at)
                 VALUES ('job_kept', 'https://example.invalid/r.git', 'yolo-ephemeral', 't', 'dangerous', 'claude', 60, 0, 'RUNNING', '2999-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z')",
                [],
            )
            .expect("seed v4");
        }
        if version >= 5 {
            conn.execute(
                "INSERT INTO events (ts, kind, stage, msg, failure) VALUES ('2026-01-01T00:00:00.000000000Z', 'proxmox.unreachable.failed', 'recovery', 'kept failure', 1)",
                [],
            )
            .expect("seed v5");
        }
    }

    #[test]
    fn upgrades_from_every_earlier_version_and_keeps_data() {
        for start in 0..=SCHEMA_VERSION {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("agentlab.db");
            {
                let mut conn = Connection::open(&path).unwrap();
                if start > 0 {
                    assert_eq!(migrate_to(&mut conn, &path, start).ok(), Some(start));
                }
                seed(&conn, start);
            }
            let store = Store::open(&path).unwrap_or_else(|e| panic!("upgrade from v{start}: {e}"));
            assert_eq!(store.schema_version().ok(), Some(SCHEMA_VERSION), "from v{start}");
            if start >= 1 {
                let sbx = store.get_sandbox(1001).ok().flatten();
                assert_eq!(sbx.map(|s| s.name), Some("kept".to_string()), "from v{start}");
            }
            if start >= 2 {
                let n: i64 = store
                    .read(|c| {
                        c.query_row("SELECT COUNT(*) FROM events WHERE msg = 'kept event'", [], |r| r.get(0))
                            .map_err(|e| store.err(e))
                    })
                    .unwrap_or(0);
                assert_eq!(n, 1, "from v{start}");
            }
            if start >= 2 {
                // Failures recorded before the flag existed are still listed after the upgrade.
                let failures: Vec<String> = store.recent_failures(10).unwrap().into_iter().map(|e| e.msg).collect();
                let expected: &[&str] = if start >= 5 { &["kept failure"] } else { &["old failure"] };
                assert_eq!(failures, expected, "from v{start}");
            }
            if start >= 4 {
                let job = store.get_job("job_kept").ok().flatten();
                assert_eq!(job.map(|j| j.repo_url), Some("https://example.invalid/r.git".to_string()), "from v{start}");
            }
            // Opening again is a no-op.
            drop(store);
            assert!(Store::open(&path).is_ok());
        }
    }

    #[test]
    fn a_database_from_a_newer_daemon_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agentlab.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')", []).unwrap();
        drop(conn);
        match Store::open(&path) {
            Err(StoreError::TooNew { found: 999, .. }) => {}
            other => panic!("expected TooNew, got {:?}", other.err()),
        }
    }

    #[test]
    fn versions_are_consecutive() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }
}
