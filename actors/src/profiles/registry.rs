//! The profile set the daemon serves, replaced whole on a successful reload.

use super::loader::{ProfileErrors, ProfileRules, ProfileSet, load_dir};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Shared by the API and the actors. Readers take an `Arc` snapshot, so a reload never
/// changes a profile under a request that already looked it up.
#[derive(Debug)]
pub struct ProfileRegistry {
    dir: PathBuf,
    rules: ProfileRules,
    current: RwLock<Arc<ProfileSet>>,
    last_reload_error: RwLock<Option<String>>,
}

impl ProfileRegistry {
    /// Loads `dir`; fails when any profile is bad (the daemon refuses to start). Profiles
    /// it cannot serve and no-effect keys are logged, and kept for `status`.
    pub fn load(dir: PathBuf, rules: ProfileRules) -> Result<Self, ProfileErrors> {
        let set = load_dir(&dir, rules)?;
        log_notes(&set);
        Ok(ProfileRegistry { dir, rules, current: RwLock::new(Arc::new(set)), last_reload_error: RwLock::new(None) })
    }

    pub fn snapshot(&self) -> Arc<ProfileSet> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads the directory. On error the previous set stays and the error is kept for
    /// `status`; returns the number of profiles now loaded.
    pub fn reload(&self) -> Result<usize, ProfileErrors> {
        match load_dir(&self.dir, self.rules) {
            Ok(set) => {
                log_notes(&set);
                let count = set.profiles.len();
                match self.current.write() {
                    Ok(mut guard) => *guard = Arc::new(set),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
                }
                self.set_error(None);
                Ok(count)
            }
            Err(errors) => {
                self.set_error(Some(errors.to_string()));
                Err(errors)
            }
        }
    }

    pub fn last_reload_error(&self) -> Option<String> {
        match self.last_reload_error.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    fn set_error(&self, error: Option<String>) {
        match self.last_reload_error.write() {
            Ok(mut guard) => *guard = error,
            Err(poisoned) => *poisoned.into_inner() = error,
        }
    }
}

fn log_notes(set: &ProfileSet) {
    for skipped in &set.skipped {
        tracing::error!("{skipped}");
    }
    for warning in &set.warnings {
        tracing::warn!("{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_reload_keeps_the_old_set_and_remembers_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, "name: a\ntemplate_vmid: 9000\n").unwrap();
        let registry = ProfileRegistry::load(dir.path().to_path_buf(), ProfileRules::default()).unwrap();
        std::fs::write(&file, "name: a\ntemplate_vmid: 9000\nbogus: 1\n").unwrap();
        assert!(registry.reload().is_err());
        assert_eq!(registry.snapshot().names(), ["a"]);
        assert!(registry.last_reload_error().is_some_and(|e| e.contains("bogus")));
        std::fs::write(&file, "name: b\ntemplate_vmid: 9000\n").unwrap();
        assert_eq!(registry.reload(), Ok(1));
        assert_eq!(registry.snapshot().names(), ["b"]);
        assert_eq!(registry.last_reload_error(), None);
    }
}
