//! One build, step by step: wait for a slot → detect → install → build script → verify.
//!
//! Every child starts through the one spawner (`process::spawn`, no shell; run to its end by
//! `process::run_to_end`) with an explicit environment, in SPEC §3's order: the host
//! allow-list, the builder's global variables, the request's variables, then the runner's own
//! keys (cache locations always; `CI=true` and no `NODE_ENV` for install, so that
//! devDependencies are installed and nothing prompts; `NODE_ENV=production` for the build
//! script).
//!
//! The timeout is one budget for the whole run, measured from the moment the build leaves the
//! queue. On expiry or cancel, the running step's whole process tree is killed (SIGTERM, a short
//! grace, SIGKILL) before the outcome is returned; after a step exits normally, whatever it left
//! running in its process group is killed too, so a finished build leaves no process behind.
//!
//! The package manager a project names by version is made ready in `provide`: verified
//! against a digest from outside the cache and run from the build's own unpacked copy; `tool`
//! finds the one that runs and its version; `install_root` decides where the install runs. The
//! lines quoted when a step fails are chosen in `excerpt`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::excerpt::{error_excerpt, project_paths};
use super::layout::Caches;
use super::package_manager::{
    self, PackageManager, alone_args, build_args, build_script_in, exec_args, mastra_build_args,
};
use super::pm_cache::PrivateCopy;
use super::project::{BuildOutcome, BuildRequest, BuildStatus};
use super::provision::KnownIntegrities;
use super::queue::{Admission, Slot};
use crate::isolation::{Isolation, Limits};
use crate::logs::{LogEntry, LogLimits, LogStore, RUNNER_PREFIX, Stream, join_text};
use crate::process::{self, Ending, ExitInfo, Journal, SpawnSpec};
use crate::source::workspace::Member;

mod confine;
mod install;
mod install_root;
mod provide;
mod reuse;
mod tool;

/// Where a Mastra build leaves the server's entry point, relative to the working directory.
pub const OUTPUT_ENTRY: &str = ".mastra/output/index.mjs";

/// `<workdir>/.mastra/output/index.mjs`.
pub fn output_entry(workdir: &Path) -> PathBuf {
    workdir.join(OUTPUT_ENTRY)
}

/// What a pipeline needs from its builder.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The shared package-manager caches.
    pub caches: Caches,
    /// Variables of every build (`globalEnvVars`).
    pub global_env_vars: BTreeMap<String, String>,
    /// The budget when the request sets none.
    pub default_timeout: Duration,
    /// SIGTERM → SIGKILL grace on timeout or cancel.
    pub kill_grace: Duration,
    /// Where process groups are recorded, if anywhere.
    pub journal: Option<Arc<Journal>>,
    /// The queue's number of slots, for the "waiting" line.
    pub queue_limit: usize,
    /// The registry's digests of package managers, as this runner learned them.
    pub integrities: KnownIntegrities,
    /// The sandbox and cgroups of build steps.
    pub isolation: Arc<Isolation>,
    /// Every build's limits (`buildLimits`).
    pub limits: Limits,
    /// The directory holding the builds (and the private directories under `.tmp`).
    pub build_dir: PathBuf,
    /// The build cache of a runner's builds.
    pub cache: Arc<super::cache::CacheSlot>,
}

/// Why a run stopped early.
#[derive(Debug)]
enum Stop {
    /// A step failed; the message says which and how.
    Failed(String),
    /// The budget ran out during `step`.
    TimedOut { step: String },
    /// Cancelled during `step`.
    Cancelled { step: String },
}

