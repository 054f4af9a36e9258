//! One build, step by step: wait for a slot → detect → install → build script → verify.
//!
//! Every child starts through the one spawner (`process::spawn`, no shell) with an explicit
//! environment, in SPEC §3's order: the host allow-list, the builder's global variables, the
//! request's variables, then the runner's own keys (cache locations always; `CI=true` and no
//! `NODE_ENV` for install, so that devDependencies are installed and nothing prompts;
//! `NODE_ENV=production` for the build script).
//!
//! The timeout is one budget for the whole run, measured from the moment the build leaves the
//! queue. On expiry or cancel, the running step's whole process tree is killed (SIGTERM, a short
//! grace, SIGKILL) before the outcome is returned; after a step exits normally, whatever it left
//! running in its process group is killed too, so a finished build leaves no process behind.
//!
//! The package manager a project names by version is made ready in `provide`: verified
//! against a digest from outside the cache and run from the build's own unpacked copy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::dependency_scripts;
use super::layout::Caches;
use super::package_manager::{
    self, Detection, PackageManager, alone_args, build_args, build_script_in, exec_args,
    find_in_path, install_args, mastra_build_args,
};
use super::pm_cache::PrivateCopy;
use super::project::{BuildOutcome, BuildRequest, BuildStatus};
use super::provision::KnownIntegrities;
use super::queue::{Admission, Slot};
use crate::logs::{LogEntry, LogLimits, LogStore, RUNNER_PREFIX, Stream, join_text};
use crate::process::{self, ExitInfo, Journal, SpawnSpec};
use crate::source::workspace::{self, Member, Workspace};

mod provide;

/// Where a Mastra build leaves the server's entry point, relative to the working directory.
pub const OUTPUT_ENTRY: &str = ".mastra/output/index.mjs";

/// How long to wait for a finished step's output pipes to drain into the log.
const OUTPUT_SETTLE: Duration = Duration::from_secs(2);

/// At most this many of the package manager's own lines are quoted in a failure message…
const EXCERPT_LINES: usize = 6;
/// …and at most this many bytes of them.
const EXCERPT_BYTES: usize = 800;

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
    };
    let result = run.steps(timeout).await;
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

