//! FIFO queues of try-lock requests waiting for a lock on its partition leader.
//!
//! Only the head of a queue acts: it retries its acquire (through Raft, or in the
//! ephemeral lock table) when it is woken by a release, or when the holder's lease
//! ends, whichever comes first. The others wait for their turn, so a lock passes to
//! waiters in arrival order and each hand-off costs one retry, not one per waiter.
//! A waiter that leaves (acquired, timed out, or its request was dropped) passes the
//! turn to the next. Queues live in the leader's memory only: after a leader change,
//! retried requests queue again on the new leader.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::error::KvError;
use crate::limits::LOCK_WAITERS_MAX;
use crate::types::Durability;

/// A lock's identity: its keyspace and name.
pub(crate) type LockKey = (Durability, String);

#[derive(Default)]
struct Queue {
    /// Waiter ids in arrival order; the first is the head.
    waiters: VecDeque<(u64, Arc<Notify>)>,
    /// When the current holder's lease ends (unix ms), as last seen by a waiter;
    /// `None` after a release, when the lock may be free.
    holder_expires_at_ms: Option<u64>,
}

/// Every waiting queue of one partition.
#[derive(Default)]
pub(crate) struct LockWaits {
    queues: Mutex<HashMap<LockKey, Queue>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A place in a lock's queue; leaving the queue is dropping it.
pub(crate) struct Ticket {
    waits: Arc<LockWaits>,
    key: LockKey,
    id: u64,
    notify: Arc<Notify>,
}

impl LockWaits {
    fn queues(&self) -> MutexGuard<'_, HashMap<LockKey, Queue>> {
        // Every critical section leaves the map consistent before anything can panic.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anyone waits for the lock.
    pub(crate) fn has_waiters(&self, key: &LockKey) -> bool {
        self.queues().get(key).is_some_and(|q| !q.waiters.is_empty())
    }

    /// Joins the end of the lock's queue; refused when [`LOCK_WAITERS_MAX`] already wait.
    pub(crate) fn enqueue(self: &Arc<Self>, key: LockKey) -> Result<Ticket, KvError> {
        let mut queues = self.queues();
        let queue = queues.entry(key.clone()).or_default();
        if queue.waiters.len() >= LOCK_WAITERS_MAX {
            return Err(KvError::Unavailable(format!(
                "lock {:?} already has {LOCK_WAITERS_MAX} waiters on this leader; retry later",
                key.1
            )));
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        queue.waiters.push_back((id, notify.clone()));
        Ok(Ticket { waits: self.clone(), key, id, notify })
    }

    /// Tells the lock's head waiter that the lock was released.
    pub(crate) fn released(&self, key: &LockKey) {
        if let Some(queue) = self.queues().get_mut(key) {
            queue.holder_expires_at_ms = None;
            if let Some((_, head)) = queue.waiters.front() {
                head.notify_one();
            }
        }
    }

    /// Waiters queued on this partition, over all locks.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.queues().values().map(|q| q.waiters.len()).sum()
    }
}

impl Ticket {
    fn is_head(&self) -> bool {
        let queues = self.waits.queues();
        queues.get(&self.key).and_then(|q| q.waiters.front()).is_some_and(|(id, _)| *id == self.id)
    }

    /// Waits until this ticket heads its queue.
    ///
    /// # Cancel safety
    /// Cancel safe: the ticket keeps its place until dropped.
    pub(crate) async fn turn(&self) {
        loop {
            let woken = self.notify.notified();
            if self.is_head() {
                return;
            }
            woken.await;
        }
    }

    /// Waits for a wake-up: a release, or the turn passing to this ticket.
    ///
    /// # Cancel safety
    /// Cancel safe; a wake-up that arrives meanwhile is kept for the next call.
    pub(crate) async fn woken(&self) {
        self.notify.notified().await;
    }

    /// When the holder's lease ends, as last seen by any waiter of this lock.
    pub(crate) fn holder_expires_at_ms(&self) -> Option<u64> {
        self.waits.queues().get(&self.key).and_then(|q| q.holder_expires_at_ms)
    }

    /// Records when the holder's lease ends (`None`: the lock may be free).
    pub(crate) fn set_holder_expires_at_ms(&self, expires_at_ms: Option<u64>) {
        if let Some(queue) = self.waits.queues().get_mut(&self.key) {
            queue.holder_expires_at_ms = expires_at_ms;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut queues = self.waits.queues();
        let Some(queue) = queues.get_mut(&self.key) else { return };
        let was_head = queue.waiters.front().is_some_and(|(id, _)| *id == self.id);
        queue.waiters.retain(|(id, _)| *id != self.id);
        if queue.waiters.is_empty() {
            queues.remove(&self.key);
        } else if was_head && let Some((_, next)) = queue.waiters.front() {
            next.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(name: &str) -> LockKey {
        (Durability::Persistent, name.to_owned())
    }

    #[tokio::test]
    async fn turns_pass_in_arrival_order() {
        let waits = Arc::new(LockWaits::default());
        let a = waits.enqueue(key("r")).expect("room");
        let b = waits.enqueue(key("r")).expect("room");
        let other = waits.enqueue(key("s")).expect("room");
        assert!(waits.has_waiters(&key("r")));
        tokio::time::timeout(Duration::from_millis(100), a.turn()).await.expect("a heads r");
        tokio::time::timeout(Duration::from_millis(100), other.turn()).await.expect("s is its own queue");
        assert!(tokio::time::timeout(Duration::from_millis(20), b.turn()).await.is_err(), "b waits");
        a.set_holder_expires_at_ms(Some(5));
        assert_eq!(b.holder_expires_at_ms(), Some(5));
        drop(a);
        tokio::time::timeout(Duration::from_millis(100), b.turn()).await.expect("b's turn after a left");
        waits.released(&key("r"));
        assert_eq!(b.holder_expires_at_ms(), None);
        tokio::time::timeout(Duration::from_millis(100), b.woken()).await.expect("release wakes the head");
        drop((b, other));
        assert_eq!(waits.len(), 0);
        assert!(!waits.has_waiters(&key("r")));
    }

    #[tokio::test]
    async fn queues_are_bounded() {
        let waits = Arc::new(LockWaits::default());
        let tickets: Vec<Ticket> = (0..LOCK_WAITERS_MAX).map(|_| waits.enqueue(key("r")).expect("room")).collect();
        assert!(matches!(waits.enqueue(key("r")), Err(KvError::Unavailable(_))));
        drop(tickets);
        assert!(waits.enqueue(key("r")).is_ok());
    }
}
