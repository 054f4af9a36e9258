//! The FIFO build queue: at most N builds hold a slot at once, the rest wait in arrival order.
//!
//! A slot is a [`Slot`] value; dropping it hands the slot straight to the longest-waiting build
//! (so a build arriving meanwhile cannot overtake), or frees it when nobody waits.
//!
//! # Caveats
//! A waiting build may be cancelled at the very moment a slot is handed to it: the slot then
//! sits in the dropped receiver and is dropped with it, which hands it on again. A slot that
//! finds its receiver already gone is disarmed and offered to the next waiter, so no slot is
//! ever lost or counted twice.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// A queue of builds with a fixed number of slots.
#[derive(Debug)]
pub struct Queue {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    running: usize,
    next_ticket: u64,
    waiting: VecDeque<(u64, oneshot::Sender<Slot>)>,
}

/// The right to run: held for a build's whole run, released on drop.
#[derive(Debug)]
pub struct Slot {
    queue: Option<Arc<Queue>>,
}

/// The answer to [`Queue::enter`].
#[derive(Debug)]
pub enum Admission {
    /// A slot was free.
    Now(Slot),
    /// Every slot is taken: wait for [`Waiting::slot`].
    Queued(Waiting),
}

/// A place in the queue. Dropping it leaves the queue.
#[derive(Debug)]
pub struct Waiting {
    queue: Arc<Queue>,
    ticket: u64,
    /// 1 for the first in line.
    pub position: usize,
    /// Builds holding a slot when this one joined the queue.
    pub running: usize,
    receiver: Option<oneshot::Receiver<Slot>>,
}

impl Queue {
    /// A queue with `limit` slots (at least 1).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Queue {
            limit: limit.max(1),
            state: Mutex::new(State {
                running: 0,
                next_ticket: 0,
                waiting: VecDeque::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it can panic.
        crate::sync::lock(&self.state)
    }

    /// How many slots there are.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Builds holding a slot now.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// Builds waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Takes a free slot, or joins the end of the queue.
    pub fn enter(self: &Arc<Self>) -> Admission {
        let mut state = self.lock();
        if state.running < self.limit && state.waiting.is_empty() {
            state.running += 1;
            return Admission::Now(Slot {
                queue: Some(Arc::clone(self)),
            });
        }
        let (sender, receiver) = oneshot::channel();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back((ticket, sender));
        Admission::Queued(Waiting {
            queue: Arc::clone(self),
            ticket,
            position: state.waiting.len(),
            running: state.running,
            receiver: Some(receiver),
        })
    }

    /// Gives a slot back: to the first waiter still waiting, or to the pool.
    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        while let Some((_, sender)) = state.waiting.pop_front() {
            let slot = Slot {
                queue: Some(Arc::clone(self)),
            };
            match sender.send(slot) {
                Ok(()) => return,
                // That waiter gave up; its slot must not release again.
                Err(mut unsent) => unsent.queue = None,
            }
        }
        state.running = state.running.saturating_sub(1);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.release();
        }
    }
}

impl Waiting {
    /// Waits until this build is first in line and a slot frees up.
    pub async fn slot(mut self) -> Slot {
        let receiver = self.receiver.take();
        match receiver {
            Some(receiver) => match receiver.await {
                Ok(slot) => slot,
                // The sender only goes away when it was sent (handled above) or when the queue
                // dropped it, which it never does for a waiter still in line.
                Err(_) => Slot { queue: None },
            },
            None => Slot { queue: None },
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.waiting.retain(|(ticket, _)| *ticket != self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(admission: Admission) -> Waiting {
        match admission {
            Admission::Queued(waiting) => waiting,
            Admission::Now(_) => panic!("expected to wait"),
        }
    }

    fn now(admission: Admission) -> Slot {
        match admission {
            Admission::Now(slot) => slot,
            Admission::Queued(_) => panic!("expected a slot"),
        }
    }

    #[tokio::test]
    async fn slots_go_to_waiters_in_arrival_order() {
        let queue = Queue::new(1);
        let first = now(queue.enter());
        let second = queued(queue.enter());
        let third = queued(queue.enter());
        assert_eq!((second.position, third.position), (1, 2));
        assert_eq!(second.running, 1);
        drop(first);
        let second = second.slot().await;
        assert_eq!(queue.running(), 1);
        assert_eq!(queue.waiting(), 1);
        // A newcomer does not overtake the one already waiting.
        let late = queued(queue.enter());
        drop(second);
        let third = third.slot().await;
        drop(third);
        drop(late.slot().await);
        assert_eq!(queue.running(), 0);
        assert_eq!(queue.waiting(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_loses_its_place_and_no_slot() {
        let queue = Queue::new(1);
        let first = now(queue.enter());
        let leaving = queued(queue.enter());
        let staying = queued(queue.enter());
        drop(leaving);
        assert_eq!(queue.waiting(), 1);
        drop(first);
        drop(staying.slot().await);
        assert_eq!(queue.running(), 0);
    }

    #[tokio::test]
    async fn a_slot_handed_to_a_waiter_that_then_leaves_is_handed_on() {
        let queue = Queue::new(1);
        let first = now(queue.enter());
        let cancelled = queued(queue.enter());
        let next = queued(queue.enter());
        drop(first); // the slot now sits in `cancelled`'s receiver
        drop(cancelled);
        let slot = next.slot().await;
        assert_eq!(queue.running(), 1);
        drop(slot);
        assert_eq!(queue.running(), 0);
        assert_eq!(queue.limit(), 1);
    }

    #[test]
    fn up_to_the_limit_nobody_waits() {
        let queue = Queue::new(2);
        let a = now(queue.enter());
        let b = now(queue.enter());
        let c = queued(queue.enter());
        assert_eq!(c.position, 1);
        assert_eq!(c.running, 2);
        drop((a, b, c));
        assert_eq!(queue.running(), 0);
    }
}
