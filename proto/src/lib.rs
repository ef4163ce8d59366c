//! Protocol definitions shared by flotilla's crates.
//!
//! - [`raft`]: the Raft peer RPCs (`RaftPeer`) and the small client API of a store member
//!   (`StoreClient`), from `proto/raft.proto`.
//! - [`v1`]: the public API of a node (`Flotilla`), from `proto/flotilla_v1.proto`, used
//!   by the `flotilla` command line.
//! - [`etcd`]: the part of etcd's KV API the store benchmark compares against.
//!
//! The code is generated at build time by `build.rs` with a vendored `protoc`.

/// Raft peer RPCs and the store client API (`flotilla.raft.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod raft {
    tonic::include_proto!("flotilla.raft.v1");
}

/// etcd's `KV.Put`, for the store benchmark (`etcdserverpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

/// The public node API (`flotilla.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("flotilla.v1");
}
