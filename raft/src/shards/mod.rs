//! Shard ownership in the cluster: the leader's shard manager and every node's shard follower.
//!
//! Start with [`ShardNode::start`]: it runs, next to a [`Store`] member,
//! - the **manager** (acts only while this member is the Raft leader): it tracks the
//!   membership (voters and learners, minus nodes marked draining) and each node's liveness
//!   (replication acknowledgements and lease-renewal requests the node sent), plans with
//!   [`flotilla_shard::plan`] when membership or liveness changes and periodically, and
//!   commits a new [`ShardMap`] only when the plan moves something. Shards taken from a node
//!   that is still alive are first released (unowned) and given to their new owner only after
//!   every lease the old owner could hold has ended;
//! - the **follower** (every member): it follows the applied map, keeps this node's
//!   [`Lease`](flotilla_shard::Lease) by read-index round trips to the leader, and tells
//!   components what they gained and lost ([`ShardNode::changes`], [`ShardNode::ownership`]);
//!   components call [`ShardNode::may_act`] before acting on a shard.
//!
//! [`ShardNode::leave`] hands this node's shards away before it leaves the membership.
//! See `docs/ARCHITECTURE.md`, section "Shard ownership in the cluster".

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_shard::{
    ActError, Epoch, LeaseConfig, LeaseError, LivenessConfig, NodeId, PlanConfig, PlanError,
    ShardId, DEFAULT_SHARD_COUNT,
};
use tokio::sync::{broadcast, watch, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::command::{Command, Json, NodeInfo};
use crate::config::StoreConfig;
use crate::store::{Store, StoreError};

pub mod fault;
mod follower;
mod heard;
mod manager;

pub use fault::{CutProxy, Isolation};
pub use follower::{LeaseObserver, Ownership, ShardEvent};
pub(crate) use heard::{node_id_of, HeardLog, NODE_ID_HEADER};

/// Settings of shard ownership; every node of a cluster must use the same values.
#[derive(Clone)]
pub struct ShardConfig {
    /// Lease and liveness timing (see [`LeaseConfig`]).
    pub lease: LeaseConfig,
    /// How long a new or returning node must be heard continuously before it gets shards.
    pub rejoin_hold: Duration,
    /// The planner's knobs.
    pub plan: PlanConfig,
    /// Shards in a new cluster's map (fixed once the first map is committed).
    pub shard_count: u32,
    /// How often the manager looks at membership and liveness.
    pub tick: Duration,
    /// How often the manager re-plans even if nothing changed (application counts drift).
    pub replan_interval: Duration,
    /// Capacity of the [`ShardNode::changes`] stream.
    pub events_buffer: usize,
    /// Receives every map installation and lease renewal (for audits and tests).
    pub observer: Option<Arc<dyn LeaseObserver>>,
    /// A switch that cuts this node's lease renewals off (partition drills and tests).
    pub isolation: Option<Isolation>,
}

impl std::fmt::Debug for ShardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardConfig")
            .field("lease", &self.lease)
            .field("rejoin_hold", &self.rejoin_hold)
            .field("shard_count", &self.shard_count)
            .field("tick", &self.tick)
            .field("replan_interval", &self.replan_interval)
            .finish_non_exhaustive()
    }
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            lease: default_lease(),
            rejoin_hold: Duration::from_millis(2000),
            plan: PlanConfig::default(),
            shard_count: DEFAULT_SHARD_COUNT,
            tick: Duration::from_millis(50),
            replan_interval: Duration::from_secs(10),
            events_buffer: 256,
            observer: None,
            isolation: None,
        }
    }
}

/// The lease timing flotilla runs with: renew every 150 ms, leases of 600 ms, 200 ms of
/// margin, a node's shards reassigned after 900 ms of silence.
pub fn default_lease() -> LeaseConfig {
    LeaseConfig {
        renew_interval: Duration::from_millis(150),
        lease_duration: Duration::from_millis(600),
        clock_margin: Duration::from_millis(200),
        liveness_timeout: Duration::from_millis(900),
    }
}

/// Election timeout range (ms) that goes with [`default_lease`] for the 3 s failover target.
pub const ELECTION_TIMEOUT_MS: (u64, u64) = (400, 700);
/// Heartbeat interval (ms) that goes with [`ELECTION_TIMEOUT_MS`].
pub const HEARTBEAT_MS: u64 = 100;

/// Sets the store's Raft timing to the values shard failover is designed for.
pub fn tune_store(cfg: &mut StoreConfig) {
    cfg.election_timeout_ms = ELECTION_TIMEOUT_MS;
    cfg.heartbeat_ms = HEARTBEAT_MS;
}

impl ShardConfig {
    /// Checks the knobs: safe leases, a valid planner, positive counts and intervals.
    pub fn validate(&self) -> Result<(), ShardsError> {
        self.lease.validate()?;
        self.plan.validate()?;
        if self.shard_count == 0 {
            return Err(ShardsError::Config("shard_count must be positive".into()));
        }
        if self.tick.is_zero() || self.replan_interval.is_zero() || self.events_buffer == 0 {
            return Err(ShardsError::Config(
                "tick, replan_interval and events_buffer must be positive".into(),
            ));
        }
        if self.tick >= self.lease.liveness_timeout {
            return Err(ShardsError::Config(format!(
                "tick {:?} must be shorter than liveness_timeout {:?}",
                self.tick, self.lease.liveness_timeout
            )));
        }
        Ok(())
    }

    pub(crate) fn liveness(&self) -> LivenessConfig {
        LivenessConfig {
            liveness_timeout: self.lease.liveness_timeout,
            rejoin_hold: self.rejoin_hold,
        }
    }

