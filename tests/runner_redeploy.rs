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

/// Routes by deployment: the latest registered (or updated) route's port is the deployment's
/// target. Keyed by deployment (`one_per_deployment`), it refuses a second route of a
/// deployment and can look routes up and move them, as MastraAdmin's `LocalEdgeRouter` does.
#[derive(Default)]
struct TestRouter {
    one_per_deployment: bool,
    next: AtomicU32,
    registered: AtomicUsize,
    routes: Mutex<HashMap<String, (String, u16)>>,
    targets: Mutex<HashMap<String, u16>>,
}

impl TestRouter {
    fn keyed_by_deployment() -> Self {
        TestRouter {
            one_per_deployment: true,
            ..TestRouter::default()
        }
    }

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
            let mut routes = self.routes.lock().map_err(|e| e.to_string())?;
            if self.one_per_deployment && routes.values().any(|(d, _)| *d == route.deployment_id) {
                return Err(format!(
                    "Route already exists for deployment {}",
                    route.deployment_id
                ));
            }
            let id = format!("route-{}", self.next.fetch_add(1, Ordering::SeqCst));
            routes.insert(id.clone(), (route.deployment_id.clone(), route.target_port));
            let mut targets = self.targets.lock().map_err(|e| e.to_string())?;
            targets.insert(route.deployment_id.clone(), route.target_port);
            self.registered.fetch_add(1, Ordering::SeqCst);
            Ok(id)
        })
    }

    fn remove_route<'a>(&'a self, route_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut routes = self.routes.lock().map_err(|e| e.to_string())?;
            if let Some((deployment, port)) = routes.remove(route_id) {
                let mut targets = self.targets.lock().map_err(|e| e.to_string())?;
                // Traffic goes to the newest route's port: only that route's removal ends it.
                if targets.get(&deployment) == Some(&port) {
                    targets.remove(&deployment);
                }
            }
            Ok(())
        })
    }

    fn can_update(&self) -> bool {
        self.one_per_deployment
    }

    fn get_route<'a>(
        &'a self,
        deployment_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let routes = self.routes.lock().map_err(|e| e.to_string())?;
            Ok(routes
                .iter()
                .find(|(_, (d, _))| d == deployment_id)
                .map(|(id, _)| id.clone()))
        })
    }

    fn update_route<'a>(
        &'a self,
        route_id: &'a str,
        _target_host: &'a str,
        target_port: u16,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut routes = self.routes.lock().map_err(|e| e.to_string())?;
            let route = routes
                .get_mut(route_id)
                .ok_or_else(|| format!("Route not found: {route_id}"))?;
            route.1 = target_port;
            let deployment = route.0.clone();
            self.targets
                .lock()
                .map_err(|e| e.to_string())?
                .insert(deployment, target_port);
            Ok(())
        })
    }
}

/// Waits until server `id` is down for good and forgotten (a drain ended).
async fn until_gone(runner: &Runner, id: &str) {
    common::wait_until(
        "the replaced server to stop",
        Duration::from_secs(30),
        || runner.server(id).is_none(),
    )
    .await;
}

