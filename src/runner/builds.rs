//! Builds through the runner: one call from the ids to the outcome.
//!
//! `prepare_build` checks the ids before anything touches the disk, makes the build known (so that
//! `cancel_build` reaches it from the moment `build()` is called); `build` then reaps what dead runners left,
//! empties `<buildDir>/<build.id>`, has the source provider copy the project there, and then
//! queues the build behind at most `maxConcurrentBuilds` others. A cancel that arrives while the
//! source is copied ends the build `cancelled` once the copy is done.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::SystemTime;

use super::calls::InFlight;
use super::{LogOwner, ProjectSource, Runner, SourceProvider};
use crate::builder::{BuildOutcome, BuildRequest, BuildStatus, ProjectBuilder};
use crate::error::{Error, Result};
use crate::logs::RUNNER_PREFIX;
use crate::logs::{Stream, join_text};
use crate::sync::lock;
use crate::validate;

/// Builds between `build()` and the builder's queue (their source is being copied), with
/// whether a cancel arrived meanwhile.
type Preparing = Arc<Mutex<HashMap<String, bool>>>;

/// A build made known by [`Runner::prepare_build`]: `cancel_build` reaches it from then on.
/// Dropping it (however the build ends) forgets the "copying its source" mark.
pub struct BuildTicket {
    project: ProjectSource,
    build_id: String,
    deployment_id: Option<String>,
    source: Arc<dyn SourceProvider>,
    preparing: Preparing,
    call: InFlight,
}

impl BuildTicket {
    /// Whether `cancel_build` or `shutdown` asked for this build to end.
    fn cancelled(&self) -> bool {
        self.call.cancelled()
            || lock(&self.preparing)
                .get(&self.build_id)
                .copied()
                .unwrap_or(false)
    }
}

impl Drop for BuildTicket {
    fn drop(&mut self) {
        lock(&self.preparing).remove(&self.build_id);
    }
}

/// The builds owner: the source provider, the builder and its queue, the builds being
/// prepared, each build's directory, the builds of each deployment (for `retainBuilds`), and
/// the bytes they take.
pub struct Builds {
    builder: ProjectBuilder,
    source: Mutex<Option<Arc<dyn SourceProvider>>>,
    preparing: Preparing,
    dirs: Mutex<HashMap<String, PathBuf>>,
    /// The builds of each deployment, oldest first, for `retainBuilds`.
    of_deployment: Mutex<HashMap<String, Vec<String>>>,
    /// Bytes under `buildDir` (the deployments' data included), measured after each build
    /// and removal.
    disk_bytes: Arc<AtomicU64>,
}

