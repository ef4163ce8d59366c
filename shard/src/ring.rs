//! The consistent-hash ring of nodes, and the bounded-load caps the planner enforces.
//!
//! The ring (the `hashring` crate, with virtual nodes) gives every shard a stable order of
//! preferred nodes. The planner is sticky — a shard stays where it is unless it must move —
//! and uses that order to decide *which* shards move and where ties go, so that a node
//! that comes back tends to receive the same shards it had before. How *much* each node
//! owns is decided by [`LoadBounds`]: caps and floors on each node's weight (applications)
//! and shard count, around the mean.
//!
//! Everything here is platform independent: the ring hashes with xxh3 over little-endian
//! bytes (not `std`'s native-endian defaults), so every leader computes the same ring.

use std::hash::{BuildHasher, Hash, Hasher};

use hashring::HashRing;

use crate::map::{NodeId, ShardId};

/// Seed of the ring hash; changing it reshuffles which shards prefer which node.
const RING_SEED: u64 = 0x7269_6e67_666c_6f74; // "ringflot"

/// How many distinct preferred nodes the ring computes per shard.
pub const PREFERENCE_DEPTH: usize = 3;

/// Probes tried per shard while looking for [`PREFERENCE_DEPTH`] distinct nodes.
const MAX_PROBES: u32 = 4 * PREFERENCE_DEPTH as u32;

/// A [`Hasher`] that is identical on every platform: integers are fed little-endian, and
/// the bytes are hashed with seeded xxh3.
#[derive(Debug, Clone)]
pub struct StableHasher {
    buf: [u8; 32],
    len: usize,
    /// Hash of the bytes already folded out of `buf` when it filled up.
    folded: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self {
            buf: [0; 32],
            len: 0,
            folded: RING_SEED,
        }
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == self.buf.len() {
                self.folded = xxhash_rust::xxh3::xxh3_64_with_seed(&self.buf, self.folded);
                self.len = 0;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }

    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }

    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }

    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }

    fn write_usize(&mut self, i: usize) {
        self.write(&(i as u64).to_le_bytes());
    }

    fn finish(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(&self.buf[..self.len], self.folded)
    }
}

/// Builds [`StableHasher`]s for the ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StableHashBuilder;

impl BuildHasher for StableHashBuilder {
    type Hasher = StableHasher;

    fn build_hasher(&self) -> StableHasher {
        StableHasher::default()
    }
}

/// One virtual node: replica `replica` of `node` on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VNode {
    node: NodeId,
    replica: u32,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(b'v');
        state.write_u64(self.node);
        state.write_u32(self.replica);
    }
}

/// The point a shard's `probe`-th lookup lands on.
struct Probe {
    shard: ShardId,
    probe: u32,
}

impl Hash for Probe {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(b's');
        state.write_u32(self.shard);
        state.write_u32(self.probe);
    }
}

/// A deterministic 64-bit mix of two integers, for tie-breaking (splitmix64 finaliser).
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(b)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The ring of live nodes, each present as `vnodes` virtual nodes.
#[derive(Debug, Clone)]
pub struct Ring {
    ring: HashRing<VNode, StableHashBuilder>,
    nodes: Vec<NodeId>,
}

impl Ring {
    /// A ring of `nodes` (order and duplicates do not matter) with `vnodes` virtual nodes each.
    pub fn new(nodes: &[NodeId], vnodes: u32) -> Self {
        let mut sorted = nodes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ring = HashRing::with_hasher(StableHashBuilder);
        let vnodes = vnodes.max(1);
        ring.batch_add(
            sorted
                .iter()
                .flat_map(|&node| (0..vnodes).map(move |replica| VNode { node, replica }))
                .collect(),
        );
        Self {
            ring,
            nodes: sorted,
        }
    }

    /// The nodes on the ring, sorted.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The node the ring prefers most for `shard`, or `None` for an empty ring.
    pub fn primary(&self, shard: ShardId) -> Option<NodeId> {
        self.ring.get(&Probe { shard, probe: 0 }).map(|v| v.node)
    }

    /// Up to [`PREFERENCE_DEPTH`] distinct nodes in the order the ring prefers them for `shard`.
    ///
    /// Probe `i` hashes `(shard, i)` onto the ring; each probe's answer changes only when a
    /// node whose virtual node captures that point joins or leaves, which keeps the order
    /// consistent as membership changes.
    pub fn preferences(&self, shard: ShardId) -> Vec<NodeId> {
        let want = PREFERENCE_DEPTH.min(self.nodes.len());
        let mut out = Vec::with_capacity(want);
        for probe in 0..MAX_PROBES {
            if out.len() == want {
                break;
            }
            if let Some(v) = self.ring.get(&Probe { shard, probe }) {
                if !out.contains(&v.node) {
                    out.push(v.node);
                }
            }
        }
        out
    }
}

/// Per-node load limits for one plan: the bounded-load caps and the hysteresis floors.
///
/// Weight is the number of applications a node owns (the sum of its shards' weights); count
/// is its number of shards. Moves are triggered only by leaving the band
/// `[floor, cap]`, and restore a node to about the mean, so small drift causes no churn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadBounds {
    /// ⌊W/N⌋.
    pub mean_weight_floor: u64,
    /// ⌈W/N⌉.
    pub mean_weight_ceil: u64,
    /// No node above this weight: max(⌊(1+ε)·W/N⌋, ⌈W/N⌉ + slack).
    pub cap_weight: u64,
    /// A node below this weight pulls shards: min(⌈(1−ε)·W/N⌉, ⌊W/N⌋ − slack).
    pub floor_weight: u64,
    /// ⌊S/N⌋.
    pub mean_count_floor: u64,
    /// ⌈S/N⌉.
    pub mean_count_ceil: u64,
    /// No node above this many shards: ⌈(1+ε)·S/N⌉.
    pub cap_count: u64,
    /// A node with fewer shards than this pulls shards: ⌊S/(2N)⌋.
    pub floor_count: u64,
}

