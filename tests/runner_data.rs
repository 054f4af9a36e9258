//! Issue 28: what a server writes relative to its working directory (`./x`, `../x`) is its
//! deployment's data: it survives redeploys with new builds, build retention, a new runner on
//! the same `buildDir`, and is never seen by another deployment; `removeDeploymentData` is
//! refused while the deployment is served and deletes it afterwards. The fixture counts its
//! starts in `./starts.txt` and `../starts.txt`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::servers::{processes_under, request, runner, runner_on};
use mastra_runner_local::runner::DeployRequest;
use serde_json::{Value, json};

/// `GET /starts` of the server on `port`.
fn starts(port: u16) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .write_all(b"GET /starts HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let body = answer.split("\r\n\r\n").nth(1).expect("body");
    serde_json::from_str(body).expect("JSON")
}

/// Build `build_id`: the fixture server with files of the build's own that a server reads from
/// its working directory: a `version.txt` naming the build, a `.env` and a static asset.
fn add_build(dir: &Path, build_id: &str) {
    let output = dir.join(build_id).join(".mastra/output");
    std::fs::create_dir_all(output.join("public")).expect("output");
    if build_id != "build-1" {
        std::fs::copy(
            dir.join("build-1/.mastra/output/index.mjs"),
            output.join("index.mjs"),
        )
        .expect("fixture");
    }
    std::fs::write(output.join("version.txt"), build_id).expect("version");
    std::fs::write(output.join(".env"), format!("BUILT_BY={build_id}\n")).expect(".env");
    std::fs::write(output.join("public/asset.txt"), build_id).expect("asset");
}

fn counting(deployment: &str, build_id: &str) -> DeployRequest {
    DeployRequest {
        build_id: build_id.to_owned(),
        ..request(deployment, &[("FIXTURE_COUNT_STARTS", "1")])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployments_data_survives_redeploys_retention_and_a_new_runner() {
    let (first_runner, dir) = runner("data-survives", 13200, json!({ "retainBuilds": 1 }));
    add_build(&dir, "build-1");
    let server = first_runner
        .deploy(counting("dep-1", "build-1"))
        .await
        .expect("deploy");
    let seen = starts(server.port);
    assert_eq!(
        (seen["here"].as_u64(), seen["above"].as_u64()),
        (Some(1), Some(1))
    );
    let data = dir.join(".data/dep-1");
    assert_eq!(seen["dataDir"], json!(data.to_string_lossy()));
    assert_eq!(
        seen["cwd"],
        json!(data.join(".mastra/output").to_string_lossy())
    );
    assert_eq!(
        std::fs::read_to_string(data.join(".mastra/starts.txt")).expect("../x"),
        "1"
    );

    for (n, build) in ["build-2", "build-3", "build-4"].into_iter().enumerate() {
        add_build(&dir, build);
        let server = first_runner
            .deploy(counting("dep-1", build))
            .await
            .expect("redeploy");
        let seen = starts(server.port);
        let count = n as u64 + 2;
        assert_eq!(
            (seen["here"].as_u64(), seen["above"].as_u64()),
            (Some(count), Some(count))
        );
        assert_eq!(
            seen["version"],
            json!(build),
            "the build's own files are read"
        );
        // As under `node index.mjs` in the build's output: its `.env` and its static files.
        assert_eq!(seen["dotenv"], json!(format!("BUILT_BY={build}\n")));
        assert_eq!(seen["asset"], json!(build));
    }
    common::wait_until(
        "retention to remove the older builds",
        Duration::from_secs(30),
        || !dir.join("build-1").exists() && !dir.join("build-3").exists(),
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(data.join(".mastra/output/starts.txt")).expect("./x"),
        "4"
    );
    first_runner.shutdown().await;

    let second_runner = runner_on(&dir, 13200, json!({ "retainBuilds": 1 }));
    let server = second_runner
        .deploy(counting("dep-1", "build-4"))
        .await
        .expect("deploy on a new runner");
    assert_eq!(starts(server.port)["here"].as_u64(), Some(5));
    let other = second_runner
        .deploy(counting("dep-2", "build-4"))
        .await
        .expect("another deployment");
    assert_eq!(
        starts(other.port)["here"].as_u64(),
        Some(1),
        "another deployment starts afresh"
    );
    common::wait_until(
        "the data's disk use to be measured",
        Duration::from_secs(10),
        || second_runner.stats().data_disk_bytes > 0,
    )
    .await;

    let refused = second_runner
        .remove_deployment_data("dep-1")
        .await
        .expect_err("refused while served");
    assert_eq!(refused.code(), "ERR_DATA_IN_USE");
    assert!(data.join(".mastra/starts.txt").exists());
    second_runner.stop(&server.id).await;
    assert!(
        second_runner
            .remove_deployment_data("dep-1")
            .await
            .expect("removed")
    );
    assert!(!data.exists());
    assert!(
        dir.join("build-4/.mastra/output/index.mjs").exists(),
        "the build is untouched"
    );
    let fresh = second_runner
        .deploy(counting("dep-1", "build-4"))
        .await
        .expect("deploy after removal");
    assert_eq!(starts(fresh.port)["here"].as_u64(), Some(1));
    second_runner.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}
