//! The isolation fields of the runner configuration (`sandbox`, `limits`, `buildLimits`) and of
//! a deploy's options (`limits`), validated with the wording of every other field.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::validate::{self, expected};

/// `sandbox`: on by default; `false` turns it off; an object adds paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSettings {
    /// Whether servers and build steps run in a sandbox (where the kernel has one).
    pub enabled: bool,
    /// Extra paths every sandbox may read and execute (`sandbox.readPaths`).
    pub read_paths: Vec<PathBuf>,
    /// Extra paths every sandbox may write (`sandbox.writePaths`).
    pub write_paths: Vec<PathBuf>,
    /// Whether a server may not connect to other servers' ports of `portRange`
    /// (`sandbox.isolatePorts`, on by default; costs milliseconds and kernel memory per
    /// server start).
    pub isolate_ports: bool,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            enabled: true,
            read_paths: Vec::new(),
            write_paths: Vec::new(),
            isolate_ports: true,
        }
    }
}

/// The smallest `memoryMb` accepted.
pub const MIN_MEMORY_MB: u64 = 16;

/// The largest `memoryMb` accepted (16 TiB).
pub const MAX_MEMORY_MB: u64 = 16 * 1024 * 1024;

/// Kernel-enforced limits of one server or build step (`limits`, `buildLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Memory in MB (`memoryMb`); over it the kernel kills the largest process.
    pub memory_mb: Option<u64>,
    /// CPU quota in thousandths of a core (`cpus` × 1000).
    pub milli_cpus: Option<u64>,
    /// Processes and threads (`pids`); past it `fork` fails inside.
    pub pids: Option<u64>,
}

/// The `pids` limit when none is given: of the order of systemd's per-unit `TasksMax`.
pub const DEFAULT_PIDS: u64 = 4096;

impl Limits {
    /// The defaults: `pids` 4096, no memory or CPU cap.
    pub fn defaults() -> Self {
        Limits {
            pids: Some(DEFAULT_PIDS),
            ..Limits::default()
        }
    }

    /// `self` with every field `other` sets taken from `other` (a deploy's own limits).
    pub fn overridden_by(self, other: &Limits) -> Limits {
        Limits {
            memory_mb: other.memory_mb.or(self.memory_mb),
            milli_cpus: other.milli_cpus.or(self.milli_cpus),
            pids: other.pids.or(self.pids),
        }
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory_mb.is_some() || self.milli_cpus.is_some() || self.pids.is_some()
    }

    /// Reads a limits object (argument `name`); absent or `null` fields are unset.
    pub fn from_json(value: &Value, name: &str) -> Result<Limits> {
        let Value::Object(fields) = value else {
            return Err(Error::invalid(name, expected("an object", value)));
        };
        let field = |key: &str| fields.get(key).filter(|v| !v.is_null());
        let memory_mb = field("memoryMb")
            .map(|v| {
                validate::integer(&format!("{name}.memoryMb"), v, MIN_MEMORY_MB, MAX_MEMORY_MB)
            })
            .transpose()?;
        let pids = field("pids")
            .map(|v| validate::integer(&format!("{name}.pids"), v, 8, 4_194_304))
            .transpose()?;
        let milli_cpus = field("cpus")
            .map(|v| cpus(&format!("{name}.cpus"), v))
            .transpose()?;
        Ok(Limits {
            memory_mb,
            milli_cpus,
            pids,
        })
    }

    /// The limits in the shape JS reads them.
    pub fn to_json(&self) -> Value {
        json!({
            "memoryMb": self.memory_mb,
            "cpus": self.milli_cpus.map(|m| m as f64 / 1000.0),
            "pids": self.pids,
        })
    }
}

/// `cpus`: a number of cores from 0.01 to 1024, kept in thousandths.
fn cpus(name: &str, value: &Value) -> Result<u64> {
    let Some(cores) = value.as_f64() else {
        return Err(Error::invalid(name, expected("a number", value)));
    };
    if !(0.01..=1024.0).contains(&cores) {
        return Err(Error::invalid(
            name,
            format!("must be a number of cores from 0.01 to 1024 (got {cores})"),
        ));
    }
    Ok((cores * 1000.0).round() as u64)
}

