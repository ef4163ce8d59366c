//! The leader's shard manager: membership, liveness, planning and committing shard maps.
//!
//! Runs on every member and does nothing unless the member leads. On becoming leader it
//! first catches up with everything committed, starts its liveness clocks (every member
//! counts as just heard, so leases granted under the old leader end before any of their
//! shards move) and plans nothing before `lease_duration + clock_margin` has passed, so
//! shards an old leader released are not handed out while their old owner's lease may last.
//!
//! Liveness is fed only by what nodes sent: replication acknowledgements (openraft's
//! heartbeat metrics) and lease-renewal requests ([`super::HeardLog`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use flotilla_shard::{plan, shard_weights, Assignment, Liveness, NodeId, ShardMap};
use tokio_util::sync::CancellationToken;

use super::ShardConfig;
use crate::command::Command;
use crate::store::Store;

struct Leading {
    since: Instant,
    liveness: Liveness,
    tracked: BTreeSet<NodeId>,
    last_key: Option<(Vec<NodeId>, BTreeSet<NodeId>)>,
    last_plan: Instant,
}

/// The manager loop; returns when `cancel` fires.
pub(crate) async fn run(store: Store, cfg: Arc<ShardConfig>, cancel: CancellationToken) {
    let mut leading: Option<Leading> = None;
    let mut tick = tokio::time::interval(cfg.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let m = store.metrics();
        if !m.is_leader {
            if leading.take().is_some() {
                tracing::info!(
                    node = store.id(),
                    "shard manager idle: no longer the leader"
                );
            }
            continue;
        }
        let members: BTreeSet<NodeId> = m.voters.iter().chain(&m.learners).copied().collect();
        let st = match &mut leading {
            Some(st) => st,
            None => {
                // Everything committed before this term must be applied before planning.
                let caught_up = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = store.linearizable() => r.is_ok(),
                };
                if !caught_up {
                    continue;
                }
                let now = Instant::now();
                tracing::info!(node = store.id(), term = m.term, "shard manager leading");
                leading.insert(Leading {
                    since: now,
                    liveness: Liveness::new(cfg.liveness(), now, members.iter().copied()),
                    tracked: members.clone(),
                    last_key: None,
                    last_plan: now,
                })
            }
        };
        let now = Instant::now();
        for gone in st.tracked.difference(&members) {
            st.liveness.forget(*gone);
        }
        st.tracked.clone_from(&members);
        for (id, p) in &m.followers {
            if let Some(at) = p.last_heard.and_then(|d| now.checked_sub(d)) {
                if members.contains(id) {
                    st.liveness.heard(*id, at);
                }
            }
        }
        for (id, at) in store.shard_heard().snapshot() {
            if members.contains(&id) && at >= st.since {
                st.liveness.heard(id, at);
            }
        }
        st.liveness.heard(store.id(), now);
        if now < st.since + cfg.handoff_wait() {
            continue;
        }
        let draining: BTreeSet<NodeId> = match store.local().nodes() {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|n| n.draining)
                .map(|n| n.id)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading node information");
                continue;
            }
        };
        let eligible: Vec<NodeId> = members.difference(&draining).copied().collect();
        let alive = st.liveness.alive(now);
        let key = (eligible.clone(), alive.clone());
        let current = match store.local().shard_map() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "reading the shard map");
                continue;
            }
        };
        if let Some(map) = &current {
            remove_drained(&store, map, &members, &draining).await;
        }
        let due = st.last_key.as_ref() != Some(&key)
            || now.duration_since(st.last_plan) >= cfg.replan_interval
            || current.is_none();
        if !due {
            continue;
        }
        let current = current.unwrap_or_else(|| ShardMap::unassigned(cfg.shard_count));
        match replan(&store, &cfg, &current, &eligible, &alive, &cancel).await {
            Ok(()) => {
                st.last_key = Some(key);
                st.last_plan = Instant::now();
            }
            Err(e) => tracing::warn!(node = store.id(), error = %e, "shard planning"),
        }
    }
}

/// Removes draining members that own no shard any more (never this member itself).
async fn remove_drained(
    store: &Store,
    map: &ShardMap,
    members: &BTreeSet<NodeId>,
    draining: &BTreeSet<NodeId>,
) {
    for &d in draining.intersection(members) {
        if d == store.id() || !map.owned_by(d).is_empty() {
            continue;
        }
        tracing::info!(node = d, "removing a drained node from the membership");
        if let Err(e) = store.remove(BTreeSet::from([d])).await {
            tracing::warn!(node = d, error = %e, "removing a drained node");
        }
    }
}

/// Plans and commits the next map if something must move. Shards leaving a node that is
/// still alive are released first and reassigned after the handoff wait.
async fn replan(
    store: &Store,
    cfg: &ShardConfig,
    current: &ShardMap,
    eligible: &[NodeId],
    alive: &BTreeSet<NodeId>,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let apps = store.local().apps().map_err(|e| e.to_string())?;
    let weights = shard_weights(apps.iter().map(|a| a.app.as_str()), current.shard_count());
    let Some(next) =
        plan(current, eligible, alive, &weights, &cfg.plan).map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let handoff: Vec<_> = next
        .moves
        .iter()
        .filter(|mv| mv.from.is_some_and(|f| alive.contains(&f)))
        .map(|mv| mv.shard)
        .collect();
    tracing::info!(
        node = store.id(),
        epoch = next.map.epoch,
        moves = next.moves.len(),
        handoff = handoff.len(),
        alive = ?alive,
        "new shard map planned"
    );
    if handoff.is_empty() {
        return commit(store, next.map).await;
    }
    // Step 1: everything but the shards of live owners moves now; those are released.
    let mut release = next.map.clone();
    for &s in &handoff {
        release.shards[s as usize] = Assignment {
            owner: None,
            since: release.epoch,
        };
    }
    let release_epoch = release.epoch;
    commit(store, release).await?;
    // Step 2: after every lease the old owners could hold has ended, the new owners get them.
    tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        _ = tokio::time::sleep(cfg.handoff_wait()) => {}
    }
    let still = store.local().shard_map().map_err(|e| e.to_string())?;
    if !store.metrics().is_leader || still.as_ref().map(|m| m.epoch) != Some(release_epoch) {
        return Err("the map changed during a handoff; planning again".into());
    }
    let mut done = next.map;
    done.epoch = release_epoch + 1;
    for mv in &next.moves {
        if handoff.contains(&mv.shard) {
            done.shards[mv.shard as usize].since = done.epoch;
        }
    }
    commit(store, done).await
}

async fn commit(store: &Store, map: ShardMap) -> Result<(), String> {
    let epoch = map.epoch;
    let proposed = store
        .propose_local(vec![Command::SetShardMap(map)])
        .await
        .map_err(|e| e.to_string())?;
    match proposed.results.into_iter().next() {
        Some(Ok(_)) => {
            tracing::info!(node = store.id(), epoch, "shard map committed");
            Ok(())
        }
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no result for the shard map".into()),
    }
}
