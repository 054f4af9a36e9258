//! `@mastra/runner-local`: builds Mastra projects and runs them as supervised local processes.
//!
//! The flow a caller drives: a project's source is copied into a per-build directory, its
//! dependencies installed and its `build` script run; a build is deployed as a `node` child
//! process on a free port and resolves once it answers its health check; its output is kept in a
//! bounded log; it is stopped by killing its whole process tree.
//!
//! The crate is a pure-Rust core with no napi types, testable with `cargo test
//! --no-default-features`, and a thin binding layer (`binding`, feature `node`) that only
//! converts between JS values and core types.
//!
//! Core modules:
//! - [`build`]: package-manager detection, the build queue, install / build / verify;
//! - [`config`]: defaults and validation of the runner configuration;
//! - [`logs`]: line framing, bounded log stores and live subscriptions;
//! - [`process`]: spawning children, killing process trees, leftovers of dead hosts;
//! - [`runner`]: the object that owns builds, servers and ports;
//! - [`source`]: finding local Mastra projects, access checks, copying a project for a build;
//! - [`subdomain`]: DNS-label subdomains for deployments, and parsing them back;
//! - [`validate`]: checks of caller-supplied values, with errors that name the argument;
//! - [`ports`]: hands out free ports of the configured range;
//! - [`health`]: HTTP health checks and the deploy's wait for a healthy server;
//! - [`diagnostics`]: the runner's own `tracing` output;
//! - [`error`]: the one error type.

pub mod build;
pub mod config;
pub mod diagnostics;
pub mod error;
pub mod health;
pub mod logs;
pub mod ports;
pub mod process;
pub mod runner;
pub mod source;
pub mod subdomain;
pub mod validate;

#[cfg(feature = "node")]
mod binding;
