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
    /// Commits at a rate, each changing some apps, delivered by webhook: push-to-cluster latency.
    #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
    Churn(scenarios::churn::ChurnArgs),
    /// Live objects changed behind flotilla's back: time until they are healed.
    #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
    Drift(scenarios::drift::DriftArgs),
    /// kill -9 of the leader or a follower during churn, repeated: time to failover, lost
    /// writes, concurrent syncs.
    #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
    Failover(scenarios::failover::FailoverArgs),
    /// A node added to N nodes under load: shards moved, time to settle, reconcile gap.
    #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
    ScaleOut(scenarios::scale_out::ScaleOutArgs),
    /// CPU and memory of the nodes with every app synced and only the periodic resync running.
    #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
    Steady(scenarios::steady::SteadyArgs),
    /// Write a Markdown report with SVG plots from the JSON results in a directory.
    #[cfg(feature = "report")]
    Report(ReportArgs),
    /// Benchmark durable writes of a 3-member store (optionally against etcd).
    Store(store::StoreArgs),
    /// One member of the store benchmark's group (started by `store`).
    #[command(hide = true)]
    StoreMember(store::MemberArgs),
}

/// Arguments of `flotilla-loadtest report`.
#[cfg(feature = "report")]
#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Directory of JSON results (`--json` files of any scenario).
    #[arg(long = "in", value_name = "DIR")]
    input: std::path::PathBuf,
    /// The Markdown report to write; SVG plots are written next to it.
    #[arg(long, value_name = "FILE.md")]
    out: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("flotilla-loadtest {}", env!("CARGO_PKG_VERSION")),
        #[cfg(feature = "simcluster")]
        Command::Simcluster(args) => {
            scenario_logging_from_env();
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(flotilla_loadtest::simcluster::cli::run(args))?;
        }
        #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
        Command::Sync(args) => {
            scenario_logging();
            tokio::runtime::Runtime::new()?.block_on(scenarios::sync::run(args))?;
        }
        #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
        Command::Churn(args) => {
            scenario_logging();
            tokio::runtime::Runtime::new()?.block_on(scenarios::churn::run(args))?;
        }
        #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
        Command::Drift(args) => {
            scenario_logging();
            tokio::runtime::Runtime::new()?.block_on(scenarios::drift::run(args))?;
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
        #[cfg(all(feature = "cluster", feature = "git", feature = "simcluster"))]
        Command::Steady(args) => {
            scenario_logging();
            tokio::runtime::Runtime::new()?.block_on(scenarios::steady::run(args))?;
        }
        #[cfg(feature = "report")]
        Command::Report(args) => {
            let report = flotilla_loadtest::report::write_report(&args.input, &args.out)?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "report written to {} with {} plot(s)",
                args.out.display(),
                report.plots.len()
            );
        }
        Command::Store(args) => tokio::runtime::Runtime::new()?.block_on(store::run(args))?,
        Command::StoreMember(args) => {
            scenario_logging();
            tokio::runtime::Runtime::new()?.block_on(store::run_member(args))?;
        }
    }
    Ok(())
}

/// Log this process's warnings (or `RUST_LOG`) to stderr.
fn scenario_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Log what `RUST_LOG` asks for (nothing without it) to stderr.
#[cfg(feature = "simcluster")]
fn scenario_logging_from_env() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
}
