//! Runner configuration: the defaults of SPEC §2 and the validation of what a caller passes.
//!
//! The caller's config arrives as a JSON value (the binding converts the JS object without
//! interpreting it), so that every rule, including "wrong type", lives here and is tested with
//! `cargo test`. Each error names the field as the caller spelled it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::isolation::{Limits, SandboxSettings};
use crate::ports::PortRange;
use crate::validate::{self, MAX_SAFE_INTEGER, expected};

/// Validates a caller's `{ start, end }` object; errors call it `name` (for example
/// `range`, or `portRange` inside a runner config).
pub fn port_range_from_json(value: &Value, name: &str) -> Result<PortRange> {
    match value {
        Value::Null => Err(Error::invalid(name, "is required")),
        Value::Object(fields) => port_range(&Fields {
            prefix: format!("{name}."),
            fields,
        }),
        other => Err(Error::invalid(name, expected("an object", other))),
    }
}

/// How deploys wait for a server to become healthy, and how health is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSettings {
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// The longest pause between two probes.
    pub retry_interval: Duration,
    /// How many probes a deploy makes before it gives up.
    pub max_retries: u32,
    /// The path probed, starting with `/`.
    pub endpoint: String,
}

impl Default for HealthCheckSettings {
    /// 5000 ms per request, 1000 ms between probes, 30 probes, `/health` (SPEC §2).
    fn default() -> Self {
        HealthCheckSettings {
            timeout: Duration::from_millis(5_000),
            retry_interval: Duration::from_millis(1_000),
            max_retries: 30,
            endpoint: "/health".to_owned(),
        }
    }
}

impl HealthCheckSettings {
    /// Validates a standalone health-check config (`new HealthChecker(config)`) with the rules
    /// of the runner's `healthCheck` field; absent fields take the defaults. Like the runner's
    /// own top-level fields, its fields are named as the caller wrote them (`timeoutMs`).
    pub fn from_json(value: &Value) -> Result<Self> {
        let mut settings = Self::default();
        match value {
            Value::Null => {}
            Value::Object(fields) => health_check(
                &Fields {
                    prefix: String::new(),
                    fields,
                },
                &mut settings,
            )?,
            other => return Err(Error::invalid("config", expected("an object", other))),
        }
        Ok(settings)
    }
}

/// Restarting servers that exit on their own (off unless configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed before the server stays down.
    pub max_restarts: u32,
    /// Pause before the first restart; doubled for each following one.
    pub backoff: Duration,
    /// The longest pause between restarts.
    pub max_backoff: Duration,
}

/// The source provider used when JS never called `setSource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultSource {
    /// Copy the project from its `sourceConfig.path` on this machine.
    Local,
}

/// What `deploy()` does with a deployment that already has a live server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedeployMode {
    /// Start the new server, switch the route once it is healthy, then stop the old one.
    Replace,
    /// Leave the old server running beside the new one (the TypeScript package's behaviour).
    Keep,
}

impl RedeployMode {
    /// The name JS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RedeployMode::Replace => "replace",
            RedeployMode::Keep => "keep",
        }
    }
}

