//! Builds through the runner: one call from the ids to the outcome.
//!
//! `prepare_build` checks the ids before anything touches the disk, makes the build known (so that
//! `cancel_build` reaches it from the moment `build()` is called); `build` then reaps what dead runners left,
//! empties `<buildDir>/<build.id>`, has the source provider copy the project there, and then
//! queues the build behind at most `maxConcurrentBuilds` others. A cancel that arrives while the
//! source is copied ends the build `cancelled` once the copy is done.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;
use std::time::SystemTime;

use std::collections::HashMap;
use std::sync::Mutex;

use super::{InFlight, LogOwner, ProjectSource, Runner, SourceProvider};
use crate::builder::{BuildOutcome, BuildRequest, BuildStatus};
use crate::error::{Error, Result};
use crate::logs::RUNNER_PREFIX;
use crate::logs::{Stream, join_text};
use crate::sync::lock;
use crate::validate;

/// A build made known by [`Runner::prepare_build`]: `cancel_build` reaches it from then on.
/// Dropping it (however the build ends) forgets the "copying its source" mark.
pub struct BuildTicket {
    project: ProjectSource,
    build_id: String,
    deployment_id: Option<String>,
    source: Arc<dyn SourceProvider>,
    preparing: Arc<Mutex<HashMap<String, bool>>>,
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
        let source = lock(&self.source)
            .clone()
            .ok_or(Error::SourceNotConfigured)?;
        let mut preparing = lock(&self.preparing);
        if preparing.contains_key(build_id) || self.builder.is_active(build_id) {
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
            preparing: Arc::clone(&self.preparing),
            call: self.begin_call(),
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
        self.open_build_log(&owner, &request.log);
        let deployment_id = ticket.deployment_id.clone();
        let build_id = ticket.build_id.clone();
        let outcome = self.run_build(ticket, request).await;
        self.close_build_log(&owner);
        if let Some(deployment_id) = deployment_id {
            self.file_build(&deployment_id, &build_id);
        }
        self.measure_build_disk();
        outcome
    }

    async fn run_build(&self, ticket: BuildTicket, request: BuildRequest) -> Result<BuildOutcome> {
        let build_id = ticket.build_id.clone();
        refuse_copy_into_project(&ticket.project, &self.config().build_dir.join(&build_id))?;
        self.reap_leftovers().await;
        let dir = self.builder.clean_build_dir(&build_id).await?;
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
            ..request
        };
        lock(&self.build_dirs).insert(build_id.clone(), request.workdir.clone());
        let build = self.builder.build(request);
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
            self.builder.cancel(&build_id).await;
        }
        build.await
    }

    /// Cancels a build: one whose source is still being copied ends `cancelled` when the copy
    /// is done; a queued one never starts; a running one has its tree killed. Resolves once its
    /// processes are gone. Unknown or finished builds: a no-op.
    pub async fn cancel_build(&self, build_id: &str) {
        if let Some(cancelled) = lock(&self.preparing).get_mut(build_id) {
            *cancelled = true;
        }
        self.builder.cancel(build_id).await;
    }

    /// Deletes build `build_id`'s directory (refused while the build is queued or running).
    /// Returns whether there was one.
    pub async fn remove_build(&self, build_id: &str) -> Result<bool> {
        validate::id("build.id", build_id)?;
        if lock(&self.preparing).contains_key(build_id) {
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
        let removed = self.builder.remove_build_dir(build_id).await?;
        lock(&self.build_dirs).remove(build_id);
        for builds in lock(&self.deployment_builds).values_mut() {
            builds.retain(|b| b != build_id);
        }
        self.measure_build_disk();
        Ok(removed)
    }

    /// Files build `build_id` as the newest of `deployment_id`.
    pub(super) fn file_build(&self, deployment_id: &str, build_id: &str) {
        let mut all = lock(&self.deployment_builds);
        let builds = all.entry(deployment_id.to_owned()).or_default();
        builds.retain(|b| b != build_id);
        builds.push(build_id.to_owned());
    }

    /// After a successful deploy of `deployment_id`: removes the directories of its builds
    /// older than the newest `retainBuilds`, never one that a live server or a build in
    /// progress uses.
    pub(super) async fn prune_builds(&self, deployment_id: &str) {
        let keep = self.config().retain_builds as usize;
        let candidates: Vec<String> = {
            let all = lock(&self.deployment_builds);
            let builds = all
                .get(deployment_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            builds[..builds.len().saturating_sub(keep)].to_vec()
        };
        let mut removed_any = false;
        for build_id in candidates {
            let in_use = self.live_server_of_build(&build_id).is_some()
                || lock(&self.preparing).contains_key(&build_id)
                || self.builder.is_active(&build_id);
            if in_use {
                continue;
            }
            match self.builder.remove_build_dir(&build_id).await {
                Ok(_) => {
                    removed_any = true;
                    tracing::debug!(
                        build = build_id,
                        "removed an old build directory (retainBuilds)"
                    );
                    lock(&self.build_dirs).remove(&build_id);
                    if let Some(builds) = lock(&self.deployment_builds).get_mut(deployment_id) {
                        builds.retain(|b| b != &build_id);
                    }
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
    pub(super) fn measure_build_disk(&self) {
        let dir = self.config().build_dir.clone();
        let bytes = Arc::clone(&self.build_disk_bytes);
        tokio::task::spawn_blocking(move || {
            bytes.store(disk_usage(&dir), std::sync::atomic::Ordering::Relaxed);
        });
    }

    /// A live server (not down for good) that runs build `build_id`.
    fn live_server_of_build(&self, build_id: &str) -> Option<String> {
        lock(&self.servers)
            .values()
            .map(|entry| entry.handle.info())
            .find(|info| info.build_id == build_id && info.is_live())
            .map(|info| info.id)
    }

    /// The directory build `build_id` worked in (by default `<buildDir>/<build_id>`).
    pub fn build_workdir(&self, build_id: &str) -> PathBuf {
        lock(&self.build_dirs)
            .get(build_id)
            .cloned()
            .unwrap_or_else(|| self.config().build_dir.join(build_id))
    }
}

/// Refuses, before anything is created, a build directory that lies inside the project it would
/// copy (the relative default `.mastra/builds` does when the host runs from the project).
fn refuse_copy_into_project(project: &ProjectSource, target: &std::path::Path) -> Result<()> {
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
pub(super) fn disk_usage(dir: &std::path::Path) -> u64 {
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
