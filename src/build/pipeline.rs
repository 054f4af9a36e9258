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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::builder::{BuildOutcome, BuildRequest, BuildStatus};
use super::layout::Caches;
use super::package_manager::{
    self, Detection, PackageManager, build_args, build_script_in, find_in_path, install_args,
};
use super::queue::{Admission, Slot};
use crate::logs::{LogEntry, LogLimits, LogStore, Stream, join_text};
use crate::process::{self, ExitInfo, Journal, SpawnSpec};

/// Where a Mastra build leaves the server's entry point, relative to the working directory.
pub const OUTPUT_ENTRY: &str = ".mastra/output/index.mjs";

/// Prefix of the runner's own lines in a build log.
pub const RUNNER_PREFIX: &str = "[runner] ";

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
    };
    let result = run.steps(timeout).await;
    let elapsed = secs(run.start.elapsed());
    let (status, message) = match result {
        Ok(()) => (BuildStatus::Succeeded, None),
        Err(Stop::Failed(message)) => (BuildStatus::Failed, Some(message)),
        Err(Stop::TimedOut { step }) => (
            BuildStatus::Failed,
            Some(format!("Build timed out after {elapsed} s (during {step})")),
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
        let detection = package_manager::detect_with(&workdir, Some(&manifest))
            .map_err(|e| Stop::Failed(e.to_string()))?;
        self.package_manager = Some(detection.package_manager);
        for warning in &detection.warnings {
            self.say(format!("Warning: {warning}"));
        }
        let has_build_script = build_script_in(&manifest);

        let base = process::env::compose([&self.settings.global_env_vars, &self.request.env_vars]);
        let mut install_env = base.clone();
        install_env.extend(self.settings.caches.env());
        install_env.remove("NODE_ENV");
        install_env.insert("CI".to_owned(), "true".to_owned());
        let mut build_env = base;
        build_env.extend(self.settings.caches.env());
        build_env.insert("NODE_ENV".to_owned(), "production".to_owned());

        let needs_tool = !self.request.skip_install || has_build_script;
        let tool = if needs_tool {
            Some(self.resolve_tool(&detection, &install_env).await?)
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

        if self.request.skip_install {
            self.say("Install skipped (skipInstall)".to_owned());
        } else if let Some(program) = &tool {
            let frozen = detection.lockfile().is_some();
            self.step(&INSTALL, program, pm, install_args(pm, frozen), install_env)
                .await?;
        }

        if !has_build_script {
            self.say(
                "No build script found, skipping build step (package.json has no scripts.build)"
                    .to_owned(),
            );
        } else if let Some(program) = &tool {
            self.step(&BUILD_SCRIPT, program, pm, build_args(pm), build_env)
                .await?;
        }

        let entry = output_entry(&workdir);
        if !entry.is_file() {
            return Err(Stop::Failed(format!(
                "Build output not found: {}",
                entry.display()
            )));
        }
        self.say(format!("Build output found: {}", entry.display()));
        Ok(())
    }

    /// Finds the package manager on the child's PATH and asks it for its version; the yarn
    /// flavour follows the version actually found.
    async fn resolve_tool(
        &mut self,
        detection: &Detection,
        env: &BTreeMap<String, String>,
    ) -> Result<PathBuf, Stop> {
        let command = detection.package_manager.command();
        let path = env.get("PATH").map(String::as_str);
        let program = find_in_path(command, path, &self.request.workdir).ok_or_else(|| {
            Stop::Failed(format!(
                "Package manager {command} not found on PATH ({})",
                path.unwrap_or("PATH is not set")
            ))
        })?;
        let version = self.version(&program, env).await?;
        let mut pm = detection.package_manager;
        let found = match &version {
            Some(version) => {
                pm = pm.with_version(version);
                format!("{command} {version}")
            }
            None => format!("{command} (version unknown)"),
        };
        self.package_manager = Some(pm);
        self.say(format!(
            "Detected package manager: {}; running {found} from {}",
            detection.describe(),
            program.display()
        ));
        if let (Some(wanted), Some(found)) = (&detection.requested_version, &version)
            && major(wanted) != major(found)
        {
            self.say(format!(
                "Warning: package.json asks for {command}@{wanted} but {command} {found} is on \
                 PATH; using it (corepack is not used)"
            ));
        }
        Ok(program)
    }

    /// `<program> --version`, first line; `None` (with a warning) when it fails.
    async fn version(
        &mut self,
        program: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<String>, Stop> {
        let scratch = Arc::new(LogStore::new(LogLimits::with_lines(50)));
        let spec = SpawnSpec {
            program: program.to_string_lossy().into_owned(),
            args: vec!["--version".to_owned()],
            cwd: self.request.workdir.clone(),
            env: env.clone(),
        };
        let shown = format!("{} --version", program.display());
        let exit = self
            .supervise(spec, Arc::clone(&scratch), "detection", &shown)
            .await?;
        let first = scratch
            .all()
            .into_iter()
            .filter(|e| e.stream == Stream::Stdout)
            .map(|e| e.line.trim().to_owned())
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

    /// Runs one step and fails it on a non-zero exit, quoting the package manager's own error
    /// lines.
    async fn step(
        &mut self,
        text: &StepText,
        program: &Path,
        pm: PackageManager,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    ) -> Result<(), Stop> {
        let shown = format!("{} {}", pm.command(), args.join(" "));
        let marker = self.say(format!("{} ({shown})", text.running));
        let step_start = Instant::now();
        let spec = SpawnSpec {
            program: program.to_string_lossy().into_owned(),
            args,
            cwd: self.request.workdir.clone(),
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
            .filter(|e| e.id > marker)
            .collect();
        let mut message = failure(text.failed, &exit, &shown);
        if let Some(excerpt) = error_excerpt(&output) {
            message.push('\n');
            message.push_str(&excerpt);
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
        let exit = handle.kill_tree(self.settings.kill_grace).await;
        handle.wait_output_closed(OUTPUT_SETTLE).await;
        match stop {
            Some(stop) => Err(stop),
            None => Ok(exit),
        }
    }
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

/// The lines of a failed step that say why: its first error line and what follows on that
/// stream (npm, pnpm, yarn and bun all start theirs with "error" or an `ERR_` code), else its last stderr lines, else
/// its last lines; a few lines and bytes at most, colour codes removed.
fn error_excerpt(output: &[LogEntry]) -> Option<String> {
    let lines: Vec<(Stream, String)> = output
        .iter()
        .map(|e| (e.stream, strip_ansi(&e.line).trim().to_owned()))
        .filter(|(_, line)| !line.is_empty() && !is_bare_prefix(line))
        .collect();
    let chosen: Vec<&str> = match lines.iter().position(|(_, line)| is_error_line(line)) {
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
    };
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
            .map(|(i, (stream, line))| LogEntry {
                id: i as u64 + 1,
                timestamp_ms: 0,
                stream: *stream,
                line: Arc::from(*line),
            })
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
    fn colour_codes_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[1;31mred\u{1b}[0m plain"), "red plain");
    }
}
