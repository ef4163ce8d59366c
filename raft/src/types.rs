//! openraft's type configuration for flotilla.

use crate::command::{Request, Response};
use crate::state_machine::StateMachine;

openraft::declare_raft_types!(
    /// The Raft types of flotilla's store: [`Request`] batches in, [`Response`]s out, u64 node
    /// ids and `host:port` peer addresses.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// The Raft handle of a store member.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;
/// A Raft log id.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A Raft vote.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A Raft log entry.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot with its bytes.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;
/// The membership stored alongside the state.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
