//! The engine against a simulated cluster over HTTPS: clusters and live state, sync with
//! every option, hooks and waves, prune, self-heal, ignoreDifferences, faults and recovery,
//! health driven by the simulated controllers, and the `flotilla` commands.
#[path = "engine/env.rs"]
mod env;
mod support;

#[path = "engine/cli.rs"]
mod cli;
#[path = "engine/clusters.rs"]
mod clusters;
#[path = "engine/crds.rs"]
mod crds;
#[path = "engine/faults.rs"]
mod faults;
#[path = "engine/hooks.rs"]
mod hooks;
#[path = "engine/live.rs"]
mod live;
#[path = "engine/options.rs"]
mod options;
#[path = "engine/sync.rs"]
mod sync;
