//! `LocalProjectSource` as JS sees it: a thin wrapper over [`crate::source::LocalSource`],
//! shaped like MastraAdmin's `ProjectSourceProvider`.
//!
//! Every method reads the filesystem, so each runs on tokio's blocking pool and returns a
//! Promise; a bad argument rejects that Promise rather than throwing, as an `async` function
//! would. The optional `onLog` of `getProjectPath` is called on the JS thread, with the copy's
//! summary and warnings, before the Promise resolves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use napi::bindgen_prelude::{PromiseRaw, Result, Unknown};
use napi::{Env, ValueType};
use napi_derive::napi;
use serde_json::{Value, json};

use crate::error::Error;
use crate::source::{CopyReport, LocalSource, ProjectInfo};
use crate::validate;

use super::args::{self, LineCallback};
use super::delivery::report_callback_error;
use super::to_js_error;

/// A source provider over local directories: the Mastra projects directly under `basePaths`,
/// copied for a build with `node_modules`, `.git`, `.mastra`, `dist`, `.next`, `.turbo` and
/// the `exclude` names skipped at every depth. Only paths that resolve (symlinks and `..`
/// included) inside a base path are ever read.
#[napi]
pub struct LocalProjectSource {
    inner: Arc<LocalSource>,
}

/// A project as providers report it.
fn project_json(project: &ProjectInfo) -> Value {
    json!({
        "id": project.id,
        "name": project.name,
        "type": "local",
        "path": project.path.to_string_lossy(),
    })
}

/// The `path` and `type` of a `ProjectSource` argument.
struct SourceArg {
    path: String,
    kind: Option<String>,
}

impl SourceArg {
    fn read(source: Option<Unknown>) -> Result<SourceArg> {
        let present = match &source {
            Some(value) => !matches!(value.get_type()?, ValueType::Undefined | ValueType::Null),
            None => false,
        };
        if !present {
            return Err(to_js_error(Error::invalid("source", "is required")));
        }
        let path = args::field(source.as_ref(), "source", "path")?;
        let kind = args::field(source.as_ref(), "source", "type")?;
        Ok(SourceArg {
            path: args::required_string(path, "source.path")?,
            kind: args::optional_string(kind.as_ref(), "source.type")?,
        })
    }

    /// An error unless the source is a local one (`type` `'local'` or left out).
    fn check_local(&self) -> Result<()> {
        match &self.kind {
            Some(kind) => validate::one_of("source.type", &Value::String(kind.clone()), &["local"])
                .map(|_| ())
                .map_err(to_js_error),
            None => Ok(()),
        }
    }
}

/// Runs `work` on tokio's blocking pool.
async fn blocking<T, F>(what: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> crate::error::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| napi::Error::from_reason(format!("{what} did not complete: {e}")))?
        .map_err(to_js_error)
}

