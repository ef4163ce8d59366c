//! The planner: the next shard map from the current one, the members, who is alive and how
//! many applications each shard holds.
//!
//! The planner is sticky: a shard stays with its owner unless
//! 1. its owner is dead, removed or absent (the shard is an orphan),
//! 2. its owner is above a cap ([`LoadBounds::cap_weight`] or [`LoadBounds::cap_count`]) — it
//!    sheds just enough shards to get under the cap, or
//! 3. another node owned almost nothing when planning started (it just joined or came back),
//!    or is below a floor after the orphans are placed — that node pulls shards, in the order
//!    the ring prefers it, from nodes above the mean, until it reaches about the mean.
//!
//! Orphans (heaviest first) go to the least-loaded node with room, or to a ring-preferred
//! node loaded at most a quarter of the ε band more, and somewhere even if no node has room.
//! Shed shards go to the least-loaded node with room, and only where there is room. So
//! adding a node moves shards only *to* it, and removing one moves only *its* shards. The result depends only on the inputs' values: members are
//! sorted, every order is by node id, shard id or a fixed hash, and nothing reads a clock.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::map::{Assignment, NodeId, ShardId, ShardMap};
use crate::ring::{mix, LoadBounds, Ring, PREFERENCE_DEPTH};

/// The default number of shards of a new cluster; see `docs/ARCHITECTURE.md` for why.
pub const DEFAULT_SHARD_COUNT: u32 = 4096;

/// Upper bound on shed-and-pull rounds in one plan. One or two rounds settle every case the
/// tests generate; the bound only caps the cost of a pathological input (the next plan then
/// continues where this one stopped).
const MAX_ROUNDS: usize = 8;

/// Knobs of the planner. Every node must use the same values: any of them may become the
/// leader, and a different ring or band would move shards for no reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanConfig {
    /// ε in thousandths: no node above (1+ε)× the mean weight or shard count, and a node
    /// below (1−ε)× the mean weight pulls shards. 50 means 5%.
    pub epsilon_permille: u32,
    /// Extra tolerance in applications around the mean weight, so that with few
    /// applications single additions do not move shards.
    pub weight_slack: u64,
    /// Virtual nodes per node on the ring.
    pub vnodes: u32,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            epsilon_permille: 50,
            weight_slack: 1,
            vnodes: 64,
        }
    }
}

impl PlanConfig {
    /// Checks the knobs are in range.
    pub fn validate(&self) -> Result<(), PlanError> {
        if !(1..=1000).contains(&self.epsilon_permille) {
            return Err(PlanError::Epsilon(self.epsilon_permille));
        }
        if !(1..=4096).contains(&self.vnodes) {
            return Err(PlanError::VNodes(self.vnodes));
        }
        Ok(())
    }
}

/// Why the planner refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `weights` must hold one entry per shard of the map.
    #[error("the shard map has {shard_count} shards but {weights} weights were given; pass one weight per shard")]
    WeightCount {
        /// Shards in the map.
        shard_count: u32,
        /// Weights given.
        weights: usize,
    },
    /// The map has no shards.
    #[error("the shard map has no shards; create it with ShardMap::unassigned(shard_count > 0)")]
    EmptyMap,
    /// The epoch cannot advance.
    #[error("the shard map's epoch is {0}, the largest possible; it cannot be advanced")]
    EpochOverflow(u64),
    /// `epsilon_permille` out of range.
    #[error("epsilon_permille = {0} is out of range: use 1..=1000 (50 means 5%)")]
    Epsilon(u32),
    /// `vnodes` out of range.
    #[error("vnodes = {0} is out of range: use 1..=4096")]
    VNodes(u32),
}

/// One shard changing hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The shard.
    pub shard: ShardId,
    /// Its owner in the current map.
    pub from: Option<NodeId>,
    /// Its owner in the planned map.
    pub to: Option<NodeId>,
}

