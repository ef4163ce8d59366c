//! The replicated shard map and the stable key → shard hash.

use serde::{Deserialize, Serialize};

/// A node's id in the Raft group.
pub type NodeId = u64;
/// A shard's index, `0..shard_count`.
pub type ShardId = u32;
/// A shard-map version; each committed map has a higher epoch than the one before.
pub type Epoch = u64;

/// Seed of the key hash. Changing it reshuffles every application: never change it.
const KEY_HASH_SEED: u64 = 0x666c_6f74_696c_6c61; // "flotilla"

/// The shard of a key (an application's `namespace/name`, or a repository URL).
///
/// xxh3 with a fixed seed over the UTF-8 bytes: the same on every platform and release.
pub fn shard_of(key: &str, shard_count: u32) -> ShardId {
    assert!(shard_count > 0, "shard_count must be positive");
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), KEY_HASH_SEED);
    // Multiply-shift maps the hash onto 0..shard_count without modulo bias.
    ((u128::from(h) * u128::from(shard_count)) >> 64) as ShardId
}

/// Who owns one shard, and since which epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Assignment {
    /// The owning node, or `None` while no live node can take it.
    pub owner: Option<NodeId>,
    /// The epoch of the map that gave the shard to `owner`. Writes made under an older epoch
    /// come from a previous ownership period and are refused.
    pub since: Epoch,
}

/// Why a write was refused by the fence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum FenceError {
    /// The shard does not exist in this map.
    #[error("shard {shard} is out of range (the map has {shard_count} shards)")]
    NoSuchShard {
        /// The shard asked for.
        shard: ShardId,
        /// How many shards the map has.
        shard_count: u32,
    },
    /// The writer does not own the shard in the current map.
    #[error("node {writer} does not own shard {shard} (owner: {owner:?}, map epoch {current})")]
    NotOwner {
        /// The shard written to.
        shard: ShardId,
        /// The node that wrote.
        writer: NodeId,
        /// The current owner.
        owner: Option<NodeId>,
        /// The current map epoch.
        current: Epoch,
    },
    /// The writer owns the shard, but wrote under an epoch from before its current ownership.
    #[error("stale epoch {epoch} for shard {shard}: owned by node {writer} since epoch {since}")]
    StaleEpoch {
        /// The shard written to.
        shard: ShardId,
        /// The node that wrote.
        writer: NodeId,
        /// The epoch the write carried.
        epoch: Epoch,
        /// The epoch since which the writer owns the shard.
        since: Epoch,
    },
}

/// The assignment of every shard to a node, at one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// This map's version.
    pub epoch: Epoch,
    /// One entry per shard, indexed by [`ShardId`].
    pub shards: Vec<Assignment>,
}

impl ShardMap {
    /// A map of `shard_count` unowned shards at epoch 0, before the leader has planned any.
    pub fn unassigned(shard_count: u32) -> Self {
        let shards = vec![
            Assignment {
                owner: None,
                since: 0
            };
            shard_count as usize
        ];
        Self { epoch: 0, shards }
    }

    /// How many shards the map has.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The owner of a shard, if any.
    pub fn owner(&self, shard: ShardId) -> Option<NodeId> {
        self.shards.get(shard as usize).and_then(|a| a.owner)
    }

    /// The shards `node` owns, in order.
    pub fn owned_by(&self, node: NodeId) -> Vec<ShardId> {
        (0..self.shard_count())
            .filter(|&s| self.owner(s) == Some(node))
            .collect()
    }

    /// Whether `writer`, acting under map `epoch`, may write state of `shard` now.
    ///
    /// A write is accepted only from the current owner, and only if it was made under an
    /// epoch at or after the one that gave the owner this shard: a write made during an
    /// earlier ownership period of the same node is stale.
    pub fn check_writer(
        &self,
        shard: ShardId,
        writer: NodeId,
        epoch: Epoch,
    ) -> Result<(), FenceError> {
        let Some(a) = self.shards.get(shard as usize) else {
            return Err(FenceError::NoSuchShard {
                shard,
                shard_count: self.shard_count(),
            });
        };
        if a.owner != Some(writer) {
            return Err(FenceError::NotOwner {
                shard,
                writer,
                owner: a.owner,
                current: self.epoch,
            });
        }
        if epoch < a.since {
            return Err(FenceError::StaleEpoch {
                shard,
                writer,
                epoch,
                since: a.since,
            });
        }
        Ok(())
    }
}

/// What one node gained and lost going from one applied map to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipChange {
    /// The epoch of the newer map: writes for gained shards carry it.
    pub epoch: Epoch,
    /// Shards the node owns in the newer map and did not own (in the same period) before.
    pub gained: Vec<ShardId>,
    /// Shards the node owned in the older map and no longer owns (in the same period).
    pub lost: Vec<ShardId>,
}

