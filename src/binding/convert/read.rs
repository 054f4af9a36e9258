//! The readers behind the value kinds: each JS value is checked (most by turning it into JSON
//! for the core's `validate` rules), so that a wrong argument becomes an `Error` naming it.
//!
//! They take `Option<&Unknown>` where a missing value (a left-out field, an argument napi read
//! as absent) has its own wording, such as `is required`.

use napi::bindgen_prelude::{FunctionRef, JsValue, Unknown};
use napi::threadsafe_function::UnknownReturnValue;
use napi::{JsDate, ValueType};
use serde_json::Value;

use super::json;
use crate::binding::error::{JsFailure, Result, to_js_error};
use crate::error::Mismatch;
use crate::logs::Stream;
use crate::validate;

/// A JS callback taking one line, whose return value is ignored.
pub(crate) type LineCallback = FunctionRef<String, UnknownReturnValue>;

fn value(argument: Option<&Unknown<'_>>, name: &str) -> Result<Value> {
    match argument {
        Some(argument) => json::to_json(argument, name),
        None => Ok(Value::Null),
    }
}

/// A required integer from `min` to `max`.
pub(crate) fn integer(argument: &Unknown<'_>, name: &str, min: u64, max: u64) -> Result<u64> {
    validate::integer(name, &value(Some(argument), name)?, min, max).map_err(to_js_error)
}

/// An integer from `min` to `max`, or `None` when `undefined` / `null`.
pub(crate) fn optional_integer(
    argument: Option<&Unknown<'_>>,
    name: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>> {
    match value(argument, name)? {
        Value::Null => Ok(None),
        present => validate::integer(name, &present, min, max)
            .map(Some)
            .map_err(to_js_error),
    }
}

/// A required string.
pub(crate) fn string(argument: &Unknown<'_>, name: &str) -> Result<String> {
    if argument.get_type()? == ValueType::String {
        // SAFETY: the type was just checked.
        return Ok(unsafe { argument.cast::<String>() }?);
    }
    Err(JsFailure::invalid(name, expected("a string", argument)?))
}

/// An optional string (`undefined` / `null` give `None`).
pub(crate) fn optional_string(
    argument: Option<&Unknown<'_>>,
    name: &str,
) -> Result<Option<String>> {
    match argument {
        Some(a) if !matches!(a.get_type()?, ValueType::Undefined | ValueType::Null) => {
            string(a, name).map(Some)
        }
        _ => Ok(None),
    }
}

/// `'stdout'` (the default) or `'stderr'`.
pub(crate) fn stream(argument: Option<&Unknown<'_>>, name: &str) -> Result<Stream> {
    match value(argument, name)? {
        Value::Null => Ok(Stream::Stdout),
        tag => match validate::one_of(name, &tag, &["stdout", "stderr"]).map_err(to_js_error)? {
            "stderr" => Ok(Stream::Stderr),
            _ => Ok(Stream::Stdout),
        },
    }
}

/// A valid `Date`, as milliseconds since the epoch (dates before 1970 count as 0).
pub(crate) fn date_ms(argument: &Unknown<'_>, name: &str) -> Result<u64> {
    if argument.get_type()? == ValueType::Object && argument.is_date()? {
        // SAFETY: the value was just checked to be a Date.
        let date = unsafe { argument.cast::<JsDate>() }?;
        let ms = date.value_of()?;
        if ms.is_nan() {
            return Err(JsFailure::invalid(name, "is an invalid Date"));
        }
        return Ok(ms.max(0.0) as u64);
    }
    Err(JsFailure::invalid(name, expected("a Date", argument)?))
}

/// A plain object (not an array, not a function) the caller must pass.
pub(crate) fn object<'env>(
    argument: Option<&Unknown<'env>>,
    name: &str,
) -> Result<napi::bindgen_prelude::Object<'env>> {
    match argument {
        Some(value) if value.get_type()? == ValueType::Object && !value.is_array()? => {
            // SAFETY: the type was just checked.
            Ok(unsafe { value.cast::<napi::bindgen_prelude::Object>() }?)
        }
        Some(value) if value.get_type()? != ValueType::Undefined => {
            Err(JsFailure::invalid(name, expected("an object", value)?))
        }
        _ => Err(JsFailure::invalid(name, "is required")),
    }
}

