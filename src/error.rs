//! The core's one error type.
//!
//! Every variant carries the context a user needs to act on it (which argument, which path, what
//! the operating system said). The binding layer turns it into a JS `Error` whose message is this
//! type's `Display`, in exactly one place.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::ports::range::PortRange;
use crate::process::exit::ExitInfo;

/// Something the core could not do, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A caller passed a value that breaks the contract. `name` is the argument or config field
    /// as the caller spelled it (for example `healthCheck.endpoint`).
    InvalidArgument {
        name: String,
        reason: String,
        fault: ArgumentFault,
    },
    /// A process could not be started.
    SpawnFailed { program: String, reason: String },
    /// A signal could not be sent to a process group.
    SignalFailed {
        pid: u32,
        signal: String,
        reason: String,
    },
    /// A build's output (`.mastra/output/index.mjs`) is not where deploy looks for it.
    BuildOutputMissing { build_id: String, path: PathBuf },
    /// A server process exited before it became healthy.
    ServerExited {
        pid: u32,
        exit: ExitInfo,
        output: String,
    },
    /// Every port of `range` is taken: `allocated` by this allocator, `in_use` by listeners of
    /// other programs, and `unbindable` refused for another reason (`bind_error` says the first).
    NoFreePort {
        range: PortRange,
        allocated: usize,
        in_use: usize,
        unbindable: usize,
        bind_error: Option<String>,
    },
    /// The HTTP client used for health checks could not be created.
    HttpClient { reason: String },
    /// `attempts` health checks of `url` in a row failed; `last_failure` says how the last did.
    Unhealthy {
        url: String,
        attempts: u32,
        last_failure: String,
    },
    /// A server on loopback `port` did not answer `endpoint` with a 2xx within `timeout`.
    HealthTimeout {
        port: u16,
        endpoint: String,
        timeout: Duration,
        attempts: u32,
        last_failure: String,
    },
    /// A package-manager name that is not npm, pnpm, yarn or bun; `context` says where it came
    /// from (an argument, or a package.json's `packageManager` field).
    UnknownPackageManager { name: String, context: String },
    /// A project's package.json that cannot be used; `reason` includes the position of a JSON
    /// syntax error.
    InvalidPackageJson { path: PathBuf, reason: String },
    /// A file-system operation (`action`: "read", "remove", …) on `path` failed.
    Io {
        action: String,
        path: PathBuf,
        reason: String,
    },
    /// A path the runner was about to write is not a direct child of `build_dir`.
    PathOutsideBuildDir { path: PathBuf, build_dir: PathBuf },
    /// A build with this id is queued or running, so it cannot be started again or its
    /// directory touched.
    BuildInProgress { build_id: String },
    /// What answered the health check on `port` is not a process of the server (another program
    /// took the port); `holder` is its pid when it can be seen.
    ForeignListener { port: u16, holder: Option<i32> },
    /// A build whose directory a live server runs from cannot be removed.
    BuildInUse { build_id: String, server_id: String },
    /// `removeDeploymentData()` of a deployment that a live server still serves.
    DataInUse {
        deployment_id: String,
        server_id: String,
    },
    /// A build's task ended without an outcome (it panicked: a bug in the runner).
    BuildAborted { build_id: String, reason: String },
    /// The source provider (a JS object, or the built-in local copy) failed to copy project
    /// `project_id`; `reason` is what it threw, rejected with, or wrongly returned.
    SourceProviderFailed { project_id: String, reason: String },
    /// `build()` was called with no source provider set and no `defaultSource`.
    SourceNotConfigured,
    /// The router failed to register the route of `deployment_id` (the server was stopped).
    RouteRegistrationFailed {
        deployment_id: String,
        reason: String,
    },
    /// A deploy ended before its server was healthy because `stop()` or `shutdown()` took the
    /// server down (`by` names which).
    DeployInterrupted { port: u16, by: String },
    /// Under `redeploy: 'replace'`, a later deploy of the same deployment finished first; this
    /// deploy's server was stopped so that only one serves the deployment.
    DeploySuperseded { deployment_id: String, port: u16 },
    /// The call needs a configuration the runner was not given (`detach()` without
    /// `keepServersOnExit: true`); `reason` says which and why.
    InvalidState { call: String, reason: String },
    /// Something inside the runner failed that no caller input explains (a task that could
    /// not finish, a JS engine call that failed); `context` says what the runner was doing.
    Internal { context: String, reason: String },
    /// A project path a source provider may not read: it resolves outside every base path, or
    /// is not a project directory. `reason` says which, with the resolved path.
    AccessDenied { path: PathBuf, reason: String },
    /// No Mastra project with this id lies directly under the base paths.
    ProjectNotFound {
        id: String,
        base_paths: Vec<PathBuf>,
    },
    /// A copy target that must not be emptied (`/`, the source itself, a directory inside the
    /// source, or one holding it); `reason` says which.
    UnsafeCopyTarget { target: PathBuf, reason: String },
}