/// A planned map and how it differs from the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The next map: epoch + 1; moved shards have `since` = the new epoch.
    pub map: ShardMap,
    /// The shards whose owner changed, by shard id. Never empty.
    pub moves: Vec<Move>,
}

/// The application counts per shard for a set of application keys (`namespace/name`).
pub fn shard_weights<'a>(keys: impl IntoIterator<Item = &'a str>, shard_count: u32) -> Vec<u64> {
    let mut weights = vec![0u64; shard_count as usize];
    for key in keys {
        weights[crate::map::shard_of(key, shard_count) as usize] += 1;
    }
    weights
}

/// Plans the next shard map, or returns `Ok(None)` if no shard needs to move (so the
/// leader commits nothing and the epoch stays).
///
/// Shards go only to nodes that are both in `members` and in `alive`; `alive` is the
/// caller's liveness decision (see [`crate::liveness`]). `weights[s]` is the number of
/// applications in shard `s`. The order of `members` and duplicates in it do not matter.
pub fn plan(
    current: &ShardMap,
    members: &[NodeId],
    alive: &BTreeSet<NodeId>,
    weights: &[u64],
    config: &PlanConfig,
) -> Result<Option<Plan>, PlanError> {
    config.validate()?;
    let shard_count = current.shard_count();
    if shard_count == 0 {
        return Err(PlanError::EmptyMap);
    }
    if weights.len() != current.shards.len() {
        return Err(PlanError::WeightCount {
            shard_count,
            weights: weights.len(),
        });
    }
    let epoch = current
        .epoch
        .checked_add(1)
        .ok_or(PlanError::EpochOverflow(current.epoch))?;

    let mut live: Vec<NodeId> = members
        .iter()
        .copied()
        .filter(|n| alive.contains(n))
        .collect();
    live.sort_unstable();
    live.dedup();

    let owners: Vec<Option<NodeId>> = if live.is_empty() {
        vec![None; current.shards.len()]
    } else {
        let mut state = State::new(current, live, weights, config);
        // Nodes that own almost nothing before the orphans arrive (new or returning nodes)
        // pull up to about the mean even if orphans or shed shards lift them past the floor.
        let mut pullers = state.nearly_empty();
        state.place_orphans();
        // Shedding and pulling can each make room for the other; repeat until a round moves
        // nothing, so that planning the result again finds nothing to do.
        for _ in 0..MAX_ROUNDS {
            let moved = state.moved;
            state.shed_weight();
            state.shed_count();
            pullers.extend(state.below_floor());
            pullers.sort_by_key(|&i| (state.weight[i], state.count[i], state.live[i]));
            pullers.dedup();
            state.pull(std::mem::take(&mut pullers));
            if state.moved == moved {
                break;
            }
        }
        state.owners()
    };

    let mut map = ShardMap {
        epoch,
        shards: current.shards.clone(),
    };
    let mut moves = Vec::new();
    for (s, (slot, &to)) in map.shards.iter_mut().zip(&owners).enumerate() {
        if slot.owner != to {
            moves.push(Move {
                shard: s as ShardId,
                from: slot.owner,
                to,
            });
            *slot = Assignment {
                owner: to,
                since: epoch,
            };
        }
    }
    Ok((!moves.is_empty()).then_some(Plan { map, moves }))
}

/// Working state of one plan. Nodes are indices into `live` (sorted ids).
struct State<'a> {
    weights: &'a [u64],
    live: Vec<NodeId>,
    /// Owner of each shard, as an index into `live`.
    owner: Vec<Option<usize>>,
    /// Per node: total weight and shard count.
    weight: Vec<u64>,
    count: Vec<u64>,
    /// Per shard, `PREFERENCE_DEPTH` slots of preferred node indices (`usize::MAX` = none).
    prefs: Vec<usize>,
    bounds: LoadBounds,
    /// How many times a shard changed hands (to detect a round that did nothing).
    moved: usize,
    /// How far above the least-loaded node (weight, count) a ring-preferred node may be
    /// and still receive an orphan: a quarter of the ε band, at least 1.
    slack: (u64, u64),
}

