//! The one way the crate locks shared state, and the boxed future its traits return.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

/// A boxed future, as the crate's object-safe traits (providers, log observers) return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Locks `mutex`, carrying on with the data of a holder that panicked: every value the crate
/// keeps under a lock is valid after any single update, so a panic elsewhere never turns into
/// a second failure here.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
