//! Subdomains for deployments (SPEC §3 "Subdomains").
//!
//! production → `{project}`, staging → `staging--{project}`, preview → `{branch}--{project}`.
//! Each part is lowercased, every character outside `[a-z0-9]` becomes `-`, runs of `-`
//! collapse and none leads or trails, so `--` only ever separates parts and [`parse`] can split
//! a name back. The whole is a DNS label: at most 63 characters. A part that would be too long
//! is cut and ends in `-` plus six hex digits of a stable hash of the uncut text, so two long
//! names that share a prefix still differ. A part that would be empty (a name of only symbols
//! or non-Latin letters) becomes `x` plus that hash.
//!
//! A preview whose branch normalises to `staging` reads back as the staging deployment; the
//! format leaves no other choice.

use crate::error::{Error, Result};

/// The longest DNS label.
pub const MAX_LABEL: usize = 63;

/// The longest project part kept whole when a preview name must be cut.
const MAX_PREVIEW_PROJECT: usize = 40;

/// Length of `-` plus the hash suffix.
const HASH_SUFFIX: usize = 7;

/// The kinds of deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentType {
    /// The project's main deployment.
    Production,
    /// The staging deployment.
    Staging,
    /// A preview of a branch.
    Preview,
}

impl DeploymentType {
    /// From the name MastraAdmin uses.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "production" => Some(DeploymentType::Production),
            "staging" => Some(DeploymentType::Staging),
            "preview" => Some(DeploymentType::Preview),
            _ => None,
        }
    }

    /// From the `type` field of a MastraAdmin deployment; any other name is refused, e.g.
    /// `Invalid deployment.type: must be 'production', 'staging' or 'preview' (got 'beta')`.
    pub fn from_deployment_field(name: &str) -> Result<Self> {
        DeploymentType::from_name(name).ok_or_else(|| {
            Error::invalid(
                "deployment.type",
                format!("must be 'production', 'staging' or 'preview' (got '{name}')"),
            )
        })
    }

    /// The name MastraAdmin uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentType::Production => "production",
            DeploymentType::Staging => "staging",
            DeploymentType::Preview => "preview",
        }
    }
}

/// A subdomain split back into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSubdomain {
    /// The kind of deployment.
    pub deployment_type: DeploymentType,
    /// The project part.
    pub project: String,
    /// The branch part (previews only).
    pub branch: Option<String>,
}

/// A stable 24-bit hash of `text` as six hex digits (FNV-1a).
fn short_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:06x}", (hash ^ (hash >> 32)) & 0xff_ffff)
}

/// One part: lowercase `[a-z0-9]` with single inner dashes; `x<hash>` when nothing is left.
pub fn normalize(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        format!("x{}", short_hash(part))
    } else {
        out
    }
}

/// `part` cut to at most `max` characters, ending in `-<hash of original>` when cut.
fn fit(part: &str, max: usize, original: &str) -> String {
    if part.len() <= max {
        return part.to_owned();
    }
    let keep = max.saturating_sub(HASH_SUFFIX).max(1);
    let cut = part[..keep.min(part.len())].trim_end_matches('-');
    format!("{cut}-{}", short_hash(original))
}

/// The subdomain of a deployment of `project_slug` (`branch` is used by previews only).
pub fn generate(project_slug: &str, deployment_type: DeploymentType, branch: &str) -> String {
    let project = normalize(project_slug);
    match deployment_type {
        DeploymentType::Production => fit(&project, MAX_LABEL, project_slug),
        DeploymentType::Staging => {
            format!("staging--{}", fit(&project, MAX_LABEL - 9, project_slug))
        }
        DeploymentType::Preview => {
            let branch_part = normalize(branch);
            if branch_part.len() + 2 + project.len() <= MAX_LABEL {
                return format!("{branch_part}--{project}");
            }
            let project = fit(&project, MAX_PREVIEW_PROJECT, project_slug);
            let budget = MAX_LABEL - 2 - project.len();
            let branch_part = fit(&branch_part, budget, &format!("{branch}\0{project_slug}"));
            format!("{branch_part}--{project}")
        }
    }
}

/// As [`generate`], for a deployment whose branch may be missing: a preview without a branch
/// (or with an empty one) is refused (`Invalid deployment.branch: a preview deployment needs
/// its branch`); other types ignore the branch.
pub fn generate_checked(
    project_slug: &str,
    deployment_type: DeploymentType,
    branch: Option<&str>,
) -> Result<String> {
    let branch = branch.unwrap_or_default();
    if deployment_type == DeploymentType::Preview && branch.is_empty() {
        return Err(Error::invalid(
            "deployment.branch",
            "a preview deployment needs its branch",
        ));
    }
    Ok(generate(project_slug, deployment_type, branch))
}

