//! The build utilities of SPEC §2 as JS sees them: `detectPackageManager`, `getInstallArgs`,
//! `getBuildArgs`, `hasBuildScript`, and `ProjectBuilder` over the core's
//! [`crate::builder::ProjectBuilder`].
//!
//! A build's live lines reach `onLog` through a subscription to the build's log store,
//! delivered in order by a weak threadsafe function (so a build never keeps Node alive on its
//! own account). The Promise resolves only after every line has been handed to `onLog`.

use super::entities::{ProjectBuildResult, update_build};
use super::error::{Result, rejection, spawn, spawn_then, to_js_error};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::{Object, ObjectRef, PromiseRaw, ToNapiValue, Unknown};
use napi_derive::napi;
use serde_json::Value;

use super::convert::{
    Arg, FromArg, Json, LineCallback, PlainObject, PromisedArg, Required, arg_names, cwd, read,
    require,
};
use super::logs::deliver_text;
use crate::builder::{self as core, BuildOptions, BuildOutcome, BuildRequest, PackageManager};
use crate::error::Error;
use crate::validate;

arg_names! {
    DirArg = "dir";
    PmArg = "pm";
    OptionsArg = "options";
    ProjectArg = "project";
    BuildArg = "build";
    SourceDirArg = "sourceDir";
    BuildIdArg = "buildId";
    WorkdirArg = "workdir";
    OnLogArg = "onLog";
}

/// A directory argument of a Promise-returning function.
type DirParam = PromisedArg<Required<String>, DirArg>;
/// The `options` of a build.
type BuildOptionsParam = PromisedArg<Json, OptionsArg>;
/// The `onLog` of a build.
type OnLogParam = PromisedArg<LineCallback, OnLogArg>;

impl FromArg for PackageManager {
    /// The name of a package manager the builder knows (`'npm'`, `'pnpm'`, `'yarn'`, `'bun'`).
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let Required(given) = Required::<String>::from_arg(value, name)?;
        Ok(PackageManager::from_name(
            &given,
            &format!("argument {name}"),
        )?)
    }
}

/// `{ frozen?: boolean }`: whether the reproducible install form is wanted.
pub struct InstallOptions {
    frozen: bool,
}

impl FromArg for InstallOptions {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let frozen = match Json::from_arg(value, name)?.0 {
            Value::Null => false,
            Value::Object(fields) => match fields.get("frozen").unwrap_or(&Value::Null) {
                Value::Null => false,
                Value::Bool(frozen) => *frozen,
                other => {
                    return Err(to_js_error(Error::invalid(
                        format!("{name}.frozen"),
                        validate::expected("a boolean", other),
                    )));
                }
            },
            other => {
                return Err(to_js_error(Error::invalid(
                    name,
                    validate::expected("an object", &other),
                )));
            }
        };
        Ok(InstallOptions { frozen })
    }
}

/// The `build` argument of `ProjectBuilder.build`: the caller's object, kept to be updated,
/// and its `id`.
pub struct BuildTarget {
    object: ObjectRef,
    id: String,
}

impl FromArg for BuildTarget {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        require(value, name)?;
        let object = read::object(Some(value), name)?;
        let id = read::field(Some(value), name, "id")?;
        let id = read::required_string(id, &format!("{name}.id"))?;
        Ok(BuildTarget {
            object: object.create_ref()?,
            id,
        })
    }
}

/// Resolves the package manager of the project in `dir`: the `packageManager` field of
/// package.json (`pnpm@9.1.0`) wins, then lockfiles (`pnpm-lock.yaml` → pnpm, `bun.lock` /
/// `bun.lockb` → bun, `yarn.lock` → yarn, `package-lock.json` / `npm-shrinkwrap.json` → npm),
/// else npm. Rejects when package.json is not valid JSON (naming the file and position) or
/// names an unknown package manager.
#[napi(ts_return_type = "Promise<'npm' | 'pnpm' | 'yarn' | 'bun'>")]
pub fn detect_package_manager<'env>(
    env: &'env Env,
    #[napi(ts_arg_type = "string")] dir: DirParam,
) -> napi::Result<PromiseRaw<'env, &'static str>> {
    let dir = dir.into_result();
    spawn(env, async move {
        let dir = dir?.0;
        let detection = off_thread(move || core::detect(Path::new(&dir))).await?;
        Ok(detection.package_manager.command())
    })
}

/// Runs a file-reading core call on tokio's blocking pool.
async fn off_thread<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> crate::error::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| {
            to_js_error(Error::Io {
                action: "read".to_owned(),
                path: PathBuf::from("package.json"),
                reason: format!("the reading task did not complete ({e})"),
            })
        })?
        .map_err(to_js_error)
}

