//! The JS → JSON reader under its former path, for binding files not yet converted to typed
//! parameters; it lives in [`super::convert::json`].

pub(crate) use super::convert::json::to_json;
