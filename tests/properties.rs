//! Property tests: invariants that must hold for any input, not just the examples in the unit
//! tests. (The fuzz targets in `fuzz/` drive the same code with coverage guidance.)

use std::path::Path;

use mastra_runner_local::builder::package_manager;
use mastra_runner_local::config::RunnerConfig;
use mastra_runner_local::logs::{LineFramer, LogLimits, LogStore, Stream, join_text};
use mastra_runner_local::subdomain::{self, DeploymentType};
use mastra_runner_local::validate;
use proptest::prelude::*;

fn frame(chunks: &[&[u8]], max: usize) -> Vec<String> {
    let mut framer = LineFramer::new(max);
    let mut lines = Vec::new();
    for chunk in chunks {
        framer.push(chunk, |l| lines.push(l.to_owned()));
    }
    framer.finish(|l| lines.push(l.to_owned()));
    lines
}

/// Appends `bytes` to a store in reads cut at `cuts`, and checks that the store and a
/// subscriber reading batches of `batch_sizes` lines see what the framer gives for one read.
fn check_store_chunking(
    bytes: &[u8],
    cuts: Vec<usize>,
    batch_sizes: &[usize],
    max: usize,
) -> Result<(), TestCaseError> {
    let whole = frame(&[bytes], max);
    let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
    points.sort_unstable();
    let limits = LogLimits {
        max_lines: usize::MAX,
        max_bytes: usize::MAX,
        max_line_bytes: max,
    };
    let store = LogStore::new(limits);
    let subscription = store.subscribe(usize::MAX);
    let mut framer = LineFramer::new(max);
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        store.append_chunk(Stream::Stdout, &mut framer, &bytes[start..point]);
        start = point;
    }
    store.finish_chunks(Stream::Stdout, &mut framer);
    store.close_subscriptions();
    let stored: Vec<String> = store.all().iter().map(|e| e.line().to_owned()).collect();
    prop_assert_eq!(&stored, &whole);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut delivered = Vec::new();
    let mut sizes = batch_sizes.iter().cycle();
    while let Some(batch) = runtime.block_on(subscription.next_batch(*sizes.next().unwrap())) {
        prop_assert_eq!(batch.missed, 0);
        let entries: Vec<_> = batch.entries().collect();
        let lines: Vec<String> = entries.iter().map(|e| e.line().to_owned()).collect();
        let text = join_text(&entries);
        let split: Vec<&str> = text.split('\n').collect();
        prop_assert_eq!(split, lines.iter().map(String::as_str).collect::<Vec<_>>());
        let runs: Vec<&str> = batch.runs().iter().filter_map(|run| run.joined()).collect();
        prop_assert_eq!(runs.join("\n"), text);
        delivered.extend(lines);
    }
    prop_assert_eq!(delivered, whole);
    Ok(())
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// However the bytes are cut into reads, the framer gives the same lines as for one read.
    #[test]
    fn framing_does_not_depend_on_read_boundaries(
        bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..600),
        cuts in proptest::collection::vec(0usize..600, 0..12),
        max in 1usize..80,
    ) {
        let whole = frame(&[&bytes], max);
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for point in points {
            chunks.push(&bytes[start..point]);
            start = point;
        }
        chunks.push(&bytes[start..]);
        prop_assert_eq!(frame(&chunks, max), whole);
    }

    /// However a pipe's bytes are cut into reads, and however a subscriber's batches are cut,
    /// the store keeps the same lines as the framer gives for one read, and the subscriber
    /// receives exactly those lines in order; a batch's text, joined by `\n` as it crosses to
    /// JS, splits back into the same lines.
    #[test]
    fn stored_and_delivered_lines_do_not_depend_on_chunking(
        bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..600),
        cuts in proptest::collection::vec(0usize..600, 0..12),
        batch_sizes in proptest::collection::vec(1usize..50, 1..8),
        max in 1usize..80,
    ) {
        check_store_chunking(&bytes, cuts, &batch_sizes, max)?;
    }

    /// The same for input long enough to fill several chunks and reads: lines of up to a few
    /// KiB (some ending in `\r\n`, some of invalid UTF-8), reads of up to hundreds of KiB.
    #[test]
    fn long_input_is_stored_and_delivered_the_same_however_cut(
        lines in proptest::collection::vec((0usize..3000, any::<u8>(), any::<bool>()), 0..150),
        cuts in proptest::collection::vec(0usize..450_000, 0..8),
        batch_sizes in proptest::collection::vec(1usize..20_000, 1..4),
        max in prop_oneof![Just(64 * 1024), 1usize..4000],
    ) {
        let mut bytes = Vec::new();
        for (len, fill, crlf) in lines {
            bytes.extend(std::iter::repeat_n(fill, len));
            if crlf {
                bytes.push(b'\r');
            }
            bytes.push(b'\n');
        }
        check_store_chunking(&bytes, cuts, &batch_sizes, max)?;
    }

    /// No framed line is longer than the cap plus its marker, and none holds a newline.
    #[test]
    fn framed_lines_are_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..2000), max in 1usize..100) {
        let marker = mastra_runner_local::logs::framer::truncation_marker(max);
        for line in frame(&[&bytes], max) {
            prop_assert!(line.len() <= max * 3 + marker.len(), "line of {} bytes", line.len());
            prop_assert!(!line.contains('\n'));
        }
    }

    /// Every generated subdomain is a valid DNS label and parses back to its type.
    #[test]
    fn subdomains_are_dns_labels(project in "\\PC{0,120}", branch in "\\PC{1,120}", kind in 0u8..3) {
        let kind = [DeploymentType::Production, DeploymentType::Staging, DeploymentType::Preview][kind as usize];
        let label = subdomain::generate(&project, kind, &branch);
        prop_assert!(is_dns_label(&label), "{:?}", label);
        let parsed = subdomain::parse(&label);
        prop_assert!(label.ends_with(&parsed.project), "{:?} parsed as {:?}", label, parsed);
        // A preview branch that normalises to "staging" reads back as staging (documented).
        if !(kind == DeploymentType::Preview && label.starts_with("staging--")) {
            prop_assert_eq!(parsed.deployment_type, kind);
        }
    }

    /// Any JSON config either loads or fails with a message naming a field; it never panics,
    /// and a loaded config always has a valid port range and an absolute build directory.
    #[test]
    fn config_validation_is_total(value in arbitrary_json()) {
        let cwd = Path::new("/srv");
        match RunnerConfig::from_json(&value, cwd) {
            Ok(config) => {
                prop_assert!(config.port_range.start <= config.port_range.end);
                prop_assert!(config.port_range.start >= 1);
                prop_assert!(config.build_dir.is_absolute());
                prop_assert!(config.health_check.endpoint.starts_with('/'));
            }
            Err(error) => prop_assert!(error.to_string().starts_with("Invalid "), "{}", error),
        }
    }

    /// Any `packageManager` field (or any package.json value) is detected or refused with a
    /// message naming the package manager or the field; a known name always wins over the
    /// (absent) lockfiles, with its version kept.
    #[test]
    fn package_manager_fields_are_parsed_totally(
        name in prop_oneof![
            Just("npm".to_owned()),
            Just("pnpm".to_owned()),
            Just("yarn".to_owned()),
            Just("bun".to_owned()),
            "\\PC{0,10}",
        ],
        version in "\\PC{0,12}",
        hash in proptest::option::of("[a-z0-9]{0,20}"),
        other in arbitrary_json(),
    ) {
        let mut field = format!("{name}@{version}");
        if let Some(hash) = hash {
            field.push_str(&format!("+sha512.{hash}"));
        }
        let dir = Path::new("/nonexistent-project-dir");
        let manifest = serde_json::json!({ "packageManager": field });
        match package_manager::detect_with(dir, Some(&manifest)) {
            Ok(detection) => prop_assert!(["npm", "pnpm", "yarn", "bun"].contains(&detection.package_manager.command())),
            Err(error) => {
                let text = error.to_string();
                prop_assert!(text.starts_with("Unknown package manager") || text.starts_with("Invalid"), "{}", text);
            }
        }
        let _ = package_manager::detect_with(dir, Some(&serde_json::json!({ "packageManager": other })));
    }

    /// An id that passes validation always names a direct child of the build directory.
    #[test]
    fn valid_ids_stay_inside_the_build_directory(id in "\\PC{0,140}") {
        let build_dir = Path::new("/var/builds");
        if validate::id("build.id", &id).is_ok() {
            let joined = build_dir.join(&id);
            prop_assert_eq!(joined.parent(), Some(build_dir));
            prop_assert!(joined.components().count() == build_dir.components().count() + 1);
        }
    }
}

/// JSON values shaped loosely like a runner config, with wrong types mixed in.
fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        (-1e12f64..1e12).prop_map(|f| serde_json::json!(f)),
        "\\PC{0,12}".prop_map(serde_json::Value::String),
    ];
    let keys = prop_oneof![
        Just("portRange"),
        Just("start"),
        Just("end"),
        Just("maxConcurrentBuilds"),
        Just("defaultBuildTimeoutMs"),
        Just("healthCheck"),
        Just("timeoutMs"),
        Just("endpoint"),
        Just("logRetentionLines"),
        Just("buildDir"),
        Just("buildBaseDir"),
        Just("globalEnvVars"),
        Just("shutdownTimeoutMs"),
        Just("restartPolicy"),
        Just("maxRestarts"),
        Just("backoffMs"),
        Just("maxBackoffMs"),
        Just("defaultSource"),
        Just("providerTimeoutMs"),
        Just("other"),
    ];
    leaf.prop_recursive(3, 40, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(keys.clone().prop_map(str::to_owned), inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
