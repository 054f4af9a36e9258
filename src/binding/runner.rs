//! `LocalProcessRunner` as JS sees it (SPEC §2).

use napi::bindgen_prelude::{Result, Unknown};
use napi_derive::napi;
use serde_json::Value;

use crate::config::RunnerConfig;
use crate::runner::Runner;

use super::{json, to_js_error};

/// Counts of processes and ports, as `getStats()` returns them.
#[napi(object)]
pub struct RunnerStats {
    /// Server processes currently alive.
    pub running_processes: u32,
    /// Ports handed out to servers, ascending.
    pub allocated_ports: Vec<u32>,
    /// Ports of `portRange` not handed out.
    pub available_ports: u32,
}

/// Builds Mastra projects and runs them as supervised local processes.
#[napi]
pub struct LocalProcessRunner {
    runner: Runner,
}

#[napi]
impl LocalProcessRunner {
    /// Validates `config` (every field optional; see `LocalProcessRunnerConfig` for defaults).
    /// Throws an `Error` naming the first field that is wrong. `buildDir` is resolved against
    /// the current working directory now.
    #[napi(constructor, ts_args_type = "config?: LocalProcessRunnerConfig")]
    pub fn new(config: Option<Unknown>) -> Result<Self> {
        let cwd = std::env::current_dir().map_err(|e| {
            napi::Error::from_reason(format!(
                "Cannot resolve buildDir: the current working directory is unreadable ({e})"
            ))
        })?;
        let config = match config {
            Some(config) => json::to_json(&config, "config")?,
            None => Value::Null,
        };
        let config = RunnerConfig::from_json(&config, &cwd).map_err(to_js_error)?;
        Ok(LocalProcessRunner {
            runner: Runner::new(config),
        })
    }

    /// Always `'local'`.
    #[napi(getter, js_name = "type", ts_return_type = "'local'")]
    pub fn kind(&self) -> &'static str {
        "local"
    }

    /// The configuration in force, with every default applied and `buildDir` absolute.
    #[napi(ts_return_type = "ResolvedRunnerConfig")]
    pub fn get_config(&self) -> Value {
        self.runner.config().to_json()
    }

    /// Counts of running server processes and of allocated and free ports.
    #[napi]
    pub fn get_stats(&self) -> RunnerStats {
        let stats = self.runner.stats();
        RunnerStats {
            running_processes: stats.running_processes as u32,
            allocated_ports: stats.allocated_ports.into_iter().map(u32::from).collect(),
            available_ports: stats.available_ports as u32,
        }
    }

    /// Stops every server and cancels every build; resolves when no process is left.
    #[napi]
    pub async fn shutdown(&self) -> Result<()> {
        self.runner.shutdown().await;
        Ok(())
    }
}
