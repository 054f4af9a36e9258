//! One log line as the JSONL line of an `ObservabilityEvent` (`{ type: 'log', data: Log }`),
//! its level, and the file path a batch is written to — the shapes `@mastra/observability-writer`
//! produces, so that MastraAdmin's ingestion reads them unchanged.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::logs::LogOwner;
use crate::logs::iso8601_utc;
use crate::logs::{LogEntry, Stream};

/// The directory under which every event type has its own (`observability/log/...`).
pub const BASE_PATH: &str = "observability";

/// What every event of one log shares: the fields that do not change from line to line,
/// already written as JSON.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    /// The project whose directory the events go to.
    pub project_id: String,
    /// `"projectId":…,"deploymentId":…,"traceId":null,"spanId":null,"level":`
    head: String,
    /// `"attributes":{"serverId":…,"source":"server","stream":`
    attributes: String,
}

impl EventTemplate {
    /// The template of `owner`'s events: servers carry their deployment and `serverId`,
    /// builds carry `buildId` and no deployment (`deploymentId: null`).
    pub fn new(owner: &LogOwner) -> Self {
        let (project_id, deployment_id, attributes) = match owner {
            LogOwner::Server {
                server_id,
                deployment_id,
                project_id,
            } => {
                let mut attributes = String::from("\"attributes\":{\"serverId\":");
                push_json_string(&mut attributes, server_id);
                attributes.push_str(",\"source\":\"server\",\"stream\":");
                (project_id, Some(deployment_id), attributes)
            }
            LogOwner::Build {
                build_id,
                project_id,
            } => {
                let mut attributes = String::from("\"attributes\":{\"buildId\":");
                push_json_string(&mut attributes, build_id);
                attributes.push_str(",\"source\":\"build\",\"stream\":");
                (project_id, None, attributes)
            }
        };
        let mut head = String::from("\"projectId\":");
        push_json_string(&mut head, project_id);
        head.push_str(",\"deploymentId\":");
        match deployment_id {
            Some(id) => push_json_string(&mut head, id),
            None => head.push_str("null"),
        }
        head.push_str(",\"traceId\":null,\"spanId\":null,\"level\":");
        EventTemplate {
            project_id: project_id.clone(),
            head,
            attributes,
        }
    }

    /// The length in bytes of [`EventTemplate::line`] for `entry` at `level` (ids are 36
    /// bytes, timestamps 24), without building it.
    pub fn line_len(&self, entry: &LogEntry, level: &str) -> usize {
        // `{"type":"log","data":{"id":` + id + `,` + head + `"` + level + `","message":` +
        // message + `,` + attributes + `"` + stream + `"},"timestamp":"` + ts + `"}}`
        27 + 38
            + 1
            + self.head.len()
            + 1
            + level.len()
            + 12
            + json_string_len(entry.line())
            + 1
            + self.attributes.len()
            + 1
            + entry.stream().as_str().len()
            + 16
            + 24
            + 3
    }

    /// The JSON line (no terminator) of `entry` at `level`, with event id `id`.
    pub fn line(&self, entry: &LogEntry, level: &str, id: &str) -> String {
        let message: &str = entry.line();
        let mut out = String::with_capacity(
            self.head.len() + self.attributes.len() + message.len() + id.len() + 120,
        );
        out.push_str("{\"type\":\"log\",\"data\":{\"id\":");
        push_json_string(&mut out, id);
        out.push(',');
        out.push_str(&self.head);
        out.push('"');
        out.push_str(level);
        out.push_str("\",\"message\":");
        push_json_string(&mut out, message);
        out.push(',');
        out.push_str(&self.attributes);
        out.push('"');
        out.push_str(entry.stream().as_str());
        out.push_str("\"},\"timestamp\":\"");
        out.push_str(&iso8601_utc(entry.timestamp_ms()));
        out.push_str("\"}}");
        out
    }
}

/// The level of a line: `info` for stdout and `error` for stderr, unless the line is a JSON
/// object with a pino-style numeric `level` (10 trace, 20 debug, 30 info, 40 warn, 50 error,
/// 60 fatal; numbers in between round up) or a level name.
pub fn level(stream: Stream, line: &str) -> &'static str {
    let fallback = match stream {
        Stream::Stdout => "info",
        Stream::Stderr => "error",
    };
    let trimmed = line.trim();
    if !trimmed.starts_with('{') || !trimmed.contains("\"level\"") {
        return fallback;
    }
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(trimmed) else {
        return fallback;
    };
    match fields.get("level") {
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(n) if n <= 10.0 => "trace",
            Some(n) if n <= 20.0 => "debug",
            Some(n) if n <= 30.0 => "info",
            Some(n) if n <= 40.0 => "warn",
            Some(n) if n <= 50.0 => "error",
            Some(_) => "fatal",
            None => fallback,
        },
        Some(serde_json::Value::String(name)) => match name.to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "info" => "info",
            "warn" | "warning" => "warn",
            "error" => "error",
            "fatal" | "critical" => "fatal",
            _ => fallback,
        },
        _ => fallback,
    }
}

/// The length of `value` as a JSON string literal ([`push_json_string`]).
fn json_string_len(value: &str) -> usize {
    2 + value
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Appends `value` as a JSON string literal, escaped as `JSON.stringify` does.
fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    let mut start = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&value[start..]);
    out.push('"');
}

