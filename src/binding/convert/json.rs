//! JS values to JSON for the core's validators.
//!
//! napi's serde conversion fails on `NaN`, functions or symbols without saying where; this one
//! names the offending field (`healthCheck.timeoutMs`) so the caller's `Error` does too.

use napi::ValueType;
use napi::bindgen_prelude::{JsObjectValue, JsValue, Object, Unknown};

use crate::binding::error::{JsFailure, Result};
use serde_json::{Map, Number, Value};

/// Deeper nesting than this is a cycle or a mistake; no config is that deep.
const MAX_DEPTH: usize = 16;

/// Converts `value` (argument or field `path`) to JSON; `undefined` becomes `null`.
pub(crate) fn to_json(value: &Unknown<'_>, path: &str) -> Result<Value> {
    convert(value, path, 0)
}

/// A JS number that holds an integer exactly, as a JSON integer (so `42` is not shown as `42.0`).
fn whole_number(number: f64) -> Option<Number> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    (number.fract() == 0.0 && number.abs() <= MAX_SAFE).then(|| Number::from(number as i64))
}

fn convert(value: &Unknown<'_>, path: &str, depth: usize) -> Result<Value> {
    // SAFETY (every `cast` below): the value's type was checked by `get_type` just before.
    match value.get_type()? {
        ValueType::Undefined | ValueType::Null => Ok(Value::Null),
        ValueType::Boolean => Ok(Value::Bool(unsafe { value.cast::<bool>() }?)),
        ValueType::String => Ok(Value::String(unsafe { value.cast::<String>() }?)),
        ValueType::Number => {
            let number = unsafe { value.cast::<f64>() }?;
            let json = whole_number(number).or_else(|| Number::from_f64(number));
            json.map(Value::Number).ok_or_else(|| {
                let shown = if number.is_nan() {
                    "NaN"
                } else if number > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                JsFailure::invalid(path, format!("must be a finite number (got {shown})"))
            })
        }
        ValueType::Object if depth >= MAX_DEPTH => {
            Err(JsFailure::invalid(path, "is nested too deeply (a cycle?)"))
        }
        ValueType::Object => {
            let object = unsafe { value.cast::<Object>() }?;
            if object.is_array()? {
                let mut items = Vec::new();
                for index in 0..object.get_array_length()? {
                    let item = object.get_element::<Unknown>(index)?;
                    items.push(convert(&item, &format!("{path}[{index}]"), depth + 1)?);
                }
                return Ok(Value::Array(items));
            }
            let mut fields = Map::new();
            for key in Object::keys(&object)? {
                let child = format!("{path}.{key}");
                let child = child.trim_start_matches("config.");
                let field = object.get::<Unknown>(&key)?;
                let converted = match field {
                    Some(field) => convert(&field, child, depth + 1)?,
                    None => Value::Null,
                };
                fields.insert(key, converted);
            }
            Ok(Value::Object(fields))
        }
        other => Err(JsFailure::invalid(
            path,
            format!(
                "expected a string, number, boolean, object or array, got a {}",
                other.to_string().to_lowercase()
            ),
        )),
    }
}
