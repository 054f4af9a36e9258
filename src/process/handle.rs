//! A started process: its exit status, its output, and the one tree killer.
//!
//! # Caveats
//! The leader is reaped by tokio as soon as it exits, so its exit is noticed at once. Its
//! descendants stay in its process group and are reached with `killpg`, unless one of them
//! called `setsid` or `setpgid` to leave the group: such a process escapes (see README).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use super::exit::ExitInfo;
use super::journal::Journal;
use super::procfs;
use super::registry;
use crate::error::{Error, Result};
use crate::logs::LogStore;

/// A running or finished child, cheap to clone.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pid: u32,
    start_ticks: u64,
    started_at: SystemTime,
    log: Arc<LogStore>,
    exit: watch::Receiver<Option<ExitInfo>>,
    pipes_closed: watch::Receiver<u8>,
    cleanup: Cleanup,
}

/// Which process a handle is for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Started {
    pub pid: u32,
    pub start_ticks: u64,
    pub started_at: SystemTime,
}

/// The process's exit and the end of its output, as its watchers publish them.
pub(super) struct Output {
    pub exit: watch::Receiver<Option<ExitInfo>>,
    /// Counts the output streams that ended (2 once both have).
    pub closed: watch::Receiver<u8>,
}

/// What must remember the process until its group is empty.
#[derive(Debug)]
pub(super) enum Cleanup {
    /// It dies with the host: the exit hook's registry, and the journal when given.
    WithHost(Option<Arc<Journal>>),
    /// It outlives the host: nothing of the host's tracks it; the task tailing its log file
    /// (if any) stops when the host lets go of it.
    Kept(Option<tokio::task::AbortHandle>),
}

/// The grace between SIGTERM and SIGKILL when a caller sets none: `shutdownTimeoutMs`'s default
/// (SPEC §2), used for servers, builds and the exported process helpers alike.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// How often the killer looks again while it waits for a group to empty.
const GROUP_POLL: Duration = Duration::from_millis(5);

/// How long the killer waits after SIGKILL before giving up on a process that will not die
/// (one stuck in uninterruptible sleep, for example).
const AFTER_SIGKILL: Duration = Duration::from_secs(10);

impl ProcessHandle {
    pub(super) fn new(
        started: Started,
        log: Arc<LogStore>,
        output: Output,
        cleanup: Cleanup,
    ) -> Self {
        let Started {
            pid,
            start_ticks,
            started_at,
        } = started;
        if let Cleanup::WithHost(journal) = &cleanup {
            registry::register(pid as i32);
            if let Some(journal) = journal {
                journal.add(pid as i32, start_ticks);
            }
        }
        let handle = ProcessHandle {
            inner: Arc::new(Inner {
                pid,
                start_ticks,
                started_at,
                log,
                exit: output.exit,
                pipes_closed: output.closed,
                cleanup,
            }),
        };
        let watcher = handle.clone();
        tokio::spawn(async move {
            watcher.wait().await;
            if procfs::group_is_empty(watcher.pgid()) {
                watcher.forget_group();
            }
        });
        handle
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    fn pgid(&self) -> i32 {
        self.inner.pid as i32
    }

    /// The start time after boot, in clock ticks, read from `/proc` at spawn.
    pub fn start_ticks(&self) -> u64 {
        self.inner.start_ticks
    }

    /// When the process was started.
    pub fn started_at(&self) -> SystemTime {
        self.inner.started_at
    }

    /// Where its output goes.
    pub fn log(&self) -> &Arc<LogStore> {
        &self.inner.log
    }

    /// How it ended, once it has.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        *self.inner.exit.borrow()
    }

    /// Whether the process itself (the group leader) is still running.
    pub fn is_running(&self) -> bool {
        self.exit_info().is_none()
    }