/// The body of `GET /stream?ms=<ms>` on `port`, read to its end (or to the connection's
/// close).
fn streamed(port: u16, ms: u64) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let request = format!("GET /stream?ms={ms} HTTP/1.0\r\nHost: x\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// A runner (ports from `base`) with `router` set on it.
fn routed(name: &str, base: u16, router: TestRouter) -> (Arc<Runner>, PathBuf, Arc<TestRouter>) {
    let (runner, dir) = runner(name, base, json!({}));
    let router = Arc::new(router);
    runner.set_router(Arc::clone(&router) as Arc<dyn Router>);
    (runner, dir, router)
}

/// A runner (ports from `base`) behind a [`TestRouter`], serving deployment `dep-1`.
async fn serving_through_a_router(
    name: &str,
    base: u16,
) -> (Arc<Runner>, PathBuf, Arc<TestRouter>, ServerInfo) {
    let (runner, dir, router) = routed(name, base, TestRouter::default());
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
        assert_eq!(
            runner
                .list_servers()
                .iter()
                .map(|s| &s.id)
                .collect::<Vec<_>>(),
            vec![&next.id],
            "listServers shows the new server alone"
        );
        assert!(runner.stats().draining_servers >= 1, "the old one drains");
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
    common::wait_until("every drain to end", Duration::from_secs(30), || {
        runner.stats().servers.len() == 1
    })
    .await;
    assert_eq!(runner.stats().draining_servers, 0);
    assert_eq!(router.route_count(), 1, "old routes were removed");
    assert!(log_text(&runner, &first.id).contains("replaced by server"));

    // The first record is stale: stopping it stops the deployment's current server.
    assert!(runner.health_check(&first.id).await.healthy);
    runner.stop(&first.id).await;
    assert!(runner.list_servers().is_empty());
    assert!(processes_under(&dir).is_empty());
    assert!(runner.stats().allocated_ports.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_looked_up_the_old_address_before_the_switch_is_still_answered() {
    let (runner, _dir, router, first) = serving_through_a_router("replace-drain", 12600).await;
    let redeploy = common::servers::deploy_in_background(&runner, request("dep-1", &[]));
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
    // A caller that switches its own route after deploy() resolved still finds it answering.
    assert_eq!(health_status(first.port), Some(200));
    until_gone(&runner, &first.id).await;
    assert_eq!(health_status(next.port), Some(200));
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_keyed_by_deployment_has_its_one_route_moved() {
    let (runner, dir, router) = routed("replace-upsert", 12620, TestRouter::keyed_by_deployment());
    let mut servers = vec![runner.deploy(request("dep-1", &[])).await.expect("deploy")];
    for _ in 0..3 {
        let next = runner
            .deploy(request("dep-1", &[]))
            .await
            .expect("a redeploy through a router that refuses a second route");
        assert_eq!(router.target("dep-1"), Some(next.port));
        servers.push(next);
    }
    assert_eq!(router.registered.load(Ordering::SeqCst), 1);
    for old in &servers[..3] {
        until_gone(&runner, &old.id).await;
    }
    assert_eq!(
        router.route_count(),
        1,
        "the drained servers left the route"
    );
    assert_eq!(router.target("dep-1"), Some(servers[3].port));
    runner.stop(&servers[3].id).await;
    assert_eq!(router.route_count(), 0);
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_in_flight_is_not_cut_by_a_redeploy() {
    let (runner, _dir) = runner("replace-stream", 12640, json!({}));
    let old = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    let port = old.port;
    let answer = tokio::task::spawn_blocking(move || streamed(port, 3000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = runner
        .deploy(request("dep-1", &[]))
        .await
        .expect("redeploy");
    // Well past the switch window, the old server still serves its one open request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        runner.server(&old.id).is_some(),
        "drained while a request was open"
    );
    let answer = answer.await.expect("client");
    assert!(answer.ends_with("done\n"), "the stream was cut: {answer:?}");
    until_gone(&runner, &old.id).await;
    assert!(common::servers::port_is_free(old.port));
    assert_eq!(health_status(new.port), Some(200));
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_at_redeploy_drain_ms_however_long_a_request_runs() {
    let (runner, _dir) = runner("replace-cap", 12660, json!({ "redeployDrainMs": 300 }));
    let old = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    let port = old.port;
    let answer = tokio::task::spawn_blocking(move || streamed(port, 20_000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner
        .deploy(request("dep-1", &[]))
        .await
        .expect("redeploy");
    until_gone(&runner, &old.id).await;
    let answer = answer.await.expect("client");
    assert!(
        !answer.ends_with("done\n"),
        "the 20 s stream ended although the drain was capped: {answer:?}"
    );
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_that_needs_a_draining_servers_port_ends_that_drain_early() {
    let range = json!({ "portRange": { "start": 12760, "end": 12761 } });
    let (runner, dir) = runner("replace-ports", 12760, range);
    let first = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    let port = first.port;
    let answer = tokio::task::spawn_blocking(move || streamed(port, 20_000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = runner
        .deploy(request("dep-1", &[]))
        .await
        .expect("redeploy");
    assert_eq!(runner.stats().draining_servers, 1);
    // Both ports are taken (one serves, one drains): the drain gives its port up.
    let third = runner
        .deploy(request("dep-1", &[]))
        .await
        .expect("a redeploy with every port taken by the deployment's own servers");
    assert_eq!(third.port, first.port);
    assert!(runner.server(&first.id).is_none());
    assert!(log_text(&runner, &first.id).contains("stops before its drain ends"));
    assert!(!answer.await.expect("client").ends_with("done\n"));
    until_gone(&runner, &second.id).await;
    runner.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replaced_server_takes_its_deployment_back_when_the_new_one_exits() {
    let (runner, dir, router) =
        routed("replace-takeback", 12680, TestRouter::keyed_by_deployment());
    let old = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    let new = runner
        .deploy(request("dep-1", &[("FIXTURE_CRASH_AFTER_MS", "200")]))
        .await
        .expect("the new server is healthy at first");
    assert_eq!(router.target("dep-1"), Some(new.port));
    common::wait_until(
        "the old server to serve again",
        Duration::from_secs(10),
        || runner.list_servers().iter().any(|s| s.id == old.id),
    )
    .await;
    assert_eq!(
        router.target("dep-1"),
        Some(old.port),
        "the route went back"
    );
    assert_eq!(health_status(old.port), Some(200));
    until_gone(&runner, &new.id).await;
    // Long after any drain would have ended, the old server still serves.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(health_status(old.port), Some(200));
    assert!(
        runner.health_check(&new.id).await.healthy,
        "the new record answers for the deployment"
    );
    assert!(log_text(&runner, &old.id).contains("serves deployment 'dep-1' again"));
    runner.stop(&new.id).await;
    assert!(runner.list_servers().is_empty());
    assert_eq!(router.route_count(), 0);
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_any_record_of_a_deployment_stops_every_server_of_it() {
    let (runner, dir) = runner("replace-stop-all", 12700, json!({}));
    let first = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    let second = runner
        .deploy(request("dep-1", &[]))
        .await
        .expect("redeploy");
    let other = runner.deploy(request("dep-2", &[])).await.expect("deploy");
    assert_eq!(runner.stats().draining_servers, 1);
    // The oldest record, as a storage that returns the first one it holds would pass it.
    runner.stop(&first.id).await;
    for server in [&first, &second] {
        assert!(runner.server(&server.id).is_none());
        assert!(common::servers::port_is_free(server.port));
    }
    assert_eq!(runner.stats().draining_servers, 0);
    assert!(!runner.health_check(&first.id).await.healthy);
    assert!(runner.resource_usage(&second.id).await.is_none());
    assert_eq!(
        health_status(other.port),
        Some(200),
        "another deployment is untouched"
    );
    runner.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_record_answers_for_its_deployment_and_keeps_its_own_log() {
    let (runner, _dir) = runner("replace-stale", 12720, json!({ "redeployDrainMs": 0 }));
    let mut records = vec![runner.deploy(request("dep-1", &[])).await.expect("deploy")];
    for _ in 0..3 {
        records.push(
            runner
                .deploy(request("dep-1", &[]))
                .await
                .expect("redeploy"),
        );
    }
    let current = records[3].clone();
    for (stale, next) in records.iter().zip(&records[1..]) {
        until_gone(&runner, &stale.id).await;
        assert!(runner.health_check(&stale.id).await.healthy, "{}", stale.id);
        let usage = runner
            .resource_usage(&stale.id)
            .await
            .expect("usage of the current server");
        assert!(usage.memory_mb > 0.0 && usage.processes >= 1);
        let own = log_text(&runner, &stale.id);
        assert!(
            own.contains(&format!("listening on {}", stale.port)),
            "{own}"
        );
        assert!(
            own.contains(&format!("replaced by server {}", next.id)),
            "{own}"
        );
    }
    runner.stop(&current.id).await;
    assert_eq!(
        runner.health_check(&records[0].id).await.message.as_deref(),
        Some("Process is not running")
    );
    assert!(runner.resource_usage(&records[1].id).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_redeploy_wins_over_its_new_server() {
    let (runner, dir) = runner("replace-stop-wins", 12740, json!({}));
    let old = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    let redeploy = common::servers::deploy_in_background(
        &runner,
        request("dep-1", &[("FIXTURE_LISTEN_AFTER_MS", "800")]),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner.stop(&old.id).await;
    let error = redeploy
        .await
        .expect("task")
        .expect_err("the stop came first");
    assert_eq!(error.code(), "ERR_DEPLOY_INTERRUPTED", "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(runner.list_servers().is_empty());
    assert!(runner.stats().allocated_ports.is_empty());
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_new_server_leaves_the_old_one_serving() {
    let (runner, dir, router) = routed("replace-fails", 12220, TestRouter::default());
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
        .map(|_| common::servers::deploy_in_background(&runner, request("dep-1", &[])))
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
    // A drained server leaves the list once its stop has finished (its cgroup and private
    // directory removed too), a moment after its drain ends.
    common::wait_until(
        "every drain and stop to end",
        Duration::from_secs(30),
        || {
            let stats = runner.stats();
            stats.draining_servers == 0 && stats.servers.len() == 1
        },
    )
    .await;
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

/// Issue 27: concurrent deploys of one deployment are ordered by call. The later call's future
/// runs first here (as a runtime may schedule it), and still the later call serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_later_deploy_call_wins_whichever_runs_first() {
    let (runner, dir) = runner("replace-call-order", 12780, json!({}));
    runner.deploy(request("dep-1", &[])).await.expect("deploy");
    let earlier = runner.deploy(request("dep-1", &[]));
    let later = runner.deploy(request("dep-1", &[]));
    let later = tokio::spawn(later);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let earlier = tokio::spawn(earlier);
    let later = later.await.expect("task").expect("the later call serves");
    match earlier.await.expect("task") {
        Ok(_) => {}
        Err(error) => assert_eq!(error.code(), "ERR_DEPLOY_INTERRUPTED", "{error}"),
    }
    let serving: Vec<String> = runner.list_servers().into_iter().map(|s| s.id).collect();
    assert_eq!(serving, vec![later.id]);
    runner.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}