impl Builds {
    /// Builds run by `builder`, their source copied by `source` when one is set.
    pub fn new(builder: ProjectBuilder, source: Option<Arc<dyn SourceProvider>>) -> Self {
        Builds {
            builder,
            source: Mutex::new(source),
            preparing: Arc::new(Mutex::new(HashMap::new())),
            dirs: Mutex::new(HashMap::new()),
            of_deployment: Mutex::new(HashMap::new()),
            disk_bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Copies projects for builds with `source` from now on.
    pub fn set_source(&self, source: Arc<dyn SourceProvider>) {
        *lock(&self.source) = Some(source);
    }

    /// Cancels every build, queued or running; resolves once their processes are gone.
    pub async fn cancel_all(&self) {
        self.builder.cancel_all().await;
    }

    /// Marks every build whose source is being copied as cancelled.
    pub fn cancel_preparing(&self) {
        for cancelled in lock(&self.preparing).values_mut() {
            *cancelled = true;
        }
    }

    /// Whether build `build_id` is being prepared, queued or running.
    fn in_progress(&self, build_id: &str) -> bool {
        lock(&self.preparing).contains_key(build_id) || self.builder.is_active(build_id)
    }

    /// Files build `build_id` as the newest of `deployment_id`.
    pub fn file(&self, deployment_id: &str, build_id: &str) {
        let mut all = lock(&self.of_deployment);
        let builds = all.entry(deployment_id.to_owned()).or_default();
        builds.retain(|b| b != build_id);
        builds.push(build_id.to_owned());
    }

    /// Forgets build `build_id`'s directory; `deployment_id` narrows where it was filed.
    fn forget(&self, build_id: &str, deployment_id: Option<&str>) {
        lock(&self.dirs).remove(build_id);
        let mut all = lock(&self.of_deployment);
        let filed = all
            .iter_mut()
            .filter(|(deployment, _)| deployment_id.is_none_or(|id| id == deployment.as_str()));
        for (_, builds) in filed {
            builds.retain(|b| b != build_id);
        }
    }

    /// The directory build `build_id` worked in (by default `<build_dir>/<build_id>`).
    pub fn workdir(&self, build_id: &str, build_dir: &Path) -> PathBuf {
        lock(&self.dirs)
            .get(build_id)
            .cloned()
            .unwrap_or_else(|| build_dir.join(build_id))
    }

    /// `getStats().buildCache`.
    pub fn cache_report(&self) -> super::BuildCacheReport {
        let cache = self.builder.build_cache();
        super::BuildCacheReport {
            stats: cache.stats(),
            max_bytes: cache.max_bytes(),
        }
    }

    /// The figure `getStats().buildDiskBytes` reads.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    /// Measures the bytes under `build_dir` in the background.
    pub fn measure_disk(&self, build_dir: &Path) {
        let dir = build_dir.to_path_buf();
        let bytes = Arc::clone(&self.disk_bytes);
        tokio::task::spawn_blocking(move || {
            bytes.store(disk_usage(&dir), Ordering::Relaxed);
        });
    }
}

impl Runner {
    /// Makes build `build_id` of `project` known, synchronously, the moment `build()` is
    /// called: checks the ids (before anything touches the disk) and that a source is set.
    /// `deployment_id` (the `Build`'s `deploymentId`, when it has one) files the build's
    /// directory under its deployment for `retainBuilds`.
    pub fn prepare_build(
        &self,
        project: ProjectSource,
        build_id: &str,
        deployment_id: Option<String>,
    ) -> Result<BuildTicket> {
        validate::id("project.id", &project.id)?;
        validate::id("build.id", build_id)?;
        let builds = &self.builds;
        let source = lock(&builds.source)
            .clone()
            .ok_or(Error::SourceNotConfigured)?;
        let mut preparing = lock(&builds.preparing);
        if preparing.contains_key(build_id) || builds.builder.is_active(build_id) {
            return Err(Error::BuildInProgress {
                build_id: build_id.to_owned(),
            });
        }
        preparing.insert(build_id.to_owned(), false);
        Ok(BuildTicket {
            project,
            build_id: build_id.to_owned(),
            deployment_id,
            source,
            preparing: Arc::clone(&builds.preparing),
            call: self.calls.begin(),
        })
    }

    /// Runs the build of `ticket`: copies the source (the provider set with
    /// [`Runner::set_source`], or the local copy of `defaultSource: 'local'`) into an emptied
    /// `<buildDir>/<build.id>`, then installs, runs the build script and checks the output,
    /// queued behind at most `maxConcurrentBuilds` others. A failing project is an outcome with
    /// status `failed`; a failing provider is an error.
    pub async fn build(&self, ticket: BuildTicket, request: BuildRequest) -> Result<BuildOutcome> {
        let owner = LogOwner::Build {
            build_id: ticket.build_id.clone(),
            project_id: ticket.project.id.clone(),
        };
        self.logs.open_build(&owner, &request.log);
        let deployment_id = ticket.deployment_id.clone();
        let build_id = ticket.build_id.clone();
        let outcome = self.run_build(ticket, request).await;
        self.logs.close_build(&owner);
        if let Some(deployment_id) = deployment_id {
            self.builds.file(&deployment_id, &build_id);
        }
        self.measure_build_disk();
        outcome
    }

    async fn run_build(&self, ticket: BuildTicket, request: BuildRequest) -> Result<BuildOutcome> {
        let build_id = ticket.build_id.clone();
        let builder = &self.builds.builder;
        refuse_copy_into_project(&ticket.project, &self.config().build_dir.join(&build_id))?;
        self.reap_leftovers().await;
        let dir = builder.clean_build_dir(&build_id).await?;
        let limit = request
            .timeout
            .unwrap_or(self.config().default_build_timeout);
        let copied = tokio::time::timeout(
            limit,
            ticket
                .source
                .get_project_path(&ticket.project, &dir, &request.log),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::SourceProviderFailed {
                project_id: ticket.project.id.clone(),
                reason: format!("no answer within {} ms", limit.as_millis()),
            })
        })?;
        if ticket.cancelled() {
            return Ok(cancelled_while_copying(request, copied));
        }
        let request = BuildRequest {
            build_id: build_id.clone(),
            workdir: copied,
            reuse_for: Some(ticket.project.id.clone()),
            ..request
        };
        lock(&self.builds.dirs).insert(build_id.clone(), request.workdir.clone());
        let build = builder.build(request);
        tokio::pin!(build);
        // The first poll registers the build with the builder (before its first await), so
        // from then on `cancel_build` reaches it there. A cancel that came in between is passed
        // on now.
        let first = std::future::poll_fn(|cx| Poll::Ready(build.as_mut().poll(cx))).await;
        let cancelled = ticket.cancelled();
        drop(ticket);
        if let Poll::Ready(outcome) = first {
            return outcome;
        }
        if cancelled {
            builder.cancel(&build_id).await;
        }
        build.await
    }

    /// Cancels a build: one whose source is still being copied ends `cancelled` when the copy
    /// is done; a queued one never starts; a running one has its tree killed. Resolves once its
    /// processes are gone. Unknown or finished builds: a no-op.
    pub async fn cancel_build(&self, build_id: &str) {
        if let Some(cancelled) = lock(&self.builds.preparing).get_mut(build_id) {
            *cancelled = true;
        }
        self.builds.builder.cancel(build_id).await;
    }

