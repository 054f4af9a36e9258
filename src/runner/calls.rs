//! Calls in flight (deploys, builds) by generation: `shutdown()` and `detach()` cancel the
//! current generation and wait for its calls to end; later calls belong to a fresh one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::sync::lock;

/// Calls in flight of one generation.
#[derive(Default)]
pub struct Generation {
    cancelled: AtomicBool,
    active: AtomicUsize,
    idle: Notify,
}

impl Generation {
    /// Waits until every call of this generation has ended.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.active.load(Ordering::SeqCst) == 0 {
                break;
            }
            idle.await;
        }
    }
}

/// A call in flight; ends its generation's count when dropped.
pub struct InFlight {
    generation: Arc<Generation>,
}

impl InFlight {
    /// Whether `shutdown()` (or `detach()`) cancelled the call.
    pub fn cancelled(&self) -> bool {
        self.generation.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.generation.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.generation.idle.notify_waiters();
        }
    }
}

/// The current generation of calls.
#[derive(Default)]
pub struct Calls {
    current: Mutex<Arc<Generation>>,
}

impl Calls {
    /// Counts a call in flight in the current generation.
    pub fn begin(&self) -> InFlight {
        let generation = Arc::clone(&lock(&self.current));
        generation.active.fetch_add(1, Ordering::SeqCst);
        InFlight { generation }
    }

    /// Cancels the current generation and returns it; later calls belong to a fresh one.
    pub fn cancel(&self) -> Arc<Generation> {
        let mut current = lock(&self.current);
        let old = std::mem::take(&mut *current);
        old.cancelled.store(true, Ordering::SeqCst);
        old
    }
}
