//! What the leader heard from nodes through their lease-renewal requests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use flotilla_shard::NodeId;

/// gRPC metadata key carrying the id of the node that sends a lease-renewal read-index.
pub(crate) const NODE_ID_HEADER: &str = "flotilla-node-id";

/// The latest instant at which this member, as leader, received a lease-renewal request from
/// each node and confirmed its leadership for it.
#[derive(Debug, Default)]
pub(crate) struct HeardLog {
    latest: Mutex<BTreeMap<NodeId, Instant>>,
}

impl HeardLog {
    /// Records a request from `node` received at `at`.
    pub(crate) fn record(&self, node: NodeId, at: Instant) {
        if let Ok(mut m) = self.latest.lock() {
            let e = m.entry(node).or_insert(at);
            if at > *e {
                *e = at;
            }
        }
    }

    /// The latest receipt instant per node.
    pub(crate) fn snapshot(&self) -> BTreeMap<NodeId, Instant> {
        self.latest.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Reads the sender's node id from a request's metadata, if it carries one.
pub(crate) fn node_id_of(meta: &tonic::metadata::MetadataMap) -> Option<NodeId> {
    meta.get(NODE_ID_HEADER)?.to_str().ok()?.parse().ok()
}
