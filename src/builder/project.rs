//! The project builder: the queue, the builds in flight, cancelling them, and their outcome.
//!
//! [`ProjectBuilder::build`] takes a [`BuildRequest`] (a working directory the caller has
//! already populated), waits for a slot of the FIFO [`Queue`], runs the [`pipeline`] and
//! resolves with a [`BuildOutcome`]: failures of the user's project are data, not errors.
//!
//! Each build runs in its own tokio task, so dropping the future returned by `build` does not
//! stop it half-way; [`ProjectBuilder::cancel`] does, and resolves once the build's processes
//! are gone.
//!
//! # Live log
//! Every line (the runner's own, prefixed `[runner] `, and the children's, stderr tagged)
//! goes into the request's [`LogStore`], in order. A caller that wants lines as they happen
//! subscribes to that store before calling `build` (see `LogStore::subscribe`); the outcome's
//! `logs` is the store's text at the end, bounded by the store's limits (newest lines win).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::cache::CacheSlot;
use super::layout::{self, Caches};
use super::package_manager::PackageManager;
use super::pipeline;
use super::provision::KnownIntegrities;
use super::queue::Queue;
use crate::config::RunnerConfig;
use crate::error::{Error, Result};
use crate::isolation::{Isolation, Limits, SandboxSettings};
use crate::logs::{LogLimits, LogStore};
use crate::process::Journal;
use crate::validate::{self, MAX_SAFE_INTEGER};

/// Lines a build log keeps when the caller does not bring its own store.
pub const DEFAULT_BUILD_LOG_LINES: usize = 10_000;

/// Settings of a [`ProjectBuilder`].
#[derive(Debug, Clone)]
pub struct BuilderConfig {
    /// The directory holding one directory per build, and the caches under `.cache`.
    pub build_dir: PathBuf,
    /// Builds that run at once; the rest wait in FIFO order.
    pub max_concurrent_builds: usize,
    /// The budget of install plus build script when a request sets none.
    pub default_timeout: Duration,
    /// Variables of every build, above the host allow-list and below the request's.
    pub global_env_vars: BTreeMap<String, String>,
    /// Grace between SIGTERM and SIGKILL when a build is timed out or cancelled.
    pub kill_grace: Duration,
    /// Where the processes of builds are recorded for the next runner to reap, if anywhere.
    pub journal: Option<Arc<Journal>>,
    /// The sandbox of build steps (`sandbox`).
    pub sandbox: SandboxSettings,
    /// Every build's limits (`buildLimits`).
    pub limits: Limits,
    /// The bound of the build cache of a runner's builds, in bytes (`buildCache.maxMb`).
    pub build_cache_max_bytes: u64,
}

impl BuilderConfig {
    /// The defaults of SPEC §2 for a runner on `build_dir`: 3 builds at once, 600 s.
    pub fn new(build_dir: PathBuf) -> Self {
        BuilderConfig {
            build_dir,
            max_concurrent_builds: 3,
            default_timeout: Duration::from_millis(600_000),
            global_env_vars: BTreeMap::new(),
            kill_grace: crate::process::DEFAULT_KILL_GRACE,
            journal: None,
            sandbox: SandboxSettings::default(),
            limits: Limits::defaults(),
            build_cache_max_bytes: 0,
        }
    }

    /// The build settings of a validated runner configuration.
    pub fn from_runner_config(config: &RunnerConfig) -> Self {
        BuilderConfig {
            build_dir: config.build_dir.clone(),
            max_concurrent_builds: config.max_concurrent_builds as usize,
            default_timeout: config.default_build_timeout,
            global_env_vars: config.global_env_vars.clone(),
            kill_grace: config.shutdown_timeout,
            journal: None,
            sandbox: config.sandbox.clone(),
            limits: config.build_limits,
            build_cache_max_bytes: config.build_cache_max_bytes,
        }
    }