/// What was wrong with an argument: its type (`ERR_INVALID_ARG_TYPE`) or its value
/// (`ERR_INVALID_ARG_VALUE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgumentFault {
    /// A value of the wrong type: "expected a string, got number 5".
    WrongType,
    /// A value of the right type that breaks a rule: "must be an integer from 1 to 10".
    WrongValue,
}

/// Why an argument was refused, with its fault: plain text is a wrong value, a [`Mismatch`] a
/// wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentReason {
    text: String,
    fault: ArgumentFault,
}

impl ArgumentReason {
    /// A wrong type said in words of its own ("registerRoute must be a function").
    pub fn wrong_type(text: impl Into<String>) -> Self {
        ArgumentReason {
            text: text.into(),
            fault: ArgumentFault::WrongType,
        }
    }
}

impl From<String> for ArgumentReason {
    fn from(text: String) -> Self {
        ArgumentReason {
            text,
            fault: ArgumentFault::WrongValue,
        }
    }
}

impl From<&str> for ArgumentReason {
    fn from(text: &str) -> Self {
        ArgumentReason::from(text.to_owned())
    }
}

impl From<&String> for ArgumentReason {
    fn from(text: &String) -> Self {
        ArgumentReason::from(text.clone())
    }
}

/// "expected X, got Y": a value of the wrong type, described the way a JS user thinks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(String);

