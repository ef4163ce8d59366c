//! Scenarios that run real `flotilla node` processes against simulated clusters and a Git
//! server: [`steady`] (CPU and memory with every app synced, periodic resync only) and
//! [`sync`] (cold start until every app is Synced and Healthy). [`world`] starts what
//! every scenario runs against; [`common`] holds the shared flags, `/proc` sampling and the
//! CLI helper.

pub mod common;
pub mod steady;
pub mod sync;
pub mod world;
