//! Taking over a kept server that another host started (`keepServersOnExit`).
//!
//! The process is not this host's child, so its exit is seen through a pidfd (readable once it
//! has exited) instead of `wait`, and its exit status cannot be read: it is reported as
//! unknown. Its output is the log file it appends to, read from what the file retained.
//!
//! # Caveats
//! The process is identified by its pid *and* its start time (`/proc/<pid>/stat`), both checked
//! again after the pidfd is open, so a reused pid is never taken for it. Without `pidfd_open`
//! (Linux before 5.3) its `/proc` entry is polled instead. Once it exits it stays a zombie until
//! its parent (PID 1, or a subreaper) reaps it; it runs no code and holds no port meanwhile.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::exit::ExitInfo;
use super::handle::{Cleanup, Output, ProcessHandle, Started};
use super::logfile::{Tail, TailFrom};
use super::procfs;
use crate::logs::LogStore;

/// How often a process without a pidfd is looked at.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// A running process that another host started, as its record names it.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// Its pid (also its process group's and session's id).
    pub pid: u32,
    /// Its start time after boot, in clock ticks.
    pub start_ticks: u64,
    /// When it was started.
    pub started_at: SystemTime,
    /// The file its output goes to.
    pub log_file: PathBuf,
    /// `logFileMaxMb` in bytes.
    pub max_log_bytes: u64,
}

/// Whether `pid` is alive and started at `start_ticks` (not a reused pid).
pub fn is_same_process(pid: u32, start_ticks: u64) -> bool {
    procfs::read_stat(pid as i32).is_some_and(|s| s.is_alive() && s.start_ticks == start_ticks)
}

/// Takes over `orphan`: watches it for exit and tails its log file into `log`, from what the
/// file retained. `None` when it is no longer the recorded process. With the handle comes a
/// receiver that turns `true` once what the file held is in `log`.
pub fn adopt(
    orphan: &Orphan,
    log: Arc<LogStore>,
) -> Option<(ProcessHandle, watch::Receiver<bool>)> {
    let pidfd = open_pidfd(orphan.pid);
    // Checked after the pidfd is open: from now on it refers to this very process.
    if !is_same_process(orphan.pid, orphan.start_ticks) {
        return None;
    }
    let (exit_sender, exit) = watch::channel(None::<ExitInfo>);
    let pid = orphan.pid;
    let start_ticks = orphan.start_ticks;
    tokio::spawn(async move {
        let waited = match &pidfd {
            // Readable once the process has exited.
            Ok(fd) => fd.readable().await.map(drop),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        };
        if let Err(error) = waited {
            tracing::debug!(pid, "no pidfd ({error}): polling /proc for its exit");
            while is_same_process(pid, start_ticks) {
                tokio::time::sleep(EXIT_POLL).await;
            }
        }
        tracing::debug!(pid, "adopted process exited");
        let _ = exit_sender.send(Some(ExitInfo::unknown()));
    });
    let (closed_sender, closed) = watch::channel(0u8);
    let (caught_up, backlog_read) = watch::channel(false);
    let tailer = super::spawn::tail_output(
        Tail {
            path: orphan.log_file.clone(),
            from: TailFrom::Retained,
            log: Arc::clone(&log),
            exit: exit.clone(),
            max_bytes: orphan.max_log_bytes,
            caught_up: Some(caught_up),
        },
        closed_sender,
    );
    let handle = ProcessHandle::new(
        Started {
            pid,
            start_ticks,
            started_at: orphan.started_at,
        },
        log,
        Output { exit, closed },
        Cleanup::Kept(Some(tailer)),
    );
    Some((handle, backlog_read))
}

fn open_pidfd(pid: u32) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned by the kernel and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    super::async_fd(owned, tokio::io::Interest::READABLE)
}
