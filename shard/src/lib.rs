//! Shard assignment.