/// The version in the `packageManager: pnpm@<version>` line pnpm writes into
/// `<node_modules>/.modules.yaml` after an install, if that file is there and says so.
fn modules_yaml_version(node_modules: &Path) -> Option<String> {
    let text = std::fs::read_to_string(node_modules.join(".modules.yaml")).ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix("packageManager:")?.trim();
        let (_, version) = value
            .trim_matches(|c| c == '\'' || c == '"')
            .rsplit_once('@')?;
        Some(version.to_owned()).filter(|v| !v.is_empty())
    })
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

        if let Some((program, version, env)) = &tool {
            let caches = self.settings.caches.env(pm, version.as_deref());
            if self.request.skip_install {
                self.say("Install skipped (skipInstall)".to_owned());
            } else {
                self.git_work_tree(env).await?;
                let mut install_env = env.clone();
                install_env.extend(caches.clone());
                install_env.remove("NODE_ENV");
                install_env.insert("CI".to_owned(), "true".to_owned());
                install_env.insert("HUSKY".to_owned(), "0".to_owned());
                let frozen = detection.lockfile().is_some();
                let root = self.root.clone();
                // pnpm 11+ would stop at dependencies' build scripts that no policy allows;
                // without a policy the project expects pnpm 10's skipping (the user's own
                // setting, in envVars, still wins).
                let skip_scripts =
                    pm == PackageManager::Pnpm && !dependency_scripts::sets_policy(&root);
                if skip_scripts {
                    install_env
                        .entry(dependency_scripts::STRICT_DEP_BUILDS_VAR.to_owned())
                        .or_insert_with(|| "false".to_owned());
                }
                let before = self.log.tail(1).first().map_or(0, LogEntry::id);
                let mut args = install_args(pm, frozen);
                if alone {
                    args.extend(alone_args(pm).iter().map(|a| (*a).to_owned()));
                }
                self.step(&INSTALL, program, pm, args, install_env.clone(), &root)
                    .await?;
                if skip_scripts {
                    let output = self.log.all();
                    let skipped = dependency_scripts::ignored_builds(
                        output
                            .iter()
                            .filter(|e| e.id() > before)
                            .map(LogEntry::line),
                    );
                    if !skipped.is_empty() {
                        self.say(format!(
                            "Build scripts of dependencies not run: {} (skipped as pnpm 10 skips \
                             them: the project sets no policy such as onlyBuiltDependencies or \
                             allowBuilds)",
                            skipped.join(", ")
                        ));
                    }
                }
                self.report_version(program, pm, &install_env, &detection, alone)
                    .await?;
            }
            let mut build_env = env.clone();
            build_env.extend(caches);
            build_env.insert("NODE_ENV".to_owned(), "production".to_owned());
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

        let entry = output_entry(&workdir);
        if !entry.is_file() {
            let mut message = format!("Build output not found: {}", entry.display());
            if !has_build_script && !mastra {
                message.push_str(
                    "\npackage.json has no build script (scripts.build) and does not depend on \
                     mastra: Mastra projects use \"build\": \"mastra build\"",
                );
            }
            return Err(Stop::Failed(message));
        }
        self.say(format!("Build output found: {}", entry.display()));
        Ok(())
    }

    /// The build copy (`<buildDir>/<build.id>`) holding `workdir`, if it is in one.
    fn copy_of(&self, workdir: &Path) -> Option<PathBuf> {
        let build_dir = self.settings.caches.root().parent()?;
        let first = workdir.strip_prefix(build_dir).ok()?.components().next()?;
        Some(build_dir.join(first))
    }

    /// The workspace the working directory is a package of, looked for inside the build copy
    /// (`<buildDir>/<build.id>`) only: a directory elsewhere is built on its own.
    fn workspace(&self, workdir: &Path) -> Option<Workspace> {
        let copy = self.copy_of(workdir)?;
        let root = workspace::find_root(workdir, workspace::SearchBound::Within(&copy))
            .filter(|root| root != workdir)?;
        workspace::load(&root).filter(|workspace| workspace.member(workdir).is_some())
    }

    /// Whether the install must stay in `workdir`, which no workspace takes as a package
    /// (membership is decided in the build copy, as the copy decided it, or, for a directory
    /// built in place, up to the filesystem root), because a workspace root above it (in the
    /// copy or above the copy) leaves it out: `pm` walking up would install that root
    /// instead. Says so.
    fn alone(&self, workdir: &Path, pm: PackageManager) -> bool {
        let top = PathBuf::from("/");
        let copy = self.copy_of(workdir);
        let bound = workspace::SearchBound::Within(copy.as_deref().unwrap_or(&top));
        let Some(root) = workspace::unlisting_root(workdir, bound) else {
            return false;
        };
        let how = match alone_args(pm) {
            [] => "as it does on its own".to_owned(),
            args => format!("with {}", args.join(" ")),
        };
        self.say(format!(
            "Workspace: {} is a workspace root whose packages do not include the project: \
             installing the project alone ({} {how})",
            root.display(),
            pm.command()
        ));
        true
    }

    /// Makes the workspace's root the place of the install, says so, and returns the workspace
    /// packages the app (`workdir`) depends on, in build order.
    fn enter_workspace(&mut self, workspace: &Workspace, workdir: &Path) -> Vec<Member> {
        self.root = workspace.root.clone();
        let dependencies: Vec<Member> = workspace
            .member(workdir)
            .map(|app| {
                workspace
                    .dependencies_of(app)
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let relative = workdir.strip_prefix(&workspace.root).unwrap_or(workdir);
        let needed = if dependencies.is_empty() {
            "no other workspace package".to_owned()
        } else {
            dependencies
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.say(format!(
            "Workspace: the project is the package {} of the workspace at {} ({}); installing \
             at its root; it depends on {needed}",
            relative.display(),
            workspace.root.display(),
            workspace.marker
        ));
        dependencies
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
        };
        let shown = format!("{} {}", program.display(), args.join(" "));
        let exit = self
            .supervise(spec, Arc::clone(&scratch), step, &shown)
            .await?;
        Ok((exit, scratch.all()))
    }

    /// Makes a build copy (a working directory inside `buildDir`) without a `.git` of its own a
    /// git work tree, with an empty repository, so that lifecycle scripts that ask git (husky,
    /// lefthook) work; a directory elsewhere is the caller's and is left alone.
    async fn git_work_tree(&mut self, env: &BTreeMap<String, String>) -> Result<(), Stop> {
        let workdir = self.root.clone();
        let inside = self
            .settings
            .caches
            .root()
            .parent()
            .is_some_and(|build_dir| workdir.starts_with(build_dir));
        if !inside || workdir.join(".git").exists() {
            return Ok(());
        }
        let path = env.get("PATH").map(String::as_str);
        let Some(git) = find_in_path("git", path, &workdir) else {
            self.say(
                "git is not on PATH: the build copy is not a git work tree, so lifecycle scripts \
                 that need one (husky, lefthook) may fail"
                    .to_owned(),
            );
            return Ok(());
        };
        let (exit, output) = self
            .quiet(
                &git,
                &["-c", "init.defaultBranch=main", "init", "--quiet"],
                &workdir,
                env,
                "git init",
            )
            .await?;
        if exit.success() {
            self.say(
                "Initialised an empty git repository in the build copy (without the source's \
                 history), for lifecycle scripts that need a git work tree"
                    .to_owned(),
            );
        } else {
            self.say(format!(
                "Warning: git init {}: {}",
                how(&exit),
                error_excerpt(&output).unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Finds the package manager on the child's PATH (where a fetched copy comes first) and
    /// asks it for its version; the yarn flavour follows the version actually found.
    async fn resolve_tool(
        &mut self,
        detection: &Detection,
        env: &BTreeMap<String, String>,
        fetched: bool,
        alone: bool,
    ) -> Result<(PathBuf, Option<String>), Stop> {
        let command = detection.package_manager.command();
        let path = env.get("PATH").map(String::as_str);
        let program = find_in_path(command, path, &self.root).ok_or_else(|| {
            Stop::Failed(format!(
                "Package manager {command} not found on PATH ({})",
                path.unwrap_or("PATH is not set")
            ))
        })?;
        let prefix = if alone {
            alone_args(detection.package_manager)
        } else {
            &[]
        };
        let version = self.version(&program, prefix, env).await?;
        let mut pm = detection.package_manager;
        let found = match &version {
            Some(version) => {
                pm = pm.with_version(version);
                format!("{command} {version}")
            }
            None => format!("{command} (version unknown)"),
        };
        self.package_manager = Some(pm);
        // A fetched pnpm 10 may hand over to the version a workspace root above names
        // (manage-package-manager-versions): say what it reports, not what was fetched.
        let origin = match (&detection.requested_version, &version) {
            (Some(wanted), Some(found)) if fetched && wanted != found => {
                format!("fetched as {command}@{wanted}, the version package.json names")
            }
            _ if fetched => "the version package.json names".to_owned(),
            _ => "found on PATH".to_owned(),
        };
        self.say(format!(
            "Detected package manager: {}; running {found} from {} ({origin})",
            detection.describe(),
            program.display()
        ));
        if let (Some(wanted), Some(found)) = (&detection.requested_version, &version)
            && major(wanted) != major(found)
        {
            self.say(format!(
                "Warning: package.json asks for {command}@{wanted} but {command} {found} is on \
                 PATH; using it"
            ));
        }
        Ok((program, version))
    }

    /// `<program> <prefix> --version` in the install's folder, first line; `None` (with a
    /// warning) when it fails.
    async fn version(
        &mut self,
        program: &Path,
        prefix: &[&str],
        env: &BTreeMap<String, String>,
    ) -> Result<Option<String>, Stop> {
        let scratch = Arc::new(LogStore::new(LogLimits::with_lines(50)));
        let mut args: Vec<String> = prefix.iter().map(|a| (*a).to_owned()).collect();
        args.push("--version".to_owned());
        let spec = SpawnSpec {
            program: program.to_string_lossy().into_owned(),
            args,
            cwd: self.root.clone(),
            env: env.clone(),
        };
        let shown = format!("{} {}", program.display(), spec.args.join(" "));
        let exit = self
            .supervise(spec, Arc::clone(&scratch), "detection", &shown)
            .await?;
        let first = scratch
            .all()
            .into_iter()
            .filter(|e| e.stream() == Stream::Stdout)
            .map(|e| e.line().trim().to_owned())
            .find(|line| !line.is_empty());
        match first {
            Some(line) if exit.success() => Ok(Some(line.trim_start_matches('v').to_owned())),
            _ => {
                self.say(format!(
                    "Warning: {shown} {}; continuing without its version",
                    how(&exit)
                ));
                Ok(None)
            }
        }
    }

    /// Says which version of the package manager ran the install, from its own report: for
    /// pnpm the `packageManager` it wrote into `node_modules/.modules.yaml`, else (and when
    /// that file is elsewhere, as in a workspace) `<program> --version` with the install's
    /// folder, flags and environment; warns when it is not the version package.json names.
    async fn report_version(
        &mut self,
        program: &Path,
        pm: PackageManager,
        env: &BTreeMap<String, String>,
        detection: &Detection,
        alone: bool,
    ) -> Result<(), Stop> {
        let command = pm.command();
        let written = match pm {
            PackageManager::Pnpm => modules_yaml_version(&self.root.join("node_modules")),
            _ => None,
        };
        let (ran, source) = match written {
            Some(version) => (Some(version), "node_modules/.modules.yaml".to_owned()),
            None => {
                let prefix = if alone { alone_args(pm) } else { &[] };
                let version = self.version(program, prefix, env).await?;
                let mut shown = vec![command];
                shown.extend(prefix);
                shown.push("--version");
                (version, shown.join(" "))
            }
        };
        let Some(ran) = ran else {
            return Ok(());
        };
        self.say(format!(
            "The install ran {command} {ran} (as {source} reports)"
        ));
        if let Some(wanted) = &detection.requested_version
            && *wanted != ran
        {
            self.say(format!(
                "Warning: package.json names {command}@{wanted} but {command} {ran} ran the \
                 install"
            ));
        }
        Ok(())
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
        let handle = process::spawn(spec, log, self.settings.journal.clone())
            .await
            .map_err(|e| Stop::Failed(format!("Cannot run {shown}: {e}")))?;
        let stop = tokio::select! {
            biased;
            () = cancelled(&mut self.cancel) => Some(Stop::Cancelled { step: step.to_owned() }),
            () = tokio::time::sleep_until(self.deadline) => {
                Some(Stop::TimedOut { step: step.to_owned() })
            }
            _ = handle.wait() => None,
        };
        // Also after a normal exit: whatever the step left running in its group goes now.
        let stopping = Instant::now();
        let exit = handle.kill_tree(self.settings.kill_grace).await;
        if stop.is_some() {
            self.say(format!(
                "Stopped the {step}'s processes in {} s (kill grace {} s: SIGTERM, then SIGKILL)",
                secs(stopping.elapsed()),
                secs(self.settings.kill_grace)
            ));
        }
        handle.wait_output_closed(OUTPUT_SETTLE).await;
        match stop {
            Some(stop) => Err(stop),
            None => Ok(exit),
        }
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

/// The leading number of a version.
fn major(version: &str) -> Option<u64> {
    version
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The lines of a failed step that say why: for a turbo run, the failed task's own lines (see
/// [`turbo_task_lines`]); else its first error line and what follows on that stream (npm, pnpm,
/// yarn and bun all start theirs with "error" or an `ERR_` code), else its last stderr lines,
/// else its last lines; a few lines and bytes at most, colour codes removed.
fn error_excerpt(output: &[LogEntry]) -> Option<String> {
    let lines: Vec<(Stream, String)> = output
        .iter()
        // Leading spaces stay: they align a code frame's `^` under its line.
        .map(|e| (e.stream(), strip_ansi(e.line()).trim_end().to_owned()))
        .filter(|(_, line)| !line.trim().is_empty() && !is_bare_prefix(line.trim()))
        .collect();
    let chosen = turbo_task_lines(&lines).unwrap_or_else(|| step_lines(&lines));
    let mut excerpt = String::new();
    for line in chosen {
        if excerpt.len() + line.len() > EXCERPT_BYTES {
            if excerpt.is_empty() {
                let cut = (0..=EXCERPT_BYTES)
                    .rev()
                    .find(|i| line.is_char_boundary(*i))
                    .unwrap_or(0);
                excerpt.push_str(&line[..cut]);
                excerpt.push('…');
            }
            break;
        }
        if !excerpt.is_empty() {
            excerpt.push('\n');
        }
        excerpt.push_str(line);
    }
    (!excerpt.is_empty()).then_some(excerpt)
}

/// A step's first error line and what follows on that stream, else its last stderr lines, else
/// its last lines (see [`error_excerpt`]).
fn step_lines(lines: &[(Stream, String)]) -> Vec<&str> {
    match lines
        .iter()
        .position(|(_, line)| is_error_line(line.trim_start()))
    {
        // The error and what follows it on the same stream (the other pipe's lines may land
        // anywhere in between).
        Some(first) => lines[first..]
            .iter()
            .filter(|(stream, _)| *stream == lines[first].0)
            .take(EXCERPT_LINES)
            .map(|(_, l)| l.as_str())
            .collect(),
        None => {
            let stderr: Vec<&str> = lines
                .iter()
                .filter(|(s, _)| *s == Stream::Stderr)
                .map(|(_, l)| l.as_str())
                .collect();
            let pool: Vec<&str> = if stderr.is_empty() {
                lines.iter().map(|(_, l)| l.as_str()).collect()
            } else {
                stderr
            };
            pool[pool.len().saturating_sub(EXCERPT_LINES)..].to_vec()
        }
    }
}

/// What turbo prints, after the task's prefix (`@ws/app:build: ERROR: command finished with
/// error: …`), when a task's command fails.
const TURBO_TASK_FAILED: &str = "ERROR: command finished with error";

/// The lines of the task a turbo run names as failed, kept with their `<pkg>:<task>: ` prefix:
/// from the task's first error line (`@ws/app:build: Error: …`), else its last lines. turbo's
/// own error (`ERROR run failed: command exited (1)`, on stderr) says nothing of the cause,
/// which the task printed on turbo's stdout. `None` when no turbo task failed.
fn turbo_task_lines(lines: &[(Stream, String)]) -> Option<Vec<&str>> {
    let prefix = lines.iter().find_map(|(_, line)| {
        let at = line.find(&format!(": {TURBO_TASK_FAILED}"))?;
        Some(format!("{}: ", &line[..at]))
    })?;
    let own: Vec<&str> = lines
        .iter()
        .map(|(_, line)| line.as_str())
        .filter(|line| {
            line.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                !rest.trim().is_empty()
                    && !is_bare_prefix(rest.trim())
                    && !rest.starts_with(TURBO_TASK_FAILED)
            })
        })
        .collect();
    let first = own
        .iter()
        .position(|line| is_error_line(line[prefix.len()..].trim_start()))
        .unwrap_or(own.len().saturating_sub(EXCERPT_LINES));
    let task: Vec<&str> = own[first..].iter().take(EXCERPT_LINES).copied().collect();
    (!task.is_empty()).then_some(task)
}

/// The paths inside `root` (the build copy) that `text` names, each once, relative to the
/// project `workdir` when inside it (`src/mastra/index.ts` for
/// `<buildDir>/<id>/src/mastra/index.ts:3:5`), else to `root` (a workspace's
/// `packages/lib/src/index.ts`).
fn project_paths(text: &str, root: &Path, workdir: &Path) -> Vec<String> {
    let app = workdir
        .strip_prefix(root)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}/"));
    let prefix = format!("{}/", root.to_string_lossy().trim_end_matches('/'));
    let mut found: Vec<String> = Vec::new();
    for (at, _) in text.match_indices(&prefix) {
        let rest = &text[at + prefix.len()..];
        let end = rest
            .find(|c: char| c.is_whitespace() || "'\"`()[]<>,;:".contains(c))
            .unwrap_or(rest.len());
        let relative = rest[..end].trim_end_matches('.');
        let relative = app
            .as_deref()
            .and_then(|app| relative.strip_prefix(app))
            .unwrap_or(relative);
        if !relative.is_empty() && !found.iter().any(|f| f == relative) {
            found.push(relative.to_owned());
        }
    }
    found
}

fn is_error_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.starts_with("error")
        || lower.starts_with("npm error")
        || lower.starts_with("npm err!")
        || line.contains("ERR_")
}

/// npm's empty continuation lines ("npm error" alone).
fn is_bare_prefix(line: &str) -> bool {
    matches!(line, "npm error" | "npm ERR!")
}

/// Removes ANSI escape sequences (colours, cursor moves).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, up to the final byte (@ to ~).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(lines: &[(Stream, &str)]) -> Vec<LogEntry> {
        lines
            .iter()
            .enumerate()
            .map(|(i, (stream, line))| LogEntry::new(i as u64 + 1, 0, *stream, line))
            .collect()
    }

    #[test]
    fn the_first_error_line_and_what_follows_are_quoted() {
        use Stream::*;
        // What npm ci prints for a lockfile out of sync (shortened).
        let npm = entries(&[
            (Stderr, "npm error code EUSAGE"),
            (Stderr, "npm error"),
            (
                Stderr,
                "npm error `npm ci` can only install packages when your package.json and package-lock.json are in sync.",
            ),
            (Stderr, "npm error"),
            (
                Stderr,
                "npm error Invalid: lock file's is-number@7.0.0 does not satisfy is-number@6.0.0",
            ),
        ]);
        let excerpt = error_excerpt(&npm).unwrap();
        assert!(excerpt.starts_with("npm error code EUSAGE\nnpm error `npm ci` can only"));
        assert!(excerpt.ends_with("does not satisfy is-number@6.0.0"));

        let yarn = entries(&[
            (Stdout, "yarn install v1.22.22"),
            (Stdout, "[1/4] Resolving packages..."),
            (
                Stderr,
                "\u{1b}[31merror\u{1b}[39m Your lockfile needs to be updated.",
            ),
        ]);
        assert_eq!(
            error_excerpt(&yarn).unwrap(),
            "error Your lockfile needs to be updated."
        );
    }

    #[test]
    fn without_error_lines_the_last_stderr_lines_are_quoted() {
        use Stream::*;
        let output = entries(&[
            (Stdout, "building"),
            (Stderr, "warning: x"),
            (Stderr, "it broke"),
            (Stdout, "done"),
        ]);
        assert_eq!(error_excerpt(&output).unwrap(), "warning: x\nit broke");
        let quiet = entries(&[(Stdout, "a"), (Stdout, "b")]);
        assert_eq!(error_excerpt(&quiet).unwrap(), "a\nb");
        assert_eq!(error_excerpt(&[]), None);
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "error ".to_owned() + &"é".repeat(1000);
        let output = entries(&[(Stream::Stderr, long.as_str()), (Stream::Stderr, "more")]);
        let excerpt = error_excerpt(&output).unwrap();
        assert!(excerpt.len() <= EXCERPT_BYTES + '…'.len_utf8());
        assert!(excerpt.ends_with('…'));
        let many: Vec<String> = (0..20).map(|i| format!("error {i}")).collect();
        let many: Vec<(Stream, &str)> = many.iter().map(|l| (Stream::Stderr, l.as_str())).collect();
        assert_eq!(
            error_excerpt(&entries(&many)).unwrap().lines().count(),
            EXCERPT_LINES
        );
    }

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
        assert_eq!(major("v12.21.0"), Some(12));
        assert_eq!(major("9.1.0"), Some(9));
    }

    #[test]
    fn code_frames_keep_their_indentation() {
        use Stream::*;
        let output = entries(&[
            (Stdout, "building"),
            (Stderr, "Error: Transform failed with 1 error:"),
            (Stderr, "  3 |   const x = ;"),
            (Stderr, "    |             ^"),
        ]);
        assert_eq!(
            error_excerpt(&output).unwrap(),
            "Error: Transform failed with 1 error:\n  3 |   const x = ;\n    |             ^"
        );
        let indented = entries(&[(Stderr, "   error TS2304: Cannot find name 'x'.")]);
        assert_eq!(
            error_excerpt(&indented).unwrap(),
            "   error TS2304: Cannot find name 'x'."
        );
    }

    #[test]
    fn a_failed_turbo_task_is_quoted_by_its_own_lines() {
        use Stream::*;
        // What turbo 2.5.8 prints when @ws/app's build fails (the task's output is on turbo's
        // stdout, turbo's own errors on its stderr).
        let output = entries(&[
            (Stdout, "• Packages in scope: @ws/app, @ws/lib"),
            (
                Stdout,
                "@ws/lib:build: cache miss, executing e0a38b2b71c2df5c",
            ),
            (Stdout, "@ws/lib:build: lib: wrote dist/index.js"),
            (
                Stdout,
                "@ws/app:build: cache miss, executing c7df962d540a3b1b",
            ),
            (Stdout, "@ws/app:build: "),
            (Stdout, "@ws/app:build: > @ws/app@1.0.0 build"),
            (Stdout, "@ws/app:build: [mastra] building"),
            (
                Stdout,
                "@ws/app:build: Error: \"ObservabilityStorage\" is not exported by \"node_modules/@mastra/core/dist/storage/index.js\"",
            ),
            (
                Stdout,
                "@ws/app:build:     at getRollupError (file:///x/rollup.js:1:1)",
            ),
            (
                Stdout,
                "@ws/app:build: npm error Lifecycle script `build` failed with error:",
            ),
            (Stdout, "@ws/app:build: npm error code 1"),
            (
                Stderr,
                "@ws/app:build: ERROR: command finished with error: command (/b/1/apps/mastra) /usr/bin/npm run build exited (1)",
            ),
            (Stdout, "@ws/app:build: npm error path /b/1/apps/mastra"),
            (Stdout, "@ws/app:build: npm error workspace @ws/app@1.0.0"),
            (Stdout, "@ws/app:build: npm error location /b/1/apps/mastra"),
            (
                Stderr,
                "@ws/app#build: command (/b/1/apps/mastra) /usr/bin/npm run build exited (1)",
            ),
            (Stdout, " Tasks:    1 successful, 2 total"),
            (Stdout, "Failed:    @ws/app#build"),
            (Stderr, " ERROR  run failed: command  exited (1)"),
        ]);
        assert_eq!(
            error_excerpt(&output).unwrap(),
            "@ws/app:build: Error: \"ObservabilityStorage\" is not exported by \"node_modules/@mastra/core/dist/storage/index.js\"\n\
             @ws/app:build:     at getRollupError (file:///x/rollup.js:1:1)\n\
             @ws/app:build: npm error Lifecycle script `build` failed with error:\n\
             @ws/app:build: npm error code 1\n\
             @ws/app:build: npm error path /b/1/apps/mastra\n\
             @ws/app:build: npm error workspace @ws/app@1.0.0"
        );
        // A task that printed no error line: its last lines.
        let quiet = entries(&[
            (Stdout, "app:build: step 1"),
            (Stdout, "app:build: it broke"),
            (Stdout, "lib:build: fine"),
            (
                Stderr,
                "app:build: ERROR: command finished with error: command (.) exited (2)",
            ),
            (Stderr, " ERROR  run failed: command  exited (2)"),
        ]);
        assert_eq!(
            error_excerpt(&quiet).unwrap(),
            "app:build: step 1\napp:build: it broke"
        );
    }

    #[test]
    fn paths_in_the_copy_are_named_relative_to_the_project() {
        let text = "/b/id1/src/mastra/index.ts:3:5: ERROR: Expected expression\n\
                    at (/b/id1/src/mastra/index.ts:3:5) and '/b/id1/lib/a.js'.\n/b/id10/x.ts";
        assert_eq!(
            project_paths(text, Path::new("/b/id1"), Path::new("/b/id1")),
            ["src/mastra/index.ts", "lib/a.js"]
        );
        let root = Path::new("/b/id1");
        assert!(project_paths("nothing here", root, root).is_empty());
        // In a workspace: the app's files relative to the app, the others to the root.
        let text = "/b/id1/apps/mastra/src/index.ts:1:1 and /b/id1/packages/lib/x.ts";
        assert_eq!(
            project_paths(text, root, &root.join("apps/mastra")),
            ["src/index.ts", "packages/lib/x.ts"]
        );
    }

    #[test]
    fn colour_codes_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[1;31mred\u{1b}[0m plain"), "red plain");
    }
}
