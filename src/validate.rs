//! Checks of caller-supplied values, shared by every public entry point.
//!
//! Values arrive as JSON (the binding converts JS values without interpreting them), so one set
//! of rules and one wording serve config fields and method arguments alike: each error names the
//! argument and says what was expected and what came.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Mismatch, Result};

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// "expected X, got Y" (a wrong type), with Y described the way a JS user thinks of it.
pub fn expected(what: &str, got: &Value) -> Mismatch {
    let got = match got {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() > 40 => "a string".to_owned(),
        Value::String(s) => format!("string '{s}'"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    };
    Mismatch::new(what, &got)
}

/// An integer from `min` to `max` (inclusive).
pub fn integer(name: &str, value: &Value, min: u64, max: u64) -> Result<u64> {
    let Value::Number(number) = value else {
        return Err(Error::invalid(name, expected("a number", value)));
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_SAFE_INTEGER as f64)
            .map(|f| f as u64)
    });
    match whole {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => {
            let bounds = if max >= MAX_SAFE_INTEGER {
                format!("an integer of at least {min}")
            } else {
                format!("an integer from {min} to {max}")
            };
            Err(Error::invalid(
                name,
                format!("must be {bounds} (got {number})"),
            ))
        }
    }
}

/// A string.
pub fn string<'a>(name: &str, value: &'a Value) -> Result<&'a str> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(Error::invalid(name, expected("a string", other))),
    }
}

/// A string the caller must pass (`null` / `undefined` → "is required").
pub fn required_string<'a>(name: &str, value: &'a Value) -> Result<&'a str> {
    match value {
        Value::Null => Err(Error::invalid(name, "is required")),
        other => string(name, other),
    }
}

/// One TCP port the caller must pass: an integer from 1 to 65535.
pub fn port(name: &str, value: &Value) -> Result<u16> {
    match value {
        Value::Null => Err(Error::invalid(name, "is required")),
        other => Ok(integer(name, other, 1, 65_535)? as u16),
    }
}

/// Environment variables: an object of strings whose names are non-empty and contain neither
/// `=` nor NUL, and whose values contain no NUL. Errors name the variable (`envVars.KEY`).
pub fn env_vars(name: &str, value: &Value) -> Result<BTreeMap<String, String>> {
    let Value::Object(vars) = value else {
        return Err(Error::invalid(name, expected("an object", value)));
    };
    let mut out = BTreeMap::new();
    for (key, value) in vars {
        let field = format!("{name}.{key}");
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(Error::invalid(
                field,
                "a variable name must be non-empty and contain neither '=' nor NUL",
            ));
        }
        let text = string(&field, value)?;
        if text.contains('\0') {
            return Err(Error::invalid(field, "must not contain a NUL character"));
        }
        out.insert(key.clone(), text.to_owned());
    }
    Ok(out)
}

/// The longest id (project, build, deployment, server) accepted.
pub const MAX_ID_LENGTH: usize = 128;

/// An id (project, build, deployment) that becomes a directory name under `buildDir`:
/// non-empty, at most 128 characters, no NUL, no path separator, no `..`, and not starting with
/// `.` — such names are the runner's own (`.cache`, `.runner`), and `.` is `buildDir` itself.
pub fn id(name: &str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        "must not be empty".to_owned()
    } else if value.contains('\0') {
        "must not contain a NUL character".to_owned()
    } else if value.contains('/') || value.contains('\\') {
        format!("must not contain a path separator (got '{value}')")
    } else if value.contains("..") {
        format!("must not contain '..' (got '{value}')")
    } else if value.starts_with('.') {
        format!(
            "must not start with '.', which is reserved for the runner's own directories (got '{value}')"
        )
    } else if value.chars().count() > MAX_ID_LENGTH {
        format!(
            "must be at most {MAX_ID_LENGTH} characters (got {})",
            value.chars().count()
        )
    } else {
        return Ok(());
    };
    Err(Error::invalid(name, reason))
}

