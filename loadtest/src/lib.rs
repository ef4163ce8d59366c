//! Load-test harness and simulated Kubernetes API server.
//!
//! Start with [`simcluster`] (feature `simcluster`, on by default): [`simcluster::SimCluster`]
//! runs one simulated cluster, [`simcluster::SimFleet`] many; the `flotilla-loadtest`
//! binary wraps them as `flotilla-loadtest simcluster --clusters N`.

#[cfg(feature = "simcluster")]
pub mod simcluster;

/// Git fixtures (generated app-of-apps repositories), a smart-HTTP git server and push webhooks.
#[cfg(feature = "git")]
pub mod git;
