//! Any JSON document as a runner config loads or fails with a message naming a field; a loaded
//! config is always coherent. Ids that pass validation never leave the build directory.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mastra_runner_local::config::RunnerConfig;
use mastra_runner_local::validate;

fuzz_target!(|input: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(input) {
        match RunnerConfig::from_json(&value, Path::new("/srv")) {
            Ok(config) => {
                assert!(config.port_range.start >= 1 && config.port_range.start <= config.port_range.end);
                assert!(config.build_dir.is_absolute());
            }
            Err(error) => assert!(error.to_string().starts_with("Invalid ")),
        }
    }
    let id = String::from_utf8_lossy(input);
    if validate::id("build.id", &id).is_ok() {
        let build_dir = Path::new("/var/builds");
        assert_eq!(build_dir.join(id.as_ref()).parent(), Some(build_dir));
    }
});