impl Mismatch {
    /// `expected {what}, got {got}`, where `got` already describes the value (`number 5`,
    /// `undefined`, `an array`).
    pub fn new(what: &str, got: &str) -> Self {
        Mismatch(format!("expected {what}, got {got}"))
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Mismatch> for ArgumentReason {
    fn from(mismatch: Mismatch) -> Self {
        ArgumentReason {
            text: mismatch.0,
            fault: ArgumentFault::WrongType,
        }
    }
}

impl Error {
    /// The stable `code` JS sees on the `Error` (`err.code`): Node's own codes for bad
    /// arguments, the package's `ERR_*` codes otherwise. README lists them.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidArgument {
                fault: ArgumentFault::WrongType,
                ..
            } => "ERR_INVALID_ARG_TYPE",
            Error::InvalidArgument { .. } | Error::UnknownPackageManager { .. } => {
                "ERR_INVALID_ARG_VALUE"
            }
            Error::SpawnFailed { .. } => "ERR_SPAWN_FAILED",
            Error::SignalFailed { .. } => "ERR_SIGNAL_FAILED",
            Error::BuildOutputMissing { .. } => "ERR_BUILD_NOT_FOUND",
            Error::ServerExited { .. } => "ERR_SERVER_EXITED",
            Error::NoFreePort { .. } => "ERR_PORT_EXHAUSTED",
            Error::Unhealthy { .. } | Error::HealthTimeout { .. } => "ERR_HEALTH_CHECK_FAILED",
            Error::InvalidPackageJson { .. } => "ERR_INVALID_PACKAGE_JSON",
            Error::Io { .. } => "ERR_IO",
            Error::PathOutsideBuildDir { .. } | Error::UnsafeCopyTarget { .. } => "ERR_UNSAFE_PATH",
            Error::BuildInProgress { .. } => "ERR_BUILD_IN_PROGRESS",
            Error::BuildInUse { .. } => "ERR_BUILD_IN_USE",
            Error::DataInUse { .. } => "ERR_DATA_IN_USE",
            Error::ForeignListener { .. } => "ERR_FOREIGN_LISTENER",
            Error::AccessDenied { .. } => "ERR_ACCESS_DENIED",
            Error::ProjectNotFound { .. } => "ERR_PROJECT_NOT_FOUND",
            Error::SourceProviderFailed { .. } | Error::RouteRegistrationFailed { .. } => {
                "ERR_PROVIDER_FAILED"
            }
            Error::SourceNotConfigured => "ERR_SOURCE_NOT_CONFIGURED",
            Error::InvalidState { .. } => "ERR_INVALID_STATE",
            Error::DeployInterrupted { .. } | Error::DeploySuperseded { .. } => {
                "ERR_DEPLOY_INTERRUPTED"
            }
            Error::HttpClient { .. } | Error::BuildAborted { .. } | Error::Internal { .. } => {
                "ERR_INTERNAL"
            }
        }
    }

    /// An [`Error::Internal`]: `context` is what the runner was doing.
    pub fn internal(context: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Internal {
            context: context.into(),
            reason: reason.to_string(),
        }
    }

    /// An [`Error::Io`] for `action` on `path`, with the operating system's message.
    pub fn io(action: impl Into<String>, path: impl Into<PathBuf>, error: &std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            path: path.into(),
            reason: error.to_string(),
        }
    }

    /// The one constructor of [`Error::InvalidArgument`]: `reason` carries its fault, so a
    /// [`Mismatch`] ("expected X, got Y") is a wrong type and any other text a wrong value.
    pub fn invalid(name: impl Into<String>, reason: impl Into<ArgumentReason>) -> Self {
        let ArgumentReason { text, fault } = reason.into();
        Error::InvalidArgument {
            name: name.into(),
            reason: text,
            fault,
        }
    }
}

