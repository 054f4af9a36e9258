//! `HealthChecker` as JS sees it: a thin wrapper over [`crate::health::HealthChecker`].
//!
//! Arguments are checked before the Promise is created, but a bad one rejects the Promise
//! rather than throwing, as an `async` function would.

use super::error::{Result, spawn, to_js_error};
use napi::Env;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;

use crate::config::HealthCheckSettings;
use crate::health::{self, HealthReport};

use super::convert::{Arg, Json, Port, PromisedArg, Required, arg_names};

arg_names! {
    ConfigArg = "config";
    HostArg = "host";
    PortArg = "port";
}

/// The `host` parameter of a check.
type Host = PromisedArg<Required<String>, HostArg>;
/// The `port` parameter of a check.
type CheckedPort = PromisedArg<Port, PortArg>;

/// The outcome of one health check.
#[napi(object)]
pub struct HealthCheckResult {
    /// Whether the endpoint answered with a 2xx status.
    pub healthy: bool,
    /// Why the check failed, e.g. `Health check returned status 503 Service Unavailable` or
    /// `Health check failed: Connection refused: nothing is listening on 127.0.0.1:4111`;
    /// absent when healthy.
    pub message: Option<String>,
}

impl From<HealthReport> for HealthCheckResult {
    fn from(report: HealthReport) -> Self {
        HealthCheckResult {
            healthy: report.healthy,
            message: report.message,
        }
    }
}

/// Checks a server's health with an HTTP GET of its endpoint; a 2xx status is healthy.
/// Plain HTTP/1.1, no proxy, redirects not followed.
#[napi]
pub struct HealthChecker {
    inner: health::HealthChecker,
}

#[napi]
impl HealthChecker {
    /// A checker with `config` (every field optional, defaults as in `LocalProcessRunnerConfig`'s
    /// `healthCheck`). Throws an `Error` naming the field that is wrong.
    #[napi(constructor)]
    pub fn new(
        #[napi(ts_arg_type = "HealthCheckConfig")] config: Option<Arg<Json, ConfigArg>>,
    ) -> Result<Self> {
        let config = config
            .map(|config| config.into_inner().0)
            .unwrap_or_default();
        let settings = HealthCheckSettings::from_json(&config).map_err(to_js_error)?;
        let inner = health::HealthChecker::new(settings).map_err(to_js_error)?;
        Ok(HealthChecker { inner })
    }

    /// One GET of `http://{host}:{port}{endpoint}` (IPv6 addresses may be given bare, `::1`).
    /// Resolves `{ healthy: false, message }` when the server is unhealthy or unreachable;
    /// rejects only for a bad `host` or `port`.
    #[napi(ts_return_type = "Promise<HealthCheckResult>")]
    pub fn check<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] host: Host,
        #[napi(ts_arg_type = "number")] port: CheckedPort,
    ) -> napi::Result<PromiseRaw<'env, HealthCheckResult>> {
        let target = self.target(host, port);
        let checker = self.inner.clone();
        spawn(env, async move {
            let (host, port) = target?;
            Ok(checker.check(&host, port).await.into())
        })
    }

    /// One check of a server on this machine: `127.0.0.1`, then `[::1]` when nothing listens
    /// on the IPv4 loopback, so servers bound to IPv6 only pass too. Never uses `localhost`.
    #[napi(ts_return_type = "Promise<HealthCheckResult>")]
    pub fn check_loopback<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "number")] port: CheckedPort,
    ) -> napi::Result<PromiseRaw<'env, HealthCheckResult>> {
        let port = port.into_result();
        let checker = self.inner.clone();
        spawn(env, async move {
            Ok(checker.check_loopback(port?.0).await.into())
        })
    }

    /// Checks up to `maxRetries` times, `retryIntervalMs` apart, and resolves at the first
    /// healthy answer. Rejects with `Server failed to become healthy after N attempts. Last
    /// error: …` (the last check's message), followed by the URL that was checked.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn wait_for_healthy<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] host: Host,
        #[napi(ts_arg_type = "number")] port: CheckedPort,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let target = self.target(host, port);
        let checker = self.inner.clone();
        spawn(env, async move {
            let (host, port) = target?;
            Ok(checker.wait_for_healthy(&host, port).await?)
        })
    }
}

impl HealthChecker {
    /// The host and port arguments, checked (the host must form a valid URL).
    fn target(&self, host: Host, port: CheckedPort) -> Result<(String, u16)> {
        let host = host.into_result()?.0;
        let port = port.into_result()?.0;
        self.inner.endpoint_url(&host, port).map_err(to_js_error)?;
        Ok((host, port))
    }
}
