//! `PortAllocator` as JS sees it: a thin wrapper over [`crate::ports::PortAllocator`].
//!
//! `allocate` probes ports by binding them, which blocks, so it runs on tokio's blocking pool
//! and returns a Promise; the other methods only read the allocated set and return at once.

use super::error::{Result, spawn, to_js_error};
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;
use serde_json::Value;

use crate::ports;
use crate::ports::PortRange;

use super::convert::{Arg, Json, Port, PromisedArg, arg_names};

arg_names! {
    RangeArg = "range";
    PreferredArg = "preferred";
    PortArg = "port";
}

/// Hands out free TCP ports of an inclusive range, one caller per port.
///
/// A port is free when this allocator has not handed it out and nothing listens on it
/// (probed on 127.0.0.1 and 0.0.0.0, and on [::] and [::1] where the machine has IPv6).
/// Concurrent `allocate()` calls never get the same port.
#[napi]
pub struct PortAllocator {
    inner: Arc<ports::PortAllocator>,
}

#[napi]
impl PortAllocator {
    /// An allocator over `range` (integers from 1 to 65535, `start <= end`; without it,
    /// 4111-4200). Throws an `Error` naming the field that is wrong, e.g.
    /// `Invalid range: start (5000) is greater than end (4000)`.
    #[napi(constructor)]
    pub fn new(
        #[napi(ts_arg_type = "{ start: number; end: number }")] range: Option<Arg<Json, RangeArg>>,
    ) -> Result<Self> {
        let range = match range.map(|range| range.into_inner().0) {
            None | Some(Value::Null) => PortRange::default(),
            Some(given) => {
                crate::config::port_range_from_json(&given, "range").map_err(to_js_error)?
            }
        };
        Ok(PortAllocator {
            inner: Arc::new(ports::PortAllocator::new(range)),
        })
    }

    /// Resolves with `preferred` when it lies in the range and is free, otherwise with the
    /// lowest free port. Rejects when every port is taken (the message says how many by this
    /// allocator and how many by other programs) or when `preferred` is not a port number.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn allocate<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "number")] preferred: Option<PromisedArg<Port, PreferredArg>>,
    ) -> napi::Result<PromiseRaw<'env, u32>> {
        let preferred = preferred
            .map(|port| port.into_result().map(|port| port.0))
            .transpose();
        let allocator = Arc::clone(&self.inner);
        spawn(env, async move {
            let preferred = preferred?;
            let port = tokio::task::spawn_blocking(move || allocator.allocate(preferred))
                .await
                .map_err(|e| to_js_error(crate::error::Error::internal("allocating a port", e)))?
                .map_err(to_js_error)?;
            Ok(u32::from(port))
        })
    }

    /// Gives `port` back so it can be handed out again; releasing a port that is not
    /// allocated does nothing.
    #[napi]
    pub fn release(&self, #[napi(ts_arg_type = "number")] port: Arg<Port, PortArg>) -> Result<()> {
        self.inner.release(port.into_inner().0);
        Ok(())
    }

    /// Whether this allocator has handed out `port`.
    #[napi]
    pub fn is_allocated(
        &self,
        #[napi(ts_arg_type = "number")] port: Arg<Port, PortArg>,
    ) -> Result<bool> {
        Ok(self.inner.is_allocated(port.into_inner().0))
    }

    /// The ports handed out, ascending.
    #[napi]
    pub fn get_allocated_ports(&self) -> Vec<u32> {
        self.inner
            .allocated_ports()
            .into_iter()
            .map(u32::from)
            .collect()
    }

    /// How many ports of the range this allocator has not handed out (other programs may
    /// still be listening on some of them).
    #[napi]
    pub fn get_available_count(&self) -> u32 {
        self.inner.available_count() as u32
    }
}
