//! A [`DeployRequest`] built from what a caller names: the ids of the project, deployment and
//! build, the project's slug, the deployment's type and branch, and the run options. The ids
//! are checked and the deployment's subdomain generated here, so every caller gets the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::DeployRequest;
use crate::error::{Error, Result};
use crate::isolation::Limits;
use crate::subdomain::{self, DeploymentType};
use crate::validate;

/// What a deploy names of MastraAdmin's `Project`, `Deployment` and `Build`.
#[derive(Debug, Clone, Default)]
pub struct DeployTarget {
    /// `project.id`.
    pub project_id: String,
    /// `project.slug` (the project's id when absent).
    pub project_slug: Option<String>,
    /// `deployment.id`.
    pub deployment_id: String,
    /// `deployment.type` (`'production'` when absent).
    pub deployment_type: Option<String>,
    /// `deployment.branch` (empty when absent).
    pub branch: Option<String>,
    /// `build.id`.
    pub build_id: String,
}

/// A deploy's `RunOptions`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Extra variables for the server (`envVars`).
    pub env: BTreeMap<String, String>,
    /// Preferred port (`port`).
    pub port: Option<u16>,
    /// Overall time to wait for health (`healthCheckTimeoutMs`).
    pub health_timeout: Option<Duration>,
    /// Limits of this server over the configuration's (`limits`).
    pub limits: Limits,
}

impl RunOptions {
    /// Reads the options object `options` (argument `name`); `null` is no options. A field
    /// that is absent takes its default; `envVars: null` is refused, a `null` port or timeout
    /// is absent.
    pub fn from_json(options: &Value, name: &str) -> Result<Self> {
        let field = |key: &str| options.get(key);
        let env = match field("envVars") {
            Some(vars) => validate::env_vars(&format!("{name}.envVars"), vars)?,
            None => BTreeMap::new(),
        };
        let port = match field("port") {
            None | Some(Value::Null) => None,
            Some(port) => Some(validate::port(&format!("{name}.port"), port)?),
        };
        let health_timeout = match field("healthCheckTimeoutMs") {
            None | Some(Value::Null) => None,
            Some(ms) => Some(Duration::from_millis(validate::integer(
                &format!("{name}.healthCheckTimeoutMs"),
                ms,
                1,
                validate::MAX_SAFE_INTEGER,
            )?)),
        };
        let limits = match field("limits") {
            None | Some(Value::Null) => Limits::default(),
            Some(limits) => Limits::from_json(limits, &format!("{name}.limits"))?,
        };
        Ok(RunOptions {
            env,
            port,
            health_timeout,
            limits,
        })
    }
}

impl DeployRequest {
    /// The request to deploy `target` with `options`, its server run by `node`: checks the
    /// ids (`project.id`, `deployment.id`, `build.id`, in that order) and the deployment's
    /// type, and generates the deployment's subdomain from the slug, type and branch.
    pub fn new(target: DeployTarget, options: RunOptions, node: PathBuf) -> Result<Self> {
        validate::id("project.id", &target.project_id)?;
        validate::id("deployment.id", &target.deployment_id)?;
        validate::id("build.id", &target.build_id)?;
        let kind = match target.deployment_type.as_deref() {
            None => DeploymentType::Production,
            Some(name) => DeploymentType::from_name(name).ok_or_else(|| {
                Error::invalid(
                    "deployment.type",
                    format!("must be 'production', 'staging' or 'preview' (got '{name}')"),
                )
            })?,
        };
        let slug = target.project_slug.as_deref().unwrap_or(&target.project_id);
        let branch = target.branch.as_deref().unwrap_or_default();
        Ok(DeployRequest {
            subdomain: subdomain::generate(slug, kind, branch),
            project_id: target.project_id,
            deployment_id: target.deployment_id,
            build_id: target.build_id,
            env: options.env,
            port: options.port,
            health_timeout: options.health_timeout,
            limits: options.limits,
            node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> DeployTarget {
        DeployTarget {
            project_id: "proj-1".into(),
            deployment_id: "dep-1".into(),
            build_id: "build-1".into(),
            ..DeployTarget::default()
        }
    }

    #[test]
    fn the_subdomain_comes_from_the_slug_type_and_branch() {
        let request = DeployRequest::new(
            DeployTarget {
                project_slug: Some("shop".into()),
                deployment_type: Some("preview".into()),
                branch: Some("feature-x".into()),
                ..target()
            },
            RunOptions::default(),
            PathBuf::from("node"),
        )
        .expect("valid");
        assert_eq!(
            request.subdomain,
            subdomain::generate("shop", DeploymentType::Preview, "feature-x")
        );
        let plain = DeployRequest::new(target(), RunOptions::default(), PathBuf::from("node"))
            .expect("valid");
        assert_eq!(
            plain.subdomain,
            subdomain::generate("proj-1", DeploymentType::Production, "")
        );
    }

    #[test]
    fn ids_and_the_deployment_type_are_checked() {
        let bad_id = DeployTarget {
            deployment_id: "../x".into(),
            ..target()
        };
        let error = DeployRequest::new(bad_id, RunOptions::default(), PathBuf::new())
            .expect_err("a path in an id");
        assert!(error.to_string().starts_with("Invalid deployment.id:"));
        let bad_type = DeployTarget {
            deployment_type: Some("qa".into()),
            ..target()
        };
        let error = DeployRequest::new(bad_type, RunOptions::default(), PathBuf::new())
            .expect_err("an unknown type");
        assert_eq!(
            error.to_string(),
            "Invalid deployment.type: must be 'production', 'staging' or 'preview' (got 'qa')"
        );
    }

    #[test]
    fn run_options_name_the_field_that_is_wrong() {
        let options = RunOptions::from_json(
            &json!({ "envVars": { "A": "1" }, "port": null, "healthCheckTimeoutMs": 500 }),
            "options",
        )
        .expect("valid");
        assert_eq!(options.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(options.port, None);
        assert_eq!(options.health_timeout, Some(Duration::from_millis(500)));
        let error = RunOptions::from_json(&json!({ "port": 0 }), "options").expect_err("port 0");
        assert!(error.to_string().starts_with("Invalid options.port:"));
        let error =
            RunOptions::from_json(&json!({ "envVars": null }), "options").expect_err("null vars");
        assert!(error.to_string().starts_with("Invalid options.envVars:"));
    }
}
