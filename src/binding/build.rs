//! The build utilities of SPEC §2 as JS sees them: `detectPackageManager`, `getInstallArgs`,
//! `getBuildArgs`, `hasBuildScript`, and `ProjectBuilder` over the core's
//! [`crate::build::ProjectBuilder`].
//!
//! A build's live lines reach `onLog` through a subscription to the build's log store,
//! delivered in order by a weak threadsafe function (so a build never keeps Node alive on its
//! own account). The Promise resolves only after every line has been handed to `onLog`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use napi::Env;
use napi::bindgen_prelude::{Object, PromiseRaw, Result, Unknown};
use napi_derive::napi;
use serde_json::Value;

use super::args::{self, LineCallback};
use super::logs::deliver_text;
use super::{json, to_js_error};
use crate::build::{self as core, BuildOptions, BuildOutcome, BuildRequest, PackageManager};
use crate::error::Error;
use crate::validate;

/// The package manager of the project in `dir`: the `packageManager` field of package.json
/// (`pnpm@9.1.0`) wins, then lockfiles (`pnpm-lock.yaml` → pnpm, `bun.lock` / `bun.lockb` → bun,
/// `yarn.lock` → yarn, `package-lock.json` / `npm-shrinkwrap.json` → npm), else npm.
/// Throws when package.json is not valid JSON (naming the file and position) or names an
/// unknown package manager.
#[napi(
    ts_args_type = "dir: string",
    ts_return_type = "'npm' | 'pnpm' | 'yarn' | 'bun'"
)]
pub fn detect_package_manager(dir: Option<Unknown>) -> Result<&'static str> {
    let dir = args::required_string(dir, "dir")?;
    let detection = core::detect(Path::new(&dir)).map_err(to_js_error)?;
    Ok(detection.package_manager.command())
}

/// The arguments that install dependencies with `pm`: `['install']` by default; with
/// `{ frozen: true }` the reproducible form (`['ci']` for npm, `install --frozen-lockfile` for
/// pnpm, yarn 1 and bun). Throws for an unknown package manager.
#[napi(
    ts_args_type = "pm: 'npm' | 'pnpm' | 'yarn' | 'bun', options?: { frozen?: boolean }",
    ts_return_type = "string[]"
)]
pub fn get_install_args(pm: Option<Unknown>, options: Option<Unknown>) -> Result<Vec<String>> {
    let pm = package_manager(pm)?;
    let frozen = match args::options(options, "options")? {
        Value::Null => false,
        Value::Object(fields) => match fields.get("frozen").unwrap_or(&Value::Null) {
            Value::Null => false,
            Value::Bool(frozen) => *frozen,
            other => {
                return Err(to_js_error(Error::invalid(
                    "options.frozen",
                    validate::expected("a boolean", other),
                )));
            }
        },
        other => {
            return Err(to_js_error(Error::invalid(
                "options",
                validate::expected("an object", &other),
            )));
        }
    };
    Ok(core::install_args(pm, frozen))
}

/// The arguments that run the project's build script with `pm`: `['run', 'build']`.
/// Throws for an unknown package manager.
#[napi(
    ts_args_type = "pm: 'npm' | 'pnpm' | 'yarn' | 'bun'",
    ts_return_type = "string[]"
)]
pub fn get_build_args(pm: Option<Unknown>) -> Result<Vec<String>> {
    Ok(core::build_args(package_manager(pm)?))
}

/// Whether `<dir>/package.json` has a non-empty `scripts.build` (false without a package.json).
/// Throws when package.json is not valid JSON.
#[napi(ts_args_type = "dir: string")]
pub fn has_build_script(dir: Option<Unknown>) -> Result<bool> {
    let dir = args::required_string(dir, "dir")?;
    core::has_build_script(Path::new(&dir)).map_err(to_js_error)
}