    /// Deletes build `build_id`'s directory (refused while the build is queued or running).
    /// Returns whether there was one.
    pub async fn remove_build(&self, build_id: &str) -> Result<bool> {
        validate::id("build.id", build_id)?;
        if lock(&self.builds.preparing).contains_key(build_id) {
            return Err(Error::BuildInProgress {
                build_id: build_id.to_owned(),
            });
        }
        if let Some(server) = self.live_server_of_build(build_id) {
            return Err(Error::BuildInUse {
                build_id: build_id.to_owned(),
                server_id: server,
            });
        }
        let removed = self.builds.builder.remove_build_dir(build_id).await?;
        self.builds.forget(build_id, None);
        self.measure_build_disk();
        Ok(removed)
    }

    /// After a successful deploy of `deployment_id`: removes the directories of its builds
    /// older than the newest `retainBuilds`, never one that a live server or a build in
    /// progress uses.
    pub(super) async fn prune_builds(&self, deployment_id: &str) {
        let keep = self.config().retain_builds as usize;
        let candidates: Vec<String> = {
            let all = lock(&self.builds.of_deployment);
            let builds = all
                .get(deployment_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            builds[..builds.len().saturating_sub(keep)].to_vec()
        };
        let mut removed_any = false;
        for build_id in candidates {
            let in_use = self.live_server_of_build(&build_id).is_some()
                || self.builds.in_progress(&build_id);
            if in_use {
                continue;
            }
            match self.builds.builder.remove_build_dir(&build_id).await {
                Ok(_) => {
                    removed_any = true;
                    tracing::debug!(
                        build = build_id,
                        "removed an old build directory (retainBuilds)"
                    );
                    self.builds.forget(&build_id, Some(deployment_id));
                }
                Err(error) => tracing::warn!("cannot remove old build {build_id}: {error}"),
            }
        }
        // Walking a build tree (node_modules included) costs; only a removal changes the
        // figure, and each build measures it when it ends.
        if removed_any {
            self.measure_build_disk();
        }
    }

    /// Measures the bytes under `buildDir` in the background, for `getStats()`.
    fn measure_build_disk(&self) {
        self.builds.measure_disk(&self.config().build_dir);
    }

    /// A live server (not down for good) that runs build `build_id`.
    fn live_server_of_build(&self, build_id: &str) -> Option<String> {
        self.servers
            .live_server_where(|info| info.build_id == build_id)
    }

    /// The directory build `build_id` worked in (by default `<buildDir>/<build_id>`).
    pub fn build_workdir(&self, build_id: &str) -> PathBuf {
        self.builds.workdir(build_id, &self.config().build_dir)
    }
}

/// Refuses, before anything is created, a build directory that lies inside the project it would
/// copy (the relative default `.mastra/builds` does when the host runs from the project).
fn refuse_copy_into_project(project: &ProjectSource, target: &Path) -> Result<()> {
    let Some(path) = &project.path else {
        return Ok(());
    };
    let Ok(project_dir) = std::fs::canonicalize(path) else {
        return Ok(());
    };
    // The build directory may not exist yet: resolve its nearest existing ancestor.
    let mut existing = target.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        let Some(name) = existing.file_name().map(|n| n.to_owned()) else {
            return Ok(());
        };
        rest.push(name);
        if !existing.pop() {
            return Ok(());
        }
    }
    let Ok(mut resolved) = std::fs::canonicalize(&existing) else {
        return Ok(());
    };
    resolved.extend(rest.iter().rev());
    if resolved.starts_with(&project_dir) {
        return Err(Error::UnsafeCopyTarget {
            target: target.to_path_buf(),
            reason: format!(
                "it is inside the project {}; set buildDir (or buildBaseDir) to a directory \
                 outside the project, for example ~/.local/state/mastra-runner-local/builds",
                project_dir.display()
            ),
        });
    }
    Ok(())
}

/// Bytes of the regular files under `dir` (symlinks not followed; unreadable entries skipped).
pub(super) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// The outcome of a build cancelled while its source was copied: it never started.
fn cancelled_while_copying(request: BuildRequest, workdir: PathBuf) -> BuildOutcome {
    let log = Arc::clone(&request.log);
    log.append_lines(
        Stream::Stdout,
        std::iter::once(format!(
            "{RUNNER_PREFIX}Build cancelled while its source was copied: it never started"
        )),
    );
    BuildOutcome {
        build_id: request.build_id,
        status: BuildStatus::Cancelled,
        error_message: Some("Build cancelled while its source was copied".to_owned()),
        started_at: None,
        completed_at: SystemTime::now(),
        package_manager: None,
        workdir,
        logs: join_text(&log.all()),
    }
}
