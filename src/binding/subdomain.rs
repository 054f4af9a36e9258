//! `SubdomainGenerator` as JS sees it (SPEC §3 "Subdomains"): reads the project and deployment
//! objects and hands them to [`crate::subdomain`], which decides.

use napi::bindgen_prelude::{Either, Null, Unknown};
use napi_derive::napi;

use super::convert::{Arg, FromArg, Required, arg_names, read};
use super::error::Result;
use crate::subdomain::{self, DeploymentType};

arg_names! {
    ProjectArg = "project";
    DeploymentArg = "deployment";
    SubdomainArg = "subdomain";
}

/// The `slug` of a project argument (a project left out reads as one without a slug).
pub struct ProjectSlug(String);

impl FromArg for ProjectSlug {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let slug = read::field(Some(value), name, "slug")?;
        read::required_string(slug, &format!("{name}.slug")).map(ProjectSlug)
    }
}

/// The `type` and `branch` of a deployment argument.
pub struct Deployment {
    kind: DeploymentType,
    branch: Option<String>,
}

impl FromArg for Deployment {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let kind = read::field(Some(value), name, "type")?;
        let kind = read::required_string(kind, &format!("{name}.type"))?;
        let kind = DeploymentType::from_deployment_field(&kind)?;
        let branch = read::field(Some(value), name, "branch")?;
        let branch = read::optional_string(branch.as_ref(), &format!("{name}.branch"))?;
        Ok(Deployment { kind, branch })
    }
}

/// A subdomain split back into its parts.
#[napi(object)]
pub struct ParsedSubdomain {
    // Declared alphabetically: the key order `parse` has always returned (napi adds the
    // optional `deploymentSlug` after the others).
    /// The branch part of a preview, else `null`.
    pub branch: Either<String, Null>,
    /// What precedes the project slug (`staging` or the branch part); absent for production.
    pub deployment_slug: Option<String>,
    /// The project slug (after the last `--`).
    pub project_slug: String,
    /// The deployment type that generated the name.
    #[napi(js_name = "type", ts_type = "'production' | 'staging' | 'preview'")]
    pub kind: String,
}

impl From<subdomain::ParsedSubdomain> for ParsedSubdomain {
    fn from(parsed: subdomain::ParsedSubdomain) -> Self {
        ParsedSubdomain {
            deployment_slug: parsed.deployment_slug().map(str::to_owned),
            kind: parsed.deployment_type.as_str().to_owned(),
            branch: parsed.branch.map_or(Either::B(Null), Either::A),
            project_slug: parsed.project,
        }
    }
}

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
    #[napi]
    pub fn generate(
        &self,
        #[napi(ts_arg_type = "{ slug: string }")] project: Arg<ProjectSlug, ProjectArg>,
        #[napi(ts_arg_type = "{ type: 'production' | 'staging' | 'preview'; branch?: string }")]
        deployment: Arg<Deployment, DeploymentArg>,
    ) -> Result<String> {
        let Deployment { kind, branch } = deployment.into_inner();
        Ok(subdomain::generate_checked(
            &project.into_inner().0,
            kind,
            branch.as_deref(),
        )?)
    }

    /// Splits a subdomain at its last `--`: `{ projectSlug, deploymentSlug? }` (`'a--b--c'` gives
    /// `{ projectSlug: 'c', deploymentSlug: 'a--b' }`; no `--` gives no `deploymentSlug`), plus
    /// the deployment `type` that generated it and, for previews, the `branch` part (else `null`).
    #[napi]
    pub fn parse(
        &self,
        #[napi(ts_arg_type = "string")] subdomain: Arg<Required<String>, SubdomainArg>,
    ) -> ParsedSubdomain {
        subdomain::parse(&subdomain.into_inner().0).into()
    }
}
