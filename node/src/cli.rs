//! Command-line interface of the `flotilla` binary.
pub mod admin;
pub mod app;
pub mod engine;
pub mod health;
pub mod remote;
pub mod render;

use clap::{Parser, Subcommand, ValueEnum};

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "flotilla",
    version,
    about = "GitOps continuous delivery for Kubernetes"
)]
pub struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FLOTILLA_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands of `flotilla`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version and exit.
    Version,
    /// Print the desired objects of an Argo CD Application, one document per object.
    Render(render::RenderArgs),
    /// Print the health of every object in YAML files.
    Health(health::HealthArgs),
    /// Compare an Application's desired objects with its destination cluster
    /// (exit 0 in sync, 1 out of sync, 2 on error).
    Diff(engine::DiffArgs),
    /// Sync an Application to its destination cluster once (exit 0 on success, 1 when the
    /// sync failed, 2 on error).
    Sync(engine::SyncArgs),
    /// Run three nodes, a simulated cluster and example apps on this machine.
    Dev(crate::dev::DevArgs),
    /// Run a controller node (one per StatefulSet pod).
    Node(crate::config::Args),
    /// Applications on a running cluster: list, get, sync, refresh, diff, manifests,
    /// history, rollback, delete, wait.
    App(app::AppArgs),
    /// Destination clusters of a running cluster.
    Cluster(admin::GroupArgs<admin::ClusterCommand>),
    /// Repositories of a running cluster.
    Repo(admin::GroupArgs<admin::RepoCommand>),
    /// Members of the Raft group: list, add, remove.
    Member(admin::GroupArgs<admin::MemberCommand>),
    /// The shard map of a running cluster.
    Shard(admin::GroupArgs<admin::ShardCommand>),
    /// Export and import the replicated state.
    Admin(admin::GroupArgs<admin::AdminCommand>),
}

/// Set up `tracing` for the chosen format, writing to stderr.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