/// The arguments that install dependencies with `pm`, as the TypeScript package gives them:
/// npm `install --audit=false --fund=false --loglevel=error --progress=false`, pnpm
/// `install --ignore-workspace --loglevel=error`, yarn and bun `install --silent`. With
/// `{ frozen: true }`, the reproducible form the builder uses when a lockfile exists
/// (`ci --audit=false --fund=false` for npm, `install --frozen-lockfile` for pnpm, yarn 1 and
/// bun). Throws for an unknown package manager.
#[napi(ts_return_type = "string[]")]
pub fn get_install_args(
    #[napi(ts_arg_type = "'npm' | 'pnpm' | 'yarn' | 'bun'")] pm: Arg<PackageManager, PmArg>,
    #[napi(ts_arg_type = "{ frozen?: boolean }")] options: Option<Arg<InstallOptions, OptionsArg>>,
) -> Vec<String> {
    let pm = pm.into_inner();
    if options.is_some_and(|options| options.frozen) {
        core::install_args(pm, true)
    } else {
        core::quiet_install_args(pm)
    }
}

/// The arguments that run the project's build script with `pm`: `['run', 'build']`.
/// Throws for an unknown package manager.
#[napi(ts_return_type = "string[]")]
pub fn get_build_args(
    #[napi(ts_arg_type = "'npm' | 'pnpm' | 'yarn' | 'bun'")] pm: Arg<PackageManager, PmArg>,
) -> Vec<String> {
    core::build_args(pm.into_inner())
}

/// Resolves whether `<dir>/package.json` has a non-empty `scripts.build` (false without a
/// package.json). Rejects when package.json is not valid JSON.
#[napi(ts_return_type = "Promise<boolean>")]
pub fn has_build_script<'env>(
    env: &'env Env,
    #[napi(ts_arg_type = "string")] dir: DirParam,
) -> napi::Result<PromiseRaw<'env, bool>> {
    let dir = dir.into_result();
    spawn(env, async move {
        let dir = dir?.0;
        off_thread(move || core::has_build_script(Path::new(&dir))).await
    })
}

/// Builds projects in place: detects the package manager, installs dependencies (the frozen
/// form when the project has its lockfile), runs the `build` script, and checks that
/// `.mastra/output/index.mjs` exists. At most `maxConcurrentBuilds` builds run at once; the rest
/// wait in FIFO order. Package-manager caches live under `<buildDir>/.cache` and are shared by
/// every build of this builder.
#[napi]
pub struct ProjectBuilder {
    inner: core::ProjectBuilder,
}

#[napi]
impl ProjectBuilder {
    /// Validates `options` (every field optional); throws an `Error` naming a wrong field.
    /// `buildDir` is resolved against the current working directory now.
    #[napi(constructor)]
    pub fn new(
        #[napi(ts_arg_type = "ProjectBuilderOptions")] options: Option<Arg<Json, OptionsArg>>,
    ) -> Result<Self> {
        let cwd = cwd("buildDir")?;
        let options = options
            .map(|options| options.into_inner().0)
            .unwrap_or_default();
        let config = core::BuilderConfig::from_json(&options, &cwd).map_err(to_js_error)?;
        Ok(ProjectBuilder {
            inner: core::ProjectBuilder::new(config),
        })
    }

