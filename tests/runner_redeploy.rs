//! Redeploys under `redeploy: 'replace'` (the default) and `'keep'`, with real servers and a
//! test router that forwards a deployment's traffic to its current target port.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::servers::{health_status, log_text, processes_under, request, runner};
use mastra_runner_local::runner::{BoxFuture, RouteRequest, Router, Runner, ServerInfo};
use serde_json::json;

/// Routes by deployment: the latest registered route's port is the deployment's target.
#[derive(Default)]
struct TestRouter {
    next: AtomicU32,
    routes: Mutex<HashMap<String, (String, u16)>>,
    targets: Mutex<HashMap<String, u16>>,
}

impl TestRouter {
    fn target(&self, deployment_id: &str) -> Option<u16> {
        self.targets.lock().ok()?.get(deployment_id).copied()
    }

    fn route_count(&self) -> usize {
        self.routes.lock().map_or(0, |r| r.len())
    }
}

impl Router for TestRouter {
    fn register_route<'a>(
        &'a self,
        route: &'a RouteRequest,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let id = format!("route-{}", self.next.fetch_add(1, Ordering::SeqCst));
            let mut routes = self.routes.lock().map_err(|e| e.to_string())?;
            routes.insert(id.clone(), (route.deployment_id.clone(), route.target_port));
            let mut targets = self.targets.lock().map_err(|e| e.to_string())?;
            targets.insert(route.deployment_id.clone(), route.target_port);
            Ok(id)
        })
    }

    fn remove_route<'a>(&'a self, route_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut routes = self.routes.lock().map_err(|e| e.to_string())?;
            routes.remove(route_id);
            Ok(())
        })
    }
}

/// A runner (ports from `base`) behind a [`TestRouter`], serving deployment `dep-1`.
async fn serving_through_a_router(
    name: &str,
    base: u16,
) -> (Arc<Runner>, PathBuf, Arc<TestRouter>, ServerInfo) {
    let (runner, dir) = runner(name, base, json!({ "shutdownTimeoutMs": 2000 }));
    let router = Arc::new(TestRouter::default());
    runner.set_router(Arc::clone(&router) as Arc<dyn Router>);
    let first = runner
        .deploy(request("dep-1", &[]))
        .await
        .expect("first deploy");
    (runner, dir, router, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_keeps_serving_through_every_redeploy() {
    let (runner, dir, router, first) = serving_through_a_router("replace", 12200).await;

    let done = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (router, done, ok, failed) = (
            Arc::clone(&router),
            Arc::clone(&done),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        tokio::task::spawn_blocking(move || {
            while !done.load(Ordering::SeqCst) {
                let answered = router.target("dep-1").and_then(health_status) == Some(200);
                if answered { &ok } else { &failed }.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut current = first.clone();
    for _ in 0..5 {
        let next = runner
            .deploy(request("dep-1", &[]))
            .await
            .expect("redeploy");
        assert_ne!(
            next.port, current.port,
            "the new server starts on another port"
        );
        assert!(
            runner.server(&current.id).is_none(),
            "the old server is gone once deploy resolves"
        );
        assert_eq!(router.target("dep-1"), Some(next.port));
        current = next;
    }
    done.store(true, Ordering::SeqCst);
    client.await.expect("client");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during redeploys"
    );
    assert!(ok.load(Ordering::SeqCst) > 10);

    let live = runner.list_servers();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, current.id);
    assert_eq!(router.route_count(), 1, "old routes were removed");
    assert!(log_text(&runner, &first.id).contains("replaced by a newer deploy"));

    // The first record is stale: stopping it stops the deployment's current server.
    runner.stop(&first.id).await;
    assert!(runner.list_servers().is_empty());
    assert!(processes_under(&dir).is_empty());
    assert!(runner.stats().allocated_ports.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_looked_up_the_old_address_before_the_switch_is_still_answered() {
    let (runner, _dir, router, first) = serving_through_a_router("replace-drain", 12600).await;
    let redeploy = {
        let runner = Arc::clone(&runner);
        tokio::spawn(async move { runner.deploy(request("dep-1", &[])).await })
    };
    common::wait_until(
        "the new server to take the traffic",
        Duration::from_secs(30),
        || router.target("dep-1") != Some(first.port),
    )
    .await;
    // A proxy that resolved the address a moment before the switch connects now.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stale = tokio::task::spawn_blocking(move || health_status(first.port))
        .await
        .expect("request");
    assert_eq!(
        stale,
        Some(200),
        "the replaced server stopped answering at once"
    );
    let next = redeploy.await.expect("task").expect("redeploy");
    assert!(runner.server(&first.id).is_none());
    assert_eq!(health_status(next.port), Some(200));
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_new_server_leaves_the_old_one_serving() {
    let (runner, dir) = runner("replace-fails", 12220, json!({}));
    let router = Arc::new(TestRouter::default());
    runner.set_router(Arc::clone(&router) as Arc<dyn Router>);
    let old = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    let error = runner
        .deploy(request("dep-1", &[("FIXTURE_CRASH_ON_START", "1")]))
        .await
        .expect_err("the new server crashes");
    assert_eq!(error.code(), "ERR_SERVER_EXITED");
    assert_eq!(health_status(old.port), Some(200));
    assert_eq!(router.target("dep-1"), Some(old.port));
    assert_eq!(router.route_count(), 1);
    let live = runner.list_servers();
    assert_eq!(
        live.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&old.id]
    );
    runner.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deploys_of_one_deployment_leave_one_server() {
    let (runner, dir) = runner("replace-race", 12240, json!({}));
    let deploys: Vec<_> = (0..4)
        .map(|_| {
            let runner = Arc::clone(&runner);
            tokio::spawn(async move { runner.deploy(request("dep-1", &[])).await })
        })
        .collect();
    let mut resolved = Vec::new();
    for deploy in deploys {
        match deploy.await.expect("task") {
            Ok(server) => resolved.push(server),
            Err(error) => assert_eq!(error.code(), "ERR_DEPLOY_INTERRUPTED", "{error}"),
        }
    }
    assert!(!resolved.is_empty());
    let live = runner.list_servers();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(runner.stats().servers.len(), 1);
    assert_eq!(runner.stats().allocated_ports, vec![live[0].port]);
    assert_eq!(health_status(live[0].port), Some(200));
    runner.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_leaves_both_servers_running() {
    let (runner, dir) = runner("keep", 12260, json!({ "redeploy": "keep" }));
    let first = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    let second = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    assert_eq!(health_status(first.port), Some(200));
    assert_eq!(health_status(second.port), Some(200));
    assert_eq!(runner.list_servers().len(), 2);
    runner.stop(&first.id).await;
    assert_eq!(
        health_status(second.port),
        Some(200),
        "stop(first) stops only the first"
    );
    runner.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}
