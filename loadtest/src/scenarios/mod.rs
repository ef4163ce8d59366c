//! Scenarios that run real `flotilla node` processes against simulated clusters and a Git
//! server: [`sync`] (cold start until every app is Synced and Healthy), [`failover`] (kill -9
//! of the leader or a follower during churn) and [`scale_out`] (a node added under load).
//! [`world`] starts what every scenario runs against; [`common`] holds the shared flags,
//! `/proc` sampling and the CLI helper; [`changes`] pushes changes during a scenario and
//! times them to their clusters.

pub mod changes;
pub mod common;
pub mod failover;
pub mod scale_out;
pub mod sync;
pub mod world;
