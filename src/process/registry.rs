//! Every process group this host process may still have alive, for the exit hook.
//!
//! When Node exits normally (`process.exit()`, the end of the event loop), there is no time for
//! grace periods: [`kill_all_now`] sends SIGKILL to every registered group synchronously.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn groups() -> MutexGuard<'static, BTreeSet<i32>> {
    crate::sync::lock(&GROUPS)
}

/// Tracks a group whose leader was just started.
pub fn register(pgid: i32) {
    groups().insert(pgid);
}

/// Stops tracking a group that has no live member left.
pub fn unregister(pgid: i32) {
    groups().remove(&pgid);
}

/// Groups currently tracked.
pub fn registered() -> Vec<i32> {
    groups().iter().copied().collect()
}

/// SIGKILLs every tracked group at once; returns how many were signalled.
pub fn kill_all_now() -> usize {
    let pgids = std::mem::take(&mut *groups());
    pgids
        .iter()
        .filter(|pgid| killpg(Pid::from_raw(**pgid), Signal::SIGKILL).is_ok())
        .count()
}
