//! The two calls of `LocalProcessRunner` that take more than one conversion: a build (its
//! arguments, the caller's `Build` object held until the outcome is written into it, the
//! `onLog` delivery) and a deploy (the entities and options into the core's request).

use std::path::PathBuf;

use napi::bindgen_prelude::{Env, JsObjectValue, Object, ObjectRef};
use serde_json::Value;

use crate::binding::convert::LineCallback;
use crate::binding::convert::{
    BuiltBuild, BuiltProject, DeployedDeployment, DeployedProject, EntityId,
};
use crate::binding::error::Result;
use crate::binding::logs::deliver_text;
use crate::builder::{BuildOptions, BuildRequest};
use crate::runner::{BuildTicket, DeployRequest, DeployTarget, RunOptions, Runner};

/// A build call whose arguments were accepted and whose place was taken.
pub(super) struct BuildCall {
    pub(super) ticket: BuildTicket,
    pub(super) request: BuildRequest,
    /// The caller's `Build`, which gets the outcome.
    pub(super) build_object: ObjectRef,
    /// Ends once every log line reached `onLog`.
    pub(super) delivery: Option<tokio::task::JoinHandle<()>>,
}

/// What `build()` was given, each argument read or refused.
pub(super) struct BuildArguments {
    pub(super) project: Result<BuiltProject>,
    pub(super) build: Result<BuiltBuild>,
    pub(super) options: Result<Value>,
    pub(super) on_log: Result<Option<LineCallback>>,
}

impl BuildArguments {
    /// Takes the build's place in the runner (the core checks the ids and the source) and
    /// starts delivering its log to `onLog`. The first refused argument is the error, in the
    /// order `onLog`, `project`, `build`, `options`; the `Build` object's reference is given
    /// back on every failure.
    pub(super) fn prepare(self, env: &Env, runner: &Runner) -> Result<BuildCall> {
        let BuildArguments {
            project,
            build,
            options,
            on_log,
        } = self;
        let accepted = on_log.and_then(|on_log| Ok((on_log, project?)));
        let ((on_log, BuiltProject(project)), build) = match (accepted, build) {
            (Ok(accepted), Ok(build)) => (accepted, build),
            (Err(error), build) => {
                if let Ok(build) = build {
                    release(env, build.object);
                }
                return Err(error);
            }
            (Ok(_), Err(error)) => return Err(error),
        };
        let started = options.and_then(|options| {
            let options = BuildOptions::from_json(&options, "options")?;
            let ticket = runner.prepare_build(project, &build.id, build.deployment_id)?;
            let request = BuildRequest::new(build.id, PathBuf::new()).with_options(options);
            let delivery = match on_log {
                Some(callback) => {
                    Some(deliver_text(env, &request.log, callback, "a build onLog callback")?.1)
                }
                None => None,
            };
            Ok((ticket, request, delivery))
        });
        match started {
            Ok((ticket, request, delivery)) => Ok(BuildCall {
                ticket,
                request,
                build_object: build.object,
                delivery,
            }),
            Err(error) => {
                release(env, build.object);
                Err(error)
            }
        }
    }
}

/// Gives back the reference to a `Build` object the call will not write into. Only a call that
/// already failed does this, and its own error is the one to report.
fn release(env: &Env, object: ObjectRef) {
    if let Err(error) = object.unref(env) {
        tracing::warn!("releasing a Build object failed: {}", error.reason);
    }
}

/// The core's deploy request from `deploy()`'s arguments, the first refused one being the
/// error; the server runs with the host's Node.js.
pub(super) fn deploy_request(
    env: &Env,
    project: Result<DeployedProject>,
    deployment: Result<DeployedDeployment>,
    build: Result<EntityId>,
    options: Option<Result<RunOptions>>,
) -> Result<DeployRequest> {
    let (project, deployment, EntityId(build_id)) = (project?, deployment?, build?);
    let options = options.transpose()?.unwrap_or_default();
    let target = DeployTarget {
        project_id: project.id,
        project_slug: project.slug,
        deployment_id: deployment.id,
        deployment_type: deployment.kind,
        branch: deployment.branch,
        build_id,
    };
    Ok(DeployRequest::new(target, options, host_node(env)?)?)
}

/// The host's Node.js binary (`process.execPath`).
fn host_node(env: &Env) -> Result<PathBuf> {
    let node_process: Object = env.get_global()?.get_named_property("process")?;
    let node: String = node_process.get_named_property("execPath")?;
    Ok(PathBuf::from(node))
}
