//! The controller's work queue: keyed by application, bounded, with delayed (debounced and
//! scheduled) entries, never handing out a key that is being worked on.
//!
//! An entry becomes ready at its `ready_at`; adding a key that is queued keeps the earlier
//! of the two times, so triggers coalesce. A key added while a worker holds it is marked
//! dirty and queued again when the worker calls [`WorkQueue::done`]. Urgent entries (what a
//! user or a new commit asked for) are handed out before every ready ordinary one (periodic
//! resyncs, echoes of the controller's own writes), so a backlog of background work does not
//! delay them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct State {
    /// Queued ordinary keys by time they become ready.
    order: BTreeSet<(Instant, u64, String)>,
    /// Queued urgent keys by time they become ready.
    urgent: BTreeSet<(Instant, u64, String)>,
    /// Queued keys: their place in `order` or `urgent` (when the flag is set).
    queued: HashMap<String, (Instant, u64, bool)>,
    /// Keys held by a worker.
    running: HashSet<String>,
    /// Keys added while running: when they should be ready again, and whether urgent.
    dirty: HashMap<String, (Instant, bool)>,
    seq: u64,
}

impl State {
    fn set(&mut self, urgent: bool) -> &mut BTreeSet<(Instant, u64, String)> {
        if urgent {
            &mut self.urgent
        } else {
            &mut self.order
        }
    }

    fn unqueue(&mut self, key: &str) {
        if let Some((at, seq, urgent)) = self.queued.remove(key) {
            self.set(urgent).remove(&(at, seq, key.to_string()));
        }
    }

    fn enqueue(&mut self, key: &str, at: Instant, urgent: bool) {
        self.seq += 1;
        let seq = self.seq;
        self.set(urgent).insert((at, seq, key.to_string()));
        self.queued.insert(key.to_string(), (at, seq, urgent));
    }
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
        self.add(key, delay, false)
    }

    /// Queue `key` as urgent: once ready, it goes before every ready ordinary key.
    pub fn add_urgent_after(&self, key: &str, delay: Duration) -> Added {
        self.add(key, delay, true)
    }

    fn add(&self, key: &str, delay: Duration, urgent: bool) -> Added {
        let at = Instant::now() + delay;
        let mut s = self.lock();
        if s.running.contains(key) {
            let e = s.dirty.entry(key.to_string()).or_insert((at, urgent));
            *e = (e.0.min(at), e.1 || urgent);
            return Added::Coalesced;
        }
        if let Some(&(old, _, was_urgent)) = s.queued.get(key) {
            let (at, urgent) = (at.min(old), urgent || was_urgent);
            if at < old || urgent != was_urgent {
                s.unqueue(key);
                s.enqueue(key, at, urgent);
                drop(s);
                self.wake.notify_waiters();
            }
            return Added::Coalesced;
        }
        if s.queued.len() >= self.capacity {
            return Added::Full;
        }
        s.enqueue(key, at, urgent);
        drop(s);
        self.wake.notify_waiters();
        Added::New
    }

    /// Remove a key from the queue (and forget that it was re-added while running).
    pub fn remove(&self, key: &str) {
        let mut s = self.lock();
        s.unqueue(key);
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
        let ready = |set: &BTreeSet<(Instant, u64, String)>| {
            set.iter().take_while(|(at, _, _)| *at <= now).count()
        };
        ready(&s.urgent) + ready(&s.order)
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
                let first_urgent = s.urgent.first().cloned();
                let first = s.order.first().cloned();
                let take = [first_urgent.clone(), first.clone()]
                    .into_iter()
                    .flatten()
                    .find(|(at, _, _)| *at <= now);
                if let Some((_, _, key)) = take {
                    s.unqueue(&key);
                    s.running.insert(key.clone());
                    return Some(key);
                }
                [first_urgent, first]
                    .into_iter()
                    .flatten()
                    .map(|(at, _, _)| at)
                    .min()
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
        let Some((at, urgent)) = s.dirty.remove(key) else {
            return false;
        };
        s.unqueue(key);
        s.enqueue(key, at, urgent);
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
    async fn urgent_keys_go_before_ready_ordinary_ones() {
        let q = WorkQueue::new(10);
        let cancel = CancellationToken::new();
        q.add_after("resync-1", Duration::ZERO);
        q.add_after("resync-2", Duration::ZERO);
        q.add_urgent_after("push", Duration::from_millis(20));
        q.add_after("later", Duration::from_secs(3600));
        // Not ready yet: ordinary keys go first.
        assert_eq!(q.next(&cancel).await.as_deref(), Some("resync-1"));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(q.ready(), 2);
        assert_eq!(q.next(&cancel).await.as_deref(), Some("push"));
        // An ordinary key made urgent moves ahead, keeping the earlier time.
        q.add_urgent_after("later", Duration::ZERO);
        assert_eq!(q.next(&cancel).await.as_deref(), Some("later"));
        assert_eq!(q.next(&cancel).await.as_deref(), Some("resync-2"));
        // Urgency added while running survives the requeue.
        q.add_urgent_after("resync-1", Duration::ZERO);
        q.add_after("other", Duration::ZERO);
        assert!(q.done("resync-1"));
        assert_eq!(q.next(&cancel).await.as_deref(), Some("resync-1"));
        assert_eq!(q.next(&cancel).await.as_deref(), Some("other"));
        assert_eq!(q.len(), (0, 5));
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
