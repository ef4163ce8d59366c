//! The flotilla controller node.
pub mod cli;