    /// Builds `build` of `project` from the sources already in `sourceDir`, in place (as the
    /// TypeScript package does): detects the package manager, installs, runs the build script
    /// and checks the output. Resolves the same `build` object with `status`, `startedAt`,
    /// `completedAt` (Dates), `errorMessage` and `logs` set and its other fields untouched;
    /// failures of the project, timeouts and cancels are a `status`, not a rejection. Rejects
    /// for bad arguments or a `build.id` already queued or running. Every log line reaches
    /// `onLog` in order, as it happens, before the Promise resolves; stderr lines start with
    /// `[stderr] `, the builder's own with `[runner] `.
    #[napi(ts_return_type = "Promise<Build>")]
    pub fn build<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "Project")] project: PromisedArg<PlainObject, ProjectArg>,
        #[napi(ts_arg_type = "Build")] build: PromisedArg<BuildTarget, BuildArg>,
        #[napi(ts_arg_type = "string")] source_dir: PromisedArg<Required<String>, SourceDirArg>,
        #[napi(ts_arg_type = "BuildOptions")] options: Option<BuildOptionsParam>,
        #[napi(ts_arg_type = "(line: string) => void")] on_log: Option<OnLogParam>,
    ) -> napi::Result<PromiseRaw<'env, Object<'env>>> {
        let project = project.into_result();
        // The caller's object, once read, goes to `finish` in every case, which releases it.
        let (build_object, prepared) = match build.into_result() {
            Ok(BuildTarget { object, id }) => (
                Some(object),
                project.and_then(|_| {
                    let workdir = source_dir.into_result().map(|dir| dir.0);
                    prepare(id, "build.id", workdir, "sourceDir", options, on_log)
                }),
            ),
            Err(error) => (None, project.and(Err(error))),
        };
        self.start(env, prepared, move |env, outcome| {
            let Some(build_object) = build_object else {
                return Err(outcome
                    .err()
                    .unwrap_or_else(|| to_js_error(Error::invalid("build", "is required"))));
            };
            let mut build = build_object.get_value(env)?;
            build_object.unref(env)?;
            update_build(&mut build, outcome?)?;
            Ok(build)
        })
    }

    /// Builds the project already in `workdir` as build `buildId` and resolves a new
    /// `ProjectBuildResult` (`build` without the `Build` object, with the package manager
    /// used). Otherwise as `build`.
    #[napi(ts_return_type = "Promise<ProjectBuildResult>")]
    pub fn build_by_id<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] build_id: PromisedArg<Required<String>, BuildIdArg>,
        #[napi(ts_arg_type = "string")] workdir: PromisedArg<Required<String>, WorkdirArg>,
        #[napi(ts_arg_type = "BuildOptions")] options: Option<BuildOptionsParam>,
        #[napi(ts_arg_type = "(line: string) => void")] on_log: Option<OnLogParam>,
    ) -> napi::Result<PromiseRaw<'env, ProjectBuildResult>> {
        let prepared = build_id.into_result().and_then(|id| {
            let workdir = workdir.into_result().map(|dir| dir.0);
            prepare(id.0, "buildId", workdir, "workdir", options, on_log)
        });
        self.start(env, prepared, |_, outcome| {
            Ok(ProjectBuildResult::from(outcome?))
        })
    }

    /// Cancels a queued or running build (a running one has its process tree killed); its
    /// `build()` resolves with `status: 'cancelled'`. Resolves once the build's processes are
    /// gone; an unknown or finished build is a no-op.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn cancel<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] build_id: PromisedArg<Required<String>, BuildIdArg>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let build_id = build_id.into_result();
        let builder = self.inner.clone();
        spawn(env, async move {
            builder.cancel(&build_id?.0).await;
            Ok(())
        })
    }

    /// Cancels every queued and running build; resolves once none of their processes is left.
    #[napi]
    pub async fn cancel_all(&self) {
        self.inner.cancel_all().await;
    }
}

impl ProjectBuilder {
    /// Queues `prepared` and resolves with `finish(outcome)` once every log line reached the
    /// request's callback. `finish` runs on the JS thread in every case, also when `prepared`
    /// is an argument error, so that it can release what it holds.
    fn start<'env, V, F>(
        &self,
        env: &'env Env,
        prepared: Result<(BuildRequest, Option<LineCallback>)>,
        finish: F,
    ) -> napi::Result<PromiseRaw<'env, V>>
    where
        V: ToNapiValue,
        F: FnOnce(&'env Env, Result<BuildOutcome>) -> Result<V> + 'static,
    {
        let (request, delivery) = match prepared {
            Ok((request, Some(callback))) => {
                let delivery =
                    deliver_text(env, &request.log, callback, "a build's onLog callback")
                        .map_err(|failure| rejection(env, failure))?
                        .1;
                (Ok(request), Some(delivery))
            }
            Ok((request, None)) => (Ok(request), None),
            Err(error) => (Err(error), None),
        };
        let builder = self.inner.clone();
        spawn_then(
            env,
            async move {
                let outcome = match request {
                    Ok(request) => {
                        let log = Arc::clone(&request.log);
                        let outcome = builder.build(request).await;
                        // Let the subscriber drain what is queued, then wait until JS has seen
                        // it all.
                        log.close_subscriptions();
                        if let Some(delivery) = delivery {
                            let _ = delivery.await;
                        }
                        outcome.map_err(to_js_error)
                    }
                    Err(error) => Err(error),
                };
                Ok(outcome)
            },
            finish,
        )
    }
}

/// Checks the id, directory, options and callback of a build (`id_name` and `dir_name` are
/// the argument names errors use) and turns them into a request.
fn prepare(
    build_id: String,
    id_name: &str,
    workdir: Result<String>,
    dir_name: &str,
    options: Option<BuildOptionsParam>,
    on_log: Option<OnLogParam>,
) -> Result<(BuildRequest, Option<LineCallback>)> {
    crate::validate::id(id_name, &build_id).map_err(to_js_error)?;
    let workdir = workdir?;
    if workdir.is_empty() || workdir.contains('\0') {
        return Err(to_js_error(Error::invalid(
            dir_name,
            "must be a non-empty path without NUL",
        )));
    }
    let workdir = absolute(PathBuf::from(workdir), dir_name)?;
    let options = match options {
        Some(options) => options.into_result()?.0,
        None => Value::Null,
    };
    let options = BuildOptions::from_json(&options, "options").map_err(to_js_error)?;
    let callback = on_log.map(PromisedArg::into_result).transpose()?;
    Ok((
        BuildRequest::new(build_id, workdir).with_options(options),
        callback,
    ))
}

fn absolute(path: PathBuf, name: &str) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(cwd(name)?.join(path))
}