    /// Validates the options of `new ProjectBuilder(options)`: `buildDir` (resolved against
    /// `cwd`), `maxConcurrentBuilds`, `defaultTimeoutMs`, `globalEnvVars`; absent fields take
    /// the defaults. Errors name the field.
    pub fn from_json(options: &Value, cwd: &std::path::Path) -> Result<Self> {
        let fields = match options {
            Value::Null => return Ok(Self::from_runner_config(&RunnerConfig::defaults(cwd))),
            Value::Object(fields) => fields,
            other => {
                return Err(Error::invalid(
                    "options",
                    validate::expected("an object", other),
                ));
            }
        };
        // The fields shared with the runner's config are checked by the same rules.
        let shared: Map<String, Value> = ["buildDir", "maxConcurrentBuilds", "globalEnvVars"]
            .into_iter()
            .filter_map(|name| Some((name.to_owned(), fields.get(name)?.clone())))
            .collect();
        let mut config =
            Self::from_runner_config(&RunnerConfig::from_json(&Value::Object(shared), cwd)?);
        match fields.get("defaultTimeoutMs") {
            None | Some(Value::Null) => {}
            Some(ms) => {
                let ms = validate::integer("defaultTimeoutMs", ms, 1, MAX_SAFE_INTEGER)?;
                config.default_timeout = Duration::from_millis(ms);
            }
        }
        Ok(config)
    }
}

/// What a caller may set per build (`BuildOptions` of SPEC §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// `envVars`: variables above the builder's global ones.
    pub env_vars: BTreeMap<String, String>,
    /// `timeoutMs`: overrides the builder's default budget.
    pub timeout: Option<Duration>,
    /// `skipInstall`: skip the install step.
    pub skip_install: bool,
    /// `cache`: whether a runner's build may reuse an earlier build's output or install
    /// (default true; false builds from scratch and refreshes the snapshots).
    pub use_cache: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            env_vars: BTreeMap::new(),
            timeout: None,
            skip_install: false,
            use_cache: true,
        }
    }
}

impl BuildOptions {
    /// Validates a caller's options object (`null`: all defaults); errors name the field as
    /// `<name>.envVars`, `<name>.timeoutMs`, `<name>.skipInstall`.
    pub fn from_json(value: &Value, name: &str) -> Result<Self> {
        let fields = match value {
            Value::Null => return Ok(Self::default()),
            Value::Object(fields) => fields,
            other => {
                return Err(Error::invalid(name, validate::expected("an object", other)));
            }
        };
        let field = |key: &str| fields.get(key).unwrap_or(&Value::Null);
        let timeout = match field("timeoutMs") {
            Value::Null => None,
            ms => Some(Duration::from_millis(validate::integer(
                &format!("{name}.timeoutMs"),
                ms,
                1,
                MAX_SAFE_INTEGER,
            )?)),
        };
        let flag = |key: &str, default: bool| match field(key) {
            Value::Null => Ok(default),
            Value::Bool(on) => Ok(*on),
            other => Err(Error::invalid(
                format!("{name}.{key}"),
                validate::expected("a boolean", other),
            )),
        };
        let skip_install = flag("skipInstall", false)?;
        let use_cache = flag("cache", true)?;
        Ok(BuildOptions {
            env_vars: match field("envVars") {
                Value::Null => BTreeMap::new(),
                vars => validate::env_vars(&format!("{name}.envVars"), vars)?,
            },
            timeout,
            skip_install,
            use_cache,
        })
    }
}

/// One build to run.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The build's id (checked by SPEC §3's id rules).
    pub build_id: String,
    /// The project's working copy, already populated.
    pub workdir: PathBuf,
    /// The build's own variables (`options.envVars`), above the builder's global ones.
    pub env_vars: BTreeMap<String, String>,
    /// Budget of install plus build script; `None` takes the builder's default.
    pub timeout: Option<Duration>,
    /// Skip the install step.
    pub skip_install: bool,
    /// The project whose earlier builds this one may reuse (a runner's builds, which own
    /// their directory); `None` builds without the build cache.
    pub reuse_for: Option<String>,
    /// Whether a matching snapshot may be restored (`cache`); snapshots are taken either way.
    pub use_cache: bool,
    /// Where every line goes, in order. Subscribe to it for live lines.
    pub log: Arc<LogStore>,
}

