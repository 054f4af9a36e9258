//! The health gate of a starting process: an answer from the health endpoint, and the server
//! holding its port.
//!
//! The answer is awaited by polling on the health checker's schedule, and probed at once
//! whenever the server says it is ready on its IPC channel ([`super::ready`]). Either way it
//! must come from this server, not from a program that took the port
//! ([`crate::health::ListenerCheck`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::ready::next_announcement;
use crate::error::Result;
use crate::health::{HealthChecker, Listener, ListenerCheck};

/// Resolves once the server answers on `owner.port` within `timeout` and holds that port. A
/// server listens by the time it says so, so who holds the port is read from its first
/// `server-ready` on, while the probe is in flight, rather than after the answer; without a
/// signal (or when that read has not finished) it is read after the answer.
pub(super) async fn pass(
    health: Arc<HealthChecker>,
    owner: ListenerCheck,
    timeout: Duration,
    announced: Option<watch::Receiver<u64>>,
) -> Result<()> {
    let first_signal = announced.clone();
    let early = async {
        let Some(mut first_signal) = first_signal else {
            return std::future::pending().await;
        };
        next_announcement(&mut first_signal).await;
        owner.run().await
    };
    let answer = health_answer(health, owner.port, timeout, announced);
    tokio::pin!(early, answer);
    let mut early_outcome = None;
    loop {
        tokio::select! {
            // The answer first: on the signal its probe goes out before the check wakes a
            // blocking thread (on a busy machine that thread can take the CPU).
            biased;
            answered = &mut answer => {
                answered?;
                break;
            }
            outcome = &mut early, if early_outcome.is_none() => early_outcome = Some(outcome),
        }
    }
    match early_outcome.transpose()? {
        Some(Listener::Server) => Ok(()),
        // Read after the answer, no listener at all (another network namespace) leaves the
        // answer trusted.
        Some(Listener::Unseen) | None => owner.run().await.map(drop),
    }
}

/// Waits for a 2xx from the health endpoint: polling, or at once on the server's signal.
async fn health_answer(
    health: Arc<HealthChecker>,
    port: u16,
    timeout: Duration,
    announced: Option<watch::Receiver<u64>>,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let polling = health.wait_until_healthy_loopback(port, timeout);
    let has_signal = announced.is_some();
    let signalled = async {
        let Some(mut announced) = announced else {
            return std::future::pending().await;
        };
        loop {
            next_announcement(&mut announced).await;
            if health.check_loopback(port).await.healthy {
                return Ok(());
            }
        }
    };
    tokio::pin!(signalled);
    tokio::select! {
        outcome = polling => match outcome {
            // Polling gives up once its next probe would come too late; the server's
            // own signal may still arrive before the deadline.
            Err(error) if has_signal => tokio::time::timeout_at(deadline, &mut signalled)
                .await
                .unwrap_or(Err(error)),
            outcome => outcome,
        },
        outcome = &mut signalled => outcome,
    }
}