    /// How long after releasing a shard the leader waits before giving it to a new owner:
    /// every lease the old owner could hold has ended by then.
    pub(crate) fn handoff_wait(&self) -> Duration {
        self.lease.lease_duration + self.lease.clock_margin
    }
}

/// Why shard ownership could not start or a node could not leave.
#[derive(Debug, thiserror::Error)]
pub enum ShardsError {
    /// Unsafe or unusable lease timing.
    #[error("shard lease settings: {0}")]
    Lease(#[from] LeaseError),
    /// Unusable planner settings.
    #[error("shard planner settings: {0}")]
    Plan(#[from] PlanError),
    /// Another unusable setting.
    #[error("shard settings: {0}")]
    Config(String),
    /// The store refused or failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Leaving did not finish in time.
    #[error("node {node} could not leave within {waited:?}: {stage}")]
    LeaveTimeout {
        /// The leaving node.
        node: NodeId,
        /// How long it tried.
        waited: Duration,
        /// What it was waiting for.
        stage: &'static str,
    },
}

/// Shard ownership running next to one store member. Dropping it stops its tasks (the lease
/// then simply lapses); [`ShardNode::shutdown`] also drops the lease at once and waits.
pub struct ShardNode {
    store: Store,
    shared: Arc<follower::Shared>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ShardNode {
    /// Starts the manager and the follower for `store`.
    pub async fn start(store: Store, cfg: ShardConfig) -> Result<ShardNode, ShardsError> {
        cfg.validate()?;
        let cfg = Arc::new(cfg);
        let cancel = CancellationToken::new();
        let shared = Arc::new(follower::Shared::new(store.id(), cfg.clone()));
        let tasks = vec![
            tokio::spawn(follower::follow_map(
                store.clone(),
                shared.clone(),
                cancel.clone(),
            )),
            tokio::spawn(follower::keep_lease(
                store.clone(),
                shared.clone(),
                cancel.clone(),
            )),
            tokio::spawn(manager::run(store.clone(), cfg, cancel.clone())),
        ];
        Ok(ShardNode {
            store,
            shared,
            cancel,
            tasks: Mutex::new(tasks),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.store.id()
    }

    /// Whether this node may act on `shard` now: it holds a valid lease and owns the shard in
    /// the map it follows. Returns the epoch its status and operation writes must carry.
    /// Call it right before every action; an `Err` means do nothing for this shard.
    pub fn may_act(&self, shard: ShardId) -> Result<Epoch, ActError> {
        self.shared.may_act(shard, Instant::now())
    }

    /// The current ownership (epoch, owned shards, lease), updated on every change.
    pub fn ownership(&self) -> watch::Receiver<Ownership> {
        self.shared.watch()
    }

    /// Gains, losses and lease changes as they happen. A receiver that lags gets
    /// `RecvError::Lagged` and must re-read [`ShardNode::ownership`].
    pub fn changes(&self) -> broadcast::Receiver<ShardEvent> {
        self.shared.subscribe()
    }

    /// Leaves the cluster gracefully: marks this node draining, waits until the applied map
    /// gives it no shards, hands leadership away if it leads, and waits until it no longer
    /// votes. The leader's manager removes a drained node from the membership (first its
    /// vote, then the node); a removed member is not sent the entry that removes it, so this
    /// returns once the node holds no shard and no vote. Call [`ShardNode::shutdown`] and
    /// stop the store after.
    pub async fn leave(&self, timeout: Duration) -> Result<(), ShardsError> {
        let id = self.id();
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let expired = |stage| ShardsError::LeaveTimeout {
            node: id,
            waited: timeout,
            stage,
        };
        let mut info = self
            .store
            .local()
            .node(id)
            .map_err(StoreError::from)?
            .unwrap_or_else(|| NodeInfo {
                id,
                addresses: vec![self.store.addr().to_string()],
                version: env!("CARGO_PKG_VERSION").to_string(),
                at: 0,
                extra: Json::default(),
                draining: false,
            });
        info.draining = true;
        info.at = unix_millis();
        self.store.propose(Command::PutNodeInfo(info)).await?;
        tracing::info!(node = id, "marked draining; waiting for the shards to move");
        loop {
            let owned = self.shared.owned_count();
            if owned == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(expired("waiting for the map to give this node no shards"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        loop {
            let m = self.store.metrics();
            if !m.voters.contains(&id) && !m.is_leader {
                break;
            }
            if m.is_leader {
                if let Some(&to) = m.voters.iter().find(|&&v| v != id) {
                    if let Err(e) = self.store.transfer_leadership(to).await {
                        tracing::warn!(node = id, to, error = %e, "leader transfer");
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(expired("waiting for the leader to remove this node's vote"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(node = id, waited = ?started.elapsed(), "left the cluster");
        Ok(())
    }

    /// Stops the manager and the follower and drops the lease at once.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.shared.revoke(Instant::now());
        let tasks: Vec<_> = self.tasks.lock().await.drain(..).collect();
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for ShardNode {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_refused() {
        let c = ShardConfig::default();
        c.validate().expect("defaults");
        assert!(c.handoff_wait() < c.lease.liveness_timeout);
        // Failover budget: two election timeouts plus the liveness timeout stay under 3 s.
        let leader_failover =
            Duration::from_millis(2 * ELECTION_TIMEOUT_MS.1) + c.lease.liveness_timeout;
        assert!(
            leader_failover < Duration::from_secs(3),
            "{leader_failover:?}"
        );
        let mut bad = ShardConfig::default();
        bad.lease.lease_duration = Duration::from_millis(800);
        assert!(matches!(bad.validate(), Err(ShardsError::Lease(_))));
        let bad = ShardConfig {
            shard_count: 0,
            ..ShardConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("shard_count"));
        let bad = ShardConfig {
            tick: Duration::from_secs(1),
            ..ShardConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("tick"));
    }
}
