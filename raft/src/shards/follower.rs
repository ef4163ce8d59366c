//! Every node's shard follower: the applied map, the lease, and what components are told.
//!
//! The lease is renewed from the instant `T0` at which this node *sent* a read-index request
//! that the current leader confirmed with a quorum (on the leader: the start of its own
//! confirmed round). Before renewing, the node waits until it has applied the returned index
//! and installs the map it then has, so a lease never covers a map older than the one the
//! leader had committed when it answered. Receiving leader heartbeats never renews anything.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_shard::{
    ActError, Epoch, FenceError, Lease, NodeId, OwnershipChange, ShardId, ShardMap,
};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::ShardConfig;
use crate::command::Command;
use crate::state_machine::ChangeEvent;
use crate::store::Store;

/// Receives every change of what a node may act on, with the instant it took effect. All
/// calls are made while the node's ownership state is locked, so they are ordered exactly
/// as [`super::ShardNode::may_act`] sees them.
pub trait LeaseObserver: Send + Sync {
    /// `node` now follows a map at `epoch` in which it owns `owned`.
    fn map_installed(&self, node: NodeId, at: Instant, epoch: Epoch, owned: &BTreeSet<ShardId>);
    /// `node`'s lease is valid from `at` until `until`.
    fn lease_renewed(&self, node: NodeId, at: Instant, until: Instant);
    /// `node` dropped its lease at `at`.
    fn lease_revoked(&self, node: NodeId, at: Instant);
}

/// What a node owns right now, as published to its components.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// The epoch of the map the node follows (0 before any map).
    pub epoch: Epoch,
    /// The shards the map gives this node.
    pub owned: Arc<BTreeSet<ShardId>>,
    /// Whether the lease was valid when this was published; check
    /// [`super::ShardNode::may_act`] before acting in any case.
    pub lease_valid: bool,
}

/// A change components must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardEvent {
    /// A new map was applied: shards gained and lost, with the new epoch.
    Changed(OwnershipChange),
    /// The lease ended: act on nothing until [`ShardEvent::LeaseRegained`].
    LeaseLost,
    /// The lease is valid again.
    LeaseRegained,
}

struct State {
    map: Option<ShardMap>,
    lease: Lease,
    lease_valid: bool,
}

pub(crate) struct Shared {
    node: NodeId,
    cfg: Arc<ShardConfig>,
    state: Mutex<State>,
    watch: watch::Sender<Ownership>,
    events: broadcast::Sender<ShardEvent>,
}