/// Runs one build to its outcome. Holds its queue slot until every process it started is gone.
pub(crate) async fn run(
    settings: &Settings,
    request: BuildRequest,
    admission: Admission,
    mut cancel: watch::Receiver<bool>,
) -> BuildOutcome {
    let log = Arc::clone(&request.log);
    let slot: Slot = match admission {
        Admission::Now(slot) => slot,
        Admission::Queued(waiting) => {
            say(
                &log,
                format!(
                    "Build {} is waiting for a build slot: position {} in the queue \
                     ({} of {} builds running)",
                    request.build_id, waiting.position, waiting.running, settings.queue_limit
                ),
            );
            tokio::select! {
                biased;
                () = cancelled(&mut cancel) => {
                    say(&log, "Build cancelled while queued: it never started".to_owned());
                    return outcome(
                        &request,
                        BuildStatus::Cancelled,
                        Some("Build cancelled while queued".to_owned()),
                        None,
                        None,
                    );
                }
                slot = waiting.slot() => slot,
            }
        }
    };

    let started_at = SystemTime::now();
    let timeout = request.timeout.unwrap_or(settings.default_timeout);
    let mut run = Run {
        settings,
        request: &request,
        log: Arc::clone(&log),
        cancel,
        start: Instant::now(),
        deadline: Instant::now() + timeout,
        package_manager: None,
        root: request.workdir.clone(),
        pm_copy: None,
        confinement: None,
    };
    let result = run.steps(timeout).await;
    run.release_confinement().await;
    let elapsed = secs(run.start.elapsed());
    let (status, message) = match result {
        Ok(()) => (BuildStatus::Succeeded, None),
        Err(Stop::Failed(message)) => (BuildStatus::Failed, Some(message)),
        // The limit the caller set, not the time it took: the kill grace after it is not the
        // build's (the log says how long stopping took).
        Err(Stop::TimedOut { step }) => (
            BuildStatus::Failed,
            Some(format!(
                "Build timed out after {} s (during {step})",
                secs(timeout)
            )),
        ),
        Err(Stop::Cancelled { step }) => (
            BuildStatus::Cancelled,
            Some(format!("Build cancelled after {elapsed} s (during {step})")),
        ),
    };
    let last_line = match (&status, &message) {
        (BuildStatus::Failed, Some(message)) => {
            let summary = message.lines().next().unwrap_or_default();
            format!("Build failed after {elapsed} s: {summary}")
        }
        (_, Some(message)) => message.clone(),
        (_, None) => format!("Build succeeded in {elapsed} s"),
    };
    say(&log, last_line);
    let package_manager = run.package_manager;
    if let Some(copy) = run.pm_copy.take() {
        // Removing a few MB of files: off the async threads, and before the slot goes.
        let _ = tokio::task::spawn_blocking(move || drop(copy)).await;
    }
    drop(slot);
    outcome(&request, status, message, Some(started_at), package_manager)
}

fn outcome(
    request: &BuildRequest,
    status: BuildStatus,
    error_message: Option<String>,
    started_at: Option<SystemTime>,
    package_manager: Option<PackageManager>,
) -> BuildOutcome {
    BuildOutcome {
        build_id: request.build_id.clone(),
        status,
        error_message,
        started_at,
        completed_at: SystemTime::now(),
        package_manager,
        workdir: request.workdir.clone(),
        logs: join_text(&request.log.all()),
    }
}

/// Appends one runner line; returns its entry id.
fn say(log: &LogStore, line: String) -> u64 {
    log.append_lines(Stream::Stdout, [format!("{RUNNER_PREFIX}{line}")])
        .unwrap_or(0)
}

/// Resolves once the build is cancelled (never, if the canceller is gone).
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Seconds for humans: one decimal under 10 s, whole seconds above.
fn secs(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    let text = if seconds >= 10.0 {
        format!("{seconds:.0}")
    } else {
        format!("{seconds:.1}")
    };
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

/// One build's steps, sharing its log, budget and cancel signal.
struct Run<'a> {
    settings: &'a Settings,
    request: &'a BuildRequest,
    log: Arc<LogStore>,
    cancel: watch::Receiver<bool>,
    start: Instant,
    deadline: Instant,
    package_manager: Option<PackageManager>,
    /// Where the install runs: the workspace root when the project is a workspace package,
    /// else the working directory.
    root: PathBuf,
    /// The verified package manager this build runs, if it runs one from the cache; removed
    /// when the run is dropped, that is when the build ends.
    pm_copy: Option<PrivateCopy>,
    /// The build's cgroup and private directory, from its first step to its end.
    confinement: Option<confine::BuildConfinement>,
}