impl<'a> State<'a> {
    fn new(current: &ShardMap, live: Vec<NodeId>, weights: &'a [u64], config: &PlanConfig) -> Self {
        let index = |id: NodeId| live.binary_search(&id).ok();
        let owner: Vec<Option<usize>> = current
            .shards
            .iter()
            .map(|a| a.owner.and_then(index))
            .collect();
        let mut weight = vec![0u64; live.len()];
        let mut count = vec![0u64; live.len()];
        for (s, o) in owner.iter().enumerate() {
            if let Some(i) = *o {
                weight[i] = weight[i].saturating_add(weights[s]);
                count[i] += 1;
            }
        }
        let total = weights.iter().fold(0u64, |a, &w| a.saturating_add(w));
        let bounds = LoadBounds::new(
            total,
            current.shard_count(),
            live.len(),
            config.epsilon_permille,
            config.weight_slack,
        );
        let ring = Ring::new(&live, config.vnodes);
        let mut prefs = vec![usize::MAX; owner.len() * PREFERENCE_DEPTH];
        for s in 0..owner.len() {
            for (k, node) in ring.preferences(s as ShardId).into_iter().enumerate() {
                prefs[s * PREFERENCE_DEPTH + k] = index(node).unwrap_or(usize::MAX);
            }
        }
        Self {
            weights,
            owner,
            weight,
            count,
            prefs,
            bounds,
            live,
            moved: 0,
            slack: (
                (bounds.mean_weight_floor * u64::from(config.epsilon_permille) / 4000).max(1),
                (bounds.mean_count_floor * u64::from(config.epsilon_permille) / 4000).max(1),
            ),
        }
    }

    fn owners(&self) -> Vec<Option<NodeId>> {
        self.owner.iter().map(|o| o.map(|i| self.live[i])).collect()
    }

    /// How much the ring prefers node `i` for shard `s`: 0 = most, `PREFERENCE_DEPTH` = not listed.
    fn rank(&self, s: usize, i: usize) -> usize {
        let p = &self.prefs[s * PREFERENCE_DEPTH..(s + 1) * PREFERENCE_DEPTH];
        p.iter().position(|&x| x == i).unwrap_or(PREFERENCE_DEPTH)
    }

    fn tiebreak(&self, s: usize, i: usize) -> u64 {
        mix(s as u64, self.live[i])
    }

    fn give(&mut self, s: usize, to: usize) {
        let w = self.weights[s];
        if let Some(from) = self.owner[s] {
            self.weight[from] = self.weight[from].saturating_sub(w);
            self.count[from] -= 1;
        }
        self.weight[to] = self.weight[to].saturating_add(w);
        self.count[to] += 1;
        self.owner[s] = Some(to);
        self.moved += 1;
    }

    /// Nodes above the weight cap hand shards, worst ring affinity first, to the least-loaded
    /// nodes with room until under the cap (a new node then pulls the rest of its share in
    /// [`State::pull`]). A shard no other node has room for stays: moving it would only push
    /// another node over a cap, and the next plan would move it back.
    fn shed_weight(&mut self) {
        let b = self.bounds;
        for i in 0..self.live.len() {
            if self.weight[i] <= b.cap_weight {
                continue;
            }
            for s in self.owned_worst_affinity_first(i) {
                if self.weight[i] <= b.cap_weight {
                    break;
                }
                let w = self.weights[s];
                if w > 0 && self.weight[i].saturating_sub(w) >= b.mean_weight_floor {
                    self.hand_off(s);
                }
            }
        }
    }

