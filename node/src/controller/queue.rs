//! The controller's work queue: keyed by application, bounded, with delayed (debounced and
//! scheduled) entries, never handing out a key that is being worked on.
//!
//! An entry becomes ready at its `ready_at`; adding a key that is queued keeps the earlier
//! of the two times, so triggers coalesce. A key added while a worker holds it is marked
//! dirty and queued again when the worker calls [`WorkQueue::done`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct State {
    /// Queued keys by time they become ready.
    order: BTreeSet<(Instant, u64, String)>,
    /// Queued keys: their place in `order`.
    queued: HashMap<String, (Instant, u64)>,
    /// Keys held by a worker.
    running: HashSet<String>,
    /// Keys added while running: when they should be ready again.
    dirty: HashMap<String, Instant>,
    seq: u64,
}

/// A bounded, keyed, delaying work queue.
pub struct WorkQueue {
    state: Mutex<State>,
    wake: Notify,
    capacity: usize,
}

/// What [`WorkQueue::add_after`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new entry.
    New,
    /// Coalesced with a queued entry or with the running one.
    Coalesced,
    /// The queue is full; the key was not queued.
    Full,
}

impl WorkQueue {
    /// A queue holding at most `capacity` queued keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            wake: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `key` to become ready after `delay` (or earlier, if it is already queued sooner).
    pub fn add_after(&self, key: &str, delay: Duration) -> Added {
        let at = Instant::now() + delay;
        let mut s = self.lock();
        if s.running.contains(key) {
            let e = s.dirty.entry(key.to_string()).or_insert(at);
            *e = (*e).min(at);
            return Added::Coalesced;
        }
        if let Some(&(old, seq)) = s.queued.get(key) {
            if at < old {
                s.order.remove(&(old, seq, key.to_string()));
                s.order.insert((at, seq, key.to_string()));
                s.queued.insert(key.to_string(), (at, seq));
                drop(s);
                self.wake.notify_waiters();
            }
            return Added::Coalesced;
        }
        if s.queued.len() >= self.capacity {
            return Added::Full;
        }
        s.seq += 1;
        let seq = s.seq;
        s.order.insert((at, seq, key.to_string()));
        s.queued.insert(key.to_string(), (at, seq));
        drop(s);
        self.wake.notify_waiters();
        Added::New
    }

    /// Remove a key from the queue (and forget that it was re-added while running).
    pub fn remove(&self, key: &str) {
        let mut s = self.lock();
        if let Some((at, seq)) = s.queued.remove(key) {
            s.order.remove(&(at, seq, key.to_string()));
        }
        s.dirty.remove(key);
    }

    /// Keys queued (ready or not), and keys held by workers.
    pub fn len(&self) -> (usize, usize) {
        let s = self.lock();
        (s.queued.len(), s.running.len())
    }

    /// Keys ready now.
    pub fn ready(&self) -> usize {
        let now = Instant::now();
        let s = self.lock();
        s.order.iter().take_while(|(at, _, _)| *at <= now).count()
    }

    /// Whether a key is queued or running.
    pub fn contains(&self, key: &str) -> bool {
        let s = self.lock();
        s.queued.contains_key(key) || s.running.contains(key)
    }

    /// Wait for the next ready key and hold it; `None` once `cancel` fires.
    pub async fn next(&self, cancel: &CancellationToken) -> Option<String> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait_until = {
                let mut s = self.lock();
                let now = Instant::now();
                match s.order.first().cloned() {
                    Some((at, seq, key)) if at <= now => {
                        s.order.remove(&(at, seq, key.clone()));
                        s.queued.remove(&key);
                        s.running.insert(key.clone());
                        return Some(key);
                    }
                    Some((at, _, _)) => Some(at),
                    None => None,
                }
            };
            let sleep = async {
                match wait_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = &mut notified => {}
                _ = sleep => {}
            }
        }
    }

    /// Release a key taken with [`WorkQueue::next`]; if it was added meanwhile it is queued
    /// again. Returns whether it was.
    pub fn done(&self, key: &str) -> bool {
        let mut s = self.lock();
        s.running.remove(key);
        let Some(at) = s.dirty.remove(key) else {
            return false;
        };
        s.seq += 1;
        let seq = s.seq;
        if let Some((old, oseq)) = s.queued.remove(key) {
            s.order.remove(&(old, oseq, key.to_string()));
        }
        s.order.insert((at, seq, key.to_string()));
        s.queued.insert(key.to_string(), (at, seq));
        drop(s);
        self.wake.notify_waiters();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_coalesce_and_never_run_twice_at_once() {
        let q = WorkQueue::new(10);
        let cancel = CancellationToken::new();
        assert_eq!(q.add_after("a", Duration::ZERO), Added::New);
        assert_eq!(q.add_after("a", Duration::ZERO), Added::Coalesced);
        assert_eq!(q.add_after("b", Duration::from_secs(3600)), Added::New);
        assert_eq!(q.len(), (2, 0));
        assert_eq!(q.ready(), 1);
        let k = q.next(&cancel).await.expect("a is ready");
        assert_eq!(k, "a");
        // Added while running: not handed out again until done.
        assert_eq!(q.add_after("a", Duration::ZERO), Added::Coalesced);
        assert_eq!(q.len(), (1, 1));
        assert_eq!(q.ready(), 0);
        assert!(q.done("a"));
        assert_eq!(q.next(&cancel).await.as_deref(), Some("a"));
        assert!(!q.done("a"));
        // An earlier add moves a scheduled key forward.
        q.add_after("b", Duration::ZERO);
        assert_eq!(q.next(&cancel).await.as_deref(), Some("b"));
        q.done("b");
        assert_eq!(q.len(), (0, 0));
        cancel.cancel();
        assert_eq!(q.next(&cancel).await, None);
    }

    #[tokio::test]
    async fn bounded_removable_and_wakes_waiters() {
        let q = std::sync::Arc::new(WorkQueue::new(2));
        assert_eq!(q.add_after("a", Duration::from_secs(3600)), Added::New);
        assert_eq!(q.add_after("b", Duration::from_secs(3600)), Added::New);
        assert_eq!(q.add_after("c", Duration::ZERO), Added::Full);
        q.remove("a");
        assert!(!q.contains("a"));
        let cancel = CancellationToken::new();
        let (q2, c2) = (q.clone(), cancel.clone());
        let waiter = tokio::spawn(async move { q2.next(&c2).await });
        tokio::task::yield_now().await;
        assert_eq!(q.add_after("c", Duration::from_millis(10)), Added::New);
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got.as_deref(), Some("c"));
    }
}
