//! Reading the arguments of `LocalProcessRunner`'s methods into core requests, and writing a
//! build's outcome back into the caller's `Build` object.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use napi::bindgen_prelude::{Env, JsObjectValue, Object, ObjectRef, Unknown};

use crate::binding::args;
use crate::binding::error::{JsFailure, Result};
use crate::binding::json;
use crate::binding::provider::provider_object;
use crate::builder::{BuildOptions, BuildRequest};
use crate::error::Mismatch;
use crate::runner::{DeployRequest, ProjectSource, Runner};
use crate::subdomain::{self, DeploymentType};
use crate::validate;

/// Reads a string field of an entity argument (`project.slug`).
pub(super) fn entity_field(
    entity: Option<&Unknown>,
    name: &str,
    field: &str,
) -> Result<Option<String>> {
    let value = args::field(entity, name, field)?;
    args::optional_string(value.as_ref(), &format!("{name}.{field}"))
}

/// Reads `entity.id` (required); the core checks it with the SPEC's id rules.
pub(super) fn entity_id(entity: Option<&Unknown>, name: &str) -> Result<String> {
    let missing = match entity {
        None => true,
        Some(entity) => matches!(
            entity.get_type()?,
            napi::ValueType::Undefined | napi::ValueType::Null
        ),
    };
    if missing {
        return Err(JsFailure::invalid(
            name,
            Mismatch::new("an object", "undefined"),
        ));
    }
    let id = entity_field(entity, name, "id")?
        .ok_or_else(|| JsFailure::invalid(&format!("{name}.id"), "is required"))?;
    validate::id(&format!("{name}.id"), &id)?;
    Ok(id)
}

/// The `id` of a `RunningServer` argument.
pub(super) fn server_id(server: Option<&Unknown>) -> Result<String> {
    entity_field(server, "server", "id")?
        .ok_or_else(|| JsFailure::invalid("server.id", "is required"))
}

pub(super) fn read_deploy_request(
    env: &Env,
    project: Option<&Unknown>,
    deployment: Option<&Unknown>,
    build: Option<&Unknown>,
    options: Option<&Unknown>,
) -> Result<DeployRequest> {
    let project_id = entity_id(project, "project")?;
    let deployment_id = entity_id(deployment, "deployment")?;
    let build_id = entity_id(build, "build")?;
    let slug = entity_field(project, "project", "slug")?.unwrap_or_else(|| project_id.clone());
    let kind = match entity_field(deployment, "deployment", "type")?.as_deref() {
        None => DeploymentType::Production,
        Some(name) => DeploymentType::from_name(name).ok_or_else(|| {
            JsFailure::invalid(
                "deployment.type",
                format!("must be 'production', 'staging' or 'preview' (got '{name}')"),
            )
        })?,
    };
    let branch = entity_field(deployment, "deployment", "branch")?.unwrap_or_default();
    let env_vars = match args::field(options, "options", "envVars")? {
        Some(vars) => {
            validate::env_vars("options.envVars", &json::to_json(&vars, "options.envVars")?)?
        }
        None => BTreeMap::new(),
    };
    let port = args::optional_port(args::field(options, "options", "port")?, "options.port")?;
    let health_timeout = args::optional_integer(
        args::field(options, "options", "healthCheckTimeoutMs")?.as_ref(),
        "options.healthCheckTimeoutMs",
        1,
        validate::MAX_SAFE_INTEGER,
    )?
    .map(Duration::from_millis);
    let node_process: Object = env.get_global()?.get_named_property("process")?;
    let node: String = node_process.get_named_property("execPath")?;
    Ok(DeployRequest {
        subdomain: subdomain::generate(&slug, kind, &branch),
        project_id,
        deployment_id,
        build_id,
        env: env_vars,
        port,
        health_timeout,
        node: PathBuf::from(node),
    })
}

/// What `build()` read from its arguments.
pub(super) struct BuildCall {
    pub(super) ticket: crate::runner::BuildTicket,
    pub(super) request: BuildRequest,
    pub(super) build_object: ObjectRef,
}

pub(super) fn read_build_call(
    runner: &Runner,
    project: Option<&Unknown>,
    build: Option<&Unknown>,
    options: Option<&Unknown>,
) -> Result<BuildCall> {
    let project_id = entity_id(project, "project")?;
    let build_id = entity_id(build, "build")?;
    let source_config = args::field(project, "project", "sourceConfig")?;
    let source = ProjectSource {
        name: entity_field(project, "project", "name")?.unwrap_or_else(|| project_id.clone()),
        kind: entity_field(project, "project", "sourceType")?.unwrap_or_else(|| "local".to_owned()),
        path: entity_field(source_config.as_ref(), "project.sourceConfig", "path")?,
        id: project_id,
    };
    let options = BuildOptions::from_json(&args::options(options.cloned(), "options")?, "options")?;
    let build_object = provider_object(build, "build")?;
    let deployment_id = entity_field(build, "build", "deploymentId")?;
    let ticket = runner.prepare_build(source, &build_id, deployment_id)?;
    Ok(BuildCall {
        ticket,
        request: BuildRequest::new(build_id, PathBuf::new()).with_options(options),
        // Last: a reference that is never handed to the callback below would leak.
        build_object: build_object.create_ref()?,
    })
}
