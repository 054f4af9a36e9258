//! Every process group this host process may still have alive, for the exit hook.
//!
//! When Node exits normally (`process.exit()`, the end of the event loop) or is ended by a
//! signal the host does not handle itself, there is no time for grace periods:
//! [`kill_all_now`] sends SIGKILL to every registered group, and to every process carrying a
//! registered server token, synchronously.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Tokens of live servers: their processes that left their group are found by it.
static TOKENS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

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

/// Tracks the token of a server whose first process was just started.
pub fn register_token(token: &str) {
    crate::sync::lock(&TOKENS).insert(token.to_owned());
}

/// Stops tracking the token of a server that is down for good.
pub fn unregister_token(token: &str) {
    crate::sync::lock(&TOKENS).remove(token);
}

/// Groups currently tracked.
pub fn registered() -> Vec<i32> {
    groups().iter().copied().collect()
}

/// SIGKILLs every tracked group at once, and every process carrying a tracked server token;
/// returns how many groups and processes were signalled.
pub fn kill_all_now() -> usize {
    let pgids = std::mem::take(&mut *groups());
    let groups = pgids
        .iter()
        .filter(|pgid| killpg(Pid::from_raw(**pgid), Signal::SIGKILL).is_ok())
        .count();
    let tokens = std::mem::take(&mut *crate::sync::lock(&TOKENS));
    let tokens: Vec<(&str, u64)> = tokens.iter().map(|token| (token.as_str(), 0)).collect();
    let escaped = super::ownership::kill_token_processes_now(&tokens).len();
    groups + escaped
}
