//! The values an argument can be read as, each with the wording of the TypeScript package.

use napi::bindgen_prelude::{FunctionRef, JsValuesTupleIntoVec, Unknown};
use serde_json::Value;

use super::FromArg;
use crate::binding::args;
use crate::binding::error::Result;
use crate::logs::Stream;

impl FromArg for String {
    /// A string; anything else (`undefined` too) is "expected a string, got …".
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        args::string(value, name)
    }
}

/// An integer from `MIN` to `MAX` (inclusive).
pub struct Int<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> FromArg for Int<MIN, MAX> {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        args::integer(value, name, MIN, MAX).map(Int)
    }
}

/// A TCP port, 1–65535.
pub struct Port(pub u16);

impl FromArg for Port {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        args::port(Some(*value), name).map(Port)
    }
}

/// A valid `Date`, as milliseconds since the epoch (dates before 1970 count as 0).
pub struct DateMs(pub u64);

impl FromArg for DateMs {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        args::date_ms(value, name).map(DateMs)
    }
}

impl FromArg for Stream {
    /// `'stdout'` (also when left out) or `'stderr'`.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        args::stream(Some(value), name)
    }
}

/// Any JSON-shaped value (an options object for a core validator that names its fields);
/// `undefined` is `null`.
pub struct Json(pub Value);

impl FromArg for Json {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        args::options(Some(*value), name).map(Json)
    }
}

impl<Args: JsValuesTupleIntoVec, Return> FromArg for FunctionRef<Args, Return> {
    /// A function, kept beyond the call; anything else is "expected a function, got …".
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        args::callback(value, name)
    }
}
