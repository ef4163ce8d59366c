//! flotilla's replicated state store: openraft over sled with a tonic gRPC transport.
//!
//! Start with [`Store`]: [`Store::start`] opens a member from a [`StoreConfig`],
//! [`Store::initialize`] forms a new group, [`Store::propose`] / [`Store::propose_many`] change
//! the state with [`Command`]s, [`Store::local`] and [`Store::linearizable`] read it,
//! [`Store::subscribe`] follows applied changes, and [`Store::metrics`] reports the figures.
//!
//! Inside: [`apply`] is the deterministic state transition (pure, unit-tested without a
//! cluster); [`log_store`] and [`state_machine`] keep the log and the state in one sled
//! database per member; [`network`] and the private `server` module are the gRPC transport.
//! See `docs/ARCHITECTURE.md`, section "Replicated state store".
//!
//! Shard ownership on top of the store (the leader's shard manager, every node's leases and
//! graceful leave) is in [`shards`]: start with [`ShardNode`].

pub mod apply;
pub mod client;
pub mod command;
pub mod config;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod reads;
mod server;
pub mod shards;
pub mod state_machine;
pub mod store;
pub mod types;
pub mod values;

pub use apply::{
    AppRecord, OperationRecord, PendingOperation, ProjectRecord, RevisionRecord, StatusRecord,
};
pub use client::{ClientError, RemoteStore};
pub use command::{
    Applied, ApplyError, ClusterRef, Command, CommandResult, Json, NodeInfo, RepoRef, Request,
    Response,
};
pub use config::StoreConfig;
pub use metrics::{FollowerProgress, StoreMetrics};
pub use network::TlsPaths;
pub use reads::{ReadError, StateReader};
pub use shards::{ShardConfig, ShardEvent, ShardNode, ShardsError};
pub use state_machine::ChangeEvent;
pub use store::{
    change_membership_via, MembershipChange, ProposeError, Proposed, Store, StoreError,
};

/// Re-exported so callers can build [`Json`] payloads without naming the version.
pub use serde_json;
