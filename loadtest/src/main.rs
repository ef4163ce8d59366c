use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("flotilla-loadtest {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
