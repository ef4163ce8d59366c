//! Load-test harness and simulated Kubernetes API server.
//!
//! Start with [`simcluster`] (feature `simcluster`, on by default): [`simcluster::SimCluster`]
//! runs one simulated cluster, [`simcluster::SimFleet`] many; the `flotilla-loadtest`
//! binary wraps them as `flotilla-loadtest simcluster --clusters N`.
//!
//! The Git side is [`git`] (feature `git`, on by default): [`git::Fixture`] generates
//! app-of-apps repositories, [`git::GitServer`] serves them over smart HTTP and
//! [`git::webhook`] sends push webhooks.
//!
//! [`cluster`] (feature `cluster`, on by default) starts real `flotilla node` processes
//! ([`cluster::launcher::LocalCluster`]) and prepares the management cluster they watch
//! ([`cluster::setup`]); the scenarios of the `flotilla-loadtest` binary build on all three.
//!
//! [`report`] (feature `report`, on by default) turns the scenarios' JSON results into a
//! Markdown report with SVG plots (`flotilla-loadtest report --in DIR --out FILE.md`).

#[cfg(feature = "simcluster")]
pub mod simcluster;

/// Real `flotilla node` processes and the management cluster they watch.
#[cfg(feature = "cluster")]
pub mod cluster;

/// Git fixtures (generated app-of-apps repositories), a smart-HTTP git server and push webhooks.
#[cfg(feature = "git")]
pub mod git;

/// The Markdown report with SVG plots built from the scenarios' JSON results.
#[cfg(feature = "report")]
pub mod report;
