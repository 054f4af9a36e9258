//! `LocalProjectSource` as JS sees it: a thin wrapper over [`crate::source::LocalSource`],
//! shaped like MastraAdmin's `ProjectSourceProvider`.
//!
//! Every method reads the filesystem, so each runs on tokio's blocking pool and returns a
//! Promise; a bad argument rejects that Promise rather than throwing, as an `async` function
//! would. The optional `onLog` of `getProjectPath` is called on the JS thread, with the copy's
//! summary and warnings, before the Promise resolves. `watchChanges` delivers its events
//! through a weak threadsafe function, so a forgotten watch never keeps Node alive.

mod values;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use napi::bindgen_prelude::{Function, PromiseRaw, within_runtime_if_available};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::{Env, Status};
use napi_derive::napi;
use serde_json::{Value, json};

use crate::error::Error;
use crate::source::{BuildCopy, ChangeEvent as CoreChangeEvent, LocalSource};

use super::convert::{
    Arg, Json, LineCallback, NonEmptyString, PromisedArg, Required, arg_names, cwd,
};
use super::delivery::report_callback_error;
use super::error::{Result, spawn, spawn_then, to_js_error};
use values::{
    ChangeCallback, ChangeEvent, ProjectSource, TargetDir, blocking, console_warn, project_json,
};

arg_names! {
    OptionsArg = "options";
    TeamIdArg = "teamId";
    ProjectIdArg = "projectId";
    SourceArg = "source";
    TargetDirArg = "targetDir";
    OnLogArg = "onLog";
    ProjectPathArg = "projectPath";
    CallbackArg = "callback";
}

/// A source provider over local directories: the Mastra projects up to `maxDepth` levels
/// below `basePaths` (and those added with `addProject`), copied for a build with
/// `node_modules`, `.git`, `.mastra`, `dist`, `.next`, `.turbo` and the `exclude` names
/// skipped at every depth. Only paths that resolve (symlinks and `..` included) inside a base
/// path, or to an added project, are ever read: a project's workspace root is looked for no
/// higher than its base path.
#[napi]
pub struct LocalProjectSource {
    inner: Arc<LocalSource>,
}

