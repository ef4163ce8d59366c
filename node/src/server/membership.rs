//! How a node enters the group, keeps the configured number of voters, and publishes what it
//! serves.
//!
//! - A node with an empty data directory either bootstraps a new group (the lowest id of the
//!   configured members, ordinal 0 in a StatefulSet) or joins through any member as a learner.
//!   Before bootstrapping it asks the other configured members whether a group already exists,
//!   so a first pod that lost its volume joins the existing group instead of forking it.
//! - A node restarted from its data directory asks the group to add it again: a node that left
//!   gracefully was removed, and adding a member that is still there changes nothing.
//! - The leader promotes caught-up learners that are not draining until the group has the
//!   configured number of voters (3 or 5); further nodes stay learners and still own shards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flotilla_raft::{Command, Json, MembershipChange, NodeInfo, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::config::{NodeConfig, Role};

/// How long a node about to bootstrap asks its peers whether a group already exists.
const PROBE_WAIT: Duration = Duration::from_secs(3);
/// How long one attempt to join waits before it is retried.
const JOIN_ATTEMPT: Duration = Duration::from_secs(15);
/// How far behind the leader's commit index a learner may be and still be promoted.
const PROMOTE_LAG: u64 = 1000;
/// How recently the leader must have heard a learner to promote it.
const PROMOTE_HEARD: Duration = Duration::from_secs(2);

/// Errors entering the group.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The store refused.
    #[error("membership: {0}")]
    Store(#[from] StoreError),
    /// Shutdown was asked for before the node got in.
    #[error("stopped before joining the group")]
    Cancelled,
}

/// Bring this node into the group: bootstrap, join, or rejoin after a restart.
pub async fn enter(
    store: &Store,
    cfg: &NodeConfig,
    cancel: &CancellationToken,
) -> Result<(), MembershipError> {
    let id = cfg.node_id;
    let me = cfg.advertise.clone();
    let known = store.metrics().addresses;
    let mut peers: Vec<String> = cfg
        .peers
        .iter()
        .filter(|p| p.id != id)
        .map(|p| p.addr.clone())
        .collect();
    for (pid, addr) in &known {
        if *pid != id && !peers.contains(addr) {
            peers.push(addr.clone());
        }
    }
    let join = MembershipChange::AddLearner {
        id,
        addr: me.clone(),
    };
    if !known.is_empty() {
        // Restarted: rejoin in the background, so a node that is still a voter starts at once.
        if !peers.is_empty() {
            let (store, cancel) = (store.clone(), cancel.clone());
            tokio::spawn(async move {
                rejoin(&store, &peers, join, &cancel).await;
            });
        }
        return Ok(());
    }
    match cfg.role() {
        Role::Bootstrap => {
            if !peers.is_empty()
                && store
                    .change_membership_via(&peers, &join, PROBE_WAIT)
                    .await
                    .is_ok()
            {
                tracing::info!(
                    node = id,
                    "joined the existing group instead of bootstrapping"
                );
                return Ok(());
            }
            tracing::info!(node = id, addr = %me, "bootstrapping a new group");
            store.initialize(BTreeMap::from([(id, me)])).await?;
            Ok(())
        }
        Role::Join(_) => {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Err(MembershipError::Cancelled),
                    r = store.change_membership_via(&peers, &join, JOIN_ATTEMPT) => match r {
                        Ok(()) => break,
                        Err(e) => tracing::warn!(node = id, error = %e, "joining the group; retrying"),
                    }
                }
            }
            tracing::info!(node = id, "joined the group as a learner");
            Ok(())
        }
    }
}

async fn rejoin(
    store: &Store,
    peers: &[String],
    join: MembershipChange,
    cancel: &CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = store.change_membership_via(peers, &join, JOIN_ATTEMPT) => match r {
                Ok(()) => {
                    tracing::info!(node = store.id(), "membership confirmed after restart");
                    return;
                }
                Err(e) => tracing::warn!(node = store.id(), error = %e, "rejoining; retrying"),
            }
        }
    }
}

/// Publish this node's addresses and version, and clear a draining flag left by a previous
/// graceful stop.
pub async fn publish_info(
    store: &Store,
    cfg: &NodeConfig,
    api: &str,
    http: &str,
) -> Result<(), StoreError> {
    let info = NodeInfo {
        id: cfg.node_id,
        addresses: vec![
            format!("peer={}", cfg.advertise),
            format!("api={api}"),
            format!("http={http}"),
        ],
        version: env!("CARGO_PKG_VERSION").to_string(),
        at: crate::server::unix_millis(),
        extra: Json::default(),
        draining: false,
    };
    if let Ok(Some(old)) = store.local().node(cfg.node_id) {
        if old.addresses == info.addresses && old.version == info.version && !old.draining {
            return Ok(());
        }
    }
    store.propose(Command::PutNodeInfo(info)).await?;
    Ok(())
}

/// On the leader, promote caught-up learners until there are `voters` voters.
pub async fn keep_voters(store: Store, voters: usize, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let m = store.metrics();
        if !m.is_leader || m.voters.len() >= voters {
            continue;
        }
        let draining: BTreeSet<u64> = store
            .local()
            .nodes()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.draining)
            .map(|n| n.id)
            .collect();
        let commit = m.commit_index.unwrap_or(0);
        let ready: BTreeSet<u64> = m
            .learners
            .iter()
            .copied()
            .filter(|id| !draining.contains(id))
            .filter(|id| {
                m.followers.get(id).is_some_and(|f| {
                    f.matched_index.unwrap_or(0) + PROMOTE_LAG >= commit
                        && f.last_heard.is_some_and(|h| h <= PROMOTE_HEARD)
                })
            })
            .take(voters - m.voters.len())
            .collect();
        if ready.is_empty() {
            continue;
        }
        match store.promote(ready.clone()).await {
            Ok(()) => tracing::info!(promoted = ?ready, "learners promoted to voters"),
            Err(e) => tracing::warn!(error = %e, "promoting learners"),
        }
    }
}