impl ShardMap {
    /// The shards `node` gains and loses going from `self` to `next`.
    ///
    /// A shard the node owns in both maps but with a different `since` was given away and
    /// back in between: it is both lost and gained, so the node restarts work on it under
    /// the new epoch.
    pub fn changes_for(&self, next: &ShardMap, node: NodeId) -> OwnershipChange {
        let none = Assignment {
            owner: None,
            since: 0,
        };
        let len = self.shards.len().max(next.shards.len());
        let mut change = OwnershipChange {
            epoch: next.epoch,
            ..OwnershipChange::default()
        };
        for s in 0..len {
            let old = self.shards.get(s).copied().unwrap_or(none);
            let new = next.shards.get(s).copied().unwrap_or(none);
            let had = old.owner == Some(node);
            let has = new.owner == Some(node);
            let same_period = had && has && old.since == new.since;
            if has && !same_period {
                change.gained.push(s as ShardId);
            }
            if had && !same_period {
                change.lost.push(s as ShardId);
            }
        }
        change
    }

    /// Weight (sum of `weights` of its shards) and shard count of every owner, by node id.
    pub fn loads(&self, weights: &[u64]) -> std::collections::BTreeMap<NodeId, (u64, u32)> {
        let mut out = std::collections::BTreeMap::new();
        for (s, a) in self.shards.iter().enumerate() {
            if let Some(n) = a.owner {
                let e: &mut (u64, u32) = out.entry(n).or_default();
                e.0 = e.0.saturating_add(weights.get(s).copied().unwrap_or(0));
                e.1 += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_stable_across_releases() {
        // Fixed vectors: if these change, every deployed cluster would reshuffle its apps.
        assert_eq!(
            shard_of("argocd/guestbook", 1024),
            shard_of("argocd/guestbook", 1024)
        );
        let got: Vec<_> = ["a/b", "argocd/guestbook", "team-1/app-0042", ""]
            .iter()
            .map(|k| shard_of(k, 1024))
            .collect();
        assert_eq!(got, STABLE_VECTORS.to_vec());
    }

    const STABLE_VECTORS: [ShardId; 4] = [141, 516, 179, 596];

    #[test]
    fn changes_for_reports_gains_losses_and_regained_periods() {
        let a = |owner, since| Assignment { owner, since };
        let old = ShardMap {
            epoch: 4,
            shards: vec![
                a(Some(1), 1),
                a(Some(1), 2),
                a(Some(2), 3),
                a(None, 0),
                a(Some(1), 2),
            ],
        };
        let new = ShardMap {
            epoch: 5,
            shards: vec![
                a(Some(1), 1),
                a(Some(2), 5),
                a(Some(1), 5),
                a(Some(1), 5),
                a(Some(1), 4),
            ],
        };
        let c = old.changes_for(&new, 1);
        assert_eq!(c.epoch, 5);
        assert_eq!(c.gained, vec![2, 3, 4]);
        assert_eq!(c.lost, vec![1, 4]);
        let c2 = old.changes_for(&new, 2);
        assert_eq!((c2.gained, c2.lost), (vec![1], vec![2]));
        assert_eq!(new.loads(&[1, 2, 3, 4, 5]).get(&1), Some(&(13, 4)));
    }

    #[test]
    fn shard_of_stays_in_range() {
        for n in [1u32, 2, 3, 7, 1024, 65_536] {
            for i in 0..1000 {
                assert!(shard_of(&format!("ns/app-{i}"), n) < n);
            }
        }
    }

    #[test]
    fn fence_accepts_current_owner_and_refuses_others() {
        let mut map = ShardMap::unassigned(4);
        map.epoch = 7;
        map.shards[2] = Assignment {
            owner: Some(1),
            since: 5,
        };
        assert_eq!(map.check_writer(2, 1, 7), Ok(()));
        assert_eq!(map.check_writer(2, 1, 5), Ok(()));
        assert!(matches!(
            map.check_writer(2, 1, 4),
            Err(FenceError::StaleEpoch { since: 5, .. })
        ));
        assert!(matches!(
            map.check_writer(2, 2, 7),
            Err(FenceError::NotOwner { .. })
        ));
        assert!(matches!(
            map.check_writer(0, 1, 7),
            Err(FenceError::NotOwner { owner: None, .. })
        ));
        assert!(matches!(
            map.check_writer(9, 1, 7),
            Err(FenceError::NoSuchShard { .. })
        ));
    }
}
