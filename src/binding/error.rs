//! The one place where failures become JS `Error`s with a stable `code`.
//!
//! Binding functions return [`Result`], whose error is a [`JsFailure`]: a code and a message.
//! Core errors convert with their own [`crate::error::Error::code`]; napi's own failures (a JS
//! engine call that failed) are `ERR_INTERNAL`. napi turns a returned failure into a thrown
//! `Error` whose `code` is ours; Promise-returning methods go through [`spawn`], which rejects
//! with the same kind of `Error`.

use std::future::Future;

use napi::bindgen_prelude::{Env, JsError, PromiseRaw, ToNapiValue};

use crate::error::ArgumentReason;

/// The `code` of a JS `Error` thrown or rejected by the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// A failure on its way to JS: an `Error` with `code` and `message`.
#[derive(Debug, Clone)]
pub struct JsFailure {
    /// The stable code (`ERR_INVALID_ARG_TYPE`, `ERR_SERVER_EXITED`, …).
    pub(crate) code: &'static str,
    /// What failed and why.
    pub(crate) message: String,
}

/// The binding's result type.
pub(crate) type Result<T, E = JsFailure> = std::result::Result<T, E>;

impl JsFailure {
    /// A refused argument, made by the core's one constructor ([`crate::error::Error::invalid`]):
    /// `Invalid {name}: {reason}`, coded by the reason's fault.
    pub(crate) fn invalid(name: &str, reason: impl Into<ArgumentReason>) -> Self {
        JsFailure::from(crate::error::Error::invalid(name, reason))
    }

    /// The napi error napi-derive throws for a sync method, carrying our code.
    fn into_napi(self) -> napi::Error<ErrorCode> {
        napi::Error::new(ErrorCode(self.code), self.message)
    }
}

impl From<crate::error::Error> for JsFailure {
    fn from(error: crate::error::Error) -> Self {
        JsFailure {
            code: error.code(),
            message: error.to_string(),
        }
    }
}

impl From<napi::Error> for JsFailure {
    fn from(error: napi::Error) -> Self {
        JsFailure {
            code: "ERR_INTERNAL",
            message: error.reason,
        }
    }
}

impl From<JsFailure> for JsError<ErrorCode> {
    fn from(failure: JsFailure) -> Self {
        JsError::from(failure.into_napi())
    }
}

impl From<JsFailure> for napi::Error<ErrorCode> {
    fn from(failure: JsFailure) -> Self {
        failure.into_napi()
    }
}

/// Turns a core error into the JS failure a caller sees.
pub(crate) fn to_js_error(error: crate::error::Error) -> JsFailure {
    JsFailure::from(error)
}

/// Runs `future` on the runtime and returns a Promise of its value; a failure rejects the
/// Promise with an `Error` that has our `code`.
pub(crate) fn spawn<'env, T, F>(env: &'env Env, future: F) -> napi::Result<PromiseRaw<'env, T>>
where
    T: 'static + Send + ToNapiValue,
    F: 'static + Send + Future<Output = Result<T>>,
{
    spawn_then(env, future, |_, value| Ok(value))
}

/// Like [`spawn`], with `finish` turning the future's value into the JS value on the JS thread
/// (for values that need `env`, such as the caller's own object updated).
pub(crate) fn spawn_then<'env, T, V, F, R>(
    env: &'env Env,
    future: F,
    finish: R,
) -> napi::Result<PromiseRaw<'env, V>>
where
    T: 'static + Send,
    V: ToNapiValue,
    F: 'static + Send + Future<Output = Result<T>>,
    R: 'static + FnOnce(&'env Env, T) -> Result<V>,
{
    env.spawn_future_with_callback(async move { Ok(future.await) }, move |env, outcome| {
        match outcome.and_then(|value| finish(env, value)) {
            Ok(value) => Ok(value),
            Err(failure) => Err(rejection(env, failure)),
        }
    })
}

/// A napi error that holds a JS `Error` with our code, so a Promise rejects with it (or napi
/// throws it).
pub(crate) fn rejection(env: &Env, failure: JsFailure) -> napi::Error {
    let error = JsError::from(failure).into_unknown(*env);
    napi::Error::from(error)
}
