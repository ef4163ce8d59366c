//! What the leader heard from nodes through their lease-renewal requests, and which nodes it
//! no longer grants leases to.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use flotilla_shard::NodeId;

/// gRPC metadata key carrying the id of the node that sends a lease-renewal read-index.
pub(crate) const NODE_ID_HEADER: &str = "flotilla-node-id";

#[derive(Debug, Default)]
pub(crate) struct Book {
    /// The latest receipt instant of a lease-renewal request, per node.
    pub(crate) latest: BTreeMap<NodeId, Instant>,
    /// Nodes the manager declared dead: their renewals are refused until they are alive.
    pub(crate) fenced: BTreeSet<NodeId>,
}

/// The leader's record of lease-renewal requests. Admitting a request and the manager's
/// dead/alive decision happen under one lock, so a renewal is either seen by the decision
/// (the node counts as alive) or refused (the node's shards may move).
#[derive(Debug, Default)]
pub(crate) struct HeardLog {
    book: Mutex<Book>,
}

impl HeardLog {
    /// Records a renewal request from `node` received at `at`; `false` if the node is fenced
    /// and must not be granted a lease.
    pub(crate) fn admit(&self, node: NodeId, at: Instant) -> bool {
        let mut b = self.lock();
        if b.fenced.contains(&node) {
            return false;
        }
        let e = b.latest.entry(node).or_insert(at);
        if at > *e {
            *e = at;
        }
        true
    }

    /// The book, locked: the manager reads it and sets the fenced set in one step.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the sender's node id from a request's metadata, if it carries one.
pub(crate) fn node_id_of(meta: &tonic::metadata::MetadataMap) -> Option<NodeId> {
    meta.get(NODE_ID_HEADER)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fenced_nodes_are_refused_and_others_recorded() {
        let log = HeardLog::default();
        let t0 = Instant::now();
        assert!(log.admit(2, t0 + Duration::from_millis(5)));
        assert!(log.admit(2, t0)); // older: admitted, latest unchanged
        assert_eq!(
            log.lock().latest.get(&2),
            Some(&(t0 + Duration::from_millis(5)))
        );
        log.lock().fenced.insert(3);
        assert!(!log.admit(3, t0));
        assert!(!log.lock().latest.contains_key(&3));
        let mut meta = tonic::metadata::MetadataMap::new();
        assert_eq!(node_id_of(&meta), None);
        meta.insert(NODE_ID_HEADER, tonic::metadata::MetadataValue::from(7u64));
        assert_eq!(node_id_of(&meta), Some(7));
    }
}
