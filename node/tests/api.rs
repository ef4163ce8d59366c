//! The `flotilla.v1` API served on real TCP by a one-member store, driven through the Rust
//! client and through the `flotilla` binary as a user runs it.
mod support;

#[path = "api/harness.rs"]
mod harness;

#[path = "api/apps.rs"]
mod apps;

#[path = "api/admin.rs"]
mod admin;

#[path = "api/render.rs"]
mod render;

#[path = "api/delete.rs"]
mod delete;

#[path = "api/tls.rs"]
mod tls;
