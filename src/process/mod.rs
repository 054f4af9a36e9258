//! Child processes: the one spawner ([`spawn`]), handles with the one tree killer
//! ([`ProcessHandle::kill_tree`]), the environment allow-list ([`env`]), `/proc` reading
//! ([`procfs`]), the exit-hook registry ([`registry`]) and the leftover journal ([`journal`]).

pub mod env;
pub mod handle;
pub mod journal;
pub mod procfs;
pub mod registry;
pub mod spawn;

pub use handle::{ExitInfo, ProcessHandle};
pub use journal::{Journal, reap_leftovers};
pub use spawn::{SpawnSpec, spawn};
