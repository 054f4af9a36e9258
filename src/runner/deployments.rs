//! A deployment's servers as one: under `redeploy: 'replace'` any record of a deployment (its
//! current server, one a redeploy replaced, one still draining) stands for the deployment, as
//! MastraAdmin's storage and health worker use them: `stop()` of any of them stops every server
//! of it, and `healthCheck` and `getResourceUsage` of a replaced one answer for the current
//! server.

use super::{Runner, ServerInfo, futures_collect};
use crate::config::RedeployMode;
use crate::sync::lock;

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
        let deployment_id = lock(&self.replaced).get(server_id).cloned().or_else(|| {
            lock(&self.servers)
                .get(server_id)
                .map(|entry| entry.handle.info().deployment_id)
        })?;
        self.stop_deployment(&deployment_id, server_id).await
    }

    /// Stops every server of `deployment_id` at once; returns how `server_id` ended, or the
    /// deployment's current server when `server_id` was a stale record.
    async fn stop_deployment(&self, deployment_id: &str, server_id: &str) -> Option<ServerInfo> {
        let ids: Vec<String> = {
            let servers = lock(&self.servers);
            *lock(&self.deployment_stops)
                .entry(deployment_id.to_owned())
                .or_default() += 1;
            servers
                .iter()
                .filter(|(_, entry)| entry.handle.info().deployment_id == deployment_id)
                .map(|(id, entry)| {
                    if let Some(drain) = &entry.draining {
                        drain.cancel();
                    }
                    id.clone()
                })
                .collect()
        };
        let current = self.current_server(deployment_id);
        let stops = ids.iter().map(|id| self.stop_by(id, "stop()"));
        let ended = futures_collect(stops).await;
        lock(&self.replaced).retain(|_, deployment| deployment != deployment_id);
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

    /// How many times `stop()` took deployment `deployment_id` down so far.
    pub(super) fn stops_of(&self, deployment_id: &str) -> u64 {
        lock(&self.deployment_stops)
            .get(deployment_id)
            .copied()
            .unwrap_or(0)
    }

    /// The server that answers for `server_id`: itself, or, for a record a redeploy replaced,
    /// its deployment's current server (`None` once the deployment has none).
    pub(super) fn answering_server(&self, server_id: &str) -> Option<String> {
        let stale_of = lock(&self.replaced).get(server_id).cloned();
        match stale_of {
            Some(deployment_id) => self.current_server(&deployment_id),
            None => Some(server_id.to_owned()),
        }
    }

    /// The server serving `deployment_id` now: the latest finished deploy's.
    pub(super) fn current_server(&self, deployment_id: &str) -> Option<String> {
        lock(&self.servers)
            .iter()
            .filter(|(_, entry)| {
                entry.serving && entry.handle.info().deployment_id == deployment_id
            })
            .max_by_key(|(_, entry)| entry.deploy_order)
            .map(|(id, _)| id.clone())
    }
}
