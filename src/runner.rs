//! The runner: the one object that owns everything a `LocalProcessRunner` manages.
//!
//! It holds the validated configuration now; builds, servers and ports join it as their
//! modules land.

use crate::config::RunnerConfig;

/// Counts a caller can poll cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerStats {
    /// Server processes currently alive.
    pub running_processes: usize,
    /// Ports handed out to servers, ascending.
    pub allocated_ports: Vec<u16>,
    /// Ports of the range not handed out.
    pub available_ports: usize,
}

/// Builds Mastra projects and supervises their servers.
#[derive(Debug)]
pub struct Runner {
    config: RunnerConfig,
}

impl Runner {
    /// A runner with a validated configuration.
    pub fn new(config: RunnerConfig) -> Self {
        tracing::debug!(build_dir = %config.build_dir.display(), "runner created");
        Runner { config }
    }

    /// The configuration the runner works with.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Current counts of processes and ports.
    pub fn stats(&self) -> RunnerStats {
        RunnerStats {
            running_processes: 0,
            allocated_ports: Vec::new(),
            available_ports: self.config.port_range.len(),
        }
    }

    /// Stops every server and cancels every build. With none started yet, there is nothing to
    /// wait for.
    pub async fn shutdown(&self) {
        tracing::debug!("runner shut down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_new_runner_has_the_whole_port_range_available() {
        let runner = Runner::new(RunnerConfig::defaults(Path::new("/tmp")));
        let stats = runner.stats();
        assert_eq!(stats.running_processes, 0);
        assert!(stats.allocated_ports.is_empty());
        assert_eq!(stats.available_ports, 90);
    }
}
