//! Shard assignment for flotilla: pure logic, no I/O, no clocks, no randomness.
//!
//! Applications are keyed by `namespace/name` and hashed onto a fixed number of shards
//! ([`shard_of`], [`DEFAULT_SHARD_COUNT`]). The Raft leader assigns shards to nodes and
//! commits the result as a [`ShardMap`] with a new epoch; every status or operation write a
//! node makes carries the epoch of the map under which it owned the shard, and the state
//! machine fences stale writers with [`ShardMap::check_writer`].
//!
//! Where to start:
//! - [`map`]: the replicated data types, the key hash and the fence.
//! - [`mod@plan`]: the leader's planner — [`plan()`] turns the current map, the members, the
//!   live set and the application count per shard ([`shard_weights`]) into the next map,
//!   moving as few shards as possible, or says nothing needs to move.
//! - [`ring`]: the consistent-hash ring (virtual nodes) that orders each shard's preferred
//!   nodes, and the bounded-load caps ([`LoadBounds`]).
//! - [`liveness`]: the leader's dead/alive decision with hysteresis, the planner's `alive`.
//! - [`lease`]: the rule a node applies before acting on a shard ([`Lease::may_act`]).
//!
//! ```
//! use std::collections::BTreeSet;
//! use flotilla_shard::{plan, shard_weights, PlanConfig, ShardMap};
//!
//! let apps: Vec<String> = (0..1000).map(|i| format!("team-{}/app-{i}", i % 7)).collect();
//! let weights = shard_weights(apps.iter().map(String::as_str), 256);
//! let first = plan(&ShardMap::unassigned(256), &[1, 2, 3], &BTreeSet::from([1, 2, 3]),
//!                  &weights, &PlanConfig::default()).unwrap().expect("everything is unowned");
//! assert_eq!(first.map.epoch, 1);
//! // Node 3 dies: only its shards move.
//! let next = plan(&first.map, &[1, 2, 3], &BTreeSet::from([1, 2]), &weights,
//!                 &PlanConfig::default()).unwrap().expect("node 3 owned shards");
//! assert!(next.moves.iter().all(|m| m.from == Some(3)));
//! ```

pub mod lease;
pub mod liveness;
pub mod map;
pub mod plan;
pub mod ring;

pub use lease::{ActError, Lease, LeaseConfig, LeaseError};
pub use liveness::{Liveness, LivenessConfig};
pub use map::{
    shard_of, Assignment, Epoch, FenceError, NodeId, OwnershipChange, ShardId, ShardMap,
};
pub use plan::{plan, shard_weights, Move, Plan, PlanConfig, PlanError, DEFAULT_SHARD_COUNT};
pub use ring::{LoadBounds, Ring};
