//! Locking a `std::sync::Mutex` whose holder may have panicked.
//!
//! Actors run under `catch_unwind`, so a panic can leave a mutex poisoned. The data behind
//! every lock in the daemon stays consistent across a panic (counters, maps of small
//! values, connection pools), so a poisoned lock is used as it is rather than turning one
//! actor's crash into every caller's.

use std::sync::{Mutex, MutexGuard};

/// The guard, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = std::sync::Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _guard = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 1);
    }
}