/// "1 attempt", "3 attempts".
fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument { name, reason, .. } => write!(f, "Invalid {name}: {reason}"),
            Error::BuildOutputMissing { build_id, path } => write!(
                f,
                "Build output not found for build '{build_id}': {} does not exist (did the build succeed?)",
                path.display()
            ),
            Error::ServerExited { pid, exit, output } => {
                write!(
                    f,
                    "Server process {pid} exited with {exit} before it became healthy"
                )?;
                if output.is_empty() {
                    write!(f, " (it wrote no output)")
                } else {
                    write!(f, "; its last output:\n{output}")
                }
            }
            Error::SpawnFailed { program, reason } => {
                write!(f, "Cannot start '{program}': {reason}")
            }
            Error::SignalFailed {
                pid,
                signal,
                reason,
            } => write!(f, "Cannot send {signal} to process group {pid}: {reason}"),
            Error::NoFreePort {
                range,
                allocated,
                in_use,
                unbindable,
                bind_error,
            } => {
                write!(
                    f,
                    "No free port in range {range}: {allocated} allocated by this runner, \
                     {in_use} in use by other programs"
                )?;
                if *unbindable > 0 {
                    write!(f, ", {unbindable} cannot be bound")?;
                    if let Some(reason) = bind_error {
                        write!(f, " ({reason})")?;
                    }
                }
                Ok(())
            }
            Error::HttpClient { reason } => {
                write!(
                    f,
                    "Cannot create the HTTP client for health checks: {reason}"
                )
            }
            Error::Unhealthy {
                url,
                attempts: n,
                last_failure,
            } => write!(
                f,
                "Server failed to become healthy after {n} attempts. Last error: \
                 {last_failure} (GET {url})"
            ),
            Error::HealthTimeout {
                port,
                endpoint,
                timeout,
                attempts: n,
                last_failure,
            } => write!(
                f,
                "Server on port {port} did not answer {endpoint} with a 2xx status within {} ms \
                 ({}); last failure: {last_failure}",
                timeout.as_millis(),
                attempts(*n)
            ),
            Error::UnknownPackageManager { name, context } => write!(
                f,
                "Unknown package manager '{name}' ({context}): expected npm, pnpm, yarn or bun"
            ),
            Error::InvalidPackageJson { path, reason } => {
                write!(f, "Invalid {}: {reason}", path.display())
            }
            Error::Io {
                action,
                path,
                reason,
            } => write!(f, "Cannot {action} {}: {reason}", path.display()),
            Error::PathOutsideBuildDir { path, build_dir } => write!(
                f,
                "Refusing to touch {}: it is not a directory directly inside buildDir {}",
                path.display(),
                build_dir.display()
            ),
            Error::BuildInProgress { build_id } => write!(
                f,
                "Build '{build_id}' is already queued or running; cancel it first"
            ),
            Error::ForeignListener { port, holder } => {
                write!(
                    f,
                    "Port {port} is held by another program, not by the server: its health check was answered by "
                )?;
                match holder {
                    Some(pid) => write!(f, "process {pid}"),
                    None => write!(f, "a process this runner cannot see"),
                }
            }
            Error::BuildInUse {
                build_id,
                server_id,
            } => write!(
                f,
                "Build '{build_id}' is in use by running server '{server_id}'; stop it first"
            ),
            Error::DataInUse {
                deployment_id,
                server_id,
            } => write!(
                f,
                "The data of deployment '{deployment_id}' is in use by running server '{server_id}'; stop the deployment first"
            ),
            Error::BuildAborted { build_id, reason } => {
                write!(f, "Build '{build_id}' ended without an outcome: {reason}")
            }
            Error::AccessDenied { path, reason } => {
                write!(f, "Access denied to {}: {reason}", path.display())
            }
            Error::ProjectNotFound { id, base_paths } => write!(
                f,
                "Project not found: no Mastra project with id '{id}' under {}",
                path_list(base_paths)
            ),
            Error::UnsafeCopyTarget { target, reason } => {
                write!(f, "Refusing to copy into {}: {reason}", target.display())
            }
            Error::SourceProviderFailed { project_id, reason } => {
                write!(
                    f,
                    "Source provider failed for project '{project_id}': {reason}"
                )
            }
            Error::SourceNotConfigured => write!(f, "Project source provider not configured"),
            Error::RouteRegistrationFailed {
                deployment_id,
                reason,
            } => write!(
                f,
                "Router failed to register a route for deployment '{deployment_id}': {reason}"
            ),
            Error::InvalidState { call, reason } => write!(f, "{call} is not available: {reason}"),
            Error::DeployInterrupted { port, by } => write!(
                f,
                "Deploy interrupted: the server on port {port} was stopped by {by} before it became healthy"
            ),
            Error::DeploySuperseded {
                deployment_id,
                port,
            } => write!(
                f,
                "Deploy superseded: a later deploy of deployment '{deployment_id}' is serving, so this one's server on port {port} was stopped"
            ),
            Error::Internal { context, reason } => {
                write!(f, "Internal error while {context}: {reason}")
            }
        }
    }
}

