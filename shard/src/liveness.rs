//! The leader's liveness decision, with hysteresis: which members count as alive for
//! planning.
//!
//! A node is dead once the leader has not heard from it for `liveness_timeout`. A node that
//! was dead (or is new) counts as alive again only after it has been heard continuously —
//! no gap as long as the timeout — for `rejoin_hold`, so a flapping node does not make the
//! leader move shards back and forth. Instants are passed in; nothing here reads a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::map::NodeId;

/// Knobs of the liveness decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessConfig {
    /// Silence after which a node is dead (must match [`crate::LeaseConfig::liveness_timeout`]).
    pub liveness_timeout: Duration,
    /// How long a dead or new node must be heard continuously before it is alive.
    pub rejoin_hold: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            liveness_timeout: Duration::from_millis(1500),
            rejoin_hold: Duration::from_millis(2000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    last: Instant,
    /// Start of the current unbroken run of contact; `None` = trusted from the start.
    streak: Option<Instant>,
}

/// The leader's record of when it last heard from each node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    config: LivenessConfig,
    seen: BTreeMap<NodeId, Seen>,
}

impl Liveness {
    /// A tracker for a leader elected at `now`: every node in `members` counts as just heard
    /// and alive without hold, so an election alone never moves shards, and a node that is in
    /// fact down is declared dead `liveness_timeout` after `now`.
    pub fn new(
        config: LivenessConfig,
        now: Instant,
        members: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        let seen = members
            .into_iter()
            .map(|n| {
                (
                    n,
                    Seen {
                        last: now,
                        streak: None,
                    },
                )
            })
            .collect();
        Self { config, seen }
    }

    /// Records contact from `node` at `at` (a reply, an acknowledgement or a heartbeat).
    /// Instants older than the last recorded contact are ignored.
    pub fn heard(&mut self, node: NodeId, at: Instant) {
        let timeout = self.config.liveness_timeout;
        match self.seen.get_mut(&node) {
            Some(s) if at <= s.last => {}
            Some(s) => {
                if at.duration_since(s.last) >= timeout {
                    s.streak = Some(at);
                }
                s.last = at;
            }
            None => {
                self.seen.insert(
                    node,
                    Seen {
                        last: at,
                        streak: Some(at),
                    },
                );
            }
        }
    }

    /// Stops tracking `node` (it left the membership).
    pub fn forget(&mut self, node: NodeId) {
        self.seen.remove(&node);
    }

    /// Whether `node` counts as alive at `now`.
    pub fn is_alive(&self, node: NodeId, now: Instant) -> bool {
        self.seen.get(&node).is_some_and(|s| self.alive_at(s, now))
    }

    /// The nodes that count as alive at `now`.
    pub fn alive(&self, now: Instant) -> BTreeSet<NodeId> {
        self.seen
            .iter()
            .filter(|(_, s)| self.alive_at(s, now))
            .map(|(&n, _)| n)
            .collect()
    }

    /// The earliest instant after `now` at which [`Liveness::alive`] can change without new
    /// contact: when the leader should look again.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let c = self.config;
        self.seen
            .values()
            .flat_map(|s| {
                let death = s.last.checked_add(c.liveness_timeout);
                let trust = s.streak.and_then(|t| t.checked_add(c.rejoin_hold));
                [death, trust]
            })
            .flatten()
            .filter(|&t| t > now)
            .min()
    }

    fn alive_at(&self, s: &Seen, now: Instant) -> bool {
        let c = self.config;
        let fresh = now.saturating_duration_since(s.last) < c.liveness_timeout;
        let trusted = s
            .streak
            .is_none_or(|t| now.saturating_duration_since(t) >= c.rejoin_hold);
        fresh && trusted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn members_start_alive_and_die_after_the_timeout() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0, [1, 2, 3]);
        assert_eq!(l.alive(t0), BTreeSet::from([1, 2, 3]));
        l.heard(1, t0 + ms(1000));
        l.heard(2, t0 + ms(1000));
        assert_eq!(l.next_change(t0 + ms(1)), Some(t0 + ms(1500)));
        assert_eq!(l.alive(t0 + ms(1499)), BTreeSet::from([1, 2, 3]));
        assert_eq!(l.alive(t0 + ms(1500)), BTreeSet::from([1, 2]));
        assert!(!l.is_alive(3, t0 + ms(1500)));
        assert!(!l.is_alive(99, t0));
    }

    #[test]
    fn a_returning_node_must_stay_in_contact_for_the_hold() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0, [1]);
        // Silent for 3 s: dead. Then it flaps: heard, silent past the timeout, heard again.
        l.heard(1, t0 + ms(3000));
        assert!(!l.is_alive(1, t0 + ms(3000)));
        assert_eq!(l.next_change(t0 + ms(3000)), Some(t0 + ms(4500)));
        l.heard(1, t0 + ms(4600)); // gap ≥ timeout: the run restarts
        for k in 1..=10 {
            l.heard(1, t0 + ms(4600 + 200 * k));
        }
        assert!(!l.is_alive(1, t0 + ms(6599)));
        assert!(l.is_alive(1, t0 + ms(6600)));
        // A gap shorter than the timeout does not restart the run.
        l.heard(1, t0 + ms(7500));
        assert!(l.is_alive(1, t0 + ms(7600)));
        // Out-of-order contact is ignored.
        l.heard(1, t0 + ms(100));
        assert!(l.is_alive(1, t0 + ms(7600)));
    }

    #[test]
    fn new_nodes_wait_for_the_hold_and_forget_removes() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0, []);
        l.heard(5, t0);
        l.heard(5, t0 + ms(1000));
        assert!(!l.is_alive(5, t0 + ms(1999)));
        l.heard(5, t0 + ms(2000));
        assert!(l.is_alive(5, t0 + ms(2000)));
        l.forget(5);
        assert!(l.alive(t0 + ms(2000)).is_empty());
        assert_eq!(l.next_change(t0), None);
    }
}
