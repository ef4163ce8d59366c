//! Scenarios that run real `flotilla node` processes against simulated clusters and a Git
//! server: [`sync`] (cold start until every app is Synced and Healthy). [`world`] starts what
//! every scenario runs against; [`common`] holds the shared flags, `/proc` sampling and the
//! CLI helper.

pub mod common;
pub mod sync;
pub mod world;
