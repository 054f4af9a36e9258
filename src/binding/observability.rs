//! MastraAdmin's `FileStorageProvider` behind the core's [`FileStorage`], for
//! `setObservabilityStorage`; the persister it feeds is the runner's.
//!
//! Only `write(path, content)` is called: read off the object once, bound to it, wrapped in a
//! weak threadsafe function (a stored storage never keeps Node alive). What it returns is
//! awaited as `await` would (a synchronous `write` returning `undefined` has written); a throw
//! or a rejection comes back as a message. Time limits and retries are the core's.

use napi::bindgen_prelude::{FnArgs, Object};
use napi::threadsafe_function::UnknownReturnValue;

use super::error::Result;
use super::provider::{AsyncMethod, async_method, call};
use crate::observability::FileStorage;
use crate::sync::BoxFuture;

/// A JS `FileStorageProvider`.
pub struct JsFileStorage {
    write: AsyncMethod<FnArgs<(String, String)>, UnknownReturnValue>,
}

impl JsFileStorage {
    /// Reads the storage's `write` method off `object`.
    pub(crate) fn new(object: &Object) -> Result<Self> {
        Ok(JsFileStorage {
            write: async_method(object, "storage", "write")?,
        })
    }
}

impl FileStorage for JsFileStorage {
    fn write<'a>(
        &'a self,
        path: &'a str,
        content: String,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            call(&self.write, FnArgs::from((path.to_owned(), content)))
                .await
                .map(|_| ())
        })
    }
}