impl BuildRequest {
    /// A request with no variables, the default timeout, and a fresh log of
    /// [`DEFAULT_BUILD_LOG_LINES`] lines.
    pub fn new(build_id: impl Into<String>, workdir: impl Into<PathBuf>) -> Self {
        BuildRequest {
            build_id: build_id.into(),
            workdir: workdir.into(),
            env_vars: BTreeMap::new(),
            timeout: None,
            skip_install: false,
            reuse_for: None,
            use_cache: true,
            log: Arc::new(LogStore::new(LogLimits::with_lines(
                DEFAULT_BUILD_LOG_LINES,
            ))),
        }
    }
}

impl BuildRequest {
    /// This request with a caller's options applied.
    pub fn with_options(mut self, options: BuildOptions) -> Self {
        self.env_vars = options.env_vars;
        self.timeout = options.timeout;
        self.skip_install = options.skip_install;
        self.use_cache = options.use_cache;
        self
    }
}

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    /// Installed, built, and the output is there.
    Succeeded,
    /// A step failed or the build timed out; the outcome's message says which and how.
    Failed,
    /// Cancelled while queued or running.
    Cancelled,
}

impl BuildStatus {
    /// `"succeeded"`, `"failed"` or `"cancelled"`, as `Build.status` spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
            BuildStatus::Cancelled => "cancelled",
        }
    }
}

/// What a build came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    /// The build's id.
    pub build_id: String,
    /// How it ended.
    pub status: BuildStatus,
    /// What failed and how (`None` on success). The first line is a summary such as
    /// `Dependency installation failed with exit code 1 (pnpm install --frozen-lockfile)`; the
    /// package manager's own error lines may follow.
    pub error_message: Option<String>,
    /// When it left the queue and started; `None` when it was cancelled while queued.
    pub started_at: Option<SystemTime>,
    /// When it ended.
    pub completed_at: SystemTime,
    /// The package manager used, once detected.
    pub package_manager: Option<PackageManager>,
    /// The working directory it built (where `.mastra/output` is).
    pub workdir: PathBuf,
    /// The build log's text: `\n` between lines, stderr lines prefixed `[stderr] `.
    pub logs: String,
}

impl BuildOutcome {
    /// `<workdir>/.mastra/output/index.mjs`, the file a deploy runs.
    pub fn output_entry(&self) -> PathBuf {
        pipeline::output_entry(&self.workdir)
    }
}

/// A build in flight, as `cancel` reaches it.
#[derive(Debug)]
struct Control {
    cancel: watch::Sender<bool>,
    finished: watch::Sender<bool>,
}

/// Builds projects: a FIFO queue of at most N running builds, each cancellable by id.
/// Cheap to clone; clones share the queue and the builds.
#[derive(Debug, Clone)]
pub struct ProjectBuilder {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: BuilderConfig,
    caches: Caches,
    queue: Arc<Queue>,
    active: Mutex<HashMap<String, Arc<Control>>>,
    integrities: KnownIntegrities,
    isolation: Arc<Isolation>,
    cache: Arc<CacheSlot>,
}

