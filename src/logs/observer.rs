//! Who is told when a log opens and closes: the observers (the `setOnServerLog` listener, the
//! observability persister) and the owners they are told about.

use std::sync::Arc;

use super::LogStore;
use crate::sync::BoxFuture;

/// Whose log a [`LogObserver`] is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOwner {
    /// A server's output (and the runner's lines about it).
    Server {
        /// The server's id.
        server_id: String,
        /// The deployment it serves.
        deployment_id: String,
        /// Its project.
        project_id: String,
    },
    /// A build's log (install, build script, and the runner's lines).
    Build {
        /// The build's id.
        build_id: String,
        /// Its project.
        project_id: String,
    },
}

/// Told when a server's or a build's log opens (before its first process starts, so every
/// line from the first one on can be seen) and when it closes (the server is down for good, the
/// build ended). Observers are kept by name: `setOnServerLog`'s listener is one, others (such as
/// a log persister) sit beside it.
pub trait LogObserver: Send + Sync {
    /// `owner` writes into `log` from now on.
    fn log_opened(&self, owner: &LogOwner, log: &Arc<LogStore>);

    /// `owner`'s log gets no more lines.
    fn log_closed(&self, _owner: &LogOwner) {}

    /// Finishes what the observer still has to do with lines it was given (for example a
    /// pending write); `shutdown()` awaits it, bounded by `providerTimeoutMs`.
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