    /// Nodes above the count cap hand shards to the least-loaded nodes with room: first in
    /// ring-affinity order while their weight stays at or above the mean (a node heavy in
    /// both sheds ordinary shards), then the lightest shards, so weight barely changes. The
    /// count cap wins over the weight floor (a trigger for pulling, not a target): a node
    /// left below it stops there, as its count leaves no room to pull.
    fn shed_count(&mut self) {
        let b = self.bounds;
        for i in 0..self.live.len() {
            if self.count[i] <= b.cap_count {
                continue;
            }
            let mut mine = self.owned_worst_affinity_first(i);
            for &s in &mine {
                if self.count[i] <= b.cap_count {
                    break;
                }
                if self.weight[i].saturating_sub(self.weights[s]) >= b.mean_weight_floor {
                    self.hand_off(s);
                }
            }
            mine.retain(|&s| self.owner[s] == Some(i));
            mine.sort_by_key(|&s| self.weights[s]); // stable: affinity order within a weight
            for s in mine {
                if self.count[i] <= b.cap_count {
                    break;
                }
                self.hand_off(s);
            }
        }
    }

    /// The shards node `i` owns, those the ring prefers it least for first.
    fn owned_worst_affinity_first(&self, i: usize) -> Vec<usize> {
        let mut mine: Vec<usize> = (0..self.owner.len())
            .filter(|&s| self.owner[s] == Some(i))
            .collect();
        mine.sort_by_cached_key(|&s| (Reverse(self.rank(s, i)), self.tiebreak(s, i)));
        mine
    }

    /// Gives owned shard `s` to the least-loaded other node with room under the caps, if any.
    fn hand_off(&mut self, s: usize) {
        let b = self.bounds;
        let to = self
            .least_loaded(s, b.mean_weight_ceil, b.mean_count_ceil)
            .or_else(|| self.least_loaded(s, b.cap_weight, b.cap_count));
        if let Some(to) = to {
            self.give(s, to);
        }
    }

    /// Gives every unowned shard, heaviest first, to the least-loaded node with room (under
    /// the mean, then under the caps, then anywhere: an orphan must have an owner) — or to a
    /// ring-preferred node nearly as lightly loaded.
    fn place_orphans(&mut self) {
        let b = self.bounds;
        let mut orphans: Vec<usize> = (0..self.owner.len())
            .filter(|&s| self.owner[s].is_none())
            .collect();
        orphans.sort_by_key(|&s| (Reverse(self.weights[s]), s));
        for s in orphans {
            let to = self
                .least_loaded(s, b.mean_weight_ceil, b.mean_count_ceil)
                .map(|best| self.preferred_near(s, best).unwrap_or(best))
                .or_else(|| self.least_loaded(s, b.cap_weight, b.cap_count))
                .or_else(|| self.least_loaded(s, u64::MAX, u64::MAX));
            if let Some(to) = to {
                self.give(s, to);
            }
        }
    }

    /// The first of `s`'s ring-preferred nodes that is loaded no more than the affinity
    /// slack above `best` (the least-loaded candidate) in weight and count, and stays under
    /// the mean by taking `s`. Keeps placement within a small spread of pure water-filling
    /// while returning shards to the nodes the ring prefers.
    fn preferred_near(&self, s: usize, best: usize) -> Option<usize> {
        let b = self.bounds;
        let w = self.weights[s];
        self.prefs[s * PREFERENCE_DEPTH..(s + 1) * PREFERENCE_DEPTH]
            .iter()
            .copied()
            .filter(|&i| i != usize::MAX && self.owner[s] != Some(i))
            .find(|&i| {
                self.weight[i] <= self.weight[best].saturating_add(self.slack.0)
                    && self.count[i] <= self.count[best].saturating_add(self.slack.1)
                    && self.weight[i].saturating_add(w) <= b.mean_weight_ceil
                    && self.count[i] < b.mean_count_ceil
            })
    }