impl Run<'_> {
    fn say(&self, line: String) -> u64 {
        say(&self.log, line)
    }

    async fn steps(&mut self, timeout: Duration) -> Result<(), Stop> {
        let workdir = self.request.workdir.clone();
        if !workdir.is_dir() {
            return Err(Stop::Failed(format!(
                "Working directory not found: {}",
                workdir.display()
            )));
        }
        self.say(format!(
            "Build {} started in {} (timeout {} s)",
            self.request.build_id,
            workdir.display(),
            secs(timeout)
        ));

        let detect_start = Instant::now();
        let manifest = package_manager::read_package_json(&workdir)
            .map_err(|e| Stop::Failed(e.to_string()))?
            .ok_or_else(|| Stop::Failed(format!("No package.json in {}", workdir.display())))?;
        let workspace = self.workspace(&workdir);
        let detection = match &workspace {
            Some(workspace) => {
                let root_manifest = package_manager::read_package_json(&workspace.root)
                    .map_err(|e| Stop::Failed(e.to_string()))?;
                package_manager::detect_with(&workspace.root, root_manifest.as_ref())
            }
            None => package_manager::detect_with(&workdir, Some(&manifest)),
        }
        .map_err(|e| Stop::Failed(e.to_string()))?;
        let dependencies: Vec<Member> = match &workspace {
            Some(workspace) => self.enter_workspace(workspace, &workdir),
            None => Vec::new(),
        };
        let alone = workspace.is_none() && self.alone(&workdir, detection.package_manager);
        self.package_manager = Some(detection.package_manager);
        for warning in &detection.warnings {
            self.say(format!("Warning: {warning}"));
        }
        let has_build_script = build_script_in(&manifest);
        let mastra = !has_build_script && package_manager::depends_on(&manifest, "mastra");
        if workdir.join(".env").is_file() {
            self.say(
                "Note: .env is present but not loaded (as in MastraAdmin's own builds): the build \
                 and the server get only the host's allowed variables, globalEnvVars and envVars"
                    .to_owned(),
            );
        }

        let base = process::env::compose([&self.settings.global_env_vars, &self.request.env_vars]);
        let needs_tool = !self.request.skip_install || has_build_script || mastra;
        let tool = if needs_tool {
            let fetched = self.provide(&detection, &base).await?;
            let mut env = base.clone();
            if let Some(bin) = &fetched {
                prepend_path(&mut env, bin);
            }
            let (program, version) = self
                .resolve_tool(&detection, &env, fetched.is_some(), alone)
                .await?;
            Some((program, version, env))
        } else {
            self.say(format!(
                "Detected package manager: {}",
                detection.describe()
            ));
            None
        };
        self.say(format!(
            "Detection finished in {} s",
            secs(detect_start.elapsed())
        ));
        let pm = self.package_manager.unwrap_or(detection.package_manager);

        let mut reuse = None;
        if let Some((program, version, env)) = &tool {
            let caches = self.settings.caches.env(pm, version.as_deref());
            let mut build_env = env.clone();
            build_env.extend(caches.clone());
            build_env.insert("NODE_ENV".to_owned(), "production".to_owned());
            let install = (!self.request.skip_install)
                .then(|| install::Install::new(pm, env, caches, &detection, alone, &self.root));
            reuse = self
                .reuse_plan(pm, version.as_deref(), install.as_ref(), &build_env)
                .await;
            if let Some(plan) = &reuse
                && self.reuse_output(plan).await
            {
                return self.verify(&workdir, true, None).await;
            }
            match &install {
                None => {
                    self.say("Install skipped (skipInstall)".to_owned());
                }
                Some(install) => {
                    self.git_work_tree(env).await?;
                    let restored = match &reuse {
                        Some(plan) => self.reuse_install(plan).await,
                        None => false,
                    };
                    if !restored {
                        self.install(program, install, &detection).await?;
                        if let Some(plan) = &reuse {
                            self.save_install(plan).await;
                        }
                    }
                }
            }
            let root = self.root.clone();
            if mastra && !mastra_installed(&workdir, &root, pm) {
                return Err(Stop::Failed(format!(
                    "package.json has no build script, and mastra (a dependency) is not \
                     installed in {}: add \"build\": \"mastra build\" to its scripts",
                    workdir.display()
                )));
            }
            let turbo = workspace.is_some()
                && root.join("turbo.json").is_file()
                && root.join("node_modules/.bin/turbo").exists();
            let app_built = if turbo {
                // turbo selects a package by name, or by its folder (`./apps/mastra`).
                let name = match manifest.get("name").and_then(serde_json::Value::as_str) {
                    Some(name) if !name.is_empty() => name.to_owned(),
                    _ => format!(
                        "./{}",
                        workdir.strip_prefix(&root).unwrap_or(&workdir).display()
                    ),
                };
                self.say(format!(
                    "The workspace uses turbo: it builds {name} and what it depends on"
                ));
                let filter = format!("--filter={name}...");
                let args = exec_args(pm, "turbo", &["run", "build", &filter]);
                self.step(&BUILD_SCRIPT, program, pm, args, build_env.clone(), &root)
                    .await?;
                true
            } else {
                for dependency in &dependencies {
                    if build_script_in(&dependency.manifest) {
                        self.step(
                            &BUILD_SCRIPT,
                            program,
                            pm,
                            build_args(pm),
                            build_env.clone(),
                            &dependency.dir,
                        )
                        .await?;
                    }
                }
                false
            };
            // A project installed alone is built alone too: pnpm 10 run in it would otherwise
            // hand over to the version the workspace above names.
            let prefix = if alone { alone_args(pm) } else { &[] };
            let alone_first = |args: Vec<String>| -> Vec<String> {
                prefix.iter().map(|a| (*a).to_owned()).chain(args).collect()
            };
            if has_build_script {
                if !app_built {
                    self.step(
                        &BUILD_SCRIPT,
                        program,
                        pm,
                        alone_first(build_args(pm)),
                        build_env,
                        &workdir,
                    )
                    .await?;
                }
            } else if mastra {
                let args = alone_first(mastra_build_args(pm));
                self.say(format!(
                    "No build script in package.json; the project depends on mastra, so its own \
                     mastra build runs ({} {})",
                    pm.command(),
                    args.join(" ")
                ));
                self.step(&BUILD_SCRIPT, program, pm, args, build_env, &workdir)
                    .await?;
            }
        } else {
            self.say("Install skipped (skipInstall)".to_owned());
        }
        if !has_build_script && !mastra {
            self.say(
                "No build script found, skipping build step (package.json has no scripts.build)"
                    .to_owned(),
            );
        }

        self.verify(&workdir, has_build_script || mastra, reuse.as_ref())
            .await
    }

    /// Checks that the output is there; then, for a runner's build, takes the snapshot of
    /// what it left (before any server runs from it).
    async fn verify(
        &mut self,
        workdir: &Path,
        builds: bool,
        reuse: Option<&reuse::Plan>,
    ) -> Result<(), Stop> {
        let entry = output_entry(workdir);
        if !entry.is_file() {
            let mut message = format!("Build output not found: {}", entry.display());
            if !builds {
                message.push_str(
                    "\npackage.json has no build script (scripts.build) and does not depend on \
                     mastra: Mastra projects use \"build\": \"mastra build\"",
                );
            }
            return Err(Stop::Failed(message));
        }
        self.say(format!("Build output found: {}", entry.display()));
        if let Some(plan) = reuse {
            self.save_output(plan).await;
        }
        Ok(())
    }

    /// Runs a helper command (not a step of the project) into a scratch log; its exit and lines.
    async fn quiet(
        &mut self,
        program: &Path,
        args: &[&str],
        cwd: &Path,
        env: &BTreeMap<String, String>,
        step: &str,
    ) -> Result<(ExitInfo, Vec<LogEntry>), Stop> {
        let scratch = Arc::new(LogStore::new(LogLimits::with_lines(200)));
        let spec = SpawnSpec {
            program: program.to_string_lossy().into_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            cwd: cwd.to_path_buf(),
            env: env.clone(),
            confinement: Default::default(),
        };
        let shown = format!("{} {}", program.display(), args.join(" "));
        let exit = self
            .supervise(spec, Arc::clone(&scratch), step, &shown)
            .await?;
        Ok((exit, scratch.all()))
    }

    /// Runs one step and fails it on a non-zero exit, quoting the package manager's own error
    /// lines.
    async fn step(
        &mut self,
        text: &StepText,
        program: &Path,
        pm: PackageManager,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: &Path,
    ) -> Result<(), Stop> {
        let mut shown = format!("{} {}", pm.command(), args.join(" "));
        if cwd != self.request.workdir {
            let place = cwd
                .strip_prefix(&self.root)
                .unwrap_or(cwd)
                .display()
                .to_string();
            let place = if place.is_empty() {
                ".".to_owned()
            } else {
                place
            };
            shown.push_str(&format!(" in {place}"));
        }
        let marker = self.say(format!("{} ({shown})", text.running));
        let step_start = Instant::now();
        let spec = SpawnSpec {
            program: program.to_string_lossy().into_owned(),
            args,
            cwd: cwd.to_path_buf(),
            env,
            confinement: Default::default(),
        };
        let log = Arc::clone(&self.log);
        let exit = self
            .supervise(spec, log, &format!("{}: {shown}", text.what), &shown)
            .await?;
        if exit.success() {
            self.say(format!("{} in {} s", text.done, secs(step_start.elapsed())));
            return Ok(());
        }
        let output: Vec<LogEntry> = self
            .log
            .all()
            .into_iter()
            .filter(|e| e.id() > marker)
            .collect();
        let mut message = failure(text.failed, &exit, &shown);
        if let Some(excerpt) = error_excerpt(&output) {
            message.push('\n');
            message.push_str(&excerpt);
            let files = project_paths(&excerpt, &self.root, &self.request.workdir);
            if !files.is_empty() {
                message.push_str("\nIn the project: ");
                message.push_str(&files.join(", "));
            }
        }
        Err(Stop::Failed(message))
    }

    /// Starts `spec` and waits for it, the deadline or a cancel, whichever comes first; in
    /// every case its whole process group is gone when this returns.
    async fn supervise(
        &mut self,
        spec: SpawnSpec,
        log: Arc<LogStore>,
        step: &str,
        shown: &str,
    ) -> Result<ExitInfo, Stop> {
        if Instant::now() >= self.deadline {
            return Err(Stop::TimedOut {
                step: step.to_owned(),
            });
        }
        if *self.cancel.borrow() {
            return Err(Stop::Cancelled {
                step: step.to_owned(),
            });
        }
        let stopping = process::Stopping {
            deadline: Some(self.deadline),
            grace: self.settings.kill_grace,
            // Whatever the step left running in its group goes too.
            kill_leftovers: true,
        };
        let mut spec = spec;
        self.confine(&mut spec).await?;
        let journal = self.settings.journal.clone();
        let end = process::run_to_end(spec, log, journal, stopping, cancelled(&mut self.cancel))
            .await
            .map_err(|e| Stop::Failed(format!("Cannot run {shown}: {e}")))?;
        let stop = match end.ending {
            Ending::Exited => return Ok(end.exit),
            Ending::TimedOut => Stop::TimedOut {
                step: step.to_owned(),
            },
            Ending::Cancelled => Stop::Cancelled {
                step: step.to_owned(),
            },
        };
        self.say(format!(
            "Stopped the {step}'s processes in {} s (kill grace {} s: SIGTERM, then SIGKILL)",
            secs(end.killed_in),
            secs(self.settings.kill_grace)
        ));
        Err(stop)
    }
}

