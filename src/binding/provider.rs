//! The JS providers behind the core's traits: MastraAdmin's `ProjectSourceProvider` and
//! `EdgeRouterProvider` objects.
//!
//! A provider's method is read off the object once, bound to it (so `this` works inside), and
//! wrapped in a weak threadsafe function (so a stored provider never keeps Node alive). Calling
//! it catches a synchronous throw, then takes what it returned as `await` would ([`Awaited`]):
//! a Promise (or thenable) is awaited, any other value (`undefined` from a synchronous
//! `removeRoute` or `write`) is the result. A throw or a rejection comes back as a message;
//! nothing is ever thrown out of the N-API callback, which under
//! `--force-node-api-uncaught-exceptions-policy=true` would end the host. Time limits are the
//! core's.

use std::path::{Path, PathBuf};

use napi::bindgen_prelude::{
    FnArgs, FromNapiValue, Function, JsObjectValue, JsValue, JsValuesTupleIntoVec, Object, Promise,
    Unknown,
};
use napi::threadsafe_function::{ThreadsafeFunction, UnknownReturnValue};
use napi::{Status, ValueType, check_status, sys};
use serde_json::{Value, json};

use super::error::{JsFailure, Result};
use crate::error::ArgumentReason;
use crate::error::Error;
use crate::logs::LogStore;
use crate::runner::{BoxFuture, ProjectSource, RouteRequest, Router, SourceProvider};

/// A provider method whose result (a Promise of `R`, or `R` itself) is awaited, callable from
/// any thread.
pub(crate) type AsyncMethod<Args, R = Value> =
    ThreadsafeFunction<Args, Awaited<R>, Args, Status, false, true>;

/// What a provider method returned, taken as `await` takes it: its Promise, or a Promise
/// resolved with whatever else it returned (a thenable is followed, a plain value or
/// `undefined` is the result).
pub(crate) struct Awaited<R: 'static + FromNapiValue>(Promise<R>);

impl<R: 'static + FromNapiValue> FromNapiValue for Awaited<R> {
    /// Runs on the JS thread inside the threadsafe function's callback, right after the call
    /// returned: a failure here must come back as this call's error, never as an exception
    /// left pending on `env` (Node would throw it out of the callback).
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        // SAFETY: `env` and `value` are the live handles napi passes to this conversion.
        let promise = unsafe { promise_of(env, value) }
            // SAFETY: as above; `promise` is a native Promise created or checked just now.
            .and_then(|promise| unsafe { Promise::<R>::from_napi_value(env, promise) });
        if promise.is_err() {
            // SAFETY: `env` is the live environment of the callback we are in.
            unsafe { clear_pending_exception(env) };
        }
        promise.map(Awaited)
    }
}

/// `value` when it is a native Promise, else a new Promise resolved with it (which follows a
/// thenable, as `await` does).
///
/// # Safety
/// `env` and `value` must be live handles of the current callback scope.
unsafe fn promise_of(env: sys::napi_env, value: sys::napi_value) -> napi::Result<sys::napi_value> {
    let mut is_promise = false;
    // SAFETY: per this function's contract; `is_promise` outlives the call.
    check_status!(unsafe { sys::napi_is_promise(env, value, &mut is_promise) })?;
    if is_promise {
        return Ok(value);
    }
    let mut deferred = std::ptr::null_mut();
    let mut promise = std::ptr::null_mut();
    // SAFETY: per this function's contract; both out-pointers outlive the call, and the
    // deferred is consumed by the resolve right after.
    check_status!(unsafe { sys::napi_create_promise(env, &mut deferred, &mut promise) })?;
    // SAFETY: `deferred` was just created and is resolved exactly once.
    check_status!(unsafe { sys::napi_resolve_deferred(env, deferred, value) })?;
    Ok(promise)
}

/// Takes the exception a failed conversion left pending on `env`, if any: the failure is
/// reported as the call's error instead.
///
/// # Safety
/// `env` must be the live environment of the current callback.
unsafe fn clear_pending_exception(env: sys::napi_env) {
    let mut pending = false;
    // SAFETY: per this function's contract; the out-pointers outlive the calls.
    unsafe {
        if sys::napi_is_exception_pending(env, &mut pending) == sys::Status::napi_ok && pending {
            let mut exception = std::ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut exception);
        }
    }
}

/// A provider argument: an object (not null, not an array).
pub(crate) fn provider_object<'env>(value: &Unknown<'env>, name: &str) -> Result<Object<'env>> {
    if value.get_type()? == ValueType::Object && !value.is_array()? {
        // SAFETY: the type was just checked.
        return Ok(unsafe { value.cast::<Object>() }?);
    }
    Err(JsFailure::invalid(
        name,
        ArgumentReason::wrong_type("expected an object with its methods"),
    ))
}

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
    let property = object.get_named_property::<Unknown>(name)?;
    if property.get_type()? != ValueType::Function {
        return Err(JsFailure::invalid(
            owner,
            ArgumentReason::wrong_type(format!("{name} must be a function")),
        ));
    }
    // SAFETY: the type was just checked.
    let method = unsafe { property.cast::<Function<Args, Awaited<R>>>() }?;
    Ok(method
        .bind(object)?
        .build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()?)
}

