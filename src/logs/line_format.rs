//! How a build log line is written (`formatLogLine`, `createBuildLogStream`): an optional
//! `[ISO time]`, an optional prefix, the line; and whether the stream hands lines over in batches.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::iso8601_utc;
use crate::error::{Error, Result};
use crate::validate;

/// How long a buffered build log stream collects lines by default.
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The longest a buffered build log stream may collect lines, in ms (an hour).
const MAX_FLUSH_INTERVAL_MS: u64 = 3_600_000;

/// The format of a build log line and the pace of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFormat {
    /// Start each line with `[ISO time]` (default `true`).
    pub include_timestamp: bool,
    /// Text put between the timestamp and the line, e.g. a step name (default none).
    pub prefix: String,
    /// Collect lines and hand them over at most every `flush_interval` (default `false`).
    pub buffered: bool,
    /// How long a buffered stream collects lines (default 100 ms).
    pub flush_interval: Duration,
}

impl Default for LineFormat {
    fn default() -> Self {
        LineFormat {
            include_timestamp: true,
            prefix: String::new(),
            buffered: false,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

impl LineFormat {
    /// Reads config `name` (`{ includeTimestamp?, prefix?, buffered?, flushIntervalMs? }`, or
    /// `null` for the defaults); a wrong field is an error naming it.
    pub fn from_json(config: &Value, name: &str) -> Result<Self> {
        if !config.is_null() && !config.is_object() {
            return Err(Error::invalid(
                name,
                validate::expected("an object", config),
            ));
        }
        let field = |field: &str| config.get(field).filter(|value| !value.is_null());
        let flag = |field: &str, default: bool| match config.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(other) => Err(Error::invalid(
                format!("{name}.{field}"),
                validate::expected("a boolean", other),
            )),
        };
        let prefix = match field("prefix") {
            None => String::new(),
            Some(value) => validate::string(&format!("{name}.prefix"), value)?.to_owned(),
        };
        let flush_interval = match field("flushIntervalMs") {
            None => DEFAULT_FLUSH_INTERVAL,
            Some(value) => Duration::from_millis(validate::integer(
                &format!("{name}.flushIntervalMs"),
                value,
                1,
                MAX_FLUSH_INTERVAL_MS,
            )?),
        };
        Ok(LineFormat {
            include_timestamp: flag("includeTimestamp", true)?,
            prefix,
            buffered: flag("buffered", false)?,
            flush_interval,
        })
    }

    /// `[ISO time] prefix line`, the parts present joined by single spaces.
    pub fn format(&self, line: &str) -> String {
        let mut out = String::with_capacity(line.len() + self.prefix.len() + 28);
        if self.include_timestamp {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64);
            out.push('[');
            out.push_str(&iso8601_utc(now));
            out.push_str("] ");
        }
        if !self.prefix.is_empty() {
            out.push_str(&self.prefix);
            out.push(' ');
        }
        out.push_str(line);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_the_parts_of_a_line() {
        assert_eq!(
            LineFormat::from_json(&Value::Null, "config").ok(),
            Some(LineFormat::default())
        );
        let Ok(plain) = LineFormat::from_json(
            &json!({ "includeTimestamp": false, "prefix": "[install]" }),
            "config",
        ) else {
            panic!("a valid config is accepted");
        };
        assert_eq!(plain.format("done"), "[install] done");
        let stamped = LineFormat::default().format("done");
        assert!(
            stamped.starts_with('[') && stamped.ends_with("Z] done"),
            "{stamped}"
        );
    }

    #[test]
    fn a_wrong_field_is_named() {
        let message = |config: Value| {
            LineFormat::from_json(&config, "config")
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            message(json!("x")).as_deref(),
            Some("Invalid config: expected an object, got string 'x'")
        );
        assert_eq!(
            message(json!({ "buffered": 1 })).as_deref(),
            Some("Invalid config.buffered: expected a boolean, got number 1")
        );
        assert_eq!(
            message(json!({ "flushIntervalMs": 0 })).as_deref(),
            Some("Invalid config.flushIntervalMs: must be an integer from 1 to 3600000 (got 0)")
        );
    }
}