impl Shared {
    pub(crate) fn new(node: NodeId, cfg: Arc<ShardConfig>) -> Self {
        let (events, _) = broadcast::channel(cfg.events_buffer);
        Self {
            node,
            state: Mutex::new(State {
                map: None,
                lease: Lease::new(&cfg.lease),
                lease_valid: false,
            }),
            cfg,
            watch: watch::Sender::new(Ownership::default()),
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn watch(&self) -> watch::Receiver<Ownership> {
        self.watch.subscribe()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ShardEvent> {
        self.events.subscribe()
    }

    pub(crate) fn owned_count(&self) -> usize {
        self.watch.borrow().owned.len()
    }

    pub(crate) fn may_act(&self, shard: ShardId, now: Instant) -> Result<Epoch, ActError> {
        let st = self.lock();
        match &st.map {
            Some(map) => st.lease.may_act(now, map, self.node, shard),
            None if !st.lease.is_valid(now) => Err(ActError::NoLease { node: self.node }),
            None => Err(ActError::Fence(FenceError::NoSuchShard {
                shard,
                shard_count: 0,
            })),
        }
    }

    /// Installs `next` if it is newer than the followed map, and tells everyone.
    fn install(&self, st: &mut State, next: ShardMap, now: Instant) {
        if st.map.as_ref().is_some_and(|m| m.epoch >= next.epoch) {
            return;
        }
        let prev = st
            .map
            .take()
            .unwrap_or_else(|| ShardMap::unassigned(next.shard_count()));
        let change = prev.changes_for(&next, self.node);
        let owned: BTreeSet<ShardId> = next.owned_by(self.node).into_iter().collect();
        if let Some(o) = &self.cfg.observer {
            o.map_installed(self.node, now, next.epoch, &owned);
        }
        tracing::debug!(
            node = self.node,
            epoch = next.epoch,
            gained = change.gained.len(),
            lost = change.lost.len(),
            "shard map installed"
        );
        self.watch.send_replace(Ownership {
            epoch: next.epoch,
            owned: Arc::new(owned),
            lease_valid: st.lease_valid,
        });
        st.map = Some(next);
        if !change.gained.is_empty() || !change.lost.is_empty() {
            let _ = self.events.send(ShardEvent::Changed(change));
        }
    }

    fn set_lease_valid(&self, st: &mut State, valid: bool) {
        if st.lease_valid == valid {
            return;
        }
        st.lease_valid = valid;
        self.watch.send_modify(|o| o.lease_valid = valid);
        let ev = if valid {
            tracing::info!(
                node = self.node,
                "shard lease regained: acting on owned shards again"
            );
            ShardEvent::LeaseRegained
        } else {
            tracing::warn!(
                node = self.node,
                "shard lease lapsed: acting on no shard until renewed"
            );
            ShardEvent::LeaseLost
        };
        let _ = self.events.send(ev);
    }

    fn refresh_from(&self, store: &Store) {
        match store.local().shard_map() {
            Ok(Some(map)) => {
                let mut st = self.lock();
                self.install(&mut st, map, Instant::now());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(node = self.node, error = %e, "reading the shard map"),
        }
    }

    /// Installs the map this replica has applied, then renews the lease from `sent_at`.
    fn renew(&self, store: &Store, sent_at: Instant) {
        let map = match store.local().shard_map() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(node = self.node, error = %e, "reading the shard map");
                return;
            }
        };
        let mut st = self.lock();
        let now = Instant::now();
        if let Some(map) = map {
            self.install(&mut st, map, now);
        }
        st.lease.renew(sent_at);
        if let (Some(o), Some(until)) = (&self.cfg.observer, st.lease.expires_at()) {
            if until > now {
                o.lease_renewed(self.node, now, until);
            }
        }
        let valid = st.lease.is_valid(now);
        self.set_lease_valid(&mut st, valid);
    }

    /// Publishes a lapsed lease; returns whether the lease is valid.
    fn check_lease(&self, now: Instant) -> bool {
        let mut st = self.lock();
        let valid = st.lease.is_valid(now);
        self.set_lease_valid(&mut st, valid);
        valid
    }

    pub(crate) fn revoke(&self, now: Instant) {
        let mut st = self.lock();
        st.lease.revoke();
        if let Some(o) = &self.cfg.observer {
            o.lease_revoked(self.node, now);
        }
        self.set_lease_valid(&mut st, false);
    }
}

/// Follows the applied shard map through the store's change stream.
pub(crate) async fn follow_map(store: Store, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut rx = store.subscribe();
    shared.refresh_from(&store);
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = rx.recv() => ev,
        };
        match ev {
            Ok(ev) => {
                let relevant = match &*ev {
                    ChangeEvent::Applied { command, .. } => {
                        matches!(command, Command::SetShardMap(_))
                    }
                    ChangeEvent::Reset { .. } => true,
                };
                if relevant {
                    shared.refresh_from(&store);
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => shared.refresh_from(&store),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Renews the lease every `renew_interval` and publishes its loss the moment it lapses.
pub(crate) async fn keep_lease(store: Store, shared: Arc<Shared>, cancel: CancellationToken) {
    let lease = shared.cfg.lease;
    let mut next = tokio::time::Instant::now();
    loop {
        // Wake at the next renewal, or earlier when the lease would lapse before it.
        let expiry = {
            let st = shared.lock();
            st.lease.expires_at().filter(|_| st.lease_valid)
        };
        let mut wake = next;
        if let Some(e) = expiry {
            wake = wake.min(tokio::time::Instant::from_std(e));
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
        shared.check_lease(Instant::now());
        if tokio::time::Instant::now() < next {
            continue;
        }
        next = tokio::time::Instant::now() + lease.renew_interval;
        if shared.cfg.isolation.as_ref().is_some_and(|i| i.is_cut()) {
            continue;
        }
        let sent_at = Instant::now();
        let attempt = renew_once(&store, &shared, sent_at, lease.lease_duration);
        let ok = tokio::select! {
            _ = cancel.cancelled() => return,
            r = attempt => r,
        };
        if ok && !shared.cfg.isolation.as_ref().is_some_and(|i| i.is_cut()) {
            shared.renew(&store, sent_at);
        }
    }
}

/// One read-index round trip to the leader, then waiting until this replica has applied the
/// returned index. `true` if the leader confirmed its leadership for a request sent at
/// `sent_at` and the replica caught up while a lease from `sent_at` would still be valid.
async fn renew_once(store: &Store, shared: &Shared, sent_at: Instant, window: Duration) -> bool {
    let m = store.metrics();
    let index = if m.is_leader {
        store.leader_read_index().await
    } else {
        match m.leader.and_then(|l| leader_addr(store, l)) {
            Some(addr) => {
                store
                    .remote_read_index(&addr, window, Some(shared.node))
                    .await
            }
            None => return false,
        }
    };
    let index = match index {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!(node = shared.node, error = %e, "lease renewal refused");
            return false;
        }
    };
    let left = (sent_at + window).saturating_duration_since(Instant::now());
    if left.is_zero() {
        return false;
    }
    store
        .raft()
        .wait(Some(left))
        .applied_index_at_least(Some(index), "shard lease renewal")
        .await
        .is_ok()
}

fn leader_addr(store: &Store, leader: NodeId) -> Option<String> {
    use openraft::async_runtime::WatchReceiver;
    let rx = store.raft().metrics();
    let m = rx.borrow_watched();
    m.membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.addr.clone())
}