/// Puts `dir` first on the `PATH` of `env`.
fn prepend_path(env: &mut BTreeMap<String, String>, dir: &Path) {
    let dir = dir.to_string_lossy().into_owned();
    let path = match env.get("PATH") {
        Some(rest) if !rest.is_empty() => format!("{dir}:{rest}"),
        _ => dir,
    };
    env.insert("PATH".to_owned(), path);
}

/// Whether the project's `mastra` binary is installed: `node_modules/.bin/mastra` in the
/// project or a folder above it up to `root` (a workspace hoists it); yarn berry's Plug'n'Play
/// has no such folder, so it is trusted.
fn mastra_installed(workdir: &Path, root: &Path, pm: PackageManager) -> bool {
    let linked = workdir
        .ancestors()
        .take_while(|dir| dir.starts_with(root))
        .any(|dir| dir.join("node_modules/.bin/mastra").exists());
    linked || (pm == PackageManager::YarnBerry && !workdir.join("node_modules").exists())
}

/// The words of one step in the log and in its error message; the phrases are the TypeScript
/// package's, the command and duration follow them.
struct StepText {
    /// The step in timeout and cancel messages.
    what: &'static str,
    /// Logged when it starts.
    running: &'static str,
    /// Logged when it succeeded.
    done: &'static str,
    /// Starts the error message when it failed.
    failed: &'static str,
}

