//! The deployments owner: which server serves each deployment, the route each server holds,
//! the records a redeploy replaced, the drains, and how many times `stop()` took each
//! deployment down. One lock covers all of it, so a claim, a drain's start and a take-back each
//! see and change it at once.
//!
//! Under `redeploy: 'replace'` any record of a deployment (its current server, one a redeploy
//! replaced, one still draining) stands for the deployment, as MastraAdmin's storage and health
//! worker use them: `stop()` of any of them stops every server of it, and `healthCheck` and
//! `getResourceUsage` of a replaced one answer for the current server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::drain::Drain;
use super::{Router, Runner, ServerInfo, futures_collect};
use crate::config::RedeployMode;
use crate::sync::lock;

/// What [`Deployments::claim`] decided for a healthy server.
pub enum Claim {
    /// It serves its deployment; these servers of earlier deploys are replaced.
    Serves(Vec<String>),
    /// A later deploy of the deployment already serves it.
    Superseded,
    /// `stop()` took the deployment down after this deploy began.
    Stopped,
}

/// What [`Deployments::take_back`] decided.
pub enum TakeBack {
    /// The drain is over (cancelled, or its server is gone).
    Over,
    /// Not now: a newer draining server takes the deployment back instead, or the new server
    /// no longer serves.
    NotNow,
    /// The drained server serves its deployment again; the new one's route, when it shared
    /// it, moves back to it.
    Serves {
        deployment_id: String,
        shared_route: Option<String>,
    },
}

/// One registered server, as its deployment sees it.
struct Record {
    deployment_id: String,
    /// The order of the `deploy()` call that started it (later calls have higher numbers).
    order: u64,
    /// Its deploy finished: it serves its deployment (under `'replace'`, the one that does).
    serving: bool,
    route_id: Option<String>,
    /// A redeploy replaced it and it still answers the requests that reach it until its
    /// drain ends.
    draining: Option<Arc<Drain>>,
}

#[derive(Default)]
struct Routing {
    records: BTreeMap<String, Record>,
    /// Servers a redeploy replaced, and the deployment each served: such a stale record
    /// answers `stop`, `healthCheck` and `getResourceUsage` for its deployment's current
    /// server, as long as the deployment has a server.
    replaced: HashMap<String, String>,
    /// Per deployment, how many times `stop()` took it down: a deploy that began before a stop
    /// of its deployment never serves (a stop wins over a pending start).
    stops: HashMap<String, u64>,
}

impl Routing {
    fn has_server_of(&self, deployment_id: &str) -> bool {
        self.records
            .values()
            .any(|record| record.deployment_id == deployment_id)
    }
}

/// Deployments, their current servers and routes, and the drains of replaced servers.
#[derive(Default)]
pub struct Deployments {
    routing: Mutex<Routing>,
    deploy_order: AtomicU64,
    router: Mutex<Option<Arc<dyn Router>>>,
    /// Bytes of every deployment's data (`<buildDir>/.data`), measured after each deploy and
    /// removal of data.
    data_disk_bytes: Arc<AtomicU64>,
}

impl Deployments {
    /// Routes deployed servers through `router` from now on.
    pub fn set_router(&self, router: Arc<dyn Router>) {
        *lock(&self.router) = Some(router);
    }

    /// The router, when one is set.
    pub fn router(&self) -> Option<Arc<dyn Router>> {
        lock(&self.router).clone()
    }

    /// The figure `getStats().dataDiskBytes` reads.
    pub fn data_disk_bytes(&self) -> &Arc<AtomicU64> {
        &self.data_disk_bytes
    }

    /// The place of a new `deploy()` call among all of them.
    pub fn next_order(&self) -> u64 {
        self.deploy_order.fetch_add(1, Ordering::SeqCst)
    }

    /// How many times `stop()` took deployment `deployment_id` down so far.
    pub fn stops_of(&self, deployment_id: &str) -> u64 {
        lock(&self.routing)
            .stops
            .get(deployment_id)
            .copied()
            .unwrap_or(0)
    }

    /// Makes a server a deploy started known, not yet serving.
    pub fn enroll(&self, server_id: &str, deployment_id: &str, order: u64) {
        self.insert(server_id, deployment_id, order, false, None);
    }

    /// Makes an adopted server known: it serves its deployment, on `route_id`.
    pub fn enroll_adopted(
        &self,
        server_id: &str,
        deployment_id: &str,
        order: u64,
        route_id: Option<String>,
    ) {
        self.insert(server_id, deployment_id, order, true, route_id);
    }

    fn insert(
        &self,
        server_id: &str,
        deployment_id: &str,
        order: u64,
        serving: bool,
        route_id: Option<String>,
    ) {
        let record = Record {
            deployment_id: deployment_id.to_owned(),
            order,
            serving,
            route_id,
            draining: None,
        };
        lock(&self.routing)
            .records
            .insert(server_id.to_owned(), record);
    }

