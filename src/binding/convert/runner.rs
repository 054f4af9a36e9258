//! The values `LocalProcessRunner`'s methods read from their arguments: MastraAdmin's entities
//! (only the fields a method uses; the core checks the ids), options objects read into core
//! requests, and provider objects wrapped behind the core's traits.

use napi::ValueType;
use napi::bindgen_prelude::{ObjectRef, Unknown};
use serde_json::{Map, Value};

use super::FromArg;
use super::json;
use super::read;
use crate::binding::error::{JsFailure, Result};
use crate::binding::logs::PageRequest;
use crate::binding::observability::JsFileStorage;
use crate::binding::provider::{JsRouter, JsSource, provider_object};
use crate::error::Mismatch;
use crate::logs::query::LogQuery;
use crate::runner::{ProjectSource, RunOptions};

/// A string field of the object argument `name` (`None` when absent or `null`); an argument
/// that is not an object is refused.
fn string_field(value: &Unknown<'_>, name: &str, field: &str) -> Result<Option<String>> {
    let field_value = read::field(Some(value), name, field)?;
    read::optional_string(field_value.as_ref(), &format!("{name}.{field}"))
}

/// The `id` of an entity argument, which must be an object (`null` reads as `undefined`).
fn entity_id(value: &Unknown<'_>, name: &str) -> Result<String> {
    if matches!(value.get_type()?, ValueType::Undefined | ValueType::Null) {
        return Err(JsFailure::invalid(
            name,
            Mismatch::new("an object", "undefined"),
        ));
    }
    string_field(value, name, "id")?
        .ok_or_else(|| JsFailure::invalid(&format!("{name}.id"), "is required"))
}

/// The `id` of an entity argument (a deploy's `Build`).
pub struct EntityId(pub String);

impl FromArg for EntityId {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        entity_id(value, name).map(EntityId)
    }
}

/// The `id` of a `RunningServer` argument.
pub struct ServerId(pub String);

impl FromArg for ServerId {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        string_field(value, name, "id")?
            .map(ServerId)
            .ok_or_else(|| JsFailure::invalid(&format!("{name}.id"), "is required"))
    }
}

/// What a deploy reads of its `Project`.
pub struct DeployedProject {
    /// `id`.
    pub id: String,
    /// `slug`.
    pub slug: Option<String>,
}

impl FromArg for DeployedProject {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        Ok(DeployedProject {
            id: entity_id(value, name)?,
            slug: string_field(value, name, "slug")?,
        })
    }
}

/// What a deploy reads of its `Deployment`.
pub struct DeployedDeployment {
    /// `id`.
    pub id: String,
    /// `type`.
    pub kind: Option<String>,
    /// `branch`.
    pub branch: Option<String>,
}

impl FromArg for DeployedDeployment {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        Ok(DeployedDeployment {
            id: entity_id(value, name)?,
            kind: string_field(value, name, "type")?,
            branch: string_field(value, name, "branch")?,
        })
    }
}

/// The `Project` of a build, as the source provider is given it: its name defaults to its id,
/// its `sourceType` to `'local'`.
pub struct BuiltProject(pub ProjectSource);

impl FromArg for BuiltProject {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let id = entity_id(value, name)?;
        let source_config = read::field(Some(value), name, "sourceConfig")?;
        let project_name = string_field(value, name, "name")?;
        let kind = string_field(value, name, "sourceType")?;
        let path = match &source_config {
            Some(config) => string_field(config, &format!("{name}.sourceConfig"), "path")?,
            None => None,
        };
        Ok(BuiltProject(ProjectSource {
            name: project_name.unwrap_or_else(|| id.clone()),
            kind: kind.unwrap_or_else(|| "local".to_owned()),
            path,
            id,
        }))
    }
}

/// The caller's `Build` object of a `build()` call: its id, its deployment, and a reference to
/// the object, which gets the outcome. The reference must be given back (`unref`), also when
/// the call fails before the build starts.
pub struct BuiltBuild {
    /// `id`.
    pub id: String,
    /// `deploymentId`.
    pub deployment_id: Option<String>,
    /// The object itself.
    pub object: ObjectRef,
}

impl FromArg for BuiltBuild {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let id = entity_id(value, name)?;
        let deployment_id = string_field(value, name, "deploymentId")?;
        // Last: nothing may fail once the reference exists.
        let object = provider_object(value, name)?.create_ref()?;
        Ok(BuiltBuild {
            id,
            deployment_id,
            object,
        })
    }
}

impl FromArg for RunOptions {
    /// `RunOptions`: an object (or absent); its fields are checked by the core.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let mut fields = Map::new();
        for key in ["envVars", "port", "healthCheckTimeoutMs", "limits"] {
            if let Some(field) = read::field(Some(value), name, key)? {
                let field = json::to_json(&field, &format!("{name}.{key}"))?;
                fields.insert(key.to_owned(), field);
            }
        }
        Ok(RunOptions::from_json(&Value::Object(fields), name)?)
    }
}

impl FromArg for LogQuery {
    /// `{ tail?: number; since?: Date }`.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let tail = read::field(Some(value), name, "tail")?;
        let tail = read::optional_integer(
            tail.as_ref(),
            &format!("{name}.tail"),
            0,
            u64::from(u32::MAX),
        )?;
        let since_ms = match read::field(Some(value), name, "since")? {
            Some(since) => Some(read::date_ms(&since, &format!("{name}.since"))?),
            None => None,
        };
        Ok(LogQuery {
            since_ms,
            tail: tail.map(|tail| tail as usize),
        })
    }
}

impl FromArg for PageRequest {
    /// `{ limit?: number; before?: string }`.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let limit = read::field(Some(value), name, "limit")?;
        let before = read::field(Some(value), name, "before")?;
        PageRequest::read(limit.as_ref(), before.as_ref())
    }
}

impl FromArg for JsSource {
    /// A `ProjectSourceProvider` object.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        JsSource::new(&provider_object(value, name)?)
    }
}

impl FromArg for JsRouter {
    /// An `EdgeRouterProvider` object.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        JsRouter::new(&provider_object(value, name)?)
    }
}

impl FromArg for JsFileStorage {
    /// A `FileStorageProvider` object.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        JsFileStorage::new(&provider_object(value, name)?)
    }
}
