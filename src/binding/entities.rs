//! The entities and results that cross the boundary as typed `#[napi(object)]` structs, so
//! `index.d.ts` is generated from them, and the one conversion of times into JS `Date`s.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use napi_derive::napi;

use napi::bindgen_prelude::Object;

use super::error::Result;
use super::isolation::{IsolationStats, ResolvedLimits, ResolvedSandbox};
use crate::builder::{BuildOutcome, PackageManager};
use crate::config::RunnerConfig;
use crate::health::HealthReport;
use crate::runner::{RunnerStats as CoreStats, ServerInfo};

/// A time as the JS `Date` it becomes.
pub(crate) fn js_date(time: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(time)
}

/// A server the runner started (MastraAdmin's `RunningServer`).
#[napi(object, use_nullable = true)]
pub struct RunningServer {
    /// The server's id: a random UUID (v4), new for every deploy and kept across restarts.
    pub id: String,
    /// The deployment it serves.
    pub deployment_id: String,
    /// The build it runs.
    pub build_id: String,
    /// The pid of its process while one runs.
    pub process_id: Option<u32>,
    /// Always `null`: local processes have no container.
    pub container_id: Option<String>,
    /// Always `'127.0.0.1'`.
    pub host: String,
    /// The port it listens on.
    pub port: u32,
    /// Where it stands.
    #[napi(ts_type = "HealthStatus")]
    pub health_status: String,
    /// When its health was last checked.
    pub last_health_check: Option<DateTime<Utc>>,
    /// Filled in by callers that sample it (`getResourceUsage`); `null` here.
    pub memory_usage_mb: Option<f64>,
    /// Filled in by callers that sample it (`getResourceUsage`); `null` here.
    pub cpu_percent: Option<f64>,
    /// When it was deployed.
    pub started_at: DateTime<Utc>,
    /// When it went down for good, once it has.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl From<ServerInfo> for RunningServer {
    fn from(info: ServerInfo) -> Self {
        RunningServer {
            health_status: info.health().as_str().to_owned(),
            stopped_at: info.stopped_at().map(js_date),
            id: info.id,
            deployment_id: info.deployment_id,
            build_id: info.build_id,
            process_id: info.pid,
            container_id: None,
            host: info.host,
            port: u32::from(info.port),
            last_health_check: info.last_health_check.map(js_date),
            memory_usage_mb: None,
            cpu_percent: None,
            started_at: js_date(info.started_at),
        }
    }
}

/// Counts of processes and ports, as `getStats()` returns them.
#[napi(object)]
pub struct RunnerStats {
    /// Server processes currently alive, not counting servers that drain.
    pub running_processes: u32,
    /// Servers a redeploy replaced that still answer the requests that reach them until
    /// their connections end (at most `redeployDrainMs`); `listServers()` leaves them out.
    pub draining_servers: u32,
    /// Ports handed out to servers, ascending.
    pub allocated_ports: Vec<u32>,
    /// Ports of `portRange` not handed out.
    pub available_ports: u32,
    /// Restarts made by the restart policy, all servers together.
    pub restarts: u32,
    /// Every server the runner supervises.
    pub servers: Vec<ServerSummary>,
    /// Megabytes the build directories take on disk (measured after each build, deploy and
    /// removal; builds beyond `retainBuilds` per deployment are removed after a deploy).
    pub build_disk_usage_mb: f64,
    /// Megabytes the deployments' data directories (`<buildDir>/.data/<deploymentId>`) take
    /// on disk, measured with the build directories.
    pub data_disk_usage_mb: f64,
    /// Log events written to the observability storage; present once one is set.
    pub observability: Option<ObservabilityStats>,
    /// What this runner found of an earlier runner's servers; present with
    /// `keepServersOnExit: true`.
    pub adoption: Option<AdoptionStats>,
    /// What isolates servers and builds, and why something is off.
    pub isolation: IsolationStats,
    /// The build cache's snapshots and what they served.
    pub build_cache: BuildCacheStats,
}

