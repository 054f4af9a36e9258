//! `@mastra/runner-local`: builds Mastra projects and runs them as supervised local processes.
//!
//! The flow a caller drives: source → build → deploy → supervise → stop.
//! 1. A project's source is copied into a per-build directory by a source provider
//!    ([`runner::SourceProvider`]: a JS object, or the built-in local copy);
//! 2. its dependencies are installed and its `build` script run, in a FIFO queue
//!    ([`builder`]);
//! 3. a build is deployed as a `node` child process on a free port ([`ports`],
//!    [`process::spawn`]) and resolves once it answers its health check ([`health`]) and, with a
//!    router ([`runner::Router`]), once its route is registered;
//! 4. one supervisor task per server ([`runner::supervisor`]) alone owns that server's state: it
//!    notices exits, restarts under the restart policy, answers health checks, and takes the tree
//!    down when asked; its output is kept in a bounded log ([`logs`]);
//! 5. `stop` removes the route and kills the whole process tree; `shutdown` does that for every
//!    server and build, including those in flight.
//!
//! The crate is a pure-Rust core with no napi types, testable with `cargo test
//! --no-default-features`, and a thin binding layer (`binding`, feature `node`) that only
//! converts between JS values and core types.
//!
//! Core modules:
//! - [`builder`]: package-manager detection, the build queue, install / build / verify;
//! - [`config`]: defaults and validation of the runner configuration;
//! - [`logs`]: line framing, bounded log stores and live subscriptions;
//! - [`observability`]: server and build logs written as JSONL files to a file storage;
//! - [`process`]: spawning children, killing process trees, leftovers of dead hosts;
//! - [`runner`]: `Runner`, a facade over the owners of servers (with their port leases),
//!   deployments, builds and logs; the verbs (`deploy`, drain, data, adoption); one
//!   [`runner::supervisor`] task per server; the provider traits;
//! - [`source`]: finding local Mastra projects, access checks, copying a project for a build;
//! - [`subdomain`]: DNS-label subdomains for deployments, and parsing them back;
//! - [`validate`]: checks of caller-supplied values, with errors that name the argument;
//! - [`ports`]: hands out free ports of the configured range;
//! - [`health`]: HTTP health checks and the deploy's wait for a healthy server;
//! - [`diagnostics`]: the runner's own `tracing` output;
//! - [`error`]: the one error type, with the stable `code` JS sees;
//! - [`ids`]: random UUIDs for servers and events;
//! - [`sync`]: the one lock helper and the boxed future of the crate's traits.
//!
//! Shared words live in leaf modules (`ports::range`, `process::exit`, `sync`, `logs::observer`)
//! so that no core module imports one that imports it back; `scripts/house-rules.mjs` checks
//! that, and that no file is over 700 lines before its tests.

pub mod builder;
pub mod config;
pub mod diagnostics;
pub mod error;
pub mod health;
pub mod ids;
pub mod isolation;
pub mod logs;
pub mod observability;
pub mod ports;
pub mod process;
pub mod runner;
pub mod source;
pub mod subdomain;
pub mod sync;
#[cfg(test)]
mod test_support;
pub mod validate;

#[cfg(feature = "node")]
mod binding;
