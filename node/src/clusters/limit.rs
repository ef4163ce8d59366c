//! Per-cluster request limits: a token bucket (queries per second with a burst) and a cap on
//! requests in flight. Every request flotilla sends to a destination cluster goes through
//! [`Limiter::acquire`] first, so one busy cluster cannot starve the others or be flooded.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Limits of one cluster's client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Sustained requests per second.
    pub qps: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// Requests in flight at most.
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // client-go's defaults are 5 QPS / burst 10, far too low for a controller that owns
        // a cluster's deployments; Argo CD raises them the same way.
        Self {
            qps: 50.0,
            burst: 100,
            concurrency: 32,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token bucket plus semaphore.
#[derive(Debug, Clone)]
pub struct Limiter {
    limits: Limits,
    bucket: Arc<Mutex<Bucket>>,
    in_flight: Arc<Semaphore>,
}

/// Held while one request is in flight.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
}

impl Limiter {
    /// A limiter with these limits (zero values are raised to one).
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            qps: if limits.qps > 0.0 { limits.qps } else { 1.0 },
            burst: limits.burst.max(1),
            concurrency: limits.concurrency.max(1),
        };
        Self {
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: f64::from(limits.burst),
                last: Instant::now(),
            })),
            in_flight: Arc::new(Semaphore::new(limits.concurrency)),
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Wait for a token and a free slot.
    pub async fn acquire(&self) -> Permit {
        loop {
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(b.last).as_secs_f64() * self.limits.qps;
                b.tokens = (b.tokens + refill).min(f64::from(self.limits.burst));
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    None
                } else {
                    Some(Duration::from_secs_f64((1.0 - b.tokens) / self.limits.qps))
                }
            };
            match wait {
                None => break,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the limiter's semaphore is never closed");
        Permit { _permit: permit }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.limits.concurrency - self.in_flight.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bucket_spends_burst_then_paces_at_qps() {
        let l = Limiter::new(Limits {
            qps: 50.0,
            burst: 3,
            concurrency: 8,
        });
        for _ in 0..3 {
            drop(l.acquire().await);
        }
        let start = Instant::now();
        for _ in 0..5 {
            drop(l.acquire().await);
        }
        // Five tokens beyond the burst at 50/s cannot come sooner than 100 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(90),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn concurrency_cap_holds() {
        let l = Limiter::new(Limits {
            qps: 1000.0,
            burst: 1000,
            concurrency: 2,
        });
        let a = l.acquire().await;
        let _b = l.acquire().await;
        assert_eq!(l.in_flight(), 2);
        let l2 = l.clone();
        let third = tokio::spawn(async move { l2.acquire().await });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("third permit after one is released")
            .expect("task");
        assert_eq!(l.in_flight(), 2);
    }
}