    /// The node that should take shard `s` among those other than its owner that stay within
    /// the limits: least weight (least count for an empty shard), then ring preference.
    fn least_loaded(&self, s: usize, max_weight: u64, max_count: u64) -> Option<usize> {
        let w = self.weights[s];
        (0..self.live.len())
            .filter(|&i| self.owner[s] != Some(i))
            .filter(|&i| {
                self.weight[i].saturating_add(w) <= max_weight && self.count[i] < max_count
            })
            .min_by_key(|&i| {
                let (first, second) = if w > 0 {
                    (self.weight[i], self.count[i])
                } else {
                    (self.count[i], self.weight[i])
                };
                (first, second, self.rank(s, i), self.tiebreak(s, i))
            })
    }

    fn below(&self, i: usize) -> bool {
        self.weight[i] < self.bounds.floor_weight || self.count[i] < self.bounds.floor_count
    }

    /// The nodes below a floor (new, returning, or drained by deletions), least loaded first.
    fn below_floor(&self) -> Vec<usize> {
        let mut out: Vec<usize> = (0..self.live.len()).filter(|&i| self.below(i)).collect();
        out.sort_by_key(|&i| (self.weight[i], self.count[i], self.live[i]));
        out
    }

    /// The nodes with fewer shards than the count floor (new or returning), least loaded first.
    fn nearly_empty(&self) -> Vec<usize> {
        let mut out: Vec<usize> = (0..self.live.len())
            .filter(|&i| self.count[i] < self.bounds.floor_count)
            .collect();
        out.sort_by_key(|&i| (self.weight[i], self.count[i], self.live[i]));
        out
    }

    /// Each of `pullers` (nodes that were below a floor) pulls shards it is preferred for,
    /// up to about the mean.
    fn pull(&mut self, pullers: Vec<usize>) {
        let b = self.bounds;
        for p in pullers {
            if self.weight[p] >= b.mean_weight_floor && self.count[p] >= b.mean_count_floor {
                continue; // the orphans already brought it to the mean
            }
            let mut candidates: Vec<usize> = (0..self.owner.len())
                .filter(|&s| matches!(self.owner[s], Some(d) if d != p))
                .collect();
            // Shards the ring prefers `p` for first; among equals, from the most loaded donor.
            candidates.sort_by_cached_key(|&s| {
                let donor = self.owner[s].map_or(0, |d| self.weight[d]);
                (self.rank(s, p), Reverse(donor), self.tiebreak(s, p))
            });
            // First towards the mean from nodes above it; then, if still below a floor,
            // from anyone who stays above the floors.
            let near_mean = |st: &Self| {
                st.weight[p] >= b.mean_weight_floor && st.count[p] >= b.mean_count_floor
            };
            self.pull_pass(
                p,
                &candidates,
                (b.mean_weight_ceil, b.mean_count_ceil),
                (b.mean_weight_floor, b.mean_count_floor),
                near_mean,
            );
            if self.below(p) {
                self.pull_pass(
                    p,
                    &candidates,
                    (b.cap_weight, b.cap_count),
                    (b.floor_weight, b.floor_count),
                    |st| !st.below(p),
                );
            }
        }
    }

    /// Moves candidates to `p` while `p` stays within `limit` and each donor stays at or
    /// above `keep`, until `done`.
    fn pull_pass(
        &mut self,
        p: usize,
        candidates: &[usize],
        limit: (u64, u64),
        keep: (u64, u64),
        done: impl Fn(&Self) -> bool,
    ) {
        for &s in candidates {
            if done(self) {
                return;
            }
            let Some(d) = self.owner[s] else { continue };
            if d == p {
                continue;
            }
            let w = self.weights[s];
            let fits = self.weight[p].saturating_add(w) <= limit.0 && self.count[p] < limit.1;
            let donor_keeps = self.weight[d] >= keep.0.saturating_add(w) && self.count[d] > keep.1;
            if fits && donor_keeps {
                self.give(s, p);
            }
        }
    }
}

#[cfg(test)]
mod tests;
