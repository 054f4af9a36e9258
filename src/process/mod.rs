//! Child processes: the one spawner ([`spawn`]) and the reader of their output (`output`),
//! handles with the one tree killer ([`ProcessHandle::kill_tree`]), a command run to its end
//! under a deadline ([`run_to_end`]), the environment allow-list ([`env`]), `/proc` reading
//! ([`procfs`]), a port's listeners ([`sock_diag`]), CPU and memory of a tree ([`usage`]), the
//! exit-hook registry ([`registry`]), the leftover journal ([`journal`]), processes tracked by
//! server id for the `ProcessManager` export ([`manager`]), and for servers that outlive the
//! host their log file ([`logfile`]) and their adoption by a later host ([`adopt`]).

pub mod adopt;
pub mod env;
pub mod exit;
pub mod handle;
pub mod journal;
pub mod logfile;
pub mod manager;
mod output;
pub mod ownership;
pub mod procfs;
pub mod registry;
pub mod run;
pub mod sock_diag;
pub mod spawn;
pub mod state_files;
pub mod usage;
pub mod watchdog;

pub use exit::ExitInfo;
pub use handle::{DEFAULT_KILL_GRACE, ProcessHandle};
pub use journal::{Journal, reap_leftovers};
pub use manager::{Admission, Managed, ManagerOptions, ProcessManager, Tracked};
pub use run::{Ending, RunEnd, Stopping, run_command, run_to_end};
pub use spawn::{Confinement, Lifetime, SpawnSpec, spawn, spawn_with};
pub use state_files::read_private_file;
pub use usage::{QUICK_SAMPLE_PROCESSES, ResourceMonitor, Usage};

/// Registers a descriptor this process owns (an `OwnedFd`, a `File`) with tokio's reactor,
/// for `interest`.
pub(crate) fn async_fd<T>(
    fd: T,
    interest: tokio::io::Interest,
) -> std::io::Result<tokio::io::unix::AsyncFd<T>>
where
    T: std::os::fd::AsRawFd + Into<std::os::fd::OwnedFd>,
{
    // SAFETY: a type that converts into an `OwnedFd` owns its descriptor: it stays open, and
    // is the one `as_raw_fd` returns, until the `AsyncFd` that now owns it is dropped.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }.map_err(Into::into)
}