/// The build cache (`getStats().buildCache`): snapshots of earlier builds that later builds
/// with the same inputs restore.
#[napi(object)]
pub struct BuildCacheStats {
    /// Megabytes the snapshots take on disk, in hundredths rounded up (files shared between
    /// snapshots count once).
    pub size_mb: f64,
    /// Their bound (`buildCache.maxMb`).
    pub max_mb: f64,
    /// Snapshots kept.
    pub snapshots: u32,
    /// Builds that reused an earlier build's output.
    pub output_hits: f64,
    /// Builds that restored an earlier install's dependencies.
    pub install_hits: f64,
    /// Lookups that found no snapshot, and restores that failed.
    pub misses: f64,
    /// Snapshots removed to stay under `maxMb`.
    pub evictions: f64,
}

impl From<crate::runner::BuildCacheReport> for BuildCacheStats {
    fn from(report: crate::runner::BuildCacheReport) -> Self {
        let stats = report.stats;
        BuildCacheStats {
            // Hundredths, rounded up: a cache holding anything never reads 0.
            size_mb: (stats.bytes as f64 / 1_048_576.0 * 100.0).ceil() / 100.0,
            max_mb: (report.max_bytes as f64 / 1_048_576.0).floor(),
            snapshots: u32::try_from(stats.snapshots).unwrap_or(u32::MAX),
            output_hits: stats.output_hits as f64,
            install_hits: stats.install_hits as f64,
            misses: stats.misses as f64,
            evictions: stats.evictions as f64,
        }
    }
}

/// Servers an earlier runner on the same `buildDir` kept running (`keepServersOnExit`), as
/// this runner found them when it was created.
#[napi(object)]
pub struct AdoptionStats {
    /// Ids of the servers this runner adopted (`listServers()` shows them).
    pub adopted: Vec<String>,
    /// Recorded servers that had stopped while no runner supervised them; not adopted, their
    /// ports free.
    pub died: Vec<DeadServerReport>,
    /// Ids of recorded servers left alone because a live runner supervises them.
    pub left_to_other_runner: Vec<String>,
    /// Record files not adopted because they cannot be trusted (malformed, naming a process
    /// that is not the server's, or claiming a port, route or deployment another record
    /// claims), each as `<file>: <why>`; nothing they name was signalled.
    pub refused: Vec<String>,
    /// Why nothing was adopted, when this runner did not look (another runner was adopting on
    /// the same `buildDir` at that moment) or could not.
    pub not_adopted: Option<String>,
}

/// A recorded server that had stopped before this runner could adopt it.
#[napi(object)]
pub struct DeadServerReport {
    /// Its id.
    pub server_id: String,
    /// The deployment it served.
    pub deployment_id: String,
    /// Its port, free now.
    pub port: u32,
    /// When its log file was last written: about when it stopped.
    pub log_ended_at: Option<DateTime<Utc>>,
    /// Why it was not adopted.
    pub reason: String,
}

impl From<crate::runner::AdoptionReport> for AdoptionStats {
    fn from(report: crate::runner::AdoptionReport) -> Self {
        AdoptionStats {
            adopted: report.adopted,
            died: report
                .died
                .into_iter()
                .map(|dead| DeadServerReport {
                    server_id: dead.server_id,
                    deployment_id: dead.deployment_id,
                    port: u32::from(dead.port),
                    log_ended_at: dead.log_ended_at.map(js_date),
                    reason: dead.reason,
                })
                .collect(),
            left_to_other_runner: report.left_to_other_runner,
            refused: report.refused,
            not_adopted: report.not_adopted,
        }
    }
}

/// Log events of the observability storage in `getStats()`.
#[napi(object)]
pub struct ObservabilityStats {
    /// Events in files the storage accepted.
    pub written: f64,
    /// Events waiting to be written (batching, queued, being written or retried).
    pub pending: f64,
    /// Events given up on: every write attempt failed, or the pending bound was full.
    pub dropped: f64,
}

impl From<crate::observability::ObservabilityStats> for ObservabilityStats {
    fn from(stats: crate::observability::ObservabilityStats) -> Self {
        ObservabilityStats {
            written: stats.written as f64,
            pending: stats.pending as f64,
            dropped: stats.dropped as f64,
        }
    }
}

