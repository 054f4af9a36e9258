//! The one place JS arguments become typed values.
//!
//! A `#[napi]` method names each parameter's type as [`Arg<T, N>`]: `T` is the value the method
//! wants (a `String`, an [`Int`], a core request) and `N` the argument's name as errors spell it
//! (a marker made by [`arg_names!`]). napi converts the argument before the method runs; a value
//! that does not fit throws the package's own `Error` — `Invalid serverId: expected a string, got
//! number 5`, with `code` `ERR_INVALID_ARG_TYPE` or `ERR_INVALID_ARG_VALUE` — never napi's
//! generic conversion message, so messages callers match on stay the same.
//!
//! Why not napi's own typed parameters and `#[napi(object)]` options: their conversion errors
//! name Rust types and carry napi's status codes, and the package promises Node's codes and the
//! messages of the TypeScript version it replaces.
//!
//! A Promise-returning method takes [`PromisedArg<T, N>`] instead, whose failure rejects the
//! Promise rather than throwing.
//!
//! The TypeScript type of such a parameter is given beside it with `#[napi(ts_arg_type = "…")]`,
//! since the type generator only sees `Arg`.
//!
//! Inside: [`values`] holds the value kinds (`String`, [`Int`], [`Port`], [`Required`], …),
//! [`read`] the readers they are made of (which also read fields of objects), and [`json`] the
//! JS → JSON conversion behind [`Json`] that names the offending field.

pub(crate) mod json;
mod process;
pub(crate) mod read;
mod runner;
mod values;

use std::marker::PhantomData;
use std::ops::Deref;

use napi::bindgen_prelude::{Env, FromNapiValue, TypeName, Unknown, ValidateNapiValue};
use napi::{Status, ValueType, sys};

pub(crate) use process::{
    AnyFunction, CallbackArg, DeploymentIdArg, Fields, LineArg, PlainObject, ServerIdArg,
    StringList,
};
pub(crate) use read::{LineCallback, cwd};
pub(crate) use runner::{
    BuiltBuild, BuiltProject, DeployedDeployment, DeployedProject, EntityId, ServerId,
};
pub(crate) use values::{Callback, DateMs, Int, Json, NonEmptyString, Port, Required, require};

use super::error::{Result, rejection};

/// An argument's name, as its errors say it (`serverId`, `options`).
pub trait ArgName {
    /// The name.
    const NAME: &'static str;
}

/// Declares argument-name markers: `arg_names! { ServerIdArg = "serverId"; }`.
macro_rules! arg_names {
    ($($(#[$doc:meta])* $marker:ident = $name:literal;)*) => {
        $(
            $(#[$doc])*
            #[doc = concat!("The argument `", $name, "`.")]
            pub struct $marker;

            impl $crate::binding::convert::ArgName for $marker {
                const NAME: &'static str = $name;
            }
        )*
    };
}
pub(crate) use arg_names;

/// A value read from one JS argument; its errors name the argument.
pub trait FromArg: Sized {
    /// Reads `value` (`undefined` when the caller left the argument out) as argument `name`.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self>;
}

/// A method parameter: a `T` read from the JS argument named `N`.
pub struct Arg<T, N> {
    value: T,
    name: PhantomData<fn() -> N>,
}

impl<T, N> Arg<T, N> {
    /// The value read.
    pub(crate) fn into_inner(self) -> T {
        self.value
    }
}

impl<T, N> Deref for Arg<T, N> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: FromArg, N: ArgName> FromNapiValue for Arg<T, N> {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        // SAFETY: napi hands over a live value of the current call.
        let unknown = unsafe { Unknown::from_napi_value(env, value) }?;
        match T::from_arg(&unknown, N::NAME) {
            Ok(value) => Ok(Arg {
                value,
                name: PhantomData,
            }),
            // JS the reading ran (a getter) threw: napi throws that exception, as it is.
            Err(_) if exception_pending(env) => {
                Err(napi::Error::from_status(Status::PendingException))
            }
            Err(failure) => Err(rejection(&Env::from_raw(env), failure)),
        }
    }
}

/// Whether an exception is pending on `env` (JS code that a conversion ran threw).
fn exception_pending(env: sys::napi_env) -> bool {
    let mut pending = false;
    // SAFETY: `env` is the live environment of the current call; `pending` outlives the call.
    let status = unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    status == sys::Status::napi_ok && pending
}

/// A parameter whose failure the method reports itself: a Promise-returning method rejects
/// with it (as the TypeScript version's `async` methods do) instead of throwing, and a method
/// that must report other arguments' faults first takes it after them.
pub struct PromisedArg<T, N> {
    value: Result<T>,
    name: PhantomData<fn() -> N>,
}

impl<T, N> PromisedArg<T, N> {
    /// The value read, or the failure the Promise rejects with.
    pub(crate) fn into_result(self) -> Result<T> {
        self.value
    }
}

impl<T: FromArg, N: ArgName> FromNapiValue for PromisedArg<T, N> {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        // SAFETY: napi hands over a live value of the current call.
        let unknown = unsafe { Unknown::from_napi_value(env, value) }?;
        Ok(PromisedArg {
            value: T::from_arg(&unknown, N::NAME),
            name: PhantomData,
        })
    }
}

impl<T, N> TypeName for PromisedArg<T, N> {
    fn type_name() -> &'static str {
        "argument"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl<T: FromArg, N: ArgName> ValidateNapiValue for PromisedArg<T, N> {}

impl<T, N> TypeName for Arg<T, N> {
    fn type_name() -> &'static str {
        "argument"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl<T: FromArg, N: ArgName> ValidateNapiValue for Arg<T, N> {}

impl<T: FromArg> FromArg for Option<T> {
    /// `undefined` and `null` are `None`; anything else must read as `T`.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        match value.get_type()? {
            ValueType::Undefined | ValueType::Null => Ok(None),
            _ => T::from_arg(value, name).map(Some),
        }
    }
}
