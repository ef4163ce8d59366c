//! Load-test harness and simulated Kubernetes API server.
//!
//! Start with [`simcluster`] (feature `simcluster`, on by default): [`simcluster::SimCluster`]
//! runs one simulated cluster, [`simcluster::SimFleet`] many; the `flotilla-loadtest`
//! binary wraps them as `flotilla-loadtest simcluster --clusters N`.
//!
//! The Git side is [`git`] (feature `git`, on by default): [`git::Fixture`] generates
//! app-of-apps repositories, [`git::GitServer`] serves them over smart HTTP and
//! [`git::webhook`] sends push webhooks.

#[cfg(feature = "simcluster")]
pub mod simcluster;

/// Git fixtures (generated app-of-apps repositories), a smart-HTTP git server and push webhooks.
#[cfg(feature = "git")]
pub mod git;