/// A validated runner configuration with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Ports servers may be given.
    pub port_range: PortRange,
    /// Builds that may run at once; the rest wait in FIFO order.
    pub max_concurrent_builds: u32,
    /// Build timeout when a build does not set its own.
    pub default_build_timeout: Duration,
    /// Health-check settings.
    pub health_check: HealthCheckSettings,
    /// Log lines kept per server.
    pub log_retention_lines: u32,
    /// Absolute directory holding one directory per build.
    pub build_dir: PathBuf,
    /// Variables injected into every build and server.
    pub global_env_vars: BTreeMap<String, String>,
    /// Grace period between SIGTERM and SIGKILL when stopping a process group.
    pub shutdown_timeout: Duration,
    /// The longest a call into a JS provider (router, source) may take before it fails.
    pub provider_timeout: Duration,
    /// Restart policy for servers that exit on their own; `None` means never restart.
    pub restart_policy: Option<RestartPolicy>,
    /// Source provider to use when none was set.
    pub default_source: Option<DefaultSource>,
    /// What a deploy of a deployment that is already served does.
    pub redeploy: RedeployMode,
    /// Build directories kept per deployment after a successful deploy (the newest ones).
    pub retain_builds: u32,
    /// All servers' retained logs together, in bytes: beyond it the oldest stopped servers'
    /// logs are dropped (`logMemoryLimitMb`).
    pub log_memory_limit: usize,
    /// Whether servers get a Node IPC channel on which a `{ type: 'server-ready' }` message
    /// makes the health gate probe at once (`healthCheck.readySignal`).
    pub ready_signal: bool,
    /// When log lines are written to the observability storage (`observability`).
    pub observability: crate::observability::ObservabilitySettings,
    /// Whether servers outlive the host and are adopted by the next runner on the same
    /// `buildDir` (`keepServersOnExit`).
    pub keep_servers_on_exit: bool,
    /// The size at which a kept server's log file is cut back, in bytes (`logFileMaxMb`).
    pub log_file_max_bytes: u64,
    /// Where servers send their AI traces (`tracesEndpoint`): an `http(s)` URL given to every
    /// server with its deployment id as the access token.
    pub traces_endpoint: Option<String>,
    /// The longest a server a redeploy replaced keeps serving after the new one is healthy
    /// (`redeployDrainMs`).
    pub redeploy_drain: Duration,
    /// The sandbox of servers and build steps (`sandbox`).
    pub sandbox: SandboxSettings,
    /// Every server's limits (`limits`); a deploy's `limits` override them field by field.
    pub limits: Limits,
    /// Every build step's limits (`buildLimits`).
    pub build_limits: Limits,
    /// The most the build cache's snapshots may take on disk, in bytes (`buildCache.maxMb`).
    pub build_cache_max_bytes: u64,
}

impl RunnerConfig {
    /// The defaults of SPEC §2, with `buildDir` resolved against `cwd`.
    pub fn defaults(cwd: &Path) -> Self {
        RunnerConfig {
            port_range: PortRange::default(),
            max_concurrent_builds: 3,
            default_build_timeout: Duration::from_millis(600_000),
            health_check: HealthCheckSettings::default(),
            log_retention_lines: 10_000,
            build_dir: cwd.join(".mastra").join("builds"),
            global_env_vars: BTreeMap::new(),
            shutdown_timeout: crate::process::DEFAULT_KILL_GRACE,
            provider_timeout: Duration::from_millis(30_000),
            restart_policy: None,
            default_source: None,
            redeploy: RedeployMode::Replace,
            retain_builds: 3,
            log_memory_limit: 256 * 1024 * 1024,
            ready_signal: true,
            observability: crate::observability::ObservabilitySettings::default(),
            keep_servers_on_exit: false,
            log_file_max_bytes: 16 * 1024 * 1024,
            traces_endpoint: None,
            redeploy_drain: Duration::from_millis(60_000),
            sandbox: SandboxSettings::default(),
            limits: Limits::defaults(),
            build_limits: Limits::defaults(),
            build_cache_max_bytes: 4096 * 1024 * 1024,
        }
    }