    /// Waits until the process has exited and been reaped.
    pub async fn wait(&self) -> ExitInfo {
        let mut exit = self.inner.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(info) => info.unwrap_or_else(ExitInfo::unknown),
            // The waiter task is gone only when the runtime shuts down.
            Err(_) => self.exit_info().unwrap_or_else(ExitInfo::unknown),
        }
    }

    /// Waits until both output pipes are closed (all their writers gone), at most `limit`.
    /// Returns whether they closed.
    pub async fn wait_output_closed(&self, limit: Duration) -> bool {
        let mut closed = self.inner.pipes_closed.clone();
        timeout(limit, closed.wait_for(|count| *count >= 2))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Sends `signal` to the whole process group.
    pub fn signal_group(&self, signal: Signal) -> Result<()> {
        match killpg(Pid::from_raw(self.pgid()), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(errno) => Err(Error::SignalFailed {
                pid: self.inner.pid,
                signal: signal.as_str().to_owned(),
                reason: errno.desc().to_owned(),
            }),
        }
    }

    /// Stops the whole tree: SIGTERM to the group, up to `grace` for it to exit, then SIGKILL,
    /// then waits until the leader is reaped and no live member is left. Returns the leader's
    /// exit status.
    ///
    /// A running leader's group gets its SIGTERM during this call, before the returned future
    /// is first polled: a caller on another thread (the JS thread) does not wait for a runtime
    /// worker to wake before the process starts dying.
    pub fn kill_tree(&self, grace: Duration) -> impl Future<Output = ExitInfo> + Send + 'static {
        let handle = self.clone();
        let signalled = self.is_running();
        if signalled {
            self.send_or_log(Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        async move { handle.finish_kill(signalled, deadline).await }
    }

    /// The rest of [`Self::kill_tree`]: SIGTERM if it was not sent yet and something of the
    /// group is left, the grace period until `deadline`, SIGKILL, the reap.
    async fn finish_kill(&self, signalled: bool, deadline: Instant) -> ExitInfo {
        if !signalled {
            if self.group_is_empty() {
                self.forget_group();
                return self.wait().await;
            }
            self.send_or_log(Signal::SIGTERM);
        }
        let exited_in_grace = self.wait_until_gone(deadline).await;
        if !exited_in_grace {
            tracing::debug!(pid = self.inner.pid, "grace period over: SIGKILL");
            self.send_or_log(Signal::SIGKILL);
            if !self.wait_until_gone(Instant::now() + AFTER_SIGKILL).await {
                tracing::warn!(
                    pid = self.inner.pid,
                    "process group still has live members {AFTER_SIGKILL:?} after SIGKILL"
                );
            }
        }
        self.forget_group();
        self.wait().await
    }

    fn send_or_log(&self, signal: Signal) {
        if let Err(error) = self.signal_group(signal) {
            tracing::warn!("{error}");
        }
    }

    fn group_is_empty(&self) -> bool {
        procfs::group_is_empty(self.pgid())
    }

    /// Waits until the leader is reaped and the group has no live member, or `deadline`.
    async fn wait_until_gone(&self, deadline: Instant) -> bool {
        if tokio::time::timeout_at(deadline, self.wait())
            .await
            .is_err()
        {
            return false;
        }
        loop {
            if self.group_is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(GROUP_POLL).await;
        }
    }

    /// The group has no live member: stop tracking it for the exit hook and the journal.
    fn forget_group(&self) {
        if let Cleanup::WithHost(journal) = &self.inner.cleanup {
            registry::unregister(self.pgid());
            if let Some(journal) = journal {
                journal.remove(self.pgid());
            }
        }
    }

    /// Whether the process outlives the host (`keepServersOnExit`).
    pub fn is_kept(&self) -> bool {
        matches!(self.inner.cleanup, Cleanup::Kept(_))
    }

    /// Lets go of a kept process that keeps running: its log file is no longer read here.
    pub fn let_go(&self) {
        if let Cleanup::Kept(Some(tailer)) = &self.inner.cleanup {
            tailer.abort();
        }
    }
}
