//! Child processes: the one spawner ([`spawn`]) and the reader of their output (`output`),
//! handles with the one tree killer ([`ProcessHandle::kill_tree`]), the environment allow-list
//! ([`env`]), `/proc` reading ([`procfs`]), CPU and memory of a tree ([`usage`]), the exit-hook
//! registry ([`registry`]) and the leftover journal ([`journal`]).

pub mod env;
pub mod handle;
pub mod journal;
pub mod manager;
mod output;
pub mod ownership;
pub mod procfs;
pub mod registry;
pub mod spawn;
pub mod usage;
pub mod watchdog;

pub use handle::{DEFAULT_KILL_GRACE, ExitInfo, ProcessHandle};
pub use journal::{Journal, reap_leftovers};
pub use manager::{ManagedProcess, ProcessManager};
pub use spawn::{SpawnSpec, spawn, spawn_with_channel};
pub use usage::{ResourceMonitor, Usage};
