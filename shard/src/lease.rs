//! The lease rule: whether a node may act on its shards right now.
//!
//! The leader reassigns a node's shards once it has not heard from the node for
//! `liveness_timeout` (leader clock). A node acts on its shards only while it holds a lease,
//! which lasts `lease_duration` from the moment the node *sent* a message that the current
//! leader is known to have received (a follower's own timestamp echoed back by the leader, or,
//! on the leader, the send time of a heartbeat round a quorum acknowledged). The leader heard
//! the node at or after that moment, so the leader's reassignment deadline is at least
//! `liveness_timeout` after the lease start; the lease ends `lease_duration` after it.
//! Requiring `lease_duration + clock_margin < liveness_timeout` leaves `clock_margin` for
//! clock-rate drift between the two machines and for the time between a node checking its
//! lease and its action taking effect. A new leader starts its liveness clocks when it is
//! elected, which is after any lease granted under the old leader began, so the bound holds
//! across leader changes too.
//!
//! Renewal must not be based on merely *receiving* leader heartbeats: with a one-way
//! partition the node would keep renewing while the leader, no longer hearing it, reassigns
//! its shards.
//!
//! Instants are passed in; nothing here reads a clock.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::map::{Epoch, FenceError, NodeId, ShardId, ShardMap};

/// Timing knobs of leases and liveness. The safety argument compares one node's lease with
/// the leader's liveness timeout, so every node must run with the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseConfig {
    /// How often a node sends the message that renews its lease.
    pub renew_interval: Duration,
    /// How long a lease lasts after the renewing message was sent.
    pub lease_duration: Duration,
    /// Safety margin for clock drift and check-to-act delay.
    pub clock_margin: Duration,
    /// Silence after which the leader reassigns a node's shards.
    pub liveness_timeout: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            renew_interval: Duration::from_millis(250),
            lease_duration: Duration::from_millis(1000),
            clock_margin: Duration::from_millis(300),
            liveness_timeout: Duration::from_millis(1500),
        }
    }
}

/// Why a [`LeaseConfig`] is unsafe or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// A duration knob is zero.
    #[error("lease setting `{0}` must be greater than zero")]
    Zero(&'static str),
    /// Leases would outlive the leader's patience: two nodes could act on one shard.
    #[error(
        "lease_duration {lease:?} must be shorter than liveness_timeout {liveness:?} minus \
         clock_margin {margin:?}; otherwise a silent node could still hold its lease after the \
         leader gave its shards away. Lower lease_duration or raise liveness_timeout"
    )]
    LeaseTooLong {
        /// The configured lease duration.
        lease: Duration,
        /// The configured clock margin.
        margin: Duration,
        /// The configured liveness timeout.
        liveness: Duration,
    },
    /// Renewals too rare: the lease would lapse between two renewals.
    #[error(
        "renew_interval {renew:?} must be shorter than lease_duration {lease:?}, or leases \
         lapse between renewals"
    )]
    RenewTooSlow {
        /// The configured renewal interval.
        renew: Duration,
        /// The configured lease duration.
        lease: Duration,
    },
}

impl LeaseConfig {
    /// Checks that leases end before the leader reassigns, with the margin to spare.
    pub fn validate(&self) -> Result<(), LeaseError> {
        for (name, d) in [
            ("renew_interval", self.renew_interval),
            ("lease_duration", self.lease_duration),
            ("liveness_timeout", self.liveness_timeout),
        ] {
            if d.is_zero() {
                return Err(LeaseError::Zero(name));
            }
        }
        let safe = self.lease_duration.checked_add(self.clock_margin);
        if !matches!(safe, Some(t) if t < self.liveness_timeout) {
            return Err(LeaseError::LeaseTooLong {
                lease: self.lease_duration,
                margin: self.clock_margin,
                liveness: self.liveness_timeout,
            });
        }
        if self.renew_interval >= self.lease_duration {
            return Err(LeaseError::RenewTooSlow {
                renew: self.renew_interval,
                lease: self.lease_duration,
            });
        }
        Ok(())
    }
}

/// Why a node may not act on a shard now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    /// The node has no valid lease.
    #[error("node {node} holds no valid lease (expired or never granted)")]
    NoLease {
        /// The node.
        node: NodeId,
    },
    /// The node does not own the shard in the applied map.
    #[error(transparent)]
    Fence(#[from] FenceError),
}

/// A node's lease: whether it may act on the shards it owns right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    duration: Duration,
    start: Option<Instant>,
}

impl Lease {
    /// A lease that is not yet held, with the duration from `config`.
    pub fn new(config: &LeaseConfig) -> Self {
        Self {
            duration: config.lease_duration,
            start: None,
        }
    }

    /// Renews the lease from `sent_at`: the instant this node sent a message the current
    /// leader is known to have received. Older instants than the current start are ignored.
    pub fn renew(&mut self, sent_at: Instant) {
        if self.start.is_none_or(|s| sent_at > s) {
            self.start = Some(sent_at);
        }
    }