impl SandboxSettings {
    /// Reads `sandbox`: a boolean, or an object with `readPaths` and `writePaths` (absolute
    /// paths); `null` keeps the default.
    pub fn from_json(value: &Value) -> Result<SandboxSettings> {
        match value {
            Value::Null => Ok(SandboxSettings::default()),
            Value::Bool(enabled) => Ok(SandboxSettings {
                enabled: *enabled,
                ..SandboxSettings::default()
            }),
            Value::Object(fields) => Ok(SandboxSettings {
                enabled: true,
                read_paths: paths(fields.get("readPaths"), "sandbox.readPaths")?,
                write_paths: paths(fields.get("writePaths"), "sandbox.writePaths")?,
                isolate_ports: match fields.get("isolatePorts") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(isolate)) => *isolate,
                    Some(other) => {
                        return Err(Error::invalid(
                            "sandbox.isolatePorts",
                            expected("a boolean", other),
                        ));
                    }
                },
            }),
            other => Err(Error::invalid(
                "sandbox",
                expected("a boolean or an object", other),
            )),
        }
    }

    /// The settings in the shape JS reads them.
    pub fn to_json(&self) -> Value {
        if !self.enabled {
            return Value::Bool(false);
        }
        let strings = |paths: &[PathBuf]| -> Vec<String> {
            paths
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        };
        json!({
            "readPaths": strings(&self.read_paths),
            "writePaths": strings(&self.write_paths),
            "isolatePorts": self.isolate_ports,
        })
    }
}

/// At most this many extra paths per list.
const MAX_EXTRA_PATHS: usize = 64;

fn paths(value: Option<&Value>, name: &str) -> Result<Vec<PathBuf>> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(Error::invalid(name, expected("an array of paths", other))),
    };
    if items.len() > MAX_EXTRA_PATHS {
        return Err(Error::invalid(
            name,
            format!(
                "must list at most {MAX_EXTRA_PATHS} paths (got {})",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let item_name = format!("{name}[{index}]");
            let path = validate::string(&item_name, item)?;
            if !path.starts_with('/') || path.contains('\0') {
                return Err(Error::invalid(
                    &item_name,
                    format!("must be an absolute path (got '{path}')"),
                ));
            }
            Ok(PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_is_on_by_default_and_takes_a_boolean_or_paths() {
        assert!(SandboxSettings::from_json(&Value::Null).unwrap().enabled);
        assert!(!SandboxSettings::from_json(&json!(false)).unwrap().enabled);
        let with_paths =
            SandboxSettings::from_json(&json!({ "readPaths": ["/opt/models"], "writePaths": [] }))
                .unwrap();
        assert!(with_paths.enabled);
        assert_eq!(with_paths.read_paths, [PathBuf::from("/opt/models")]);
        let relative = SandboxSettings::from_json(&json!({ "writePaths": ["data"] })).unwrap_err();
        assert_eq!(
            relative.to_string(),
            "Invalid sandbox.writePaths[0]: must be an absolute path (got 'data')"
        );
        let wrong = SandboxSettings::from_json(&json!("yes")).unwrap_err();
        assert!(
            wrong
                .to_string()
                .contains("expected a boolean or an object"),
            "{wrong}"
        );
    }

    #[test]
    fn limits_are_checked_and_a_deploy_overrides_field_by_field() {
        let limits = Limits::from_json(&json!({ "memoryMb": 160, "cpus": 0.5 }), "limits").unwrap();
        assert_eq!(limits.memory_mb, Some(160));
        assert_eq!(limits.milli_cpus, Some(500));
        let merged = Limits::defaults().overridden_by(&limits);
        assert_eq!(merged.pids, Some(DEFAULT_PIDS));
        assert_eq!(merged.memory_mb, Some(160));
        let tiny = Limits::from_json(&json!({ "memoryMb": 1 }), "limits").unwrap_err();
        assert_eq!(
            tiny.to_string(),
            "Invalid limits.memoryMb: must be an integer from 16 to 16777216 (got 1)"
        );
        let cpus = Limits::from_json(&json!({ "cpus": 0 }), "limits").unwrap_err();
        assert!(cpus.to_string().contains("from 0.01 to 1024"), "{cpus}");
    }
}
