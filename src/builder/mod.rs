//! Builds: from a populated working directory to a verified `.mastra/output/index.mjs`.
//!
//! - [`package_manager`]: which package manager a project uses (SPEC §3 detection rules) and
//!   the arguments that install it and run its build script;
//! - [`layout`]: id rules, the per-build directories under `buildDir` and the shared caches;
//! - [`queue`]: the FIFO queue that caps how many builds run at once;
//! - [`project`]: [`ProjectBuilder`], which queues, runs and cancels builds;
//! - [`provision`]: the package manager at the version the project names: what to fetch and
//!   the digest it must have;
//! - [`pm_cache`]: its cached tarballs and the private copy each build runs it from;
//! - `dependency_scripts`: pnpm's policy for dependencies' build scripts, and the packages
//!   whose scripts an install skipped;
//! - `pipeline`: the steps of one build (detect, install, build script, verify), with the
//!   package manager made ready (`pipeline/provide`: fetched and verified; `pipeline/tool`:
//!   found and asked for its version) and the place of the install (`pipeline/install_root`);
//! - `excerpt`: the lines of a failed step that explain it, for `errorMessage`.
//!
//! A build's failure (install, build script, missing output, timeout) is an outcome, not an
//! error: [`BuildOutcome`] says what failed and how. Errors are kept for misuse (a bad id, a
//! build id already in flight, a path outside `buildDir`).

pub mod cache;
mod dependency_scripts;
mod excerpt;
pub mod layout;
pub mod package_manager;
mod pipeline;
pub mod pm_cache;
pub mod project;
pub mod provision;
pub mod queue;
pub mod reuse;

pub use layout::{Caches, clean_build_dir, remove_build_dir};
pub use package_manager::{
    Detection, DetectionSource, PackageManager, alone_args, build_args, detect, has_build_script,
    install_args, mastra_build_args, quiet_install_args,
};
pub use pipeline::{OUTPUT_ENTRY, output_entry};
pub use project::{
    BuildOptions, BuildOutcome, BuildRequest, BuildStatus, BuilderConfig, DEFAULT_BUILD_LOG_LINES,
    ProjectBuilder,
};
