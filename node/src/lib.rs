//! The flotilla controller node.
//!
//! Where to start: [`server`] is `flotilla node`, one process per node: a member of the
//! replicated store and a shard follower running the components below; [`dev`] is
//! `flotilla dev`, three nodes with a simulated cluster and example apps on one machine.
//!
//! The components: [`ingest`] mirrors the management cluster's Applications, AppProjects and
//! Secrets into the store and writes status back; [`controller`] reconciles, on each node,
//! the apps of the shards the node owns; [`repos`] polls repositories and parses push
//! webhooks; [`http`] serves `/metrics`, `/healthz`, `/readyz` and the webhook, with
//! [`metrics`] collecting the figures; [`api`] is the `flotilla.v1` gRPC service.
//!
//! The engine they use: [`model`] holds Argo CD's resource types as flotilla reads them;
//! [`status`] the documents kept in the store per app; [`source`] keeps one bare Git mirror
//! per repository; [`render`] turns an `Application` into the objects that should exist;
//! [`clusters`] holds destination clusters and their clients; [`live`] reads live objects
//! and compares them with [`diff`]; [`sync`] plans and executes syncs; [`health`] assesses
//! objects; [`cli`] is the `flotilla` command line; [`config`] resolves the configuration of
//! `flotilla node` (flags, environment, file, StatefulSet ordinal).
pub mod api;
pub mod cli;
pub mod clusters;
pub mod config;
pub mod controller;
pub mod dev;
pub mod diff;
pub mod health;
pub mod http;
pub mod ingest;
pub mod intern;
pub mod live;
pub mod metrics;
pub mod model;
pub mod packed;
pub mod render;
pub mod repos;
pub mod server;
pub mod source;
pub mod status;
pub mod sync;