    /// Forgets a server that is down for good. Once its deployment has no server left, the
    /// records a redeploy replaced stop answering for it.
    pub fn forget(&self, server_id: &str) {
        let mut routing = lock(&self.routing);
        if let Some(record) = routing.records.remove(server_id)
            && !routing.has_server_of(&record.deployment_id)
        {
            routing
                .replaced
                .retain(|_, deployment| *deployment != record.deployment_id);
        }
    }

    /// Takes server `server_id`'s route away from it (to remove it).
    pub fn take_route(&self, server_id: &str) -> Option<String> {
        lock(&self.routing)
            .records
            .get_mut(server_id)
            .and_then(|record| record.route_id.take())
    }

    /// Records that server `server_id` holds route `route_id`; false once it is gone.
    pub fn set_route(&self, server_id: &str, route_id: &str) -> bool {
        match lock(&self.routing).records.get_mut(server_id) {
            Some(record) => {
                record.route_id = Some(route_id.to_owned());
                true
            }
            None => false,
        }
    }

    /// The route server `server_id` holds.
    pub fn route_of(&self, server_id: &str) -> Option<String> {
        lock(&self.routing)
            .records
            .get(server_id)
            .and_then(|record| record.route_id.clone())
    }

    /// The servers that serve their deployment.
    pub fn serving_ids(&self) -> HashSet<String> {
        self.ids_where(|record| record.serving)
    }

    /// The servers a redeploy replaced that still drain.
    pub fn draining_ids(&self) -> HashSet<String> {
        self.ids_where(|record| record.draining.is_some())
    }