/// A function, kept beyond this call.
pub(crate) fn callback<Args, Return>(
    argument: &Unknown<'_>,
    name: &str,
) -> Result<FunctionRef<Args, Return>>
where
    Args: napi::bindgen_prelude::JsValuesTupleIntoVec,
{
    if argument.get_type()? != ValueType::Function {
        return Err(JsFailure::invalid(name, expected("a function", argument)?));
    }
    // SAFETY: the type was just checked.
    Ok(unsafe { argument.cast::<FunctionRef<Args, Return>>() }?)
}

/// A function the caller must pass (a missing one reads as `undefined`).
pub(crate) fn required_callback<Args, Return>(
    argument: Option<&Unknown<'_>>,
    name: &str,
) -> Result<FunctionRef<Args, Return>>
where
    Args: napi::bindgen_prelude::JsValuesTupleIntoVec,
{
    match argument {
        Some(value) => callback(value, name),
        None => Err(JsFailure::invalid(
            name,
            Mismatch::new("a function", "undefined"),
        )),
    }
}

/// "expected X, got Y" for any JS value, including those JSON cannot hold.
fn expected(what: &str, argument: &Unknown<'_>) -> Result<Mismatch> {
    let got = match argument.get_type()? {
        ValueType::Undefined => "undefined".to_owned(),
        ValueType::Function => "a function".to_owned(),
        ValueType::Symbol => "a symbol".to_owned(),
        ValueType::BigInt => "a bigint".to_owned(),
        ValueType::Object if argument.is_date()? => "a Date".to_owned(),
        ValueType::Object if argument.is_array()? => "an array".to_owned(),
        ValueType::Object => "an object".to_owned(),
        _ => {
            let primitive = json::to_json(argument, "value")?;
            return Ok(validate::expected(what, &primitive));
        }
    };
    Ok(Mismatch::new(what, &got))
}

/// A port (1–65535) the caller must pass.
pub(crate) fn port(argument: Option<Unknown<'_>>, name: &str) -> Result<u16> {
    validate::port(name, &value(argument.as_ref(), name)?).map_err(to_js_error)
}

/// A string the caller must pass (`undefined` → "is required").
pub(crate) fn required_string(argument: Option<Unknown<'_>>, name: &str) -> Result<String> {
    match argument {
        Some(argument) if argument.get_type()? != ValueType::Undefined => string(&argument, name),
        _ => Err(JsFailure::invalid(name, "is required")),
    }
}

/// An options object (or `null` when left out) for a core validator that names its fields.
pub(crate) fn options(argument: Option<Unknown<'_>>, name: &str) -> Result<Value> {
    value(argument.as_ref(), name)
}

/// Field `field` of the options object argument `name`; `None` when the options or the field
/// are absent. Options that are not an object are an error.
pub(crate) fn field<'env>(
    options: Option<&Unknown<'env>>,
    name: &str,
    field: &str,
) -> Result<Option<Unknown<'env>>> {
    let Some(options) = options else {
        return Ok(None);
    };
    match options.get_type()? {
        ValueType::Undefined | ValueType::Null => Ok(None),
        ValueType::Object if !options.is_array()? => {
            // SAFETY: the type was just checked.
            let object = unsafe { options.cast::<napi::bindgen_prelude::Object>() }?;
            Ok(object.get::<Unknown>(field)?)
        }
        _ => Err(JsFailure::invalid(name, expected("an object", options)?)),
    }
}

/// The host's working directory, against which `what` (a relative path argument) is resolved.
pub(crate) fn cwd(what: &str) -> Result<std::path::PathBuf> {
    std::env::current_dir().map_err(|e| {
        to_js_error(crate::error::Error::Io {
            action: format!("resolve {what} against"),
            path: std::path::PathBuf::from("the current working directory"),
            reason: e.to_string(),
        })
    })
}
