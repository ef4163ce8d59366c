//! The store's figures, from openraft's metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::{Instant as _, RaftMetrics, ServerState};

use crate::types::TypeConfig;

/// How one follower or learner is doing, as the leader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowerProgress {
    /// The highest log index known to be replicated to it.
    pub matched_index: Option<u64>,
    /// Time since it last acknowledged a heartbeat or append; `None` if never.
    pub last_heard: Option<Duration>,
}

/// A snapshot of one member's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreMetrics {
    /// This member's id.
    pub id: u64,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    /// Whether this member leads.
    pub is_leader: bool,
    /// The current term.
    pub term: u64,
    /// The leader, if known.
    pub leader: Option<u64>,
    /// The last log index on this member.
    pub last_log_index: Option<u64>,
    /// The highest index known to be committed.
    pub commit_index: Option<u64>,
    /// The highest index applied to the state machine.
    pub applied_index: Option<u64>,
    /// Committed but not yet applied entries.
    pub apply_lag: u64,
    /// The last index covered by the current snapshot.
    pub snapshot_index: Option<u64>,
    /// The last purged log index.
    pub purged_index: Option<u64>,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Non-voting members.
    pub learners: Vec<u64>,
    /// Every member's peer address, voters and learners.
    pub addresses: BTreeMap<u64, String>,
    /// Per-follower progress; filled on the leader only.
    pub followers: BTreeMap<u64, FollowerProgress>,
}

impl StoreMetrics {
    /// Convert openraft's metrics.
    pub fn from_raft(m: &RaftMetrics<TypeConfig>) -> Self {
        let idx = |l: &Option<crate::types::LogId>| l.as_ref().map(|l| l.index());
        let commit_index = idx(&m.local_committed);
        let applied_index = idx(&m.last_applied);
        let mut followers = BTreeMap::new();
        if let Some(rep) = &m.replication {
            for (id, matched) in rep {
                followers.insert(
                    *id,
                    FollowerProgress {
                        matched_index: idx(matched),
                        last_heard: None,
                    },
                );
            }
        }
        if let Some(hb) = &m.heartbeat {
            for (id, at) in hb {
                let e = followers.entry(*id).or_insert(FollowerProgress {
                    matched_index: None,
                    last_heard: None,
                });
                e.last_heard = at.as_ref().map(|t| t.elapsed());
            }
        }
        followers.remove(&m.id);
        let membership = m.membership_config.membership();
        Self {
            id: m.id,
            state: format!("{:?}", m.state),
            is_leader: m.state == ServerState::Leader,
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            commit_index,
            applied_index,
            apply_lag: commit_index
                .unwrap_or(0)
                .saturating_sub(applied_index.unwrap_or(0)),
            snapshot_index: idx(&m.snapshot),
            purged_index: idx(&m.purged),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            addresses: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            followers,
        }
    }
}