/// One supervised server in `getStats()`.
#[napi(object)]
pub struct ServerSummary {
    /// The server's id.
    pub id: String,
    /// The deployment it serves.
    pub deployment_id: String,
    /// The current process id, while one runs.
    pub process_id: Option<u32>,
    /// The port it listens on.
    pub port: u32,
    /// Where it stands.
    #[napi(ts_type = "HealthStatus")]
    pub health_status: String,
    /// Restarts made by the restart policy.
    pub restarts: u32,
}

impl RunnerStats {
    /// The runner's counts, with those of its observability storages when one was set.
    pub(crate) fn new(
        stats: CoreStats,
        observability: Option<crate::observability::ObservabilityStats>,
    ) -> Self {
        RunnerStats {
            running_processes: stats.running_processes as u32,
            draining_servers: stats.draining_servers as u32,
            allocated_ports: stats.allocated_ports.into_iter().map(u32::from).collect(),
            available_ports: stats.available_ports as u32,
            restarts: stats.restarts,
            build_disk_usage_mb: (stats.build_disk_bytes as f64 / 1_048_576.0 * 10.0).round()
                / 10.0,
            data_disk_usage_mb: (stats.data_disk_bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0,
            servers: stats
                .servers
                .into_iter()
                .map(|s| ServerSummary {
                    health_status: s.health().as_str().to_owned(),
                    id: s.id,
                    deployment_id: s.deployment_id,
                    process_id: s.pid,
                    port: u32::from(s.port),
                    restarts: s.restarts,
                })
                .collect(),
            observability: observability.map(ObservabilityStats::from),
            adoption: stats.adoption.map(AdoptionStats::from),
            isolation: IsolationStats::from(stats.isolation),
            build_cache: BuildCacheStats::from(stats.build_cache),
        }
    }
}

/// A health check's outcome.
#[napi(object)]
pub struct ServerHealth {
    /// Whether the server answered with a 2xx status.
    pub healthy: bool,
    /// Why not, when it did not.
    pub message: Option<String>,
}

impl From<HealthReport> for ServerHealth {
    fn from(report: HealthReport) -> Self {
        ServerHealth {
            healthy: report.healthy,
            message: report.message,
        }
    }
}

/// Writes a build's outcome into the caller's `Build` object (every other field untouched).
pub(crate) fn update_build(build: &mut Object, outcome: BuildOutcome) -> Result<()> {
    build.set("status", outcome.status.as_str())?;
    let started = outcome.started_at.unwrap_or(outcome.completed_at);
    build.set("startedAt", js_date(started))?;
    build.set("completedAt", js_date(outcome.completed_at))?;
    build.set("errorMessage", outcome.error_message)?;
    build.set("logs", outcome.logs)?;
    Ok(())
}

/// What `ProjectBuilder.buildById()` resolves with.
#[napi(object, use_nullable = true)]
pub struct ProjectBuildResult {
    /// How the build ended.
    #[napi(ts_type = "'succeeded' | 'failed' | 'cancelled'")]
    pub status: String,
    /// What failed and how (a summary line, then the package manager's own error lines);
    /// `null` on success.
    pub error_message: Option<String>,
    /// The build log (bounded; the newest lines win), stderr lines prefixed `[stderr] `.
    pub logs: String,
    /// When the build left the queue (for a build cancelled while queued: when it was
    /// cancelled).
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: DateTime<Utc>,
    /// The package manager used, once detected.
    #[napi(ts_type = "'npm' | 'pnpm' | 'yarn' | 'bun' | null")]
    pub package_manager: Option<String>,
}

impl From<BuildOutcome> for ProjectBuildResult {
    fn from(outcome: BuildOutcome) -> Self {
        ProjectBuildResult {
            status: outcome.status.as_str().to_owned(),
            started_at: js_date(outcome.started_at.unwrap_or(outcome.completed_at)),
            completed_at: js_date(outcome.completed_at),
            error_message: outcome.error_message,
            logs: outcome.logs,
            package_manager: outcome
                .package_manager
                .map(|pm| PackageManager::command(pm).to_owned()),
        }
    }
}

/// Memory and CPU of a process tree, as `getResourceUsage` and `getProcessResourceUsage`
/// resolve them; both `null` once the process is gone.
#[napi(object, use_nullable = true)]
pub struct ResourceUsage {
    /// Resident memory of the whole tree, in MB (one decimal).
    pub memory_usage_mb: Option<f64>,
    /// CPU of the whole tree since the previous sample, in % of one core.
    pub cpu_percent: Option<f64>,
}

impl From<Option<crate::process::Usage>> for ResourceUsage {
    fn from(usage: Option<crate::process::Usage>) -> Self {
        ResourceUsage {
            memory_usage_mb: usage.map(|u| (u.memory_mb * 10.0).round() / 10.0),
            cpu_percent: usage.map(|u| u.cpu_percent),
        }
    }
}

/// One entry of a log page.
#[napi(object)]
pub struct LogEntry {
    /// The entry's id, the cursor for `before`.
    pub id: String,
    /// When it was stored (ISO 8601).
    pub timestamp: String,
    /// The line as printed.
    pub line: String,
    /// Which pipe it came from.
    #[napi(ts_type = "'stdout' | 'stderr'")]
    pub stream: String,
}

/// A page of log entries, oldest first.
#[napi(object, use_nullable = true)]
pub struct PaginatedLogsResult {
    /// The entries of the page.
    pub entries: Vec<LogEntry>,
    /// Whether older entries exist before the first of this page.
    pub has_more: bool,
    /// The id of the page's oldest entry.
    pub oldest_cursor: Option<String>,
    /// The id of the page's newest entry.
    pub newest_cursor: Option<String>,
}

impl From<crate::logs::LogPage> for PaginatedLogsResult {
    fn from(page: crate::logs::LogPage) -> Self {
        PaginatedLogsResult {
            oldest_cursor: page.entries.first().map(|e| e.id().to_string()),
            newest_cursor: page.entries.last().map(|e| e.id().to_string()),
            has_more: page.has_more,
            entries: page
                .entries
                .iter()
                .map(|entry| LogEntry {
                    id: entry.id().to_string(),
                    timestamp: entry.iso_timestamp(),
                    line: entry.line().to_owned(),
                    stream: entry.stream().as_str().to_owned(),
                })
                .collect(),
        }
    }
}

/// The configuration in force (`getConfig()`): every default applied, `buildDir` absolute.
#[napi(object, use_nullable = true)]
pub struct ResolvedRunnerConfig {
    /// Ports servers are given.
    pub port_range: ResolvedPortRange,
    /// Builds that run at once; the others queue.
    pub max_concurrent_builds: u32,
    /// Time a build may take, in milliseconds.
    pub default_build_timeout_ms: f64,
    /// How a server's health is checked.
    pub health_check: ResolvedHealthCheck,
    /// Lines kept of each server's log.
    pub log_retention_lines: u32,
    /// Where builds and the runner's own files live (absolute).
    pub build_dir: String,
    /// Variables every server and build gets.
    pub global_env_vars: HashMap<String, String>,
    /// Time a stopping process tree gets before SIGKILL, in milliseconds.
    pub shutdown_timeout_ms: f64,
    /// Time a provider call may take, in milliseconds.
    pub provider_timeout_ms: f64,
    /// How crashed servers are restarted; `null`: they are not.
    pub restart_policy: Option<ResolvedRestartPolicy>,
    /// The source used without `setSource`; `null`: none.
    #[napi(ts_type = "'local'")]
    pub default_source: Option<String>,
    /// What a deploy of a deployment that has a server does.
    #[napi(ts_type = "'replace' | 'keep'")]
    pub redeploy: String,
    /// Builds kept per deployment.
    pub retain_builds: u32,
    /// Memory all server logs together may take, in MB.
    pub log_memory_limit_mb: f64,
    /// Whether servers outlive the host for the next runner to adopt.
    pub keep_servers_on_exit: bool,
    /// Size a server's log file may reach, in MB.
    pub log_file_max_mb: f64,
    /// Where servers send their traces; `null`: nowhere.
    pub traces_endpoint: Option<String>,
    /// Time a replaced server may drain, in milliseconds.
    pub redeploy_drain_ms: f64,
    /// The sandbox of servers and builds.
    pub sandbox: ResolvedSandbox,
    /// Every server's limits (a deploy's `limits` override them).
    pub limits: ResolvedLimits,
    /// Every build step's limits.
    pub build_limits: ResolvedLimits,
    /// The bound of the build cache's snapshots.
    pub build_cache: ResolvedBuildCache,
}

/// The build cache's bound (`getConfig().buildCache`).
#[napi(object)]
pub struct ResolvedBuildCache {
    /// The most its snapshots may take on disk, in MB (0: none are kept).
    pub max_mb: f64,
}

/// The inclusive range of ports servers are given.
#[napi(object)]
pub struct ResolvedPortRange {
    /// The first port.
    pub start: u32,
    /// The last port.
    pub end: u32,
}

/// How a server's health is checked, as `getConfig()` reports it.
#[napi(object)]
pub struct ResolvedHealthCheck {
    /// Time one check may take, in milliseconds.
    pub timeout_ms: f64,
    /// Time between checks, in milliseconds.
    pub retry_interval_ms: f64,
    /// Checks made before a deploy gives up.
    pub max_retries: u32,
    /// The path checked.
    pub endpoint: String,
    /// Whether a server may say it is ready over IPC instead.
    pub ready_signal: bool,
}

/// How crashed servers are restarted, as `getConfig()` reports it.
#[napi(object)]
pub struct ResolvedRestartPolicy {
    /// Restarts allowed.
    pub max_restarts: u32,
    /// The first wait, in milliseconds (doubling each time).
    pub backoff_ms: f64,
    /// The longest wait, in milliseconds.
    pub max_backoff_ms: f64,
}

/// Milliseconds of `duration`, as a JS number.
fn millis(duration: Duration) -> f64 {
    duration.as_millis() as f64
}

impl From<&RunnerConfig> for ResolvedRunnerConfig {
    fn from(config: &RunnerConfig) -> Self {
        const MB: f64 = 1024.0 * 1024.0;
        let health = &config.health_check;
        ResolvedRunnerConfig {
            port_range: ResolvedPortRange {
                start: u32::from(config.port_range.start),
                end: u32::from(config.port_range.end),
            },
            max_concurrent_builds: config.max_concurrent_builds,
            default_build_timeout_ms: millis(config.default_build_timeout),
            health_check: ResolvedHealthCheck {
                timeout_ms: millis(health.timeout),
                retry_interval_ms: millis(health.retry_interval),
                max_retries: health.max_retries,
                endpoint: health.endpoint.clone(),
                ready_signal: config.ready_signal,
            },
            log_retention_lines: config.log_retention_lines,
            build_dir: config.build_dir.to_string_lossy().into_owned(),
            global_env_vars: config.global_env_vars.clone().into_iter().collect(),
            shutdown_timeout_ms: millis(config.shutdown_timeout),
            provider_timeout_ms: millis(config.provider_timeout),
            restart_policy: config
                .restart_policy
                .as_ref()
                .map(|policy| ResolvedRestartPolicy {
                    max_restarts: policy.max_restarts,
                    backoff_ms: millis(policy.backoff),
                    max_backoff_ms: millis(policy.max_backoff),
                }),
            default_source: config.default_source.map(|_| "local".to_owned()),
            redeploy: config.redeploy.as_str().to_owned(),
            retain_builds: config.retain_builds,
            log_memory_limit_mb: (config.log_memory_limit as f64 / MB).floor(),
            keep_servers_on_exit: config.keep_servers_on_exit,
            log_file_max_mb: (config.log_file_max_bytes as f64 / MB).floor(),
            traces_endpoint: config.traces_endpoint.clone(),
            redeploy_drain_ms: millis(config.redeploy_drain),
            sandbox: ResolvedSandbox::from(&config.sandbox),
            limits: ResolvedLimits::from(&config.limits),
            build_limits: ResolvedLimits::from(&config.build_limits),
            build_cache: ResolvedBuildCache {
                max_mb: (config.build_cache_max_bytes as f64 / MB).floor(),
            },
        }
    }
}
