//! Calling the async methods of JS provider objects (router, source) from Rust.
//!
//! A method is read off the object once, bound to it (so `this` works inside), and wrapped in
//! a weak threadsafe function (so a stored provider never keeps Node alive). Calling it catches
//! a synchronous throw, then awaits the Promise it returned; anything that goes wrong — a
//! throw, a rejection, a value that is not a Promise — comes back as a message, never as a
//! crash of the host.

use napi::bindgen_prelude::{
    FromNapiValue, Function, JsObjectValue, JsValuesTupleIntoVec, Object, Promise, Result,
};
use napi::threadsafe_function::ThreadsafeFunction;
use std::time::Duration;

use napi::{Status, ValueType};
use serde_json::Value;

/// A provider method returning a Promise of `R`, callable from any thread.
pub(crate) type AsyncMethod<Args, R = Value> =
    ThreadsafeFunction<Args, Promise<R>, Args, Status, false, true>;

/// Reads `object[name]`, which must be a function, as an [`AsyncMethod`]. `owner` names the
/// object in errors (`Invalid router: registerRoute must be a function`).
pub(crate) fn async_method<Args, R>(
    object: &Object,
    owner: &str,
    name: &str,
) -> Result<AsyncMethod<Args, R>>
where
    Args: 'static + JsValuesTupleIntoVec,
    R: 'static + FromNapiValue,
{
    let property = object.get_named_property::<napi::bindgen_prelude::Unknown>(name)?;
    if property.get_type()? != ValueType::Function {
        return Err(napi::Error::from_reason(format!(
            "Invalid {owner}: {name} must be a function"
        )));
    }
    // SAFETY: the type was just checked.
    let method = unsafe { property.cast::<Function<Args, Promise<R>>>() }?;
    method
        .bind(object)?
        .build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()
}

/// Calls `method` and awaits its Promise, for at most `limit`; the error is a message saying
/// what went wrong (a throw, a rejection, a value that is not a Promise, or no answer in time).
pub(crate) async fn call<Args, R>(
    method: &AsyncMethod<Args, R>,
    args: Args,
    limit: Duration,
) -> std::result::Result<R, String>
where
    Args: 'static + JsValuesTupleIntoVec,
    R: 'static + FromNapiValue,
{
    let answer = async {
        let promise = method.call_async_catch(args).await.map_err(describe)?;
        promise.await.map_err(describe)
    };
    tokio::time::timeout(limit, answer)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", limit.as_millis())))
}

/// The message of an error thrown or rejected by JS (without napi's status prefix).
fn describe(error: napi::Error) -> String {
    let reason = error.reason.trim();
    if reason.is_empty() {
        format!("{}", error.status)
    } else {
        reason.to_owned()
    }
}