/// Calls `method` and awaits what it returned ([`Awaited`]); the error says what went wrong
/// (a throw, a rejection, or a result of the wrong shape).
pub(crate) async fn call<Args, R>(
    method: &AsyncMethod<Args, R>,
    args: Args,
) -> std::result::Result<R, String>
where
    Args: 'static + JsValuesTupleIntoVec,
    R: 'static + FromNapiValue,
{
    let Awaited(promise) = method.call_async_catch(args).await.map_err(describe)?;
    promise.await.map_err(describe)
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

/// A JS `ProjectSourceProvider`: `getProjectPath(source, targetDir)`.
pub struct JsSource {
    get_project_path: AsyncMethod<FnArgs<(Value, String)>>,
}

impl JsSource {
    /// Reads the provider's methods off `object`.
    pub(crate) fn new(object: &Object) -> Result<Self> {
        Ok(JsSource {
            get_project_path: async_method(object, "source", "getProjectPath")?,
        })
    }
}

impl SourceProvider for JsSource {
    fn get_project_path<'a>(
        &'a self,
        project: &'a ProjectSource,
        target: &'a Path,
        _log: &'a LogStore,
    ) -> BoxFuture<'a, crate::error::Result<PathBuf>> {
        Box::pin(async move {
            let source = json!({
                "id": project.id,
                "name": project.name,
                "type": project.kind,
                "path": project.path,
            });
            let target = target.to_string_lossy().into_owned();
            let failed = |reason: String| Error::SourceProviderFailed {
                project_id: project.id.clone(),
                reason,
            };
            match call(&self.get_project_path, FnArgs::from((source, target))).await {
                Ok(Value::String(path)) if !path.is_empty() => Ok(PathBuf::from(path)),
                Ok(other) => Err(failed(format!(
                    "it returned {other} instead of the project's path"
                ))),
                Err(why) => Err(failed(why)),
            }
        })
    }
}

/// A JS `EdgeRouterProvider`: `registerRoute(config)` and `removeRoute(routeId)`, and, when it
/// has both, `getRoute(deploymentId)` and `updateRoute(routeId, { targetHost, targetPort })`.
pub struct JsRouter {
    register_route: AsyncMethod<Value>,
    remove_route: AsyncMethod<Value, UnknownReturnValue>,
    lookup: Option<RouteLookup>,
}

/// A router's `getRoute` and `updateRoute`.
struct RouteLookup {
    get_route: AsyncMethod<Value>,
    update_route: AsyncMethod<FnArgs<(String, Value)>>,
}

impl JsRouter {
    /// Reads the router's methods off `object`.
    pub(crate) fn new(object: &Object) -> Result<Self> {
        let has = |name: &str| -> Result<bool> {
            Ok(object.get_named_property::<Unknown>(name)?.get_type()? == ValueType::Function)
        };
        let lookup = if has("getRoute")? && has("updateRoute")? {
            Some(RouteLookup {
                get_route: async_method(object, "router", "getRoute")?,
                update_route: async_method(object, "router", "updateRoute")?,
            })
        } else {
            None
        };
        Ok(JsRouter {
            register_route: async_method(object, "router", "registerRoute")?,
            remove_route: async_method(object, "router", "removeRoute")?,
            lookup,
        })
    }
}

/// The `routeId` of a `RouteInfo` a router resolved.
fn route_id_of(info: &Value) -> std::result::Result<String, String> {
    info.get("routeId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "it resolved without a routeId".to_owned())
}

impl Router for JsRouter {
    fn register_route<'a>(
        &'a self,
        route: &'a RouteRequest,
    ) -> BoxFuture<'a, std::result::Result<String, String>> {
        Box::pin(async move {
            let config = json!({
                "deploymentId": route.deployment_id,
                "projectId": route.project_id,
                "subdomain": route.subdomain,
                "targetHost": route.target_host,
                "targetPort": route.target_port,
            });
            route_id_of(&call(&self.register_route, config).await?)
        })
    }

    fn remove_route<'a>(
        &'a self,
        route_id: &'a str,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            call(&self.remove_route, Value::String(route_id.to_owned()))
                .await
                .map(|_| ())
        })
    }

    fn can_update(&self) -> bool {
        self.lookup.is_some()
    }

    fn get_route<'a>(
        &'a self,
        deployment_id: &'a str,
    ) -> BoxFuture<'a, std::result::Result<Option<String>, String>> {
        Box::pin(async move {
            let Some(lookup) = &self.lookup else {
                return Ok(None);
            };
            match call(&lookup.get_route, Value::String(deployment_id.to_owned())).await? {
                Value::Null => Ok(None),
                info => route_id_of(&info).map(Some),
            }
        })
    }

    fn update_route<'a>(
        &'a self,
        route_id: &'a str,
        target_host: &'a str,
        target_port: u16,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            let Some(lookup) = &self.lookup else {
                return Err("the router has no updateRoute".to_owned());
            };
            let target = json!({ "targetHost": target_host, "targetPort": target_port });
            call(
                &lookup.update_route,
                FnArgs::from((route_id.to_owned(), target)),
            )
            .await
            .map(|_| ())
        })
    }
}