/// "/a, /b" for the messages that list paths.
pub(crate) fn path_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::error::Error for Error {}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PortRange;

    #[test]
    fn every_error_has_a_stable_code() {
        let exit = ExitInfo::unknown();
        let cases = [
            (
                Error::invalid("x", Mismatch::new("a string", "number 1")),
                "ERR_INVALID_ARG_TYPE",
            ),
            (
                Error::invalid("x", "must be positive"),
                "ERR_INVALID_ARG_VALUE",
            ),
            (
                Error::UnknownPackageManager {
                    name: "pip".into(),
                    context: "argument pm".into(),
                },
                "ERR_INVALID_ARG_VALUE",
            ),
            (
                Error::SpawnFailed {
                    program: "x".into(),
                    reason: "no".into(),
                },
                "ERR_SPAWN_FAILED",
            ),
            (
                Error::SignalFailed {
                    pid: 1,
                    signal: "SIGTERM".into(),
                    reason: "EPERM".into(),
                },
                "ERR_SIGNAL_FAILED",
            ),
            (
                Error::BuildOutputMissing {
                    build_id: "b".into(),
                    path: "/x".into(),
                },
                "ERR_BUILD_NOT_FOUND",
            ),
            (
                Error::ServerExited {
                    pid: 1,
                    exit,
                    output: String::new(),
                },
                "ERR_SERVER_EXITED",
            ),
            (
                Error::NoFreePort {
                    range: PortRange { start: 1, end: 2 },
                    allocated: 2,
                    in_use: 0,
                    unbindable: 0,
                    bind_error: None,
                },
                "ERR_PORT_EXHAUSTED",
            ),
            (
                Error::HealthTimeout {
                    port: 1,
                    endpoint: "/health".into(),
                    timeout: Duration::from_secs(1),
                    attempts: 1,
                    last_failure: "refused".into(),
                },
                "ERR_HEALTH_CHECK_FAILED",
            ),
            (
                Error::Unhealthy {
                    url: "u".into(),
                    attempts: 1,
                    last_failure: "x".into(),
                },
                "ERR_HEALTH_CHECK_FAILED",
            ),
            (
                Error::InvalidPackageJson {
                    path: "/p".into(),
                    reason: "x".into(),
                },
                "ERR_INVALID_PACKAGE_JSON",
            ),
            (
                Error::io("read", "/p", &std::io::Error::other("x")),
                "ERR_IO",
            ),
            (
                Error::PathOutsideBuildDir {
                    path: "/a".into(),
                    build_dir: "/b".into(),
                },
                "ERR_UNSAFE_PATH",
            ),
            (
                Error::BuildInProgress {
                    build_id: "b".into(),
                },
                "ERR_BUILD_IN_PROGRESS",
            ),
            (
                Error::AccessDenied {
                    path: "/p".into(),
                    reason: "x".into(),
                },
                "ERR_ACCESS_DENIED",
            ),
            (
                Error::ProjectNotFound {
                    id: "p".into(),
                    base_paths: vec![],
                },
                "ERR_PROJECT_NOT_FOUND",
            ),
            (
                Error::SourceProviderFailed {
                    project_id: "p".into(),
                    reason: "x".into(),
                },
                "ERR_PROVIDER_FAILED",
            ),
            (
                Error::RouteRegistrationFailed {
                    deployment_id: "d".into(),
                    reason: "x".into(),
                },
                "ERR_PROVIDER_FAILED",
            ),
            (Error::SourceNotConfigured, "ERR_SOURCE_NOT_CONFIGURED"),
            (
                Error::ForeignListener {
                    port: 1,
                    holder: Some(2),
                },
                "ERR_FOREIGN_LISTENER",
            ),
            (
                Error::BuildInUse {
                    build_id: "b".into(),
                    server_id: "s".into(),
                },
                "ERR_BUILD_IN_USE",
            ),
            (
                Error::DataInUse {
                    deployment_id: "d".into(),
                    server_id: "s".into(),
                },
                "ERR_DATA_IN_USE",
            ),
            (
                Error::InvalidState {
                    call: "detach()".into(),
                    reason: "r".into(),
                },
                "ERR_INVALID_STATE",
            ),
            (
                Error::DeployInterrupted {
                    port: 1,
                    by: "shutdown()".into(),
                },
                "ERR_DEPLOY_INTERRUPTED",
            ),
            (
                Error::DeploySuperseded {
                    deployment_id: "d".into(),
                    port: 1,
                },
                "ERR_DEPLOY_INTERRUPTED",
            ),
            (Error::internal("doing x", "it broke"), "ERR_INTERNAL"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
        }
    }
}
