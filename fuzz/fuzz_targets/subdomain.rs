//! Any project slug and branch give a valid DNS label that parses back to a project part.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mastra_runner_local::subdomain::{self, DeploymentType};

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let (project, branch) = text.split_once('\u{1}').unwrap_or((&text, "b"));
    for kind in [DeploymentType::Production, DeploymentType::Staging, DeploymentType::Preview] {
        let label = subdomain::generate(project, kind, branch);
        assert!(!label.is_empty() && label.len() <= 63, "{label:?}");
        assert!(label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert!(!label.starts_with('-') && !label.ends_with('-'));
        assert!(!subdomain::parse(&label).project.is_empty(), "{label:?}");
    }
});