    fn ids_where(&self, wanted: impl Fn(&Record) -> bool) -> HashSet<String> {
        lock(&self.routing)
            .records
            .iter()
            .filter(|(_, record)| wanted(record))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The deployment `server_id` stands for: its own, or the one a replaced record served.
    pub fn deployment_of(&self, server_id: &str) -> Option<String> {
        let routing = lock(&self.routing);
        routing.replaced.get(server_id).cloned().or_else(|| {
            routing
                .records
                .get(server_id)
                .map(|record| record.deployment_id.clone())
        })
    }

    /// Counts a `stop()` of deployment `deployment_id`, cancels its drains, and returns its
    /// servers (to be stopped).
    pub fn begin_stop(&self, deployment_id: &str) -> Vec<String> {
        let mut routing = lock(&self.routing);
        *routing.stops.entry(deployment_id.to_owned()).or_default() += 1;
        routing
            .records
            .iter()
            .filter(|(_, record)| record.deployment_id == deployment_id)
            .map(|(id, record)| {
                if let Some(drain) = &record.draining {
                    drain.cancel();
                }
                id.clone()
            })
            .collect()
    }

    /// Forgets the records a redeploy replaced of `deployment_id`.
    pub fn forget_replaced_of(&self, deployment_id: &str) {
        lock(&self.routing)
            .replaced
            .retain(|_, deployment| deployment != deployment_id);
    }

    /// Forgets every record a redeploy replaced.
    pub fn forget_all_replaced(&self) {
        lock(&self.routing).replaced.clear();
    }

    /// The server that answers for `server_id`: itself, or, for a record a redeploy replaced,
    /// its deployment's current server (`None` once the deployment has none).
    pub fn answering(&self, server_id: &str) -> Option<String> {
        let routing = lock(&self.routing);
        match routing.replaced.get(server_id) {
            Some(deployment_id) => current_of(&routing, deployment_id),
            None => Some(server_id.to_owned()),
        }
    }

    /// The server serving `deployment_id` now: the latest finished deploy's.
    pub fn current(&self, deployment_id: &str) -> Option<String> {
        current_of(&lock(&self.routing), deployment_id)
    }

    /// Marks a healthy server as the one serving its deployment. Under `redeploy: 'replace'`
    /// the deployment's other servers of earlier deploys are replaced (they drain once the
    /// route points at the new one); a later deploy that already serves the deployment, or a
    /// `stop()` of the deployment since this deploy began (`stops_before`), wins over it.
    pub fn claim(
        &self,
        server_id: &str,
        deployment_id: &str,
        order: u64,
        stops_before: u64,
        mode: RedeployMode,
    ) -> Claim {
        let mut routing = lock(&self.routing);
        if routing.stops.get(deployment_id).copied().unwrap_or(0) != stops_before {
            return Claim::Stopped;
        }
        let mut replaced = Vec::new();
        if mode == RedeployMode::Replace {
            for (id, record) in &routing.records {
                if id == server_id || record.deployment_id != deployment_id {
                    continue;
                }
                if record.order > order && record.serving {
                    return Claim::Superseded;
                }
                if record.order < order && record.draining.is_none() {
                    replaced.push(id.clone());
                }
            }
        }
        match routing.records.get_mut(server_id) {
            Some(record) => record.serving = true,
            None => return Claim::Stopped,
        }
        Claim::Serves(replaced)
    }

    /// Starts the drain of server `old` of `deployment_id`: it no longer serves, its id
    /// answers for the deployment's current server, and it loses its route when the router
    /// moved that same route to the new server (`new_route`). `None` once `old` is gone.
    pub fn begin_drain(
        &self,
        old: &str,
        deployment_id: &str,
        new_route: Option<&str>,
    ) -> Option<Arc<Drain>> {
        let drain = Arc::new(Drain::default());
        let mut routing = lock(&self.routing);
        let record = routing.records.get_mut(old)?;
        record.serving = false;
        record.draining = Some(Arc::clone(&drain));
        if record.route_id.is_some() && record.route_id.as_deref() == new_route {
            record.route_id = None;
        }
        routing
            .replaced
            .insert(old.to_owned(), deployment_id.to_owned());
        Some(drain)
    }

    /// Cancels every drain (their servers are being taken down).
    pub fn cancel_drains(&self) {
        for record in lock(&self.routing).records.values() {
            if let Some(drain) = &record.draining {
                drain.cancel();
            }
        }
    }

    /// The server `new` that serves drained server `old`'s deployment exited: `old` serves it
    /// again and `new` is replaced, unless a newer draining server still `live` takes the
    /// deployment back instead.
    pub fn take_back(
        &self,
        old: &str,
        new: &str,
        drain: &Drain,
        live: &HashSet<String>,
    ) -> TakeBack {
        let mut routing = lock(&self.routing);
        if drain.is_cancelled() {
            return TakeBack::Over;
        }
        let Some((order, deployment_id)) = routing
            .records
            .get(old)
            .map(|record| (record.order, record.deployment_id.clone()))
        else {
            return TakeBack::Over;
        };
        let newer_drains = routing.records.iter().any(|(id, other)| {
            other.draining.is_some()
                && other.order > order
                && live.contains(id)
                && other.deployment_id == deployment_id
        });
        if newer_drains || !routing.records.get(new).is_some_and(|r| r.serving) {
            return TakeBack::NotNow;
        }
        let Some(record) = routing.records.get_mut(old) else {
            return TakeBack::Over;
        };
        record.draining = None;
        record.serving = true;
        let keeps_own_route = record.route_id.is_some();
        let shared_route = routing.records.get_mut(new).and_then(|record| {
            record.serving = false;
            if keeps_own_route {
                None
            } else {
                record.route_id.take()
            }
        });
        routing.replaced.remove(old);
        routing
            .replaced
            .insert(new.to_owned(), deployment_id.clone());
        TakeBack::Serves {
            deployment_id,
            shared_route,
        }
    }

    /// Ends the drain of the earliest deploy's draining server (cancelled, so it neither stops
    /// it nor gives it its deployment back) and returns that server, for the caller to stop.
    pub fn take_oldest_drain(&self) -> Option<String> {
        let routing = lock(&self.routing);
        let (_, id, drain) = routing
            .records
            .iter()
            .filter_map(|(id, record)| {
                let drain = record.draining.as_ref()?;
                (!drain.is_cancelled()).then_some((record.order, id, drain))
            })
            .min_by_key(|(order, _, _)| *order)?;
        drain.cancel();
        Some(id.clone())
    }
}

/// The latest finished deploy's server of `deployment_id`.
fn current_of(routing: &Routing, deployment_id: &str) -> Option<String> {
    routing
        .records
        .iter()
        .filter(|(_, record)| record.serving && record.deployment_id == deployment_id)
        .max_by_key(|(_, record)| record.order)
        .map(|(id, _)| id.clone())
}

impl Runner {
    /// Stops server `server_id`: removes its route (a failing router is reported, not fatal),
    /// takes the whole tree down (SIGTERM, grace, SIGKILL, reap), then releases its port.
    /// Resolves when no process of it is left. Unknown or stopped servers: a no-op. Returns the
    /// server as it ended.
    ///
    /// Under `redeploy: 'replace'` a server stands for its deployment: stopping any record of
    /// it (the current server, one a redeploy replaced, one still draining) stops every server
    /// of the deployment, including one a deploy in flight is starting (that deploy rejects),
    /// so that afterwards nothing of it runs (what MastraAdmin's `stopDeployment()` means by it,
    /// whichever record its storage hands over).
    pub async fn stop(&self, server_id: &str) -> Option<ServerInfo> {
        if self.config().redeploy == RedeployMode::Keep {
            return self.stop_by(server_id, "stop()").await;
        }
        let deployment_id = self.deployments.deployment_of(server_id)?;
        self.stop_deployment(&deployment_id, server_id).await
    }

