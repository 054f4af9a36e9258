//! Plain arguments (ports, hosts) checked with the core's rules, so a bad one becomes an
//! `Error` that names it: `Invalid port: must be an integer from 1 to 65535 (got 0)`.

use napi::bindgen_prelude::{Result, Unknown};
use serde_json::Value;

use crate::config;

use super::{json, to_js_error};

/// `value` as JSON; a missing argument is `null`.
fn to_json(value: Option<Unknown<'_>>, name: &str) -> Result<Value> {
    value.map_or(Ok(Value::Null), |v| json::to_json(&v, name))
}

/// A port the caller must pass.
pub(crate) fn port(value: Option<Unknown<'_>>, name: &str) -> Result<u16> {
    config::port_from_json(&to_json(value, name)?, name).map_err(to_js_error)
}

/// A port the caller may leave out (`undefined` or `null`).
pub(crate) fn optional_port(value: Option<Unknown<'_>>, name: &str) -> Result<Option<u16>> {
    match to_json(value, name)? {
        Value::Null => Ok(None),
        json => config::port_from_json(&json, name)
            .map(Some)
            .map_err(to_js_error),
    }
}

/// A string the caller must pass.
pub(crate) fn string(value: Option<Unknown<'_>>, name: &str) -> Result<String> {
    let json = to_json(value, name)?;
    config::string_from_json(&json, name)
        .map(str::to_owned)
        .map_err(to_js_error)
}

/// A JSON object (or `null` when left out) for a core validator that names its fields itself.
pub(crate) fn options(value: Option<Unknown<'_>>, name: &str) -> Result<Value> {
    to_json(value, name)
}
