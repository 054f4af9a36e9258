//! The two providers a caller plugs into the runner: where a build's source comes from
//! ([`SourceProvider`]) and who routes traffic to a deployed server ([`Router`]).
//!
//! The binding implements both over JS objects (MastraAdmin's `ProjectSourceProvider` and
//! `EdgeRouterProvider`); [`LocalCopySource`] is the built-in source of `defaultSource:
//! 'local'`. Route policy (register after health, stop the server when that fails, remove before
//! stopping) lives in the runner, not in the providers.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::logs::{LogStore, RUNNER_PREFIX, Stream};
use crate::source::LocalSource;
use crate::source::workspace::{self, SearchBound};
use crate::sync::BoxFuture;

/// The project a source provider is asked for (MastraAdmin's `ProjectSource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSource {
    /// The project's id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// `'local'` or `'github'` (the project's `sourceType`).
    pub kind: String,
    /// `sourceConfig.path`, when the project has one.
    pub path: Option<String>,
}

/// Copies a project into a build directory.
pub trait SourceProvider: Send + Sync {
    /// Copies `project` into `target` (an empty directory) and returns the directory the build
    /// works in. Lines about what was copied may go to `log`.
    fn get_project_path<'a>(
        &'a self,
        project: &'a ProjectSource,
        target: &'a Path,
        log: &'a LogStore,
    ) -> BoxFuture<'a, Result<PathBuf>>;
}

/// What a router is asked to register (MastraAdmin's `RouteConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    /// The deployment the route serves.
    pub deployment_id: String,
    /// Its project.
    pub project_id: String,
    /// The DNS label of the deployment.
    pub subdomain: String,
    /// Always `127.0.0.1`.
    pub target_host: String,
    /// The server's port.
    pub target_port: u16,
}

/// Routes traffic to deployed servers. Failures are messages saying what went wrong.
pub trait Router: Send + Sync {
    /// Registers `route`; resolves the router's id for it.
    fn register_route<'a>(
        &'a self,
        route: &'a RouteRequest,
    ) -> BoxFuture<'a, std::result::Result<String, String>>;

    /// Removes the route `route_id`.
    fn remove_route<'a>(
        &'a self,
        route_id: &'a str,
    ) -> BoxFuture<'a, std::result::Result<(), String>>;

    /// Whether the router can look a deployment's route up and point it elsewhere
    /// ([`Router::get_route`], [`Router::update_route`]); the runner then moves one route per
    /// deployment instead of registering a second one.
    fn can_update(&self) -> bool {
        false
    }

    /// The id of deployment `deployment_id`'s route, when it has one.
    fn get_route<'a>(
        &'a self,
        _deployment_id: &'a str,
    ) -> BoxFuture<'a, std::result::Result<Option<String>, String>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Points route `route_id` at `target_host:target_port`.
    fn update_route<'a>(
        &'a self,
        _route_id: &'a str,
        _target_host: &'a str,
        _target_port: u16,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(std::future::ready(Err(
            "this router cannot update routes".to_owned()
        )))
    }
}

/// The built-in source of `defaultSource: 'local'`: copies `sourceConfig.path` (an absolute
/// path) with the usual excludes. It has no base paths of its own: its one base path is the
/// project's parent directory or, for a package of a workspace, the workspace root's parent
/// (`copy_base`), and a [`LocalSource`] over it copies the project or its workspace.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalCopySource;

/// The base path [`LocalCopySource`] copies the project at `project_dir` (canonical) from:
/// the parent of the workspace root that lists the project as a package (the nearest one at
/// or above it, looked for up to the nearest repository root, a directory holding `.git`),
/// else the project's own parent. A workspace marker that does not list the project (a stray
/// `package.json` with `workspaces` in a home directory) never widens the copy.
fn copy_base(project_dir: &Path) -> Result<PathBuf> {
    let top = workspace::owning_root(project_dir, SearchBound::Repository)
        .unwrap_or_else(|| project_dir.to_path_buf());
    top.parent().map(Path::to_path_buf).ok_or_else(|| {
        Error::invalid(
            "project.sourceConfig.path",
            format!("'{}' has no parent directory", top.display()),
        )
    })
}

/// `sourceConfig.path` resolved: absolute, with symlinks and `..` resolved.
fn resolve_project(path: &str) -> Result<PathBuf> {
    let given = Path::new(path);
    if !given.is_absolute() {
        return Err(Error::invalid(
            "project.sourceConfig.path",
            format!("must be an absolute path (got '{path}')"),
        ));
    }
    given
        .canonicalize()
        .map_err(|e| Error::io("resolve project path", given, &e))
}

impl SourceProvider for LocalCopySource {
    fn get_project_path<'a>(
        &'a self,
        project: &'a ProjectSource,
        target: &'a Path,
        log: &'a LogStore,
    ) -> BoxFuture<'a, Result<PathBuf>> {
        Box::pin(async move {
            let path = project.path.clone().ok_or_else(|| {
                Error::invalid(
                    "project.sourceConfig.path",
                    "is required for the local source",
                )
            })?;
            let target = target.to_path_buf();
            let (workdir, report) = tokio::task::spawn_blocking(move || {
                let project_dir = resolve_project(&path)?;
                let base = copy_base(&project_dir)?;
                let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
                let source = LocalSource::new(&[base], &[], &cwd)?;
                let copy = source.copy_for_build(&project_dir, &target)?;
                Ok::<_, Error>((copy.workdir.clone(), copy))
            })
            .await
            .map_err(|e| Error::internal("copying the project", e))??;
            log.append_lines(
                Stream::Stdout,
                report
                    .log_lines()
                    .into_iter()
                    .map(|line| format!("{RUNNER_PREFIX}{line}")),
            );
            Ok(workdir)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temp(name: &str) -> PathBuf {
        crate::test_support::temp_dir("providers", name)
    }

    use crate::test_support::write;

    #[test]
    fn the_local_copy_takes_the_workspace_that_lists_the_project_within_its_repository() {
        let dir = temp("copy-base");
        // dir/ holds a stray workspace of tools/* only; repo/ is a repository whose root is a
        // workspace of apps/*; loose/ is a project outside both.
        write(&dir.join("package.json"), r#"{"workspaces":["tools/*"]}"#);
        fs::create_dir_all(dir.join("repo/.git")).unwrap();
        write(
            &dir.join("repo/pnpm-workspace.yaml"),
            "packages: ['apps/*']\n",
        );
        let app = dir.join("repo/apps/agent");
        write(&app.join("package.json"), "{}");
        let loose = dir.join("loose/app");
        write(&loose.join("package.json"), "{}");
        let unlisted = dir.join("repo/scripts/tool");
        write(&unlisted.join("package.json"), "{}");

        assert_eq!(copy_base(&app).unwrap(), dir.clone());
        // The stray root above does not list loose/app: the project is copied on its own.
        assert_eq!(copy_base(&loose).unwrap(), dir.join("loose"));
        // repo/ does not list scripts/tool, and the search ends at the repository root.
        assert_eq!(copy_base(&unlisted).unwrap(), dir.join("repo/scripts"));
        assert_eq!(
            resolve_project("repo/apps/agent").unwrap_err().to_string(),
            "Invalid project.sourceConfig.path: must be an absolute path (got 'repo/apps/agent')"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