    /// Stops every server of `deployment_id` at once; returns how `server_id` ended, or the
    /// deployment's current server when `server_id` was a stale record.
    async fn stop_deployment(&self, deployment_id: &str, server_id: &str) -> Option<ServerInfo> {
        let ids = self.deployments.begin_stop(deployment_id);
        let current = self.deployments.current(deployment_id);
        let stops = ids.iter().map(|id| self.stop_by(id, "stop()"));
        let ended = futures_collect(stops).await;
        self.deployments.forget_replaced_of(deployment_id);
        let wanted = if ids.iter().any(|id| id == server_id) {
            server_id.to_owned()
        } else {
            current?
        };
        ids.iter()
            .zip(ended)
            .find(|(id, _)| **id == wanted)
            .and_then(|(_, info)| info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serves(claim: Claim) -> Vec<String> {
        match claim {
            Claim::Serves(replaced) => replaced,
            Claim::Superseded => panic!("superseded"),
            Claim::Stopped => panic!("stopped"),
        }
    }

    /// Deployment `dep` served by `old`, then by `new` (a redeploy).
    fn redeployed() -> Deployments {
        let deployments = Deployments::default();
        deployments.enroll("old", "dep", 0);
        deployments.enroll("new", "dep", 1);
        serves(deployments.claim("old", "dep", 0, 0, RedeployMode::Replace));
        serves(deployments.claim("new", "dep", 1, 0, RedeployMode::Replace));
        deployments
    }

    #[test]
    fn a_later_deploy_replaces_the_earlier_one_and_an_earlier_one_is_superseded() {
        let deployments = Deployments::default();
        for (id, order) in [("a", 0), ("b", 1), ("c", 2)] {
            deployments.enroll(id, "dep", order);
        }
        assert!(serves(deployments.claim("a", "dep", 0, 0, RedeployMode::Replace)).is_empty());
        let replaced = serves(deployments.claim("c", "dep", 2, 0, RedeployMode::Replace));
        assert_eq!(replaced, vec!["a".to_owned(), "b".to_owned()]);
        assert!(matches!(
            deployments.claim("b", "dep", 1, 0, RedeployMode::Replace),
            Claim::Superseded
        ));
        assert_eq!(deployments.current("dep").as_deref(), Some("c"));
    }

    #[test]
    fn a_stop_since_the_deploy_began_wins_over_it() {
        let deployments = Deployments::default();
        deployments.enroll("a", "dep", 0);
        let stops_before = deployments.stops_of("dep");
        assert_eq!(deployments.begin_stop("dep"), vec!["a".to_owned()]);
        assert!(matches!(
            deployments.claim("a", "dep", 0, stops_before, RedeployMode::Replace),
            Claim::Stopped
        ));
    }

    #[test]
    fn a_replaced_record_answers_for_the_current_server_until_the_deployment_has_none() {
        let deployments = redeployed();
        let drain = deployments
            .begin_drain("old", "dep", None)
            .expect("old drains");
        assert_eq!(deployments.answering("old").as_deref(), Some("new"));
        assert_eq!(deployments.deployment_of("old").as_deref(), Some("dep"));
        assert_eq!(deployments.take_oldest_drain().as_deref(), Some("old"));
        assert!(drain.is_cancelled());
        deployments.forget("old");
        assert_eq!(deployments.answering("old").as_deref(), Some("new"));
        deployments.forget("new");
        // No longer a record of the deployment: it answers for itself (and nothing runs).
        assert_eq!(deployments.answering("old").as_deref(), Some("old"));
        assert_eq!(deployments.deployment_of("old"), None);
    }

    #[test]
    fn a_drained_server_takes_its_deployment_and_shared_route_back() {
        let deployments = redeployed();
        assert!(deployments.set_route("old", "route-1"));
        assert!(deployments.set_route("new", "route-1"));
        let drain = deployments
            .begin_drain("old", "dep", Some("route-1"))
            .expect("old drains");
        assert_eq!(deployments.route_of("old"), None, "the route moved to new");
        let live = HashSet::from(["old".to_owned(), "new".to_owned()]);
        let TakeBack::Serves {
            deployment_id,
            shared_route,
        } = deployments.take_back("old", "new", &drain, &live)
        else {
            panic!("old serves again");
        };
        assert_eq!(deployment_id, "dep");
        assert_eq!(shared_route.as_deref(), Some("route-1"));
        assert_eq!(deployments.current("dep").as_deref(), Some("old"));
        assert_eq!(deployments.answering("new").as_deref(), Some("old"));
        assert!(deployments.draining_ids().is_empty());
    }
}
