//! Per-deployment data: what a server writes relative to its working directory survives
//! redeploys, restarts, build retention, `removeBuild`, a new runner and adoption.
//!
//! A deployment's data lives in `<buildDir>/.data/<deploymentId>/`. A server's working directory
//! is `<data>/.mastra/output`, a view of its build laid over that directory:
//! - `<data>/.mastra/output/<entry>` links to each entry of the build's `.mastra/output`;
//! - `<data>/.mastra/<entry>` links to each other entry of the build's `.mastra`;
//! - `<data>/<entry>` links to each other entry of the project's directory in the build.
//!
//! So `./x`, `../x` and `../../x`, and any subfolder created there, are real files of the data
//! directory, while everything the build left is read through a link to the current build.
//! Node resolves the entry module's real path, so `import.meta.url` and relative imports are
//! the build's own; paths a server builds from `process.cwd()` (static assets, `.env`) find the
//! build's files through the links. Each deploy re-points the links at its build (one atomic
//! `rename` each) and leaves the server's own files alone; links to entries the new build does
//! not have go.
//!
//! Two servers of a deployment share it during a redeploy's drain (SQLite and LibSQL in WAL
//! mode support two processes on one database file). A link is never followed when the view is
//! made or removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::Runner;
use crate::error::{Error, Result};
use crate::sync::lock;
use crate::validate;

/// The directory under `buildDir` holding every deployment's data.
pub const DATA_DIR: &str = ".data";

/// The data directory of `deployment_id` under `build_dir` (the id is checked by the caller).
pub fn data_dir(build_dir: &Path, deployment_id: &str) -> PathBuf {
    build_dir.join(DATA_DIR).join(deployment_id)
}

/// The working directory a server of a deployment runs in: `<data>/.mastra/output`.
pub fn working_dir(data: &Path) -> PathBuf {
    data.join(".mastra").join("output")
}

/// Lays the view of the build whose output is `output_dir` (`<project>/.mastra/output`) over
/// `data`, and returns the working directory a server of it runs in. Views are laid one at a
/// time in a host (concurrent deploys of one deployment would race for its links). The
/// directory holding every deployment's data is the runner's own (0700, never a link), so a
/// link planted in its place cannot turn a view into writes elsewhere.
pub fn prepare(data: &Path, output_dir: &Path) -> io::Result<PathBuf> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _laying = lock(&ONE_AT_A_TIME);
    if let Some(all_data) = data.parent() {
        crate::process::state_files::create_private_dir(all_data)?;
    }
    let mastra_dir = output_dir
        .parent()
        .ok_or_else(|| io::Error::other("a build output has no parent directory"))?;
    let project_dir = mastra_dir
        .parent()
        .ok_or_else(|| io::Error::other("a build's .mastra has no parent directory"))?;
    let levels = [
        (data.to_path_buf(), project_dir, Some(".mastra")),
        (data.join(".mastra"), mastra_dir, Some("output")),
        (working_dir(data), output_dir, None),
    ];
    for (view, build, inner) in &levels {
        create_dir(view)?;
        mirror(view, build, *inner)?;
    }
    Ok(working_dir(data))
}

/// Creates `dir` (and its parents) as a directory, refusing a link in its place.
fn create_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if fs::symlink_metadata(dir)?.is_dir() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )))
    }
}

