use clap::Parser;
use flotilla_node::cli::{init_logging, Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Version => {
            println!("flotilla {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
