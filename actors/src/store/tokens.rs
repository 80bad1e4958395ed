//! Bootstrap tokens: stored only as SHA-256 hashes, bound to a VMID, expiring, single use.

use super::{Store, StoreResult};
use crate::model::time_format;
use rusqlite::{OptionalExtension, Transaction, params};

/// The compare-and-set that uses a token up, inside the caller's transaction.
pub(crate) fn consume_in(tx: &Transaction<'_>, store: &Store, token_hash: &str, vmid: u32) -> StoreResult<bool> {
    let changed = tx
        .execute(
            "UPDATE bootstrap_tokens SET consumed_at = ?3
             WHERE token_hash = ?1 AND vmid = ?2 AND consumed_at IS NULL AND expires_at > ?3",
            params![token_hash, vmid, time_format::now()],
        )
        .map_err(|e| store.err(e))?;
    Ok(changed == 1)
}

impl Store {
    pub fn insert_bootstrap_token(&self, token_hash: &str, vmid: u32, expires_at: &str) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO bootstrap_tokens (token_hash, vmid, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash, vmid, expires_at, time_format::now()],
            )
            .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    /// Consumes a token if it matches `vmid`, is unexpired and unused. True when consumed.
    pub fn consume_bootstrap_token(&self, token_hash: &str, vmid: u32) -> StoreResult<bool> {
        self.write(|tx| consume_in(tx, self, token_hash, vmid))
    }

    pub fn delete_bootstrap_tokens(&self, vmid: u32) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM bootstrap_tokens WHERE vmid = ?1", [vmid]).map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    /// Whether this token was ever minted for `vmid`, used or expired: proof enough that
    /// the caller is that VM (it may learn that the VM has no job).
    pub fn bootstrap_token_known(&self, token_hash: &str, vmid: u32) -> StoreResult<bool> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM bootstrap_tokens WHERE token_hash = ?1 AND vmid = ?2",
                params![token_hash, vmid],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
        })
    }

    pub fn bootstrap_token_count(&self, vmid: u32) -> StoreResult<u32> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM bootstrap_tokens WHERE vmid = ?1", [vmid], |r| r.get(0))
                .optional()
                .map(|n| n.unwrap_or(0))
                .map_err(|e| self.err(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::temp_store;

    #[test]
    fn tokens_are_single_use_bound_to_a_vmid_and_expire() {
        let (_dir, store) = temp_store();
        store.insert_bootstrap_token("h1", 1001, "2999-01-01T00:00:00.000000000Z").unwrap();
        store.insert_bootstrap_token("h2", 1001, "2000-01-01T00:00:00.000000000Z").unwrap();
        assert_eq!(store.consume_bootstrap_token("h1", 1002).ok(), Some(false), "another VMID");
        assert_eq!(store.consume_bootstrap_token("h1", 1001).ok(), Some(true));
        assert_eq!(store.consume_bootstrap_token("h1", 1001).ok(), Some(false), "replay");
        assert_eq!(store.consume_bootstrap_token("h2", 1001).ok(), Some(false), "expired");
        store.delete_bootstrap_tokens(1001).unwrap();
        assert_eq!(store.bootstrap_token_count(1001).ok(), Some(0));
    }
}
