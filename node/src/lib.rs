//! The flotilla controller node.
//!
//! Where to start: [`model`] holds Argo CD's resource types as flotilla reads them
//! (`Application`, `AppProject`, cluster and repository Secrets); [`source`] keeps one bare
//! Git mirror per repository and reads trees from it; [`render`] turns an `Application`
//! into the objects that should exist ([`render::Renderer::render`]), with a cache keyed
//! by the app's inputs; [`clusters`] holds destination clusters and their clients;
//! [`live`] reads an app's live objects and compares them ([`live::compare_app`]) with
//! [`diff`]; [`sync`] plans and executes syncs ([`sync::executor::sync_app`]); [`health`]
//! assesses objects; [`cli`] is the `flotilla` command line; [`config`] resolves the
//! configuration of `flotilla node` (flags, environment, file, StatefulSet ordinal);
//! [`ingest`] mirrors the management cluster's Applications, AppProjects and Secrets into
//! the store and writes status back.
//! configuration of `flotilla node` (flags, environment, file, StatefulSet ordinal).
pub mod api;
//! [`controller`] reconciles, on each node, the apps of the shards the node owns.
pub mod cli;
pub mod clusters;
pub mod config;
pub mod dev;
pub mod controller;
pub mod diff;
pub mod health;
pub mod ingest;
pub mod http;
pub mod live;
pub mod metrics;
pub mod model;
pub mod render;
pub mod server;
pub mod repos;
pub mod source;
pub mod status;
pub mod sync;
