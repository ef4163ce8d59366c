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
    /// The directory of `*.json` results (written by the scenarios' `--json`).
    #[arg(long = "in", value_name = "DIR")]
    input: std::path::PathBuf,
    /// The Markdown file to write; the SVG plots are written next to it.
    #[arg(long, value_name = "FILE.md")]
    out: std::path::PathBuf,
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
        Command::Steady(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "warn".into()),
                )
                .with_writer(std::io::stderr)
                .init();
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