/// Splits a subdomain at its last `--`: the project slug after it, the deployment slug (when
/// there is one) before it, as the TypeScript package does. Any text is accepted: a name that is
/// not a generated one still splits the same way.
pub fn parse(subdomain: &str) -> ParsedSubdomain {
    match subdomain.rsplit_once("--") {
        None => ParsedSubdomain {
            deployment_type: DeploymentType::Production,
            project: subdomain.to_owned(),
            branch: None,
        },
        Some(("staging", project)) => ParsedSubdomain {
            deployment_type: DeploymentType::Staging,
            project: project.to_owned(),
            branch: None,
        },
        Some((branch, project)) => ParsedSubdomain {
            deployment_type: DeploymentType::Preview,
            project: project.to_owned(),
            branch: Some(branch.to_owned()),
        },
    }
}

impl ParsedSubdomain {
    /// What precedes the project slug: `staging`, the branch part, or `None` for production.
    pub fn deployment_slug(&self) -> Option<&str> {
        match self.deployment_type {
            DeploymentType::Production => None,
            DeploymentType::Staging => Some("staging"),
            DeploymentType::Preview => self.branch.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(label: &str) -> bool {
        !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    }

    #[test]
    fn the_three_types() {
        assert_eq!(
            generate("My-App", DeploymentType::Production, "main"),
            "my-app"
        );
        assert_eq!(
            generate("my-app", DeploymentType::Staging, "main"),
            "staging--my-app"
        );
        assert_eq!(
            generate("my-app", DeploymentType::Preview, "feature/Login_Page.v2"),
            "feature-login-page-v2--my-app"
        );
    }

    #[test]
    fn parts_are_normalised() {
        assert_eq!(normalize("--Hello__World!!"), "hello-world");
        assert_eq!(normalize("a...b///c"), "a-b-c");
        assert_eq!(normalize("Ünïcödé"), "n-c-d");
        assert!(normalize("日本語").starts_with('x'));
        assert_eq!(normalize("日本語"), normalize("日本語"));
        assert_ne!(normalize("日本語"), normalize("中文"));
        assert!(normalize("").starts_with('x'));
    }

    #[test]
    fn long_names_stay_valid_unique_and_stable() {
        let long_project = "p".repeat(100);
        let production = generate(&long_project, DeploymentType::Production, "");
        assert_eq!(production.len(), MAX_LABEL);
        assert!(is_dns_label(&production));
        assert_eq!(
            production,
            generate(&long_project, DeploymentType::Production, "")
        );
        let staging = generate(&long_project, DeploymentType::Staging, "");
        assert!(staging.len() <= MAX_LABEL && is_dns_label(&staging));
        let a = generate(
            "app",
            DeploymentType::Preview,
            &format!("{}-one", "b".repeat(80)),
        );
        let b = generate(
            "app",
            DeploymentType::Preview,
            &format!("{}-two", "b".repeat(80)),
        );
        assert_ne!(a, b);
        assert!(a.len() <= MAX_LABEL && is_dns_label(&a));
        assert!(a.ends_with("--app"));
        let both_long = generate(&long_project, DeploymentType::Preview, &"c".repeat(90));
        assert!(
            both_long.len() <= MAX_LABEL && is_dns_label(&both_long),
            "{both_long}"
        );
    }

    #[test]
    fn generated_names_parse_back() {
        let cases = [
            ("shop", DeploymentType::Production, "", "shop", None),
            ("shop", DeploymentType::Staging, "", "shop", None),
            (
                "shop",
                DeploymentType::Preview,
                "fix/Cart",
                "shop",
                Some("fix-cart"),
            ),
        ];
        for (project, kind, branch, parsed_project, parsed_branch) in cases {
            let parsed = parse(&generate(project, kind, branch));
            assert_eq!(parsed.deployment_type, kind);
            assert_eq!(parsed.project, parsed_project);
            assert_eq!(parsed.branch.as_deref(), parsed_branch);
        }
        let long = parse(&generate(
            &"q".repeat(99),
            DeploymentType::Preview,
            &"r".repeat(99),
        ));
        assert_eq!(long.deployment_type, DeploymentType::Preview);
    }

    #[test]
    fn parse_splits_at_the_last_separator() {
        let parsed = parse("a--b--c");
        assert_eq!(parsed.project, "c");
        assert_eq!(parsed.deployment_slug(), Some("a--b"));
        assert_eq!(parse("Not.A.Label").project, "Not.A.Label");
        assert_eq!(parse("Not.A.Label").deployment_slug(), None);
        assert_eq!(parse("staging--x").deployment_slug(), Some("staging"));
    }

    #[test]
    fn checked_generation_refuses_unknown_types_and_previews_without_branch() {
        let refused = DeploymentType::from_deployment_field("beta").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Invalid deployment.type: must be 'production', 'staging' or 'preview' (got 'beta')"
        );
        assert_eq!(
            DeploymentType::from_deployment_field("preview").ok(),
            Some(DeploymentType::Preview)
        );
        for branch in [None, Some("")] {
            let refused = generate_checked("shop", DeploymentType::Preview, branch).unwrap_err();
            assert_eq!(
                refused.to_string(),
                "Invalid deployment.branch: a preview deployment needs its branch"
            );
        }
        assert_eq!(
            generate_checked("shop", DeploymentType::Staging, None).ok(),
            Some("staging--shop".to_owned())
        );
    }
}
