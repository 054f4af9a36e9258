//! The drain of a server a redeploy replaced: it keeps answering what reaches it until its
//! connections end (or `redeployDrainMs`), then stops; if the deployment's new server exits
//! meanwhile, it serves the deployment again (README, "Redeploy and readiness").

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Runner;
use super::deployments::TakeBack;
use super::supervisor::ServerState;
use crate::process;

/// The shortest time a server a redeploy replaced keeps serving after `deploy()` resolved: a
/// caller that routes traffic itself (MastraAdmin's orchestrator moves its route right after
/// `deploy()` resolves) switches within it, and a client or proxy that looked the old address
/// up just before the switch still gets its answer.
pub const SWITCH_WINDOW: Duration = Duration::from_secs(1);

/// After [`SWITCH_WINDOW`], a replaced server with no open connection for this long has
/// answered everything that reached it, and stops.
pub const QUIET_BEFORE_RETIRING: Duration = Duration::from_millis(250);

/// How often a draining server's connections are counted.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// A replaced server's drain. Cancelled when something else takes the server down (`stop()` of
/// its deployment, `shutdown()`, `detach()`): the drain then neither stops it nor gives it its
/// deployment back.
#[derive(Debug, Default)]
pub struct Drain {
    cancelled: std::sync::atomic::AtomicBool,
}

impl Drain {
    /// Ends the drain without stopping its server.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether the drain was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

impl Runner {
    /// Starts the drain of server `old`, which `new` replaced: from now on `listServers()`
    /// leaves it out, its id answers for the deployment's current server, and it stops once
    /// its connections have ended ([`Runner::drain`]). Its route goes with it unless the
    /// router moved that same route to `new`.
    pub(super) fn begin_drain(
        self: &Arc<Self>,
        old: &str,
        new: &str,
        deployment_id: &str,
        new_route: Option<&str>,
    ) {
        let Some(drain) = self.deployments.begin_drain(old, deployment_id, new_route) else {
            return;
        };
        self.shared.keeping.drain_began(old);
        self.note_in_log(
            old,
            format!(
                "replaced by server {new} (a newer deploy of deployment '{deployment_id}'); it answers until its connections end, at most {} ms",
                self.config().redeploy_drain.as_millis()
            ),
        );
        let runner = Arc::clone(self);
        let old = old.to_owned();
        tokio::spawn(async move { runner.drain(&old, &drain).await });
    }

    /// Keeps server `old` answering after a redeploy replaced it, then stops it: once
    /// [`SWITCH_WINDOW`] has passed and it has had no open connection for
    /// [`QUIET_BEFORE_RETIRING`] (an in-flight request, such as a streamed answer, holds its
    /// connection open), or after `redeployDrainMs` at the latest. If the deployment's current
    /// server exits meanwhile, `old` takes its deployment back instead ([`Runner::take_back`]).
    async fn drain(&self, old: &str, drain: &Drain) {
        let started = std::time::Instant::now();
        let limit = self.config().redeploy_drain;
        let mut quiet_since: Option<std::time::Instant> = None;
        loop {
            if drain.is_cancelled() {
                return;
            }
            let Some(info) = self.server(old) else {
                return;
            };
            if !info.is_live() || started.elapsed() >= limit {
                break;
            }
            let current = self
                .deployments
                .current(&info.deployment_id)
                .and_then(|id| self.server(&id));
            match current {
                Some(current)
                    if matches!(
                        current.state,
                        ServerState::Backoff { .. } | ServerState::Stopped { .. }
                    ) =>
                {
                    if self.take_back(old, &current.id, drain).await {
                        return;
                    }
                }
                None => break,
                Some(_) => {}
            }
            let port = info.port;
            let open =
                tokio::task::spawn_blocking(move || process::ownership::open_connections(port))
                    .await
                    .unwrap_or(0);
            if open > 0 {
                quiet_since = None;
            } else {
                let quiet = *quiet_since.get_or_insert_with(std::time::Instant::now);
                if started.elapsed() >= SWITCH_WINDOW && quiet.elapsed() >= QUIET_BEFORE_RETIRING {
                    break;
                }
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        if !drain.is_cancelled()
            && let Some(stopped) = self.stop_by(old, "a redeploy").await
        {
            // Its build directory was kept while it ran.
            self.prune_builds(&stopped.deployment_id).await;
        }
    }

    /// The server `new` that serves `old`'s deployment exited while `old` drained: `old`
    /// serves the deployment again (its route back, with a router on the runner) and `new` is
    /// stopped. Returns whether the drain is over: false when a newer draining server of the
    /// deployment takes it back instead, or `new` no longer serves.
    async fn take_back(&self, old: &str, new: &str, drain: &Drain) -> bool {
        let live = self.servers.live_ids();
        let (deployment_id, shared_route) = match self.deployments.take_back(old, new, drain, &live)
        {
            TakeBack::Over => return true,
            TakeBack::NotNow => return false,
            TakeBack::Serves {
                deployment_id,
                shared_route,
            } => (deployment_id, shared_route),
        };
        let old_port = self.server(old).map(|info| info.port);
        let router = self.deployments.router();
        if let (Some(route_id), Some(router), Some(old_port)) = (shared_route, router, old_port) {
            let limit = self.config().provider_timeout;
            let moved =
                tokio::time::timeout(limit, router.update_route(&route_id, "127.0.0.1", old_port))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {} ms", limit.as_millis())));
            if let Err(why) = moved {
                tracing::warn!(
                    "router failed to move route '{route_id}' back to server '{old}': {why}"
                );
            }
            self.deployments.set_route(old, &route_id);
        }
        self.shared
            .keeping
            .served_again(old, self.deployments.route_of(old));
        self.note_in_log(
            old,
            format!("server {new}, which replaced it, exited: this server serves deployment '{deployment_id}' again"),
        );
        self.stop_by(new, "its replaced server taking the deployment back")
            .await;
        self.point_data_at_current(&deployment_id).await;
        true
    }
}
