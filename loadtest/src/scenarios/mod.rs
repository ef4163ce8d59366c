//! Scenarios that run real `flotilla node` processes against simulated clusters and a Git
//! server: [`sync`] (cold start until every app is Synced and Healthy), [`churn`] (commits
//! delivered by webhook, push-to-cluster latency), [`drift`] (live objects changed behind
//! flotilla's back, time to self-heal), [`failover`] (kill -9 of the leader or a follower
//! during churn), [`scale_out`] (a node added under load) and [`steady`] (CPU and memory with
//! every app synced, periodic resync only). [`world`] starts what every scenario runs
//! against; [`observe`] watches the apps' live objects; [`changes`] pushes changes during a
//! scenario and times them to their clusters; [`common`] holds the shared flags, `/proc`
//! sampling, tables and the CLI helper.

pub mod changes;
pub mod churn;
pub mod common;
pub mod drift;
pub mod failover;
pub mod observe;
pub mod scale_out;
pub mod steady;
pub mod sync;
pub mod world;
