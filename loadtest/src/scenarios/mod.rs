//! Scenarios that run real `flotilla node` processes against simulated clusters and a Git
//! server: [`sync`] (cold start until every app is Synced and Healthy), [`churn`] (commits
//! delivered by webhook, push-to-cluster latency) and [`drift`] (live objects changed behind
//! flotilla's back, time to self-heal). [`world`] starts what every scenario runs against;
//! [`observe`] watches the apps' live objects; [`common`] holds the shared flags, `/proc`
//! sampling and the CLI helper.

pub mod churn;
pub mod common;
pub mod drift;
pub mod observe;
pub mod sync;
pub mod world;
