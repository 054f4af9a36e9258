//! The napi binding: converts between JS values and core types, nothing more.
//!
//! This is the only module that names napi types. Core errors become JS `Error`s here, in
//! [`error`], with the core error's message unchanged and its `code`.

mod build;
mod convert;
mod delivery;
mod entities;
mod error;
mod health;
mod isolation;
mod logs;
mod observability;
mod ports;
mod process;
mod provider;
mod runner;
mod source;
mod subdomain;

use napi::Env;
use napi::bindgen_prelude::{Object, Result};
use napi_derive::napi;

use crate::diagnostics;

/// Runs once when Node loads the addon: installs the diagnostics subscriber and the exit hook
/// that kills every process the runner started when Node exits normally.
#[napi(module_exports)]
pub fn init(_exports: Object, env: Env) -> Result<()> {
    diagnostics::init_from_env();
    // The failure keeps its `code`: it becomes a JS `Error` of ours before napi throws it.
    process::install_exit_hook(&env).map_err(|failure| error::rejection(&env, failure))
}
