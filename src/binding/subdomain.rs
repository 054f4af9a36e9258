//! `SubdomainGenerator` as JS sees it (SPEC §3 "Subdomains").

use napi::bindgen_prelude::{Result, Unknown};
use napi_derive::napi;
use serde_json::{Value, json};

use super::args;
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
            napi::Error::from_reason(format!(
                "Invalid deployment.type: must be 'production', 'staging' or 'preview' (got '{kind}')"
            ))
        })?;
        let branch = args::optional_string(
            args::field(deployment.as_ref(), "deployment", "branch")?.as_ref(),
            "deployment.branch",
        )?;
        if kind == DeploymentType::Preview && branch.as_deref().is_none_or(str::is_empty) {
            return Err(napi::Error::from_reason(
                "Invalid deployment.branch: a preview deployment needs its branch",
            ));
        }
        Ok(subdomain::generate(
            &slug,
            kind,
            branch.as_deref().unwrap_or_default(),
        ))
    }

    /// Splits a generated subdomain into `{ type, projectSlug, branch }` (`branch` is `null`
    /// except for previews); `null` when it is not one.
    #[napi(
        ts_args_type = "subdomain: string",
        ts_return_type = "{ type: 'production' | 'staging' | 'preview'; projectSlug: string; branch: string | null } | null"
    )]
    pub fn parse(&self, subdomain: Option<Unknown>) -> Result<Value> {
        let text = args::required_string(subdomain, "subdomain")?;
        Ok(match subdomain::parse(&text) {
            Some(parsed) => json!({
                "type": parsed.deployment_type.as_str(),
                "projectSlug": parsed.project,
                "branch": parsed.branch,
            }),
            None => Value::Null,
        })
    }
}
