//! The leader's shard manager: membership, liveness, planning and committing shard maps.
//!
//! Runs on every member and does nothing unless the member leads. On becoming leader it
//! first catches up with everything committed, starts its liveness clocks (every member
//! counts as just heard, so leases granted under the old leader end before any of their
//! shards move) and plans nothing before `lease_duration + clock_margin` has passed, so
//! shards an old leader released are not handed out while their old owner's lease may last.
//!
//! Liveness is fed only by what nodes sent: replication acknowledgements (openraft's
//! heartbeat metrics) and lease-renewal requests ([`super::HeardLog`]). Only the shards of
//! silent nodes (not heard for `liveness_timeout`, and fenced: their renewals are refused)
//! move in one step; the shards of any other node are released first and handed over after
//! `lease_duration + clock_margin`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use flotilla_shard::{plan, shard_weights, Assignment, Epoch, Liveness, NodeId, ShardMap};
use tokio_util::sync::CancellationToken;

use super::ShardConfig;
use crate::command::Command;
use crate::store::Store;

struct Leading {
    since: Instant,
    liveness: Liveness,
    tracked: BTreeSet<NodeId>,
    /// The latest contact from each node (seeded with the election instant).
    last: BTreeMap<NodeId, Instant>,
    /// When contact was last sampled.
    sampled: Instant,
    last_key: Option<(Vec<NodeId>, BTreeSet<NodeId>)>,
    last_plan: Instant,
    handoff: Option<Handoff>,
}

/// A map whose moves from live owners wait until their leases have ended.
struct Handoff {
    /// The epoch of the committed map that released those shards.
    released: Epoch,
    /// When the new owners may get them.
    ready_at: Instant,
    /// The map to commit then (its epoch is `released + 1`).
    next: ShardMap,
}

impl Leading {
    /// Records contact from `node` at `at`, for liveness and freshness.
    ///
    /// Samples show only each node's latest contact. If the manager itself was paused
    /// between two samples (a loaded machine), a node that was fresh at the previous sample
    /// and is heard again now counts as heard throughout, so the manager's own pause does not
    /// restart the node's rejoin hold. Freshness (what moves shards in one step) uses only
    /// real contact.
    fn heard(&mut self, node: NodeId, at: Instant, timeout: std::time::Duration) {
        if let Some(&l) = self.last.get(&node) {
            let step = timeout / 2;
            if at > l && self.sampled.saturating_duration_since(l) < timeout && !step.is_zero() {
                let mut t = l + step;
                while t < at {
                    self.liveness.heard(node, t);
                    t += step;
                }
            }
        }
        self.liveness.heard(node, at);
        let e = self.last.entry(node).or_insert(at);
        if at > *e {
            *e = at;
        }
    }
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
                // Confirm leadership with a quorum, and apply everything committed before
                // this term, before planning anything.
                let caught_up = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = catch_up(&store, cfg.lease.liveness_timeout) => r,
                };
                if !caught_up {
                    continue;
                }
                store.shard_heard().lock().fenced.clear();
                let now = Instant::now();
                tracing::info!(node = store.id(), term = m.term, "shard manager leading");
                leading.insert(Leading {
                    since: now,
                    liveness: Liveness::new(cfg.liveness(), now, members.iter().copied()),
                    tracked: members.clone(),
                    last: members.iter().map(|&n| (n, now)).collect(),
                    sampled: now,
                    last_key: None,
                    last_plan: now,
                    handoff: None,
                })
            }
        };
        let now = Instant::now();
        for gone in st.tracked.difference(&members) {
            st.liveness.forget(*gone);
            st.last.remove(gone);
        }
        st.tracked.clone_from(&members);
        for (id, p) in &m.followers {
            if let Some(at) = p.last_heard.and_then(|d| now.checked_sub(d)) {
                if members.contains(id) {
                    st.heard(*id, at, cfg.lease.liveness_timeout);
                }
            }
        }
        // Feed renewals and decide who is silent under the log's lock. Silent nodes (not
        // heard for `liveness_timeout`) are fenced: their renewals are refused from now until
        // the next tick, which comes after any map planned in this tick is committed, so no
        // lease can be granted to them under a map older than the one moving their shards.
        let (now, alive, fresh) = {
            let mut book = store.shard_heard().lock();
            let now = Instant::now();
            for (&id, &at) in &book.latest {
                if members.contains(&id) && at >= st.since {
                    st.heard(id, at, cfg.lease.liveness_timeout);
                }
            }
            st.heard(store.id(), now, cfg.lease.liveness_timeout);
            st.sampled = now;
            let alive = st.liveness.alive(now);
            let timeout = cfg.lease.liveness_timeout;
            let fresh: BTreeSet<NodeId> = st
                .last
                .iter()
                .filter(|(_, &at)| now.saturating_duration_since(at) < timeout)
                .map(|(&n, _)| n)
                .collect();
            book.fenced = members.difference(&fresh).copied().collect();
            (now, alive, fresh)
        };
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
        if let Some(h) = st.handoff.take() {
            if now < h.ready_at {
                st.handoff = Some(h);
                continue;
            }
            // Give the released shards to their new owners only if nothing else changed
            // meanwhile; otherwise plan again from what is committed.
            let unchanged = current.as_ref().map(|m| m.epoch) == Some(h.released)
                && st.last_key.as_ref() == Some(&key);
            if unchanged {
                if let Err(e) = commit(&store, h.next).await {
                    tracing::warn!(node = store.id(), error = %e, "completing a handoff");
                }
                st.last_key = None;
                continue;
            }
        }
        if !alive.contains(&store.id()) {
            continue;
        }
        let due = st.last_key.as_ref() != Some(&key)
            || now.duration_since(st.last_plan) >= cfg.replan_interval
            || current.is_none();
        if !due {
            continue;
        }
        let current = current.unwrap_or_else(|| ShardMap::unassigned(cfg.shard_count));
        match replan(&store, &cfg, &current, &eligible, &alive, &fresh).await {
            Ok(handoff) => {
                st.last_key = Some(key);
                st.last_plan = Instant::now();
                st.handoff = handoff;
            }
            Err(e) => tracing::warn!(node = store.id(), error = %e, "shard planning"),
        }
    }
}

