//! Settings of one store member.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::network::TlsPaths;

/// How to run one member of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// This member's Raft id; must not be 0.
    pub node_id: u64,
    /// Where sled keeps the log, the state and the snapshot.
    pub data_dir: PathBuf,
    /// Where to listen for peers and clients (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The `host:port` peers use to reach this member; defaults to the bound address.
    pub advertise: Option<String>,
    /// TLS for peer and client traffic; plain TCP when `None`.
    pub tls: Option<TlsPaths>,
    /// Election timeout range in milliseconds.
    pub election_timeout_ms: (u64, u64),
    /// Leader heartbeat interval in milliseconds.
    pub heartbeat_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the last snapshot, for followers slightly behind.
    pub keep_after_snapshot: u64,
    /// sled's page-cache budget in bytes.
    pub cache_bytes: u64,
    /// Capacity of the proposal queue; proposers wait when it is full.
    pub proposal_queue: usize,
    /// Most commands carried by one Raft entry.
    pub max_batch: usize,
    /// Most Raft entries being written at once by the proposal batcher.
    pub max_inflight_batches: usize,
    /// Capacity of the change stream; slower subscribers get a lag error.
    pub change_buffer: usize,
    /// Deadline of one peer RPC.
    pub rpc_timeout: Duration,
    /// How long a proposal or a membership call waits for a leader.
    pub leader_wait: Duration,
}

impl StoreConfig {
    /// A configuration with production defaults.
    pub fn new(node_id: u64, data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            node_id,
            data_dir: data_dir.into(),
            listen,
            advertise: None,
            tls: None,
            election_timeout_ms: (1000, 2000),
            heartbeat_ms: 250,
            snapshot_every: 20_000,
            keep_after_snapshot: 5_000,
            cache_bytes: 64 << 20,
            proposal_queue: 16_384,
            max_batch: 1024,
            max_inflight_batches: 2,
            change_buffer: 8192,
            rpc_timeout: Duration::from_secs(5),
            leader_wait: Duration::from_secs(10),
        }
    }
}
