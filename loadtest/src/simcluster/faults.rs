//! Fault injection: latency, injected 500s and 429s, forced 410 on watches, offline switch.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Faults currently injected into one cluster. The JSON form is what the admin endpoint
/// `/simcluster/faults` reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultConfig {
    /// Latency added to every API request, in milliseconds.
    pub latency_ms: u64,
    /// Fraction (0..=1) of API requests answered with 500 InternalError.
    pub error_rate: f64,
    /// Fraction (0..=1) of API requests answered with 429 TooManyRequests and `Retry-After`.
    pub throttle_rate: f64,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_seconds: u64,
    /// Every watch that resumes from a resourceVersion gets a 410 `Expired` ERROR event.
    pub force_watch_410: bool,
    /// Watch connections are dropped (aborted mid-stream) this many milliseconds after
    /// they start; 0 = never.
    pub watch_drop_after_ms: u64,
    /// The cluster is offline: API requests get their connection closed without an answer.
    pub offline: bool,
}

/// What fault, if any, to inject into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Serve normally.
    None,
    /// Answer 500.
    Error,
    /// Answer 429 with `Retry-After`.
    Throttle(u64),
    /// Close the connection.
    Offline,
}

/// The per-cluster fault switchboard.
#[derive(Debug, Default)]
pub struct Faults {
    config: Mutex<FaultConfig>,
    counts: [AtomicU64; 3],
}

/// How many faults a cluster has injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests answered 500.
    pub errors: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// Requests whose connection was closed while offline.
    pub refused: u64,
}

impl Faults {
    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        let n = |i: usize| self.counts[i].load(Ordering::Relaxed);
        FaultCounts {
            errors: n(0),
            throttled: n(1),
            refused: n(2),
        }
    }

    /// A copy of the current configuration.
    pub fn get(&self) -> FaultConfig {
        self.config.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Replaces the configuration.
    pub fn set(&self, cfg: FaultConfig) {
        if let Ok(mut c) = self.config.lock() {
            *c = cfg;
        }
    }

    /// Changes the configuration in place.
    pub fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        if let Ok(mut c) = self.config.lock() {
            f(&mut c);
        }
    }

    /// Decides the fault for one request (and the latency to add first).
    pub fn decide(&self) -> (Duration, Injected) {
        let c = self.get();
        let latency = Duration::from_millis(c.latency_ms);
        if c.offline {
            self.counts[2].fetch_add(1, Ordering::Relaxed);
            return (latency, Injected::Offline);
        }
        let r = super::meta::random_unit();
        let injected = if r < c.error_rate {
            self.counts[0].fetch_add(1, Ordering::Relaxed);
            Injected::Error
        } else if r < c.error_rate + c.throttle_rate {
            self.counts[1].fetch_add(1, Ordering::Relaxed);
            Injected::Throttle(c.retry_after_seconds.max(1))
        } else {
            Injected::None
        };
        (latency, injected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_of_one_always_inject() {
        let f = Faults::default();
        assert_eq!(f.decide().1, Injected::None);
        f.update(|c| c.error_rate = 1.0);
        assert_eq!(f.decide().1, Injected::Error);
        f.set(FaultConfig {
            throttle_rate: 1.0,
            retry_after_seconds: 3,
            ..Default::default()
        });
        assert_eq!(f.decide().1, Injected::Throttle(3));
        f.update(|c| c.offline = true);
        assert_eq!(f.decide().1, Injected::Offline);
        assert_eq!(
            f.counts(),
            FaultCounts {
                errors: 1,
                throttled: 1,
                refused: 1
            }
        );
    }
}
