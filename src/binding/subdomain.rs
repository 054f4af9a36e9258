//! `SubdomainGenerator` as JS sees it (SPEC §3 "Subdomains").

use super::error::{Result, to_js_error};
use napi::bindgen_prelude::Unknown;
use napi_derive::napi;
use serde_json::{Value, json};

use super::args;
use crate::error::Error;
use crate::subdomain::{self, DeploymentType};

/// Turns projects and deployments into DNS-label subdomains, and back.
#[napi]
pub struct SubdomainGenerator {}

#[napi]
impl SubdomainGenerator {
    /// A generator (it keeps no state).
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        SubdomainGenerator {}
    }

    /// production → `{slug}`, staging → `staging--{slug}`, preview → `{branch}--{slug}`; each
    /// part lowercased with other characters turned to `-`; at most 63 characters, a stable hash
    /// keeping cut names distinct.
    #[napi(
        ts_args_type = "project: { slug: string }, deployment: { type: 'production' | 'staging' | 'preview'; branch?: string }"
    )]
    pub fn generate(
        &self,
        project: Option<Unknown>,
        deployment: Option<Unknown>,
    ) -> Result<String> {
        let slug = args::required_string(
            args::field(project.as_ref(), "project", "slug")?,
            "project.slug",
        )?;
        let kind = args::required_string(
            args::field(deployment.as_ref(), "deployment", "type")?,
            "deployment.type",
        )?;
        let kind = DeploymentType::from_name(&kind).ok_or_else(|| {
            to_js_error(Error::invalid(
                "deployment.type",
                format!("must be 'production', 'staging' or 'preview' (got '{kind}')"),
            ))
        })?;
        let branch = args::optional_string(
            args::field(deployment.as_ref(), "deployment", "branch")?.as_ref(),
            "deployment.branch",
        )?;
        if kind == DeploymentType::Preview && branch.as_deref().is_none_or(str::is_empty) {
            return Err(to_js_error(Error::invalid(
                "deployment.branch",
                "a preview deployment needs its branch",
            )));
        }
        Ok(subdomain::generate(
            &slug,
            kind,
            branch.as_deref().unwrap_or_default(),
        ))
    }

    /// Splits a subdomain at its last `--`: `{ projectSlug, deploymentSlug? }` (`'a--b--c'` gives
    /// `{ projectSlug: 'c', deploymentSlug: 'a--b' }`; no `--` gives no `deploymentSlug`), plus
    /// the deployment `type` that generated it and, for previews, the `branch` part (else `null`).
    #[napi(
        ts_args_type = "subdomain: string",
        ts_return_type = "{ projectSlug: string; deploymentSlug?: string; type: 'production' | 'staging' | 'preview'; branch: string | null }"
    )]
    pub fn parse(&self, subdomain: Option<Unknown>) -> Result<Value> {
        let text = args::required_string(subdomain, "subdomain")?;
        let parsed = subdomain::parse(&text);
        let mut value = json!({
            "projectSlug": parsed.project,
            "type": parsed.deployment_type.as_str(),
            "branch": parsed.branch,
        });
        if let (Some(slug), Some(object)) = (parsed.deployment_slug(), value.as_object_mut()) {
            object.insert("deploymentSlug".to_owned(), Value::from(slug));
        }
        Ok(value)
    }
}