    /// Validates a caller's config (`null` or absent fields take their defaults) and resolves
    /// relative paths against `cwd`.
    pub fn from_json(input: &Value, cwd: &Path) -> Result<Self> {
        let mut config = Self::defaults(cwd);
        let fields = match input {
            Value::Null => return Ok(config),
            Value::Object(fields) => Fields {
                prefix: String::new(),
                fields,
            },
            other => return Err(Error::invalid("config", expected("an object", other))),
        };

        if let Some(range) = fields.get("portRange") {
            config.port_range = port_range_from_json(range, "portRange")?;
        }
        if let Some(n) = fields.integer("maxConcurrentBuilds", 1, u64::from(u32::MAX))? {
            config.max_concurrent_builds = n as u32;
        }
        if let Some(ms) = fields.integer("defaultBuildTimeoutMs", 1, MAX_SAFE_INTEGER)? {
            config.default_build_timeout = Duration::from_millis(ms);
        }
        if let Some(health) = fields.object("healthCheck")? {
            health_check(&health, &mut config.health_check)?;
            if let Some(ready) = health.boolean("readySignal")? {
                config.ready_signal = ready;
            }
        }
        if let Some(n) = fields.integer("logRetentionLines", 1, u64::from(u32::MAX))? {
            config.log_retention_lines = n as u32;
        }
        config.build_dir = build_dir(&fields, cwd)?.unwrap_or(config.build_dir);
        if let Some(vars) = fields.get("globalEnvVars") {
            config.global_env_vars = validate::env_vars("globalEnvVars", vars)?;
        }
        if let Some(ms) = fields.integer("shutdownTimeoutMs", 0, MAX_SAFE_INTEGER)? {
            config.shutdown_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = fields.integer("providerTimeoutMs", 1, MAX_SAFE_INTEGER)? {
            config.provider_timeout = Duration::from_millis(ms);
        }
        if let Some(policy) = fields.object("restartPolicy")? {
            config.restart_policy = Some(restart_policy(&policy)?);
        }
        if let Some(source) = fields.string("defaultSource")? {
            if source != "local" {
                return Err(Error::invalid(
                    "defaultSource",
                    format!("the only supported value is 'local' (got '{source}')"),
                ));
            }
            config.default_source = Some(DefaultSource::Local);
        }
        if let Some(mb) = fields.integer("logMemoryLimitMb", 1, 1024 * 1024)? {
            config.log_memory_limit = mb as usize * 1024 * 1024;
        }
        if let Some(n) = fields.integer("retainBuilds", 1, u64::from(u32::MAX))? {
            config.retain_builds = n as u32;
        }
        if let Some(mode) = fields.string("redeploy")? {
            config.redeploy = match mode {
                "replace" => RedeployMode::Replace,
                "keep" => RedeployMode::Keep,
                other => {
                    return Err(Error::invalid(
                        "redeploy",
                        format!("must be 'replace' or 'keep' (got '{other}')"),
                    ));
                }
            };
        }
        if let Some(keep) = fields.boolean("keepServersOnExit")? {
            config.keep_servers_on_exit = keep;
        }
        if let Some(mb) = fields.integer("logFileMaxMb", 1, 1024 * 1024)? {
            config.log_file_max_bytes = mb * 1024 * 1024;
        }
        if let Some(url) = fields.string("tracesEndpoint")? {
            config.traces_endpoint = Some(traces_endpoint(url)?);
        }
        if let Some(ms) = fields.integer("redeployDrainMs", 0, MAX_SAFE_INTEGER)? {
            config.redeploy_drain = Duration::from_millis(ms);
        }
        if let Some(sandbox) = fields.get("sandbox") {
            config.sandbox = SandboxSettings::from_json(sandbox)?;
        }
        for (key, limits) in [
            ("limits", &mut config.limits),
            ("buildLimits", &mut config.build_limits),
        ] {
            if let Some(value) = fields.get(key).filter(|v| !v.is_null()) {
                *limits = Limits::defaults().overridden_by(&Limits::from_json(value, key)?);
            }
        }
        if let Some(cache) = fields.object("buildCache")?
            && let Some(mb) = cache.integer("maxMb", 0, 1024 * 1024 * 1024)?
        {
            config.build_cache_max_bytes = mb * 1024 * 1024;
        }
        if let Some(observability) = fields.object("observability")? {
            let settings = &mut config.observability;
            if let Some(n) = observability.integer("batchSize", 1, 100_000)? {
                settings.batch_size = n as usize;
            }
            if let Some(ms) = observability.integer("flushIntervalMs", 1, MAX_SAFE_INTEGER)? {
                settings.flush_interval = Duration::from_millis(ms);
            }
            if let Some(n) = observability.integer("maxFileSize", 1, 256 * 1024 * 1024)? {
                settings.max_file_size = n as usize;
            }
        }
        Ok(config)
    }

    /// The resolved configuration in the shape JS reads it (camelCase, milliseconds).
    pub fn to_json(&self) -> Value {
        let restart_policy = self.restart_policy.as_ref().map(|p| {
            json!({
                "maxRestarts": p.max_restarts,
                "backoffMs": millis(p.backoff),
                "maxBackoffMs": millis(p.max_backoff),
            })
        });
        json!({
            "portRange": { "start": self.port_range.start, "end": self.port_range.end },
            "maxConcurrentBuilds": self.max_concurrent_builds,
            "defaultBuildTimeoutMs": millis(self.default_build_timeout),
            "healthCheck": {
                "timeoutMs": millis(self.health_check.timeout),
                "retryIntervalMs": millis(self.health_check.retry_interval),
                "maxRetries": self.health_check.max_retries,
                "endpoint": self.health_check.endpoint,
                "readySignal": self.ready_signal,
            },
            "logRetentionLines": self.log_retention_lines,
            "buildDir": self.build_dir.to_string_lossy(),
            "globalEnvVars": self.global_env_vars,
            "shutdownTimeoutMs": millis(self.shutdown_timeout),
            "providerTimeoutMs": millis(self.provider_timeout),
            "restartPolicy": restart_policy,
            "defaultSource": self.default_source.map(|_| "local"),
            "redeploy": self.redeploy.as_str(),
            "retainBuilds": self.retain_builds,
            "logMemoryLimitMb": self.log_memory_limit / (1024 * 1024),
            "keepServersOnExit": self.keep_servers_on_exit,
            "logFileMaxMb": self.log_file_max_bytes / (1024 * 1024),
            "tracesEndpoint": self.traces_endpoint,
            "redeployDrainMs": millis(self.redeploy_drain),
            "sandbox": self.sandbox.to_json(),
            "limits": self.limits.to_json(),
            "buildLimits": self.build_limits.to_json(),
            "buildCache": { "maxMb": self.build_cache_max_bytes / (1024 * 1024) },
        })
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// `tracesEndpoint`: an absolute `http://` or `https://` URL with a host, at most 2048
/// characters, without spaces or control characters (it goes into every server's environment).
fn traces_endpoint(url: &str) -> Result<String> {
    let invalid = |why: &str| Error::invalid("tracesEndpoint", format!("{why} (got '{url}')"));
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| invalid("must be an http:// or https:// URL"))?;
    if url.len() > 2048 {
        return Err(invalid("must be at most 2048 characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must not contain spaces or control characters"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid("must name a host"));
    }
    Ok(url.to_owned())
}

fn port_range(range: &Fields<'_>) -> Result<PortRange> {
    let start = range.required_integer("start", 1, 65_535)? as u16;
    let end = range.required_integer("end", 1, 65_535)? as u16;
    if start > end {
        return Err(Error::invalid(
            range.prefix.trim_end_matches('.'),
            format!("start ({start}) is greater than end ({end})"),
        ));
    }
    Ok(PortRange { start, end })
}

fn health_check(health: &Fields<'_>, settings: &mut HealthCheckSettings) -> Result<()> {
    if let Some(ms) = health.integer("timeoutMs", 1, MAX_SAFE_INTEGER)? {
        settings.timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = health.integer("retryIntervalMs", 1, MAX_SAFE_INTEGER)? {
        settings.retry_interval = Duration::from_millis(ms);
    }
    if let Some(n) = health.integer("maxRetries", 1, u64::from(u32::MAX))? {
        settings.max_retries = n as u32;
    }
    if let Some(endpoint) = health.string("endpoint")? {
        if !endpoint.starts_with('/') {
            return Err(Error::invalid(
                health.name("endpoint"),
                format!("must be a path starting with '/' (got '{endpoint}')"),
            ));
        }
        if endpoint
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::invalid(
                health.name("endpoint"),
                "must not contain spaces or control characters",
            ));
        }
        settings.endpoint = endpoint.to_owned();
    }
    Ok(())
}

fn build_dir(fields: &Fields<'_>, cwd: &Path) -> Result<Option<PathBuf>> {
    let build_dir = fields.path("buildDir")?;
    let base_dir = fields.path("buildBaseDir")?;
    match (build_dir, base_dir) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "buildBaseDir",
            "give either buildDir or buildBaseDir, not both (buildBaseDir means buildDir = `${buildBaseDir}/builds`)",
        )),
        (Some(dir), None) => Ok(Some(cwd.join(dir))),
        (None, Some(base)) => Ok(Some(cwd.join(base).join("builds"))),
        (None, None) => Ok(None),
    }
}