fn package_manager(pm: Option<Unknown>) -> Result<PackageManager> {
    let name = args::required_string(pm, "pm")?;
    PackageManager::from_name(&name, "argument pm").map_err(to_js_error)
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
    #[napi(constructor, ts_args_type = "options?: ProjectBuilderOptions")]
    pub fn new(options: Option<Unknown>) -> Result<Self> {
        let cwd = args::cwd("buildDir")?;
        let options = match options {
            Some(options) => json::to_json(&options, "options")?,
            None => Value::Null,
        };
        let config = core::BuilderConfig::from_json(&options, &cwd).map_err(to_js_error)?;
        Ok(ProjectBuilder {
            inner: core::ProjectBuilder::new(config),
        })
    }

    /// Builds the project already in `workdir` as build `buildId`. Resolves with the outcome:
    /// failures of the project (install, build script, missing output, timeout) and cancels
    /// are a `status` with an `errorMessage`, not a rejection. Rejects for bad arguments or a
    /// `buildId` already queued or running. Every log line reaches `onLog` in order, as it
    /// happens, before the Promise resolves; stderr lines start with `[stderr] `, the
    /// builder's own with `[runner] `.
    #[napi(
        ts_args_type = "buildId: string, workdir: string, options?: BuildOptions, onLog?: (line: string) => void",
        ts_return_type = "Promise<ProjectBuildResult>"
    )]
    pub fn build<'env>(
        &self,
        env: &'env Env,
        build_id: Option<Unknown>,
        workdir: Option<Unknown>,
        options: Option<Unknown>,
        on_log: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, Object<'env>>> {
        let (request, delivery) = match prepare(build_id, workdir, options, on_log.as_ref()) {
            Ok((request, callback)) => {
                let delivery = match callback {
                    Some(callback) => Some(
                        deliver_text(env, &request.log, callback, "a build's onLog callback")?.1,
                    ),
                    None => None,
                };
                (Ok(request), delivery)
            }
            Err(error) => (Err(error), None),
        };
        let builder = self.inner.clone();
        env.spawn_future_with_callback(
            async move {
                let request = request?;
                let log = Arc::clone(&request.log);
                let outcome = builder.build(request).await;
                // Let the subscriber drain what is queued, then wait until JS has seen it all.
                log.close_subscriptions();
                if let Some(delivery) = delivery {
                    let _ = delivery.await;
                }
                outcome.map_err(to_js_error)
            },
            result_object,
        )
    }

    /// Cancels a queued or running build (a running one has its process tree killed); its
    /// `build()` resolves with `status: 'cancelled'`. Resolves once the build's processes are
    /// gone; an unknown or finished build is a no-op.
    #[napi(ts_args_type = "buildId: string", ts_return_type = "Promise<void>")]
    pub fn cancel<'env>(
        &self,
        env: &'env Env,
        build_id: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let build_id = args::required_string(build_id, "buildId");
        let builder = self.inner.clone();
        env.spawn_future(async move {
            builder.cancel(&build_id?).await;
            Ok(())
        })
    }

    /// Cancels every queued and running build; resolves once none of their processes is left.
    #[napi]
    pub async fn cancel_all(&self) -> Result<()> {
        self.inner.cancel_all().await;
        Ok(())
    }
}

/// Checks the arguments of `build` and turns them into a request (and the callback, if any).
fn prepare(
    build_id: Option<Unknown>,
    workdir: Option<Unknown>,
    options: Option<Unknown>,
    on_log: Option<&Unknown>,
) -> Result<(BuildRequest, Option<LineCallback>)> {
    let build_id = args::required_string(build_id, "buildId")?;
    crate::validate::id("buildId", &build_id).map_err(to_js_error)?;
    let workdir = args::required_string(workdir, "workdir")?;
    if workdir.is_empty() || workdir.contains('\0') {
        return Err(to_js_error(Error::invalid(
            "workdir",
            "must be a non-empty path without NUL",
        )));
    }
    let workdir = absolute(PathBuf::from(workdir))?;
    let options = BuildOptions::from_json(&args::options(options, "options")?, "options")
        .map_err(to_js_error)?;
    let callback = args::optional_callback(on_log, "onLog")?;
    Ok((
        BuildRequest::new(build_id, workdir).with_options(options),
        callback,
    ))
}

fn absolute(path: PathBuf) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(args::cwd("workdir")?.join(path))
}

/// `{ status, errorMessage, logs, startedAt, completedAt, packageManager }` with JS Dates.
fn result_object<'env>(env: &'env Env, outcome: BuildOutcome) -> Result<Object<'env>> {
    let mut object = Object::new(env)?;
    object.set("status", outcome.status.as_str())?;
    object.set("errorMessage", outcome.error_message)?;
    object.set("logs", outcome.logs)?;
    let started = outcome.started_at.unwrap_or(outcome.completed_at);
    object.set("startedAt", env.create_date(epoch_ms(started))?)?;
    object.set(
        "completedAt",
        env.create_date(epoch_ms(outcome.completed_at))?,
    )?;
    object.set(
        "packageManager",
        outcome.package_manager.map(PackageManager::command),
    )?;
    Ok(object)
}

fn epoch_ms(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64)
}