/// Makes `view` hold a link to each entry of `build` but `inner` (the next level, a real
/// directory of the view), replacing links to an earlier build and removing links to entries
/// `build` no longer has. Real files and directories of `view` (the server's own) stay.
fn mirror(view: &Path, build: &Path, inner: Option<&str>) -> io::Result<()> {
    let mut wanted = std::collections::BTreeSet::new();
    for entry in fs::read_dir(build)? {
        let name = entry?.file_name();
        if inner.is_some_and(|inner| name == inner) {
            continue;
        }
        let link = view.join(&name);
        match fs::symlink_metadata(&link) {
            // The server made a file or directory of that name: it is its own, and wins.
            Ok(metadata) if !metadata.is_symlink() => continue,
            _ => {}
        }
        let target = build.join(&name);
        let temporary = view.join(format!(".runner-link-{}", std::process::id()));
        let _ = fs::remove_file(&temporary);
        std::os::unix::fs::symlink(&target, &temporary)?;
        fs::rename(&temporary, &link)?;
        wanted.insert(name);
    }
    for entry in fs::read_dir(view)? {
        let entry = entry?;
        let is_link = entry.file_type()?.is_symlink();
        if is_link && !wanted.contains(&entry.file_name()) {
            match fs::remove_file(entry.path()) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
    }
    Ok(())
}

impl Runner {
    /// Deletes deployment `deployment_id`'s data directory on purpose; refused
    /// ([`Error::DataInUse`]) while a server of the deployment runs (serving, starting or
    /// draining). Resolves whether there was one.
    pub async fn remove_deployment_data(&self, deployment_id: &str) -> Result<bool> {
        validate::id("deploymentId", deployment_id)?;
        let in_use = self
            .servers
            .live_server_where(|info| info.deployment_id == deployment_id);
        if let Some(server_id) = in_use {
            return Err(Error::DataInUse {
                deployment_id: deployment_id.to_owned(),
                server_id,
            });
        }
        let dir = data_dir(&self.config().build_dir, deployment_id);
        let removing = dir.clone();
        let removed = tokio::task::spawn_blocking(move || match fs::remove_dir_all(&removing) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        })
        .await
        .map_err(|e| Error::internal("removing a deployment's data", e))?
        .map_err(|e| Error::io("remove the deployment's data directory", &dir, &e))?;
        self.measure_data_disk();
        Ok(removed)
    }

    /// Lays deployment `deployment_id`'s data view over the build output `output_dir`
    /// ([`data::prepare`]) and returns the working directory its servers run in.
    pub(super) async fn point_data_at(
        &self,
        deployment_id: &str,
        output_dir: &std::path::Path,
    ) -> Result<PathBuf> {
        let data = data_dir(&self.config().build_dir, deployment_id);
        let output = output_dir.to_path_buf();
        let at = data.clone();
        tokio::task::spawn_blocking(move || prepare(&at, &output))
            .await
            .map_err(|e| Error::internal("preparing the deployment's data directory", e))?
            .map_err(|e| Error::io("prepare the deployment's data directory", &data, &e))
    }

    /// Points deployment `deployment_id`'s data view back at the build of the server that
    /// serves it (after a deploy that failed, or a new server that exited during the drain).
    pub(super) async fn point_data_at_current(&self, deployment_id: &str) {
        let Some(build_id) = self
            .deployments
            .current(deployment_id)
            .and_then(|id| self.server(&id))
            .map(|info| info.build_id)
        else {
            return;
        };
        let output = self.build_workdir(&build_id).join(".mastra").join("output");
        if let Err(error) = self.point_data_at(deployment_id, &output).await {
            tracing::warn!(
                "cannot point the data of deployment '{deployment_id}' back at build '{build_id}': {error}"
            );
        }
    }

    /// Measures the bytes of every deployment's data in the background, for `getStats()`
    /// (after each deploy and each removal: servers write there all the time).
    pub(super) fn measure_data_disk(&self) {
        let dir = self.config().build_dir.clone();
        let bytes = std::sync::Arc::clone(self.deployments.data_disk_bytes());
        tokio::task::spawn_blocking(move || {
            bytes.store(disk_usage(&dir), std::sync::atomic::Ordering::Relaxed);
        });
    }
}

/// Bytes the files of every deployment's data take on disk (links count as nothing).
pub fn disk_usage(build_dir: &Path) -> u64 {
    super::builds::disk_usage(&build_dir.join(DATA_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(root: &Path, name: &str) -> PathBuf {
        let output = root.join(name).join("app/.mastra/output");
        fs::create_dir_all(&output).expect("output");
        fs::write(output.join("index.mjs"), name).expect("index");
        fs::create_dir_all(output.join("playground")).expect("assets");
        fs::write(root.join(name).join("app/.mastra/.build-info"), name).expect("info");
        fs::write(root.join(name).join("app/package.json"), "{}").expect("manifest");
        output
    }

    #[test]
    fn a_view_points_at_the_current_build_and_keeps_the_servers_files() {
        let root = std::env::temp_dir().join(format!("data-view-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let data = data_dir(&root, "dep-1");
        let first = build(&root, "b1");
        let cwd = prepare(&data, &first).expect("prepare");
        assert_eq!(cwd, data.join(".mastra/output"));
        assert_eq!(
            fs::read_to_string(cwd.join("index.mjs")).expect("index"),
            "b1"
        );
        assert!(cwd.join("playground").is_dir());
        assert!(data.join(".mastra/.build-info").exists());
        assert!(data.join("package.json").exists());
        // What the server writes at ./, ../ and ../../ is its own.
        fs::write(cwd.join("here.txt"), "1").expect("write");
        fs::write(cwd.join("../mastra.db"), "db").expect("write");
        fs::write(cwd.join("../../up.txt"), "up").expect("write");

        let second = build(&root, "b2");
        fs::remove_dir_all(second.join("playground")).expect("no assets in b2");
        prepare(&data, &second).expect("prepare again");
        assert_eq!(
            fs::read_to_string(cwd.join("index.mjs")).expect("index"),
            "b2"
        );
        assert!(
            !cwd.join("playground").exists(),
            "a link to what b2 lacks goes"
        );
        fs::remove_dir_all(root.join("b1")).expect("the old build goes");
        assert_eq!(fs::read_to_string(cwd.join("here.txt")).expect("own"), "1");
        assert_eq!(
            fs::read_to_string(data.join(".mastra/mastra.db")).expect("own"),
            "db"
        );
        assert_eq!(fs::read_to_string(data.join("up.txt")).expect("own"), "up");
        assert!(disk_usage(&root) >= 5);
    }
}
