use clap::{Parser, Subcommand};

#[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
mod scenarios;
mod store;

/// flotilla's load-test harness.
#[derive(Debug, Parser)]
#[command(name = "flotilla-loadtest", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and exit.
    Version,
    /// Run simulated Kubernetes API servers and write kubeconfigs for them.
    #[cfg(feature = "simcluster")]
    Simcluster(flotilla_loadtest::simcluster::cli::SimclusterArgs),
    /// Cold start of A apps over C clusters with N nodes, until all are Synced and Healthy.
    #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
    Sync(scenarios::sync::SyncArgs),
    /// kill -9 of the leader or a follower during churn, repeated: time to failover, lost
    /// writes, concurrent syncs.
    #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
    Failover(scenarios::failover::FailoverArgs),
    /// A node added to N nodes under load: shards moved, time to settle, reconcile gap.
    #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
    ScaleOut(scenarios::scale_out::ScaleOutArgs),
    /// Benchmark durable writes of a 3-member store (optionally against etcd).
    Store(store::StoreArgs),
    /// One member of the store benchmark's group (started by `store`).
    #[command(hide = true)]
    StoreMember(store::MemberArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("flotilla-loadtest {}", env!("CARGO_PKG_VERSION")),
        #[cfg(feature = "simcluster")]
        Command::Simcluster(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .init();
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(flotilla_loadtest::simcluster::cli::run(args))?;
        }
        #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
        Command::Sync(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "warn".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            tokio::runtime::Runtime::new()?.block_on(scenarios::sync::run(args))?;
        }
        #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
        Command::Failover(args) => {
            scenario_logging();
            // Before any thread exists: the nodes inherit it.
            scenarios::failover::log_syncs_in_nodes();
            tokio::runtime::Runtime::new()?.block_on(scenarios::failover::run(args))?;
        }
        #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
        Command::ScaleOut(args) => {
            scenario_logging();
            scenarios::failover::log_syncs_in_nodes();
            tokio::runtime::Runtime::new()?.block_on(scenarios::scale_out::run(args))?;
        }
        Command::Store(args) => tokio::runtime::Runtime::new()?.block_on(store::run(args))?,
        Command::StoreMember(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "warn".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            tokio::runtime::Runtime::new()?.block_on(store::run_member(args))?;
        }
    }
    Ok(())
}

/// Log this process's warnings (or `RUST_LOG`) to stderr.
#[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
fn scenario_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
