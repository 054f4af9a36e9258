//! The values `LocalProjectSource` reads and returns: project objects, change events, the
//! source argument, and the target directory of `getProjectPath`.

use std::path::{Path, PathBuf};

use napi::Env;
use napi::bindgen_prelude::{Function, JsObjectValue, Object, Unknown};
use napi::threadsafe_function::UnknownReturnValue;
use napi_derive::napi;
use serde_json::{Value, json};

use crate::error::Error;
use crate::source::{ChangeEvent as CoreChangeEvent, ProjectInfo};
use crate::validate;

use crate::binding::convert::{Callback, FromArg, NonEmptyString, read, require};
use crate::binding::entities::js_date;
use crate::binding::error::{Result, to_js_error};

pub(super) fn project_json(project: &ProjectInfo) -> Value {
    let meta = &project.metadata;
    let mut metadata = json!({
        "name": meta.name,
        "packageManager": meta.package_manager,
        "hasMastraConfig": meta.mastra_config_path.is_some(),
        "isTypeScript": meta.is_typescript,
        "mastraDependencies": meta.mastra_dependencies,
        "workspace": meta.workspace.as_ref().map(|w| json!({
            "root": w.root.to_string_lossy(),
            "path": w.relative,
            "marker": w.marker,
        })),
    });
    let optional = [
        ("version", meta.version.clone()),
        ("description", meta.description.clone()),
        (
            "mastraConfigPath",
            meta.mastra_config_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        ),
        ("entryPoint", meta.entry_point.clone()),
    ];
    if let Value::Object(fields) = &mut metadata {
        for (key, value) in optional {
            if let Some(value) = value {
                fields.insert(key.to_owned(), Value::String(value));
            }
        }
    }
    json!({
        "id": project.id,
        "name": project.name,
        "type": "local",
        "path": project.path.to_string_lossy(),
        "metadata": metadata,
    })
}

/// A change of a watched project, as `watchChanges` callbacks receive it.
#[napi(object)]
pub struct ChangeEvent {
    /// `'add'`, `'change'` or `'unlink'`.
    #[napi(js_name = "type", ts_type = "'add' | 'change' | 'unlink'")]
    pub kind: String,
    /// The file that changed.
    pub path: String,
    /// When the change was seen.
    pub timestamp: chrono::DateTime<chrono::Utc>,
}

impl From<CoreChangeEvent> for ChangeEvent {
    fn from(event: CoreChangeEvent) -> Self {
        ChangeEvent {
            kind: event.kind.as_str().to_owned(),
            path: event.path,
            timestamp: js_date(event.at),
        }
    }
}

/// The callback of `watchChanges`.
pub(super) type ChangeCallback = Callback<ChangeEvent, UnknownReturnValue>;

/// Node's `console.warn(message)`.
pub(super) fn console_warn(env: &Env, message: &str) -> Result<()> {
    let console: Object = env.get_global()?.get_named_property("console")?;
    let warn: Function<String, Unknown> = console.get_named_property("warn")?;
    warn.apply(console, message.to_owned())?;
    Ok(())
}

/// The `path` and `type` of a `ProjectSource` argument (`undefined` and `null` are "is
/// required").
pub struct ProjectSource {
    pub(super) path: String,
    pub(super) kind: Option<String>,
}

impl FromArg for ProjectSource {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        require(value, name)?;
        let path = read::field(Some(value), name, "path")?;
        let kind = read::field(Some(value), name, "type")?;
        Ok(ProjectSource {
            path: read::required_string(path, &format!("{name}.path"))?,
            kind: read::optional_string(kind.as_ref(), &format!("{name}.type"))?,
        })
    }
}

impl ProjectSource {
    /// An error unless the source is a local one (`type` `'local'` or left out).
    pub(super) fn check_local(&self) -> Result<()> {
        match &self.kind {
            Some(kind) => validate::one_of("source.type", &Value::String(kind.clone()), &["local"])
                .map(|_| ())
                .map_err(to_js_error),
            None => Ok(()),
        }
    }
}

/// Runs `work` on tokio's blocking pool.
pub(super) async fn blocking<T, F>(what: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> crate::error::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| to_js_error(crate::error::Error::internal(what, e)))?
        .map_err(to_js_error)
}

/// `targetDir`: a non-empty string, made absolute against the current working directory.
pub struct TargetDir(pub(super) PathBuf);

impl FromArg for TargetDir {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let NonEmptyString(target) = NonEmptyString::from_arg(value, name)?;
        std::path::absolute(Path::new(&target))
            .map(TargetDir)
            .map_err(|e| to_js_error(Error::io("resolve copy target", &target, &e)))
    }
}
