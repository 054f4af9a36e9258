//! The runner's own diagnostics: `tracing` events written to stderr.
//!
//! Silent by default (warnings and errors only). `MASTRA_RUNNER_LOG` chooses the level:
//! `off`, `error`, `warn`, `info`, `debug` or `trace`.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;

/// The environment variable that sets the diagnostics level.
pub const LOG_LEVEL_VAR: &str = "MASTRA_RUNNER_LOG";

/// Parses a level name as `MASTRA_RUNNER_LOG` accepts it (case-insensitive).
pub fn parse_level(value: &str) -> Option<LevelFilter> {
    match value.trim().to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::OFF),
        "error" => Some(LevelFilter::ERROR),
        "warn" | "warning" => Some(LevelFilter::WARN),
        "info" => Some(LevelFilter::INFO),
        "debug" => Some(LevelFilter::DEBUG),
        "trace" => Some(LevelFilter::TRACE),
        _ => None,
    }
}

/// Installs the stderr subscriber once per process, at the level `MASTRA_RUNNER_LOG` names.
/// Later calls, or a host that installed its own subscriber, leave things as they are.
pub fn init_from_env() {
    let requested = std::env::var(LOG_LEVEL_VAR).ok();
    let level = requested
        .as_deref()
        .and_then(parse_level)
        .unwrap_or(LevelFilter::WARN);
    let installed = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(level)
        .with_target(false)
        .try_init()
        .is_ok();
    if let Some(value) = requested.filter(|v| installed && parse_level(v).is_none()) {
        tracing::warn!(
            "{LOG_LEVEL_VAR}={value:?} is not a level (off, error, warn, info, debug, trace); using warn"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level(" off "), Some(LevelFilter::OFF));
        assert_eq!(parse_level("warning"), Some(LevelFilter::WARN));
        assert_eq!(parse_level("verbose"), None);
    }
}