impl LoadBounds {
    /// The bounds for `total_weight` over `shard_count` shards on `nodes` (> 0) nodes, with
    /// imbalance `epsilon_permille` (ε in thousandths) and an absolute `weight_slack`.
    pub fn new(
        total_weight: u64,
        shard_count: u32,
        nodes: usize,
        epsilon_permille: u32,
        weight_slack: u64,
    ) -> Self {
        let n = u128::from(nodes.max(1) as u64);
        let w = u128::from(total_weight);
        let s = u128::from(shard_count);
        let eps = u128::from(epsilon_permille.min(1000));
        let div_floor = |a: u128, b: u128| (a / b) as u64;
        let div_ceil = |a: u128, b: u128| a.div_ceil(b) as u64;
        let mean_weight_floor = div_floor(w, n);
        let mean_weight_ceil = div_ceil(w, n);
        let cap_weight = div_floor(w * (1000 + eps), 1000 * n)
            .max(mean_weight_ceil.saturating_add(weight_slack));
        let floor_weight = div_ceil(w * (1000 - eps), 1000 * n)
            .min(mean_weight_floor.saturating_sub(weight_slack));
        Self {
            mean_weight_floor,
            mean_weight_ceil,
            cap_weight,
            floor_weight,
            mean_count_floor: div_floor(s, n),
            mean_count_ceil: div_ceil(s, n),
            cap_count: div_ceil(s * (1000 + eps), 1000 * n),
            floor_count: div_floor(s, 2 * n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_independent_of_insertion_order_and_stable() {
        let a = Ring::new(&[3, 1, 2, 2], 64);
        let b = Ring::new(&[1, 2, 3], 64);
        assert_eq!(a.nodes(), &[1, 2, 3]);
        for s in 0..512 {
            assert_eq!(a.preferences(s), b.preferences(s));
            assert_eq!(a.primary(s), a.preferences(s).first().copied());
        }
        // Fixed vector: the ring is part of the cluster's behaviour across releases.
        let got: Vec<_> = (0..8)
            .map(|s| Ring::new(&[1, 2, 3, 4], 64).primary(s))
            .collect();
        assert_eq!(got, RING_VECTORS.map(Some).to_vec());
    }

    const RING_VECTORS: [NodeId; 8] = [2, 1, 4, 1, 3, 2, 3, 4];

    #[test]
    fn preferences_are_distinct_and_bounded() {
        let ring = Ring::new(&[10, 20, 30, 40, 50], 32);
        for s in 0..1000 {
            let p = ring.preferences(s);
            assert!(!p.is_empty() && p.len() <= PREFERENCE_DEPTH);
            let mut d = p.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), p.len());
        }
        assert_eq!(Ring::new(&[], 8).primary(0), None);
        assert_eq!(Ring::new(&[7], 8).preferences(5), vec![7]);
    }

    #[test]
    fn adding_a_node_changes_primaries_only_to_the_new_node() {
        let before = Ring::new(&[1, 2, 3], 64);
        let after = Ring::new(&[1, 2, 3, 4], 64);
        let mut moved = 0;
        for s in 0..4096 {
            let (b, a) = (before.primary(s), after.primary(s));
            if a != b {
                assert_eq!(a, Some(4), "shard {s} moved between old nodes");
                moved += 1;
            }
        }
        // About a quarter, with virtual-node variance.
        assert!((600..=1500).contains(&moved), "moved {moved}");
    }

    #[test]
    fn stable_hasher_feeds_integers_little_endian() {
        let mut a = StableHasher::default();
        a.write_u64(0x0102_0304_0506_0708);
        let mut b = StableHasher::default();
        b.write(&[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(a.finish(), b.finish());
        // Long inputs fold instead of overflowing, and still depend on every byte.
        let mut c = StableHasher::default();
        c.write(&[0u8; 100]);
        let mut d = StableHasher::default();
        d.write(&[0u8; 99]);
        d.write(&[1]);
        assert_ne!(c.finish(), d.finish());
    }

    #[test]
    fn bounds_follow_the_formulas() {
        let b = LoadBounds::new(10_000, 4096, 16, 50, 1);
        assert_eq!((b.mean_weight_floor, b.mean_weight_ceil), (625, 625));
        assert_eq!(b.cap_weight, 656); // ⌊1.05 × 625⌋
        assert_eq!(b.floor_weight, 594); // ⌈0.95 × 625⌉
        assert_eq!((b.mean_count_floor, b.mean_count_ceil), (256, 256));
        assert_eq!(b.cap_count, 269); // ⌈1.05 × 256⌉ = ⌈268.8⌉
        assert_eq!(b.floor_count, 128);
        // Few applications: the slack keeps a one-application band around the mean.
        let small = LoadBounds::new(10, 4096, 3, 50, 1);
        assert_eq!((small.cap_weight, small.floor_weight), (5, 2));
        let empty = LoadBounds::new(0, 8, 3, 50, 1);
        assert_eq!((empty.cap_weight, empty.floor_weight), (1, 0));
    }
}
