//! Shard assignment for flotilla: pure logic, no I/O.
//!
//! Applications are keyed by `namespace/name` and hashed onto a fixed number of shards
//! ([`shard_of`]). The Raft leader assigns shards to nodes and commits the result as a
//! [`ShardMap`] with a new epoch; every status or operation write a node makes carries the
//! epoch of the map under which it owned the shard, and the state machine fences stale
//! writers with [`ShardMap::check_writer`].
//!
//! Start with [`map`] for the replicated data types.

pub mod map;

pub use map::{shard_of, Assignment, Epoch, FenceError, NodeId, ShardId, ShardMap};
