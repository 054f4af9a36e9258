//! The values an argument can be read as, each with the wording of the TypeScript package.

use napi::ValueType;
use napi::bindgen_prelude::{FunctionRef, JsValuesTupleIntoVec, Unknown};
use serde_json::Value;

use super::FromArg;
use super::read;
use crate::binding::error::{JsFailure, Result};
use crate::logs::Stream;

impl FromArg for String {
    /// A string; anything else (`undefined` too) is "expected a string, got …".
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::string(value, name)
    }
}

/// An integer from `MIN` to `MAX` (inclusive).
pub struct Int<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> FromArg for Int<MIN, MAX> {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::integer(value, name, MIN, MAX).map(Int)
    }
}

/// A TCP port, 1–65535.
pub struct Port(pub u16);

impl FromArg for Port {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::port(Some(*value), name).map(Port)
    }
}

/// A valid `Date`, as milliseconds since the epoch (dates before 1970 count as 0).
pub struct DateMs(pub u64);

impl FromArg for DateMs {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::date_ms(value, name).map(DateMs)
    }
}

impl FromArg for Stream {
    /// `'stdout'` (also when left out) or `'stderr'`.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::stream(Some(value), name)
    }
}

/// Any JSON-shaped value (an options object for a core validator that names its fields);
/// `undefined` is `null`.
pub struct Json(pub Value);

impl FromArg for Json {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::options(Some(*value), name).map(Json)
    }
}

impl<Args: JsValuesTupleIntoVec, Return> FromArg for FunctionRef<Args, Return> {
    /// A function, kept beyond the call; anything else is "expected a function, got …".
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::callback(value, name)
    }
}

/// A value the caller must pass: `undefined` and `null` are "is required" (as an argument napi
/// read as absent always was); anything else must read as `T`.
pub struct Required<T>(pub T);

impl<T: FromArg> FromArg for Required<T> {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        require(value, name)?;
        T::from_arg(value, name).map(Required)
    }
}

/// "is required" when `value` is `undefined` or `null`.
pub(crate) fn require(value: &Unknown<'_>, name: &str) -> Result<()> {
    match given(value)? {
        Some(_) => Ok(()),
        None => Err(JsFailure::invalid(name, "is required")),
    }
}

/// `value`, or `None` when it is `undefined` or `null` (how napi reads a left-out argument).
pub(super) fn given<'value, 'env>(
    value: &'value Unknown<'env>,
) -> Result<Option<&'value Unknown<'env>>> {
    Ok(match value.get_type()? {
        ValueType::Undefined | ValueType::Null => None,
        _ => Some(value),
    })
}

/// A string that is not empty ("must not be empty").
pub struct NonEmptyString(pub String);

impl FromArg for NonEmptyString {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let text = String::from_arg(value, name)?;
        if text.is_empty() {
            return Err(JsFailure::invalid(name, "must not be empty"));
        }
        Ok(NonEmptyString(text))
    }
}

/// A function the caller must pass; `undefined` and `null` both read as left out ("expected a
/// function, got undefined"), as an argument napi read as absent always did.
pub struct Callback<Args: JsValuesTupleIntoVec, Return>(pub FunctionRef<Args, Return>);

impl<Args: JsValuesTupleIntoVec, Return> FromArg for Callback<Args, Return> {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::required_callback(given(value)?, name).map(Callback)
    }
}