async fn catch_up(store: &Store, timeout: std::time::Duration) -> bool {
    let Ok(index) = store.leader_read_index().await else {
        return false;
    };
    store
        .raft()
        .wait(Some(timeout))
        .applied_index_at_least(Some(index), "shard manager catch-up")
        .await
        .is_ok()
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
/// still alive are released now; the returned handoff gives them to their new owners once
/// every lease the old owners could hold has ended.
async fn replan(
    store: &Store,
    cfg: &ShardConfig,
    current: &ShardMap,
    eligible: &[NodeId],
    alive: &BTreeSet<NodeId>,
    fresh: &BTreeSet<NodeId>,
) -> Result<Option<Handoff>, String> {
    let apps = store.local().apps().map_err(|e| e.to_string())?;
    let weights = shard_weights(apps.iter().map(|a| a.app.as_str()), current.shard_count());
    let Some(next) =
        plan(current, eligible, alive, &weights, &cfg.plan).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let handoff: Vec<_> = next
        .moves
        .iter()
        .filter(|mv| mv.from.is_some_and(|f| fresh.contains(&f)))
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
        return commit(store, next.map).await.map(|()| None);
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
    let ready_at = Instant::now() + cfg.handoff_wait();
    let mut done = next.map;
    done.epoch = release_epoch + 1;
    let handoff: BTreeSet<_> = handoff.into_iter().collect();
    for mv in &next.moves {
        if handoff.contains(&mv.shard) {
            done.shards[mv.shard as usize].since = done.epoch;
        }
    }
    Ok(Some(Handoff {
        released: release_epoch,
        ready_at,
        next: done,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn leading(t0: Instant, cfg: &ShardConfig) -> Leading {
        Leading {
            since: t0,
            liveness: Liveness::new(cfg.liveness(), t0, [1, 2]),
            tracked: BTreeSet::from([1, 2]),
            last: BTreeMap::from([(1, t0), (2, t0)]),
            sampled: t0,
            last_key: None,
            last_plan: t0,
            handoff: None,
        }
    }

    #[test]
    fn a_pause_of_the_manager_does_not_restart_the_rejoin_hold() {
        let cfg = ShardConfig::default();
        let timeout = cfg.lease.liveness_timeout;
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        // The manager sampled at t0 and paused for 1.2 s; node 2 was heard at t0 + 1.2 s.
        let mut st = leading(t0, &cfg);
        st.heard(2, t0 + ms(1200), timeout);
        assert!(st.liveness.is_alive(2, t0 + ms(1200)));
        // Sampled regularly: node 2 was silent at the sample at t0 + 950 ms, then heard at
        // t0 + 1 s: a real gap, so it waits for the rejoin hold.
        let mut st = leading(t0, &cfg);
        st.sampled = t0 + ms(950);
        st.heard(2, t0 + ms(1000), timeout);
        assert!(!st.liveness.is_alive(2, t0 + ms(1000)));
        for k in 1..=7 {
            st.heard(2, t0 + ms(1000 + 300 * k), timeout);
        }
        assert!(st.liveness.is_alive(2, t0 + ms(1000) + cfg.rejoin_hold));
        assert_eq!(st.last.get(&2), Some(&(t0 + ms(3100))));
    }
}
