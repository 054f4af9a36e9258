//! The one way the crate locks shared state.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, carrying on with the data of a holder that panicked: every value the crate
/// keeps under a lock is valid after any single update, so a panic elsewhere never turns into
/// a second failure here.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