fn restart_policy(policy: &Fields<'_>) -> Result<RestartPolicy> {
    let max_restarts = policy
        .integer("maxRestarts", 0, u64::from(u32::MAX))?
        .unwrap_or(10) as u32;
    let backoff = policy
        .integer("backoffMs", 1, MAX_SAFE_INTEGER)?
        .unwrap_or(1_000);
    let max_backoff = policy
        .integer("maxBackoffMs", 1, MAX_SAFE_INTEGER)?
        .unwrap_or(30_000.max(backoff));
    if max_backoff < backoff {
        return Err(Error::invalid(
            policy.name("maxBackoffMs"),
            format!("must be at least backoffMs ({max_backoff} < {backoff})"),
        ));
    }
    Ok(RestartPolicy {
        max_restarts,
        backoff: Duration::from_millis(backoff),
        max_backoff: Duration::from_millis(max_backoff),
    })
}

/// The fields of one JSON object, with the dotted prefix used to name them in errors.
struct Fields<'a> {
    prefix: String,
    fields: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    /// The field's value; `null` counts as absent (JS `undefined` arrives as `null`).
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.fields.get(field).filter(|v| !v.is_null())
    }

    fn object(&self, field: &str) -> Result<Option<Fields<'a>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(fields)) => Ok(Some(Fields {
                prefix: format!("{}{field}.", self.prefix),
                fields,
            })),
            Some(other) => Err(Error::invalid(
                self.name(field),
                expected("an object", other),
            )),
        }
    }

    fn string(&self, field: &str) -> Result<Option<&'a str>> {
        self.get(field)
            .map(|value| validate::string(&self.name(field), value))
            .transpose()
    }

    fn boolean(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(other) => Err(Error::invalid(
                self.name(field),
                expected("a boolean", other),
            )),
        }
    }

    fn path(&self, field: &str) -> Result<Option<&'a str>> {
        let Some(path) = self.string(field)? else {
            return Ok(None);
        };
        if path.is_empty() {
            return Err(Error::invalid(self.name(field), "must not be empty"));
        }
        if path.contains('\0') {
            return Err(Error::invalid(
                self.name(field),
                "must not contain a NUL character",
            ));
        }
        Ok(Some(path))
    }

    fn integer(&self, field: &str, min: u64, max: u64) -> Result<Option<u64>> {
        self.get(field)
            .map(|value| validate::integer(&self.name(field), value, min, max))
            .transpose()
    }

    fn required_integer(&self, field: &str, min: u64, max: u64) -> Result<u64> {
        self.integer(field, min, max)?
            .ok_or_else(|| Error::invalid(self.name(field), "is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd() -> PathBuf {
        PathBuf::from("/srv/admin")
    }

    fn parse(input: Value) -> Result<RunnerConfig> {
        RunnerConfig::from_json(&input, &cwd())
    }

    fn error_of(input: Value) -> String {
        match parse(input) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn absent_config_gives_spec_defaults() {
        let config = parse(Value::Null).unwrap();
        assert_eq!(config, parse(json!({})).unwrap());
        assert_eq!(
            config.port_range,
            PortRange {
                start: 4111,
                end: 4200
            }
        );
        assert_eq!(config.port_range.len(), 90);
        assert_eq!(config.max_concurrent_builds, 3);
        assert_eq!(config.default_build_timeout, Duration::from_secs(600));
        assert_eq!(config.health_check.timeout, Duration::from_secs(5));
        assert_eq!(config.health_check.retry_interval, Duration::from_secs(1));
        assert_eq!(config.health_check.max_retries, 30);
        assert_eq!(config.health_check.endpoint, "/health");
        assert_eq!(config.log_retention_lines, 10_000);
        assert_eq!(config.build_dir, PathBuf::from("/srv/admin/.mastra/builds"));
        assert!(config.global_env_vars.is_empty());
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(config.provider_timeout, Duration::from_secs(30));
        assert_eq!(config.restart_policy, None);
        assert_eq!(config.default_source, None);
    }

    #[test]
    fn every_field_is_read() {
        let config = parse(json!({
            "portRange": { "start": 5000, "end": 5009 },
            "maxConcurrentBuilds": 2,
            "defaultBuildTimeoutMs": 1234,
            "healthCheck": { "timeoutMs": 10, "retryIntervalMs": 20, "maxRetries": 3, "endpoint": "/api/ok" },
            "logRetentionLines": 50,
            "buildDir": "out/b",
            "globalEnvVars": { "A": "1", "B": "" },
            "shutdownTimeoutMs": 0,
            "restartPolicy": { "maxRestarts": 2, "backoffMs": 100, "maxBackoffMs": 400 },
            "defaultSource": "local",
            "someNewerField": true,
        }))
        .unwrap();
        assert_eq!(config.port_range.len(), 10);
        assert_eq!(config.max_concurrent_builds, 2);
        assert_eq!(config.default_build_timeout, Duration::from_millis(1234));
        assert_eq!(config.health_check.endpoint, "/api/ok");
        assert_eq!(config.health_check.max_retries, 3);
        assert_eq!(config.log_retention_lines, 50);
        assert_eq!(config.build_dir, PathBuf::from("/srv/admin/out/b"));
        assert_eq!(
            config.global_env_vars.get("A").map(String::as_str),
            Some("1")
        );
        assert_eq!(config.shutdown_timeout, Duration::ZERO);
        let policy = config.restart_policy.unwrap();
        assert_eq!(policy.max_restarts, 2);
        assert_eq!(policy.max_backoff, Duration::from_millis(400));
        assert_eq!(config.default_source, Some(DefaultSource::Local));
    }

    #[test]
    fn build_base_dir_means_its_builds_subdirectory() {
        let config = parse(json!({ "buildBaseDir": "/var/mastra" })).unwrap();
        assert_eq!(config.build_dir, PathBuf::from("/var/mastra/builds"));
        let absolute = parse(json!({ "buildDir": "/abs/dir" })).unwrap();
        assert_eq!(absolute.build_dir, PathBuf::from("/abs/dir"));
    }

    #[test]
    fn restart_policy_fills_its_own_defaults() {
        let policy = parse(json!({ "restartPolicy": {} }))
            .unwrap()
            .restart_policy
            .unwrap();
        assert_eq!(policy.max_restarts, 10);
        assert_eq!(policy.backoff, Duration::from_secs(1));
        assert_eq!(policy.max_backoff, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_are_rejected_with_the_field_named() {
        let cases = [
            (
                json!(42),
                "Invalid config: expected an object, got number 42",
            ),
            (
                json!({ "portRange": { "start": 5000, "end": 4000 } }),
                "Invalid portRange: start (5000) is greater than end (4000)",
            ),
            (
                json!({ "portRange": { "start": 0, "end": 10 } }),
                "Invalid portRange.start: must be an integer from 1 to 65535 (got 0)",
            ),
            (
                json!({ "portRange": { "start": 1, "end": 70000 } }),
                "Invalid portRange.end: must be an integer from 1 to 65535 (got 70000)",
            ),
            (
                json!({ "portRange": { "start": 4000 } }),
                "Invalid portRange.end: is required",
            ),
            (
                json!({ "portRange": "4000-5000" }),
                "Invalid portRange: expected an object, got string '4000-5000'",
            ),
            (
                json!({ "maxConcurrentBuilds": 0 }),
                "Invalid maxConcurrentBuilds: must be an integer from 1 to 4294967295 (got 0)",
            ),
            (
                json!({ "maxConcurrentBuilds": -1 }),
                "Invalid maxConcurrentBuilds: must be an integer from 1 to 4294967295 (got -1)",
            ),
            (
                json!({ "maxConcurrentBuilds": 1.5 }),
                "Invalid maxConcurrentBuilds: must be an integer from 1 to 4294967295 (got 1.5)",
            ),
            (
                json!({ "maxConcurrentBuilds": "3" }),
                "Invalid maxConcurrentBuilds: expected a number, got string '3'",
            ),
            (
                json!({ "defaultBuildTimeoutMs": 0 }),
                "Invalid defaultBuildTimeoutMs: must be an integer of at least 1 (got 0)",
            ),
            (
                json!({ "logRetentionLines": -5 }),
                "Invalid logRetentionLines: must be an integer from 1 to 4294967295 (got -5)",
            ),
            (
                json!({ "healthCheck": { "timeoutMs": 0 } }),
                "Invalid healthCheck.timeoutMs: must be an integer of at least 1 (got 0)",
            ),
            (
                json!({ "healthCheck": { "retryIntervalMs": -1 } }),
                "Invalid healthCheck.retryIntervalMs: must be an integer of at least 1 (got -1)",
            ),
            (
                json!({ "healthCheck": { "maxRetries": 0 } }),
                "Invalid healthCheck.maxRetries: must be an integer from 1 to 4294967295 (got 0)",
            ),
            (
                json!({ "healthCheck": { "endpoint": "" } }),
                "Invalid healthCheck.endpoint: must be a path starting with '/' (got '')",
            ),
            (
                json!({ "healthCheck": { "endpoint": "health" } }),
                "Invalid healthCheck.endpoint: must be a path starting with '/' (got 'health')",
            ),
            (
                json!({ "healthCheck": { "endpoint": "/a b" } }),
                "Invalid healthCheck.endpoint: must not contain spaces or control characters",
            ),
            (
                json!({ "healthCheck": true }),
                "Invalid healthCheck: expected an object, got boolean true",
            ),
            (
                json!({ "buildDir": "" }),
                "Invalid buildDir: must not be empty",
            ),
            (
                json!({ "buildDir": "a\u{0}b" }),
                "Invalid buildDir: must not contain a NUL character",
            ),
            (
                json!({ "buildDir": 7 }),
                "Invalid buildDir: expected a string, got number 7",
            ),
            (
                json!({ "buildDir": "a", "buildBaseDir": "b" }),
                "Invalid buildBaseDir: give either buildDir or buildBaseDir, not both (buildBaseDir means buildDir = `${buildBaseDir}/builds`)",
            ),
            (
                json!({ "globalEnvVars": { "A": 1 } }),
                "Invalid globalEnvVars.A: expected a string, got number 1",
            ),
            (
                json!({ "globalEnvVars": { "A=B": "x" } }),
                "Invalid globalEnvVars.A=B: a variable name must be non-empty and contain neither '=' nor NUL",
            ),
            (
                json!({ "globalEnvVars": ["A"] }),
                "Invalid globalEnvVars: expected an object, got an array",
            ),
            (
                json!({ "shutdownTimeoutMs": -1 }),
                "Invalid shutdownTimeoutMs: must be an integer of at least 0 (got -1)",
            ),
            (
                json!({ "providerTimeoutMs": 0 }),
                "Invalid providerTimeoutMs: must be an integer of at least 1 (got 0)",
            ),
            (
                json!({ "restartPolicy": { "backoffMs": 500, "maxBackoffMs": 100 } }),
                "Invalid restartPolicy.maxBackoffMs: must be at least backoffMs (100 < 500)",
            ),
            (
                json!({ "restartPolicy": { "maxRestarts": -1 } }),
                "Invalid restartPolicy.maxRestarts: must be an integer from 0 to 4294967295 (got -1)",
            ),
            (
                json!({ "defaultSource": "github" }),
                "Invalid defaultSource: the only supported value is 'local' (got 'github')",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(error_of(input.clone()), message, "input: {input}");
        }
    }

    #[test]
    fn standalone_port_range_is_named_by_its_argument() {
        let range = port_range_from_json(&json!({ "start": 5000, "end": 5009 }), "range").unwrap();
        assert_eq!(
            (range.len(), range.to_string()),
            (10, "5000-5009".to_owned())
        );
        assert!(range.contains(5000) && range.contains(5009) && !range.contains(5010));
        let error = |input: Value| {
            port_range_from_json(&input, "range")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(error(Value::Null), "Invalid range: is required");
        assert_eq!(
            error(json!({ "start": 5, "end": 1 })),
            "Invalid range: start (5) is greater than end (1)"
        );
        assert_eq!(
            error(json!({ "start": 0, "end": 1 })),
            "Invalid range.start: must be an integer from 1 to 65535 (got 0)"
        );
        assert_eq!(
            error(json!([1, 2])),
            "Invalid range: expected an object, got an array"
        );
    }

    #[test]
    fn standalone_health_check_config_names_its_fields_unprefixed() {
        assert_eq!(
            HealthCheckSettings::from_json(&Value::Null).unwrap(),
            HealthCheckSettings::default()
        );
        let settings =
            HealthCheckSettings::from_json(&json!({ "maxRetries": 2, "endpoint": "/ok" })).unwrap();
        assert_eq!(
            (settings.max_retries, settings.endpoint.as_str()),
            (2, "/ok")
        );
        assert_eq!(settings.timeout, Duration::from_secs(5));
        let error = |input: Value| {
            HealthCheckSettings::from_json(&input)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(json!({ "timeoutMs": 0 })),
            "Invalid timeoutMs: must be an integer of at least 1 (got 0)"
        );
        assert_eq!(
            error(json!({ "endpoint": "health" })),
            "Invalid endpoint: must be a path starting with '/' (got 'health')"
        );
        assert_eq!(
            error(json!(42)),
            "Invalid config: expected an object, got number 42"
        );
    }

    #[test]
    fn resolved_config_round_trips_through_json() {
        let config =
            parse(json!({ "restartPolicy": { "maxRestarts": 1 }, "defaultSource": "local" }))
                .unwrap();
        assert_eq!(parse(config.to_json()).unwrap(), config);
    }

    #[test]
    fn traces_endpoint_and_drain_are_read_and_checked() {
        let config = parse(json!({
            "tracesEndpoint": "http://127.0.0.1:3001/api/spans/publish",
            "redeployDrainMs": 0,
        }))
        .unwrap();
        assert_eq!(
            config.traces_endpoint.as_deref(),
            Some("http://127.0.0.1:3001/api/spans/publish")
        );
        assert_eq!(config.redeploy_drain, Duration::ZERO);
        assert_eq!(parse(config.to_json()).unwrap(), config);
        assert_eq!(
            parse(Value::Null).unwrap().redeploy_drain,
            Duration::from_secs(60)
        );
        for bad in [
            "ftp://host/x",
            "127.0.0.1:3001/spans",
            "http://",
            "https://:80/x",
            "http://host/a b",
            "http://host/\nX=1",
        ] {
            let message = error_of(json!({ "tracesEndpoint": bad }));
            assert!(message.starts_with("Invalid tracesEndpoint: "), "{message}");
        }
        assert!(error_of(json!({ "redeployDrainMs": -1 })).contains("redeployDrainMs"));
    }
}