impl ProjectBuilder {
    /// A builder with `config`; touches nothing on disk until a build runs.
    pub fn new(config: BuilderConfig) -> Self {
        ProjectBuilder {
            shared: Arc::new(Shared {
                caches: Caches::for_build_dir(&config.build_dir),
                queue: Queue::new(config.max_concurrent_builds),
                active: Mutex::new(HashMap::new()),
                integrities: KnownIntegrities::default(),
                isolation: Arc::new(Isolation::new(&config.sandbox, &config.build_dir)),
                cache: Arc::new(CacheSlot::new(
                    &config.build_dir,
                    config.build_cache_max_bytes,
                )),
                config,
            }),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &BuilderConfig {
        &self.shared.config
    }

    /// The build cache of a runner's builds (requests with `reuse_for`).
    pub fn build_cache(&self) -> &Arc<CacheSlot> {
        &self.shared.cache
    }

    /// The package managers' caches shared by its builds (`<buildDir>/.cache`).
    pub fn caches(&self) -> &Caches {
        &self.shared.caches
    }

    fn active(&self) -> MutexGuard<'_, HashMap<String, Arc<Control>>> {
        crate::sync::lock(&self.shared.active)
    }

    /// Ids of the builds queued or running.
    pub fn active_builds(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.active().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Whether a build with this id is queued or running.
    pub fn is_active(&self, build_id: &str) -> bool {
        self.active().contains_key(build_id)
    }

    /// Builds running now (holding a queue slot).
    pub fn running_count(&self) -> usize {
        self.shared.queue.running()
    }

    /// Builds waiting for a slot now.
    pub fn queued_count(&self) -> usize {
        self.shared.queue.waiting()
    }

    /// Queues and runs one build and resolves with its outcome. Errors only for misuse: an
    /// invalid build id, or an id already queued or running.
    pub async fn build(&self, request: BuildRequest) -> Result<BuildOutcome> {
        crate::validate::id("buildId", &request.build_id)?;
        let (cancel_sender, cancel) = watch::channel(false);
        let (finished, _) = watch::channel(false);
        let control = Arc::new(Control {
            cancel: cancel_sender,
            finished,
        });
        {
            let mut active = self.active();
            if active.contains_key(&request.build_id) {
                return Err(Error::BuildInProgress {
                    build_id: request.build_id,
                });
            }
            active.insert(request.build_id.clone(), Arc::clone(&control));
        }
        // Entering the queue here, before the task starts, keeps FIFO order equal to the order
        // of `build` calls.
        let admission = self.shared.queue.enter();
        let build_id = request.build_id.clone();
        let guard = FinishGuard {
            builder: self.clone(),
            build_id: build_id.clone(),
            control,
        };
        let task = tokio::spawn(async move {
            let builder = &guard.builder;
            let settings = pipeline::Settings {
                caches: builder.shared.caches.clone(),
                global_env_vars: builder.shared.config.global_env_vars.clone(),
                default_timeout: builder.shared.config.default_timeout,
                kill_grace: builder.shared.config.kill_grace,
                journal: builder.shared.config.journal.clone(),
                queue_limit: builder.shared.queue.limit(),
                integrities: builder.shared.integrities.clone(),
                isolation: Arc::clone(&builder.shared.isolation),
                limits: builder.shared.config.limits,
                build_dir: builder.shared.config.build_dir.clone(),
                cache: Arc::clone(&builder.shared.cache),
            };
            let outcome = pipeline::run(&settings, request, admission, cancel).await;
            drop(guard);
            outcome
        });
        task.await.map_err(|e| Error::BuildAborted {
            build_id,
            reason: e.to_string(),
        })
    }

    /// Cancels a queued or running build: a queued one never starts, a running one has its
    /// process tree killed. Resolves once its processes are gone; its `build` call resolves
    /// with status cancelled. Returns false when no such build is queued or running.
    pub async fn cancel(&self, build_id: &str) -> bool {
        let control = self.active().get(build_id).cloned();
        match control {
            Some(control) => {
                wait_cancelled(&control).await;
                true
            }
            None => false,
        }
    }

    /// Cancels every build, including any started while this runs; resolves once none is
    /// left. For shutdown: stop accepting builds first.
    pub async fn cancel_all(&self) {
        loop {
            let controls: Vec<Arc<Control>> = self.active().values().cloned().collect();
            if controls.is_empty() {
                return;
            }
            // Signal every build first so that they all stop at once, then wait for each.
            for control in &controls {
                control.cancel.send_replace(true);
            }
            for control in &controls {
                wait_cancelled(control).await;
            }
        }
    }

    /// Empties `<buildDir>/<build_id>` for a source provider to copy into (see
    /// [`layout::clean_build_dir`]); refused while that build is queued or running.
    pub async fn clean_build_dir(&self, build_id: &str) -> Result<PathBuf> {
        self.refuse_active(build_id)?;
        layout::clean_build_dir(&self.shared.config.build_dir, build_id).await
    }

    /// Removes `<buildDir>/<build_id>`; refused while that build is queued or running.
    /// Returns whether there was anything to remove.
    pub async fn remove_build_dir(&self, build_id: &str) -> Result<bool> {
        self.refuse_active(build_id)?;
        layout::remove_build_dir(&self.shared.config.build_dir, build_id).await
    }

    fn refuse_active(&self, build_id: &str) -> Result<()> {
        if self.is_active(build_id) {
            return Err(Error::BuildInProgress {
                build_id: build_id.to_owned(),
            });
        }
        Ok(())
    }
}

/// Signals cancellation and waits until the build reports its processes gone.
async fn wait_cancelled(control: &Control) {
    control.cancel.send_replace(true);
    let mut finished = control.finished.subscribe();
    // An error means the build's task is gone, which only happens once it has finished.
    let _ = finished.wait_for(|done| *done).await;
}

/// Forgets a build and wakes whoever cancelled it once its task is done, also when the task
/// panicked.
struct FinishGuard {
    builder: ProjectBuilder,
    build_id: String,
    control: Arc<Control>,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        let mut active = self.builder.active();
        if active
            .get(&self.build_id)
            .is_some_and(|current| Arc::ptr_eq(current, &self.control))
        {
            active.remove(&self.build_id);
        }
        drop(active);
        self.control.finished.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn options_are_validated_with_the_runner_rules() {
        let cwd = Path::new("/srv");
        let config = BuilderConfig::from_json(&Value::Null, cwd).unwrap();
        assert_eq!(config.build_dir, Path::new("/srv/.mastra/builds"));
        assert_eq!(config.max_concurrent_builds, 3);
        assert_eq!(config.default_timeout, Duration::from_secs(600));

        let config = BuilderConfig::from_json(
            &json!({ "buildDir": "b", "maxConcurrentBuilds": 2, "defaultTimeoutMs": 500,
                     "globalEnvVars": { "A": "1" } }),
            cwd,
        )
        .unwrap();
        assert_eq!(config.build_dir, Path::new("/srv/b"));
        assert_eq!(config.max_concurrent_builds, 2);
        assert_eq!(config.default_timeout, Duration::from_millis(500));
        assert_eq!(config.global_env_vars["A"], "1");

        let error = |options: Value| {
            BuilderConfig::from_json(&options, cwd)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(json!({ "maxConcurrentBuilds": 0 })),
            "Invalid maxConcurrentBuilds: must be an integer from 1 to 4294967295 (got 0)"
        );
        assert_eq!(
            error(json!({ "defaultTimeoutMs": "1s" })),
            "Invalid defaultTimeoutMs: expected a number, got string '1s'"
        );
        assert_eq!(
            error(json!({ "globalEnvVars": { "A": 1 } })),
            "Invalid globalEnvVars.A: expected a string, got number 1"
        );
        assert_eq!(
            error(json!(5)),
            "Invalid options: expected an object, got number 5"
        );
    }

    #[test]
    fn build_options_name_the_offending_field() {
        let options = BuildOptions::from_json(
            &json!({ "envVars": { "A": "1" }, "timeoutMs": 2000, "skipInstall": true }),
            "options",
        )
        .unwrap();
        assert_eq!(options.env_vars["A"], "1");
        assert_eq!(options.timeout, Some(Duration::from_secs(2)));
        assert!(options.skip_install);
        assert_eq!(
            BuildOptions::from_json(&Value::Null, "options").unwrap(),
            BuildOptions::default()
        );
        let error = |options: Value| {
            BuildOptions::from_json(&options, "options")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(json!({ "timeoutMs": 0 })),
            "Invalid options.timeoutMs: must be an integer of at least 1 (got 0)"
        );
        assert_eq!(
            error(json!({ "skipInstall": "yes" })),
            "Invalid options.skipInstall: expected a boolean, got string 'yes'"
        );
        assert_eq!(
            error(json!({ "envVars": { "A=B": "1" } })),
            "Invalid options.envVars.A=B: a variable name must be non-empty and contain neither '=' nor NUL"
        );
        assert_eq!(
            error(json!({ "envVars": [] })),
            "Invalid options.envVars: expected an object, got an array"
        );
        let request = BuildRequest::new("b", "/w")
            .with_options(BuildOptions::from_json(&json!({ "timeoutMs": 5 }), "options").unwrap());
        assert_eq!(request.timeout, Some(Duration::from_millis(5)));
    }
}
