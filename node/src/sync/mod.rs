//! Sync: applying the difference in the right order.

pub mod options;
pub mod plan;