/// Random-looking, unique identifiers: event ids (UUID v4 form, as `crypto.randomUUID()`
/// writes them) and the 12 hex digits of file names.
#[derive(Debug)]
pub struct Ids {
    seed: RandomState,
    counter: AtomicU64,
}

impl Default for Ids {
    fn default() -> Self {
        Ids {
            seed: RandomState::new(),
            counter: AtomicU64::new(0),
        }
    }
}

impl Ids {
    /// 64 bits that differ for every call (a keyed hash of a counter and the clock).
    fn next_u64(&self) -> u64 {
        let mut hasher = self.seed.build_hasher();
        hasher.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        hasher.finish()
    }

    /// A new event id: `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
    pub fn event_id(&self) -> String {
        crate::ids::format_uuid_v4(
            (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64()),
        )
    }

    /// The path of a new file of `project_id`'s log events written at `now_ms`:
    /// `observability/log/{projectId}/{YYYYMMDDTHHMMSSZ}_{12 hex}.jsonl`.
    pub fn file_path(&self, project_id: &str, now_ms: u64) -> String {
        let iso = iso8601_utc(now_ms);
        // `YYYY-MM-DDTHH:MM:SS.mmmZ` without separators and milliseconds.
        let stamp: String = iso
            .get(..19)
            .unwrap_or(&iso)
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .collect();
        format!(
            "{BASE_PATH}/log/{project_id}/{stamp}Z_{:012x}.jsonl",
            self.next_u64() & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stream: Stream, line: &str) -> LogEntry {
        LogEntry::new(1, 1_737_633_600_123, stream, line)
    }

    #[test]
    fn levels_follow_the_stream_unless_the_line_says_otherwise() {
        assert_eq!(level(Stream::Stdout, "hello"), "info");
        assert_eq!(level(Stream::Stderr, "boom"), "error");
        assert_eq!(
            level(Stream::Stdout, r#"{"level":40,"msg":"careful"}"#),
            "warn"
        );
        assert_eq!(
            level(Stream::Stderr, r#"{"level":30,"msg":"fine"}"#),
            "info"
        );
        for (n, name) in [
            (10, "trace"),
            (20, "debug"),
            (30, "info"),
            (40, "warn"),
            (50, "error"),
            (60, "fatal"),
        ] {
            assert_eq!(level(Stream::Stdout, &format!("{{\"level\":{n}}}")), name);
        }
        assert_eq!(level(Stream::Stdout, r#"{"level":"WARN"}"#), "warn");
        assert_eq!(level(Stream::Stdout, r#"{"level":"verbose"}"#), "info");
        assert_eq!(level(Stream::Stderr, r#"{"level": 50"#), "error");
        assert_eq!(level(Stream::Stdout, r#"["level",50]"#), "info");
    }

    #[test]
    fn a_line_is_the_writer_s_log_event() {
        let owner = LogOwner::Server {
            server_id: "srv-1".into(),
            deployment_id: "dep-1".into(),
            project_id: "proj-1".into(),
        };
        let line = EventTemplate::new(&owner).line(
            &entry(Stream::Stderr, "a \"q\"\n\u{1}"),
            "error",
            "id-1",
        );
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(
            value,
            serde_json::json!({
                "type": "log",
                "data": {
                    "id": "id-1",
                    "projectId": "proj-1",
                    "deploymentId": "dep-1",
                    "traceId": null,
                    "spanId": null,
                    "level": "error",
                    "message": "a \"q\"\n\u{1}",
                    "attributes": { "serverId": "srv-1", "source": "server", "stream": "stderr" },
                    "timestamp": "2025-01-23T12:00:00.123Z",
                }
            })
        );
        let build = LogOwner::Build {
            build_id: "b-1".into(),
            project_id: "proj-1".into(),
        };
        let line = EventTemplate::new(&build).line(&entry(Stream::Stdout, "x"), "info", "id-2");
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(value["data"]["deploymentId"], serde_json::Value::Null);
        assert_eq!(
            value["data"]["attributes"],
            serde_json::json!({ "buildId": "b-1", "source": "build", "stream": "stdout" })
        );
    }

    #[test]
    fn line_len_is_the_length_of_the_line() {
        let ids = Ids::default();
        let server = EventTemplate::new(&LogOwner::Server {
            server_id: "s\"1".into(),
            deployment_id: "d".into(),
            project_id: "p".into(),
        });
        let build = EventTemplate::new(&LogOwner::Build {
            build_id: "b".into(),
            project_id: "p".into(),
        });
        for template in [server, build] {
            for (stream, message) in [
                (Stream::Stdout, ""),
                (Stream::Stderr, "plain"),
                (Stream::Stdout, "tab\there \"quoted\" \\ \u{0}\u{1f} é 日本"),
            ] {
                let entry = entry(stream, message);
                for level in ["info", "warn", "error"] {
                    let line = template.line(&entry, level, &ids.event_id());
                    assert_eq!(template.line_len(&entry, level), line.len(), "{line}");
                }
            }
        }
    }

    #[test]
    fn ids_and_paths_have_the_writer_s_shapes() {
        let ids = Ids::default();
        let a = ids.event_id();
        let b = ids.event_id();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        let path = ids.file_path("proj-1", 1_737_633_600_123);
        let (dir, name) = path.rsplit_once('/').expect("a directory");
        assert_eq!(dir, "observability/log/proj-1");
        assert!(name.starts_with("20250123T120000Z_"), "{name}");
        let hex = name
            .trim_start_matches("20250123T120000Z_")
            .trim_end_matches(".jsonl");
        assert_eq!(hex.len(), 12);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
