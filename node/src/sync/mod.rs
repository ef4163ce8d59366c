//! Sync: applying the difference in the right order.
//!
//! [`options`] parses sync options and retry policies, [`plan`] decides the steps (pure),
//! [`executor`] runs them against a cluster through [`apply`], and [`result`] holds the
//! operation record and the automated-sync decision.

pub mod apply;
pub mod executor;
pub mod options;
pub mod plan;
pub mod result;