    /// Drops the lease at once (new term, shutdown, handing shards away).
    pub fn revoke(&mut self) {
        self.start = None;
    }

    /// When the lease ends, if it was ever granted.
    pub fn expires_at(&self) -> Option<Instant> {
        self.start.and_then(|s| s.checked_add(self.duration))
    }

    /// Whether the lease is valid at `now`.
    pub fn is_valid(&self, now: Instant) -> bool {
        self.expires_at().is_some_and(|end| now < end)
    }

    /// How long the lease stays valid after `now` (zero if not valid).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires_at()
            .map_or(Duration::ZERO, |end| end.saturating_duration_since(now))
    }

    /// Whether `node` may act on `shard` at `now` under `map`: it holds a valid lease and owns
    /// the shard. Returns the epoch its writes must carry.
    pub fn may_act(
        &self,
        now: Instant,
        map: &ShardMap,
        node: NodeId,
        shard: ShardId,
    ) -> Result<Epoch, ActError> {
        if !self.is_valid(now) {
            return Err(ActError::NoLease { node });
        }
        map.check_writer(shard, node, map.epoch)?;
        Ok(map.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::Assignment;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn default_config_is_valid() {
        assert_eq!(LeaseConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validate_refuses_unsafe_settings() {
        let c = LeaseConfig::default();
        let too_long = LeaseConfig {
            lease_duration: ms(1200),
            ..c
        };
        let err = too_long.validate().unwrap_err();
        assert!(matches!(err, LeaseError::LeaseTooLong { .. }));
        assert!(err.to_string().contains("lease_duration 1.2s"), "{err}");
        // Exactly at the bound is refused too: the inequality is strict.
        let at_bound = LeaseConfig {
            lease_duration: ms(1200),
            clock_margin: ms(300),
            ..c
        };
        assert!(at_bound.validate().is_err());
        let just_under = LeaseConfig {
            lease_duration: ms(1199),
            ..c
        };
        assert_eq!(just_under.validate(), Ok(()));
        let slow = LeaseConfig {
            renew_interval: ms(1000),
            ..c
        };
        assert!(matches!(
            slow.validate(),
            Err(LeaseError::RenewTooSlow { .. })
        ));
        let zero = LeaseConfig {
            liveness_timeout: Duration::ZERO,
            ..c
        };
        assert_eq!(zero.validate(), Err(LeaseError::Zero("liveness_timeout")));
        let huge = LeaseConfig {
            clock_margin: Duration::MAX,
            ..c
        };
        assert!(matches!(
            huge.validate(),
            Err(LeaseError::LeaseTooLong { .. })
        ));
    }

    #[test]
    fn lease_runs_from_the_send_instant_and_only_moves_forward() {
        let t0 = Instant::now();
        let mut lease = Lease::new(&LeaseConfig::default());
        assert!(!lease.is_valid(t0));
        assert_eq!(lease.remaining(t0), Duration::ZERO);
        lease.renew(t0);
        assert!(lease.is_valid(t0 + ms(999)));
        assert!(!lease.is_valid(t0 + ms(1000)));
        assert_eq!(lease.remaining(t0 + ms(400)), ms(600));
        // A late acknowledgement of an older message does not shorten or extend anything.
        lease.renew(t0 + ms(500));
        lease.renew(t0 + ms(200));
        assert_eq!(lease.expires_at(), Some(t0 + ms(1500)));
        lease.revoke();
        assert!(!lease.is_valid(t0 + ms(600)));
    }

    #[test]
    fn lease_always_ends_before_the_leader_reassigns() {
        // The leader hears the node at or after the send instant, then waits the liveness
        // timeout; even with the leader's clock running fast by the margin, the lease is over.
        let c = LeaseConfig::default();
        let t0 = Instant::now();
        for delay_ms in [0u64, 1, 50, 400] {
            let mut lease = Lease::new(&c);
            lease.renew(t0);
            let leader_heard = t0 + ms(delay_ms);
            let reassign = leader_heard + c.liveness_timeout - c.clock_margin;
            assert!(!lease.is_valid(reassign), "delay {delay_ms} ms");
            assert!(lease.expires_at().is_some_and(|e| e < reassign));
        }
    }

    #[test]
    fn may_act_needs_lease_and_ownership() {
        let t0 = Instant::now();
        let mut map = ShardMap::unassigned(4);
        map.epoch = 3;
        map.shards[1] = Assignment {
            owner: Some(7),
            since: 2,
        };
        let mut lease = Lease::new(&LeaseConfig::default());
        assert_eq!(
            lease.may_act(t0, &map, 7, 1),
            Err(ActError::NoLease { node: 7 })
        );
        lease.renew(t0);
        assert_eq!(lease.may_act(t0 + ms(10), &map, 7, 1), Ok(3));
        assert!(matches!(
            lease.may_act(t0 + ms(10), &map, 8, 1),
            Err(ActError::Fence(FenceError::NotOwner { .. }))
        ));
        assert!(matches!(
            lease.may_act(t0 + ms(2000), &map, 7, 1),
            Err(ActError::NoLease { .. })
        ));
    }
}