/// A project as providers report it, with its metadata (fields without a value left out).
#[napi]
impl LocalProjectSource {
    /// A source over `basePaths` (a non-empty array of existing directories; relative ones are
    /// resolved against the current working directory now). `exclude` adds directory or file
    /// names to skip when scanning and copying; `include`, `maxDepth`, `watchChanges` and
    /// `watchDebounceMs` are as in MastraAdmin's local source. Throws an `Error` naming the
    /// wrong entry, e.g. `Invalid basePaths: must list at least one directory`.
    #[napi(constructor)]
    pub fn new(
        #[napi(ts_arg_type = "LocalProjectSourceConfig")] config: Arg<Json, OptionsArg>,
    ) -> Result<Self> {
        let cwd = cwd("basePaths")?;
        let inner = LocalSource::from_json(&config.0, &cwd).map_err(to_js_error)?;
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

    /// The Mastra projects up to `maxDepth` levels below the base paths whose relative path
    /// matches `include`, sorted by path, then the added ones: directories whose package.json
    /// depends on `@mastra/core`, `mastra`, `@mastra/cli` or `@mastra/server` (dependencies or
    /// devDependencies), or that have a `mastra.config.{ts,js,mjs}` or
    /// `src/mastra/index.{ts,js}`. Each `id` is `local_` and 12 hex digits of the SHA-256 of
    /// the canonical path (as MastraAdmin's TypeScript source computes it), stable while the
    /// project stays where it is. A scan's result is reused for 30 s (`clearCache()` forgets
    /// it). Every team sees the same projects; `teamId` may be left out.
    #[napi(ts_return_type = "Promise<LocalProjectSourceEntry[]>")]
    pub fn list_projects<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] team_id: Option<PromisedArg<String, TeamIdArg>>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let team_id = team_id.map(PromisedArg::into_result).transpose();
        let inner = Arc::clone(&self.inner);
        spawn(env, async move {
            team_id?;
            let projects = blocking("Listing projects", move || inner.list_projects()).await?;
            Ok(Value::Array(projects.iter().map(project_json).collect()))
        })
    }

    /// The project with `projectId` (the remembered one while its directory exists, else from
    /// a new scan); rejects with `Project not found: no Mastra project with id '…' under …`
    /// when there is none.
    #[napi(ts_return_type = "Promise<LocalProjectSourceEntry>")]
    pub fn get_project<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] project_id: PromisedArg<Required<String>, ProjectIdArg>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let project_id = project_id.into_result();
        let inner = Arc::clone(&self.inner);
        spawn(env, async move {
            let id = project_id?.0;
            let project = blocking("Finding the project", move || inner.project(&id)).await?;
            Ok(project_json(&project))
        })
    }

    /// Whether `source.path` may be read and is still a Mastra project: it is a directory
    /// that, with symlinks and `..` resolved, lies inside a base path (or is an added
    /// project), and `source.type` is `'local'` (or absent). Resolves `false` rather than
    /// rejecting for paths; rejects only for a malformed `source`.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn validate_access<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "ProjectSource")] source: PromisedArg<ProjectSource, SourceArg>,
    ) -> napi::Result<PromiseRaw<'env, bool>> {
        let source = source.into_result();
        let inner = Arc::clone(&self.inner);
        spawn(env, async move {
            let source = source?;
            if source.check_local().is_err() {
                return Ok(false);
            }
            let path = PathBuf::from(source.path);
            blocking("Checking access", move || {
                Ok(inner
                    .check_access(&path)
                    .is_ok_and(|resolved| crate::source::is_mastra_project(&resolved)))
            })
            .await
        })
    }

    /// Copies the project at `source.path` into `targetDir` and resolves the absolute form of
    /// `targetDir`, the build's working copy. Without `targetDir` nothing is copied and the
    /// project's canonical path is resolved (after the same access check). `targetDir` is created if missing and emptied
    /// first; `/`, the project itself, a directory inside it or holding it, a base path and a
    /// symlink are refused. The copy skips the usual excludes at every depth, keeps file modes, and
    /// keeps only relative symlinks that resolve inside the project.
    ///
    /// `onLog`, when given, receives `copied N files (M bytes)` (plus `and K symlinks` when
    /// there are any) and then one `warning: …` line per symlink or special file that was not
    /// copied, before the Promise resolves. Rejects when `source.path` is outside the base
    /// paths (`Access denied to …`) or the copy fails (the message names the path).
    ///
    /// A package of a workspace (a `pnpm-workspace.yaml` or package.json `workspaces` at or
    /// above it whose globs list it, no higher than its base path, which may be the root
    /// itself) brings the whole workspace; the Promise then resolves the package's folder
    /// inside `targetDir`. A workspace root that is not an app stands for its one Mastra app
    /// (rejected, with their list, when it has several).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn get_project_path<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "ProjectSource")] source: PromisedArg<ProjectSource, SourceArg>,
        #[napi(ts_arg_type = "string")] target_dir: Option<PromisedArg<TargetDir, TargetDirArg>>,
        #[napi(ts_arg_type = "(line: string) => void")] on_log: Option<
            PromisedArg<LineCallback, OnLogArg>,
        >,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let source = source
            .into_result()
            .and_then(|s| s.check_local().map(|()| s));
        let target = target_dir
            .map(|target| target.into_result().map(|target| target.0))
            .transpose();
        let inner = Arc::clone(&self.inner);
        if matches!(target, Ok(None)) {
            return spawn(env, async move {
                let path = PathBuf::from(source?.path);
                let resolved =
                    blocking("Checking access", move || inner.check_access(&path)).await?;
                Ok(resolved.to_string_lossy().into_owned())
            });
        }
        let (on_log, on_log_error) = match on_log.map(PromisedArg::into_result).transpose() {
            Ok(callback) => (callback, None),
            Err(error) => (None, Some(error)),
        };
        spawn_then(
            env,
            async move {
                if let Some(error) = on_log_error {
                    return Err(error);
                }
                let source = source?;
                let Some(target) = target? else {
                    return Err(to_js_error(Error::invalid("targetDir", "is required")));
                };
                let path = PathBuf::from(source.path);
                let copy_target = target.clone();
                let copy = blocking("Copying the project", move || {
                    inner.copy_for_build(&path, &copy_target)
                })
                .await?;
                Ok((copy.workdir.clone(), copy))
            },
            move |env, (target, report): (PathBuf, BuildCopy)| {
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

    /// Adds the Mastra project at `projectPath` (resolved against the working directory), even
    /// one outside the base paths: it is listed, found by `getProject` and may be copied and
    /// watched until `removeProject`. Rejects with `Invalid projectPath: Not a valid Mastra
    /// project: …` for a directory that is not one, and refuses a path holding a base path.
    #[napi(ts_return_type = "Promise<LocalProjectSourceEntry>")]
    pub fn add_project<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] project_path: PromisedArg<
            Required<NonEmptyString>,
            ProjectPathArg,
        >,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let path = project_path.into_result().map(|path| (path.0).0);
        let cwd = cwd("projectPath");
        let inner = Arc::clone(&self.inner);
        spawn(env, async move {
            let (path, cwd) = (PathBuf::from(path?), cwd?);
            let project =
                blocking("Adding the project", move || inner.add_project(&path, &cwd)).await?;
            Ok(project_json(&project))
        })
    }

    /// Forgets the project with `projectId` until a later scan finds it again (an added one is
    /// forgotten for good). Its files are not touched.
    #[napi]
    pub fn remove_project(
        &self,
        #[napi(ts_arg_type = "string")] project_id: Arg<Required<String>, ProjectIdArg>,
    ) {
        self.inner.remove_project(&project_id.into_inner().0);
    }

    /// Forgets the last scan, so the next `listProjects()` scans again.
    #[napi]
    pub fn clear_cache(&self) {
        self.inner.clear_cache();
    }

    /// The configuration in force, as a new object on every call: the canonical base paths,
    /// `include`, the names excluded (built-in ones first), `maxDepth`, `watchChanges` and
    /// `watchDebounceMs`.
    #[napi(ts_return_type = "ResolvedLocalProjectSourceConfig")]
    pub fn get_config(&self) -> Value {
        let options = self.inner.options();
        json!({
            "basePaths": self.base_paths(),
            "include": options.rules.include,
            "exclude": self.inner.effective_excludes(),
            "maxDepth": options.rules.max_depth,
            "watchChanges": options.watch_changes,
            "watchDebounceMs": options.watch_debounce_ms,
        })
    }

    /// Calls `callback` with a `ChangeEvent` (`add`, `change` or `unlink`, the path relative
    /// to the project, when it was noticed) for each file that changed in the project at
    /// `source.path`, once nothing has changed for `watchDebounceMs` (the newest event per
    /// file). The project's files are polled every 100 ms (or `watchDebounceMs` when shorter),
    /// skipping what a copy skips plus `build`, `coverage` and `*.log`. Returns a function that
    /// stops watching; no event arrives after it was called, and the watch does not keep Node
    /// alive. With `watchChanges` off it warns on the console and returns a function that does
    /// nothing. Throws for a path outside the base paths (`Access denied to …`).
    #[napi(ts_return_type = "() => void")]
    pub fn watch_changes<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "ProjectSource")] source: Arg<ProjectSource, SourceArg>,
        #[napi(ts_arg_type = "(event: ChangeEvent) => void")] callback: Arg<
            ChangeCallback,
            CallbackArg,
        >,
    ) -> Result<Function<'env, (), ()>> {
        let source = source.into_inner();
        let callback = callback.into_inner().0;
        if !self.inner.options().watch_changes {
            console_warn(
                env,
                "LocalProjectSource: watchChanges is disabled in config (construct it with watchChanges: true); nothing is watched",
            )?;
            return Ok(env.create_function_from_closure("unsubscribe", |_| Ok(()))?);
        }
        source.check_local()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let delivering = Arc::clone(&stopped);
        let target = env.create_function_from_closure::<(), (), _>("deliverChanges", |_| Ok(()))?;
        let tsfn = target
            .build_threadsafe_function::<Vec<CoreChangeEvent>>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |ctx| {
                if let Ok(callback) = callback.borrow_back(&ctx.env) {
                    for event in ctx.value {
                        if delivering.load(Ordering::Acquire) {
                            break;
                        }
                        if let Err(error) = callback.call(ChangeEvent::from(event)) {
                            report_callback_error("a watchChanges callback", &error);
                        }
                    }
                }
                Ok(())
            })?;
        let path = PathBuf::from(source.path);
        let inner = Arc::clone(&self.inner);
        let watch = within_runtime_if_available(move || {
            inner.watch(&path, move |batch| {
                tsfn.call(batch, ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
            })
        })
        .map_err(to_js_error)?;
        Ok(env.create_function_from_closure("unsubscribe", move |_| {
            stopped.store(true, Ordering::Release);
            watch.stop();
            Ok(())
        })?)
    }
}