#[napi]
impl LocalProjectSource {
    /// A source over `basePaths` (a non-empty array of existing directories; relative ones are
    /// resolved against the current working directory now). `exclude` adds directory or file
    /// names to skip when copying. Throws an `Error` naming the wrong entry, e.g.
    /// `Invalid basePaths: must list at least one directory`.
    #[napi(
        constructor,
        ts_args_type = "options: { basePaths: string[]; exclude?: string[] }"
    )]
    pub fn new(options: Option<Unknown>) -> Result<Self> {
        let cwd = args::cwd("basePaths")?;
        let options = args::options(options, "options")?;
        let inner = LocalSource::from_json(&options, &cwd).map_err(to_js_error)?;
        Ok(LocalProjectSource {
            inner: Arc::new(inner),
        })
    }

    /// Always `'local'`.
    #[napi(getter, js_name = "type", ts_return_type = "'local'")]
    pub fn kind(&self) -> &'static str {
        "local"
    }

    /// The canonical base paths (symlinks and `..` resolved, duplicates dropped).
    #[napi(getter)]
    pub fn base_paths(&self) -> Vec<String> {
        self.inner
            .base_paths()
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    /// The Mastra projects directly under the base paths, sorted by path: directories whose
    /// package.json depends on `@mastra/core` or `mastra` (dependencies or devDependencies), or
    /// that have `src/mastra/index.ts` or `src/mastra/index.js`. Each `id` is a 16-digit hex
    /// hash of the canonical path, stable while the project stays where it is. Every team sees
    /// the same projects; `teamId` must still be a string.
    #[napi(
        ts_args_type = "teamId: string",
        ts_return_type = "Promise<ProjectSource[]>"
    )]
    pub fn list_projects<'env>(
        &self,
        env: &'env Env,
        team_id: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, Value>> {
        let team_id = args::required_string(team_id, "teamId");
        let inner = Arc::clone(&self.inner);
        env.spawn_future(async move {
            team_id?;
            let projects = blocking("Listing projects", move || inner.list_projects()).await?;
            Ok(Value::Array(projects.iter().map(project_json).collect()))
        })
    }

    /// The project with `projectId`; rejects with
    /// `Project not found: no Mastra project with id '…' under …` when there is none.
    #[napi(
        ts_args_type = "projectId: string",
        ts_return_type = "Promise<ProjectSource>"
    )]
    pub fn get_project<'env>(
        &self,
        env: &'env Env,
        project_id: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, Value>> {
        let project_id = args::required_string(project_id, "projectId");
        let inner = Arc::clone(&self.inner);
        env.spawn_future(async move {
            let id = project_id?;
            let project = blocking("Finding the project", move || inner.project(&id)).await?;
            Ok(project_json(&project))
        })
    }

    /// Whether `source.path` may be read: it is a directory that, with symlinks and `..`
    /// resolved, lies inside a base path, and `source.type` is `'local'` (or absent).
    /// Resolves `false` rather than rejecting for paths; rejects only for a malformed `source`.
    #[napi(
        ts_args_type = "source: ProjectSource",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn validate_access<'env>(
        &self,
        env: &'env Env,
        source: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, bool>> {
        let source = SourceArg::read(source);
        let inner = Arc::clone(&self.inner);
        env.spawn_future(async move {
            let source = source?;
            if source.check_local().is_err() {
                return Ok(false);
            }
            let path = PathBuf::from(source.path);
            blocking("Checking access", move || {
                Ok(inner.check_access(&path).is_ok())
            })
            .await
        })
    }

    /// Copies the project at `source.path` into `targetDir` and resolves the absolute form of
    /// `targetDir`, the build's working copy. `targetDir` is created if missing and emptied
    /// first; `/`, the project itself, a directory inside it or holding it, a base path and a
    /// symlink are refused. The copy skips the usual excludes at every depth, keeps file modes, and
    /// keeps only relative symlinks that resolve inside the project.
    ///
    /// `onLog`, when given, receives `copied N files (M bytes)` (plus `and K symlinks` when
    /// there are any) and then one `warning: …` line per symlink or special file that was not
    /// copied, before the Promise resolves. Rejects when `source.path` is outside the base
    /// paths (`Access denied to …`) or the copy fails (the message names the path).
    #[napi(
        ts_args_type = "source: ProjectSource, targetDir: string, onLog?: (line: string) => void",
        ts_return_type = "Promise<string>"
    )]
    pub fn get_project_path<'env>(
        &self,
        env: &'env Env,
        source: Option<Unknown>,
        target_dir: Option<Unknown>,
        on_log: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, String>> {
        let source = SourceArg::read(source).and_then(|s| s.check_local().map(|()| s));
        let target = target_dir_arg(target_dir);
        let (on_log, on_log_error) = match log_callback(on_log) {
            Ok(callback) => (callback, None),
            Err(error) => (None, Some(error)),
        };
        let inner = Arc::clone(&self.inner);
        env.spawn_future_with_callback(
            async move {
                if let Some(error) = on_log_error {
                    return Err(error);
                }
                let (source, target) = (source?, target?);
                let path = PathBuf::from(source.path);
                let copy_target = target.clone();
                let report = blocking("Copying the project", move || {
                    inner.copy_to(&path, &copy_target)
                })
                .await?;
                Ok((target, report))
            },
            move |env, (target, report): (PathBuf, CopyReport)| {
                if let Some(callback) = on_log {
                    let callback = callback.borrow_back(env)?;
                    for line in report.log_lines() {
                        if let Err(error) = callback.call(line) {
                            report_callback_error("a getProjectPath onLog callback", &error);
                        }
                    }
                }
                Ok(target.to_string_lossy().into_owned())
            },
        )
    }
}

/// `targetDir`: a non-empty string, made absolute against the current working directory.
fn target_dir_arg(target_dir: Option<Unknown>) -> Result<PathBuf> {
    let target = args::required_string(target_dir, "targetDir")?;
    if target.is_empty() {
        return Err(to_js_error(Error::invalid(
            "targetDir",
            "must not be empty",
        )));
    }
    std::path::absolute(Path::new(&target))
        .map_err(|e| to_js_error(Error::io("resolve copy target", &target, &e)))
}

/// The optional `onLog` callback.
fn log_callback(on_log: Option<Unknown>) -> Result<Option<LineCallback>> {
    match on_log {
        Some(value) if !matches!(value.get_type()?, ValueType::Undefined | ValueType::Null) => {
            Ok(Some(args::callback(&value, "onLog")?))
        }
        _ => Ok(None),
    }
}
