//! What a server is, as its supervisor publishes it: where it stands ([`ServerState`]), the
//! health status callers see ([`HealthStatus`]), and the snapshot read without waiting for the
//! task ([`ServerInfo`]).

use std::time::SystemTime;

use crate::process::ExitInfo;

/// Where a server stands. Only its supervisor task changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// A process was started and has not yet answered its health check.
    Starting {
        /// When this process was started.
        since: SystemTime,
    },
    /// The process is running; `healthy` is the outcome of its last check.
    Running {
        /// Whether the last health check passed.
        healthy: bool,
        /// When it was last checked.
        last_check: SystemTime,
    },
    /// The process exited; the restart policy starts it again at `until`.
    Backoff {
        /// When the next attempt starts.
        until: SystemTime,
        /// Which restart the next attempt is (1 for the first).
        attempt: u32,
        /// How the process ended.
        exit: ExitInfo,
    },
    /// `stop()` or `shutdown()` is taking the tree down.
    Stopping {
        /// When the stop began.
        since: SystemTime,
    },
    /// Down for good: stopped, or exited with no restart left. The port is released.
    Stopped {
        /// How the last process ended, when one ran.
        exit: Option<ExitInfo>,
        /// When it went down.
        at: SystemTime,
    },
}

/// `RunningServer.healthStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Started, not yet answering its health check.
    Starting,
    /// Answered its last health check.
    Healthy,
    /// Exited, or failed its last health check.
    Unhealthy,
    /// Being stopped.
    Stopping,
}

impl HealthStatus {
    /// The name JS sees.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Stopping => "stopping",
        }
    }
}

impl ServerState {
    /// The health status a caller sees for this state.
    pub fn health(&self) -> HealthStatus {
        match self {
            ServerState::Starting { .. } => HealthStatus::Starting,
            ServerState::Running { healthy: true, .. } => HealthStatus::Healthy,
            ServerState::Running { healthy: false, .. }
            | ServerState::Backoff { .. }
            | ServerState::Stopped { .. } => HealthStatus::Unhealthy,
            ServerState::Stopping { .. } => HealthStatus::Stopping,
        }
    }
}

/// A snapshot of one server, as its supervisor last published it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// The server's id.
    pub id: String,
    /// The deployment it serves.
    pub deployment_id: String,
    /// The project it belongs to.
    pub project_id: String,
    /// The build it runs.
    pub build_id: String,
    /// The current process id, while one runs.
    pub pid: Option<u32>,
    /// Always `127.0.0.1`.
    pub host: String,
    /// The port it listens on.
    pub port: u16,
    /// Where it stands.
    pub state: ServerState,
    /// When its health was last checked.
    pub last_health_check: Option<SystemTime>,
    /// When it was deployed.
    pub started_at: SystemTime,
    /// Restarts made by the restart policy.
    pub restarts: u32,
    /// The token every process of the server carries in its environment.
    pub token: String,
}

impl ServerInfo {
    /// Its health status.
    pub fn health(&self) -> HealthStatus {
        self.state.health()
    }

    /// When it went down for good, once it has.
    pub fn stopped_at(&self) -> Option<SystemTime> {
        match self.state {
            ServerState::Stopped { at, .. } => Some(at),
            _ => None,
        }
    }

    /// Whether a process of it may be running (it is not down for good).
    pub fn is_live(&self) -> bool {
        !matches!(self.state, ServerState::Stopped { .. })
    }
}