const INSTALL: StepText = StepText {
    what: "install",
    running: "Installing dependencies...",
    done: "Dependencies installed successfully",
    failed: "Dependency installation failed",
};

const BUILD_SCRIPT: StepText = StepText {
    what: "build script",
    running: "Running build script...",
    done: "Build completed successfully",
    failed: "Build failed",
};

/// "Build failed with exit code 2 (npm run build)", "Build failed: killed by signal SIGKILL
/// (npm run build)".
fn failure(failed: &str, exit: &ExitInfo, shown: &str) -> String {
    match (exit.code, exit.signal) {
        (Some(_), _) => format!("{failed} with {exit} ({shown})"),
        (None, Some(_)) => format!("{failed}: killed by {exit} ({shown})"),
        (None, None) => format!("{failed}: ended with {exit} ({shown})"),
    }
}

/// "exited with exit code 1", "was killed by signal SIGKILL".
fn how(exit: &ExitInfo) -> String {
    match (exit.code, exit.signal) {
        (Some(_), _) => format!("exited with {exit}"),
        (None, Some(_)) => format!("was killed by {exit}"),
        (None, None) => format!("ended with {exit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_and_durations_read_naturally() {
        let code = ExitInfo {
            code: Some(1),
            signal: None,
        };
        let signal = ExitInfo {
            code: None,
            signal: Some(9),
        };
        assert_eq!(how(&code), "exited with exit code 1");
        assert_eq!(how(&signal), "was killed by signal SIGKILL");
        assert_eq!(secs(Duration::from_millis(500)), "0.5");
        assert_eq!(secs(Duration::from_millis(2_000)), "2");
        assert_eq!(secs(Duration::from_millis(2_340)), "2.3");
        assert_eq!(secs(Duration::from_millis(61_600)), "62");
    }
}
