//! The argument kinds of the process and log-stream exports: required values, JS objects and
//! functions used during the call, and options objects read field by field by a core parser.

use napi::bindgen_prelude::{Env, FromNapiValue, JsValue, Object, Unknown};
use napi::sys;
use serde_json::{Map, Value};

use super::json;
use super::read;
use super::values::given;
use super::{FromArg, arg_names};
use crate::binding::error::{JsFailure, Result};
use crate::logs::LineFormat;
use crate::process::ManagerOptions;

arg_names! {
    LineArg = "line";
    CallbackArg = "callback";
    ServerIdArg = "serverId";
    DeploymentIdArg = "deploymentId";
}

/// A JS value of the current call, kept as its handle so the method can use the value itself
/// (take a reference to it, compare it, call it).
///
/// The handle belongs to the call's handle scope: it is read back only through the method's own
/// `env`, and never kept beyond the method.
pub struct CallValue {
    env: sys::napi_env,
    value: sys::napi_value,
}

impl CallValue {
    fn of(value: &Unknown<'_>) -> Self {
        let raw = value.value();
        CallValue {
            env: raw.env,
            value: raw.value,
        }
    }

    /// The value, as the call's `env` sees it.
    pub(crate) fn get<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        debug_assert_eq!(env.raw(), self.env);
        // SAFETY: the handle came with this call and the method still runs (see the type's doc).
        Ok(unsafe { Unknown::from_napi_value(env.raw(), self.value) }?)
    }
}

/// A plain object (not an array, not a function) the caller must pass; `undefined` and `null`
/// are "is required".
pub struct PlainObject(CallValue);

impl PlainObject {
    /// The object, as the call's `env` sees it.
    pub(crate) fn get<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let value = self.0.get(env)?;
        // SAFETY: `from_arg` checked that it is an object.
        Ok(unsafe { value.cast::<Object>() }?)
    }

    /// The object as an `Unknown`, for a reference to it.
    pub(crate) fn unknown<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        self.0.get(env)
    }
}

impl FromArg for PlainObject {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::object(given(value)?, name)?;
        Ok(PlainObject(CallValue::of(value)))
    }
}

/// A function the caller must pass, of whatever signature; `undefined` and `null` read as left
/// out ("expected a function, got undefined").
pub struct AnyFunction(CallValue);

impl AnyFunction {
    /// The function as an `Unknown`, to compare it or to keep it as a typed callback.
    pub(crate) fn get<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        self.0.get(env)
    }
}

impl FromArg for AnyFunction {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        read::required_callback::<(), ()>(given(value)?, name)?;
        Ok(AnyFunction(CallValue::of(value)))
    }
}

/// An options object a core parser reads: only the fields it names become JSON (the others
/// may hold any JS value, as when the binding read fields one by one), and the parser names
/// the field that is wrong. Not an object is "expected an object, got …".
pub trait FromFields: Sized {
    /// The fields the parser reads.
    const FIELDS: &'static [&'static str];

    /// Parses `options` (an object of the named fields, or `null`) as argument `name`.
    fn from_fields(options: &Value, name: &str) -> crate::error::Result<Self>;
}

/// An options argument read by its core parser (see [`FromFields`]); `undefined` and `null` are
/// no options.
pub struct Fields<T>(pub T);

impl<T: FromFields> FromArg for Fields<T> {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let options = if given(value)?.is_none() {
            Value::Null
        } else {
            let object = read::object(Some(value), name)?;
            let mut fields = Map::new();
            for field in T::FIELDS {
                if let Some(given) = object.get::<Unknown>(field)? {
                    let path = format!("{name}.{field}");
                    fields.insert((*field).to_owned(), json::to_json(&given, &path)?);
                }
            }
            Value::Object(fields)
        };
        Ok(Fields(T::from_fields(&options, name)?))
    }
}

impl FromFields for ManagerOptions {
    const FIELDS: &'static [&'static str] = ManagerOptions::FIELDS;

    fn from_fields(options: &Value, name: &str) -> crate::error::Result<Self> {
        ManagerOptions::from_json(options, name)
    }
}

/// An array of strings (`lines[1]` names a wrong item).
pub struct StringList(pub Vec<String>);

impl FromArg for StringList {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let items = match json::to_json(value, name)? {
            Value::Array(items) => items,
            other => {
                return Err(JsFailure::invalid(
                    name,
                    crate::validate::expected("an array of strings", &other),
                ));
            }
        };
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                crate::validate::string(&format!("{name}[{index}]"), &item)
                    .map(str::to_owned)
                    .map_err(JsFailure::from)
            })
            .collect::<Result<_>>()
            .map(StringList)
    }
}

impl FromArg for LineFormat {
    /// A build log line's format, read from the whole options object by the core.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        Ok(LineFormat::from_json(&json::to_json(value, name)?, name)?)
    }
}
