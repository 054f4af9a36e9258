//! `getStats().isolation` and the isolation fields of `getConfig()`, converted from the core.

use napi_derive::napi;

use crate::isolation::{IsolationReport, Limits, SandboxSettings};

/// What isolates servers and builds (`getStats().isolation`), and why something is off.
#[napi(object, use_nullable = true)]
pub struct IsolationStats {
    /// Whether servers and build steps run in a sandbox: their own user, mount and pid
    /// namespaces with a fresh `/proc`, `no_new_privs`, no capabilities, a Landlock domain.
    pub sandbox: bool,
    /// Why they do not, when they do not (`sandbox: false`, a kernel without Landlock or
    /// without user namespaces).
    pub sandbox_reason: Option<String>,
    /// The kernel's Landlock ABI; 0 without Landlock.
    pub landlock_abi: u32,
    /// Whether a server may bind only its own port (Landlock ABI 4 and later).
    pub bind_own_port_only: bool,
    /// Whether signals and abstract unix sockets stop at the sandbox (Landlock ABI 6 and
    /// later).
    pub scoped: bool,
    /// What a sandboxed process holds of the host's capabilities: `'none'`, or `'host'` when
    /// the host runs as root without a sandbox.
    #[napi(ts_type = "'none' | 'host'")]
    pub capabilities: String,
    /// How limits are enforced: a cgroup per server, or (where none can be made) an RSS
    /// watchdog for `memoryMb` only.
    #[napi(ts_type = "'cgroup-v2' | 'cgroup-v1' | 'watchdog'")]
    pub limits: String,
    /// Why limits are not enforced by a cgroup, when they are not.
    pub limits_reason: Option<String>,
    /// Which limits the kernel enforces.
    pub enforced: EnforcedLimits,
}

/// Which limits the kernel enforces.
#[napi(object)]
pub struct EnforcedLimits {
    /// `memoryMb`.
    pub memory: bool,
    /// `pids`.
    pub pids: bool,
    /// `cpus`.
    pub cpus: bool,
}

impl From<IsolationReport> for IsolationStats {
    fn from(report: IsolationReport) -> Self {
        IsolationStats {
            sandbox: report.sandboxed,
            sandbox_reason: report.sandbox_reason,
            landlock_abi: report.landlock_abi,
            bind_own_port_only: report.bind_own_port_only,
            scoped: report.scoped,
            capabilities: report.capabilities.to_owned(),
            limits: report.limits.to_owned(),
            limits_reason: report.limits_reason,
            enforced: EnforcedLimits {
                memory: report.enforced.memory,
                pids: report.enforced.pids,
                cpus: report.enforced.cpus,
            },
        }
    }
}

/// The sandbox in force (`getConfig().sandbox`).
#[napi(object)]
pub struct ResolvedSandbox {
    /// Whether servers and builds are sandboxed where the kernel allows it.
    pub enabled: bool,
    /// Extra paths every sandbox reads.
    pub read_paths: Vec<String>,
    /// Extra paths every sandbox writes.
    pub write_paths: Vec<String>,
    /// Whether servers may not connect to other servers' ports of `portRange`.
    pub isolate_ports: bool,
}

impl From<&SandboxSettings> for ResolvedSandbox {
    fn from(settings: &SandboxSettings) -> Self {
        let strings = |paths: &[std::path::PathBuf]| {
            paths
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        };
        ResolvedSandbox {
            enabled: settings.enabled,
            read_paths: strings(&settings.read_paths),
            write_paths: strings(&settings.write_paths),
            isolate_ports: settings.isolate_ports,
        }
    }
}

/// Limits in force (`getConfig().limits`, `getConfig().buildLimits`); `null`: no limit.
#[napi(object, use_nullable = true)]
pub struct ResolvedLimits {
    /// Memory in MB.
    pub memory_mb: Option<f64>,
    /// CPU cores.
    pub cpus: Option<f64>,
    /// Processes and threads.
    pub pids: Option<f64>,
}

impl From<&Limits> for ResolvedLimits {
    fn from(limits: &Limits) -> Self {
        ResolvedLimits {
            memory_mb: limits.memory_mb.map(|m| m as f64),
            cpus: limits.milli_cpus.map(|m| m as f64 / 1000.0),
            pids: limits.pids.map(|p| p as f64),
        }
    }
}