/// One of the listed strings.
pub fn one_of<'a>(name: &str, value: &'a Value, allowed: &[&str]) -> Result<&'a str> {
    let text = string(name, value)?;
    if allowed.contains(&text) {
        return Ok(text);
    }
    let list = allowed
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" or ");
    Err(Error::invalid(
        name,
        format!("must be {list} (got '{text}')"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_within_bounds_pass() {
        assert_eq!(integer("n", &json!(5), 1, 10), Ok(5));
        assert_eq!(integer("n", &json!(5.0), 1, 10), Ok(5));
    }

    #[test]
    fn integer_errors_name_the_argument() {
        let cases = [
            (
                json!(0),
                "Invalid n: must be an integer from 1 to 10 (got 0)",
            ),
            (
                json!(2.5),
                "Invalid n: must be an integer from 1 to 10 (got 2.5)",
            ),
            (
                json!(-3),
                "Invalid n: must be an integer from 1 to 10 (got -3)",
            ),
            (json!("3"), "Invalid n: expected a number, got string '3'"),
            (json!(null), "Invalid n: expected a number, got null"),
        ];
        for (value, message) in cases {
            assert_eq!(
                integer("n", &value, 1, 10).unwrap_err().to_string(),
                message
            );
        }
        assert_eq!(
            integer("n", &json!(0), 1, MAX_SAFE_INTEGER)
                .unwrap_err()
                .to_string(),
            "Invalid n: must be an integer of at least 1 (got 0)"
        );
    }

    #[test]
    fn ids_that_could_leave_the_build_directory_are_rejected() {
        assert_eq!(id("build.id", "b-1_x"), Ok(()));
        let cases = [
            ("", "Invalid build.id: must not be empty"),
            (
                "../x",
                "Invalid build.id: must not contain a path separator (got '../x')",
            ),
            (
                "a\\b",
                "Invalid build.id: must not contain a path separator (got 'a\\b')",
            ),
            ("..", "Invalid build.id: must not contain '..' (got '..')"),
            (
                ".",
                "Invalid build.id: must not start with '.', which is reserved for the runner's own directories (got '.')",
            ),
            ("a\0b", "Invalid build.id: must not contain a NUL character"),
        ];
        for (value, message) in cases {
            assert_eq!(id("build.id", value).unwrap_err().to_string(), message);
        }
        let long = "x".repeat(129);
        assert_eq!(
            id("build.id", &long).unwrap_err().to_string(),
            "Invalid build.id: must be at most 128 characters (got 129)"
        );
    }

    #[test]
    fn one_of_lists_the_choices() {
        assert_eq!(
            one_of("stream", &json!("stderr"), &["stdout", "stderr"]),
            Ok("stderr")
        );
        assert_eq!(
            one_of("stream", &json!("err"), &["stdout", "stderr"])
                .unwrap_err()
                .to_string(),
            "Invalid stream: must be 'stdout' or 'stderr' (got 'err')"
        );
    }

    #[test]
    fn single_ports_are_whole_numbers_from_1_to_65535() {
        assert_eq!(port("port", &json!(65535)).unwrap(), 65535);
        assert_eq!(port("port", &json!(4111.0)).unwrap(), 4111);
        let error = |input: Value| port("port", &input).unwrap_err().to_string();
        assert_eq!(error(Value::Null), "Invalid port: is required");
        assert_eq!(
            error(json!(0)),
            "Invalid port: must be an integer from 1 to 65535 (got 0)"
        );
        assert_eq!(
            error(json!(70000)),
            "Invalid port: must be an integer from 1 to 65535 (got 70000)"
        );
        assert_eq!(
            error(json!(1.5)),
            "Invalid port: must be an integer from 1 to 65535 (got 1.5)"
        );
        assert_eq!(
            error(json!("80")),
            "Invalid port: expected a number, got string '80'"
        );
    }

    #[test]
    fn string_arguments_must_be_strings() {
        assert_eq!(required_string("host", &json!("::1")).unwrap(), "::1");
        let error = |input: Value| required_string("host", &input).unwrap_err().to_string();
        assert_eq!(error(Value::Null), "Invalid host: is required");
        assert_eq!(
            error(json!(1)),
            "Invalid host: expected a string, got number 1"
        );
    }
}
