use clap::Parser;
use flotilla_node::cli::{self, init_logging, Cli, Command};

/// Run a command that talks to a node and return its exit code (0 done, 1 out of sync or
/// timed out, 2 error).
macro_rules! remote {
    ($run:path, $args:expr) => {{
        let mut out = std::io::stdout().lock();
        return cli::remote::exit_code($run(&$args, &mut out));
    }};
}

/// jemalloc gives freed memory back to the system within about a second (its settings are in
/// `.cargo/config.toml`); the C library's allocator keeps much of it in per-thread arenas.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Node(args) = &cli.command {
        // The node's log format may also come from its configuration file.
        return run_node(args, cli.log_format);
    }
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Version => {
            println!("flotilla {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Render(args) => runtime().and_then(|rt| {
            rt.block_on(flotilla_node::cli::render::run(
                &args,
                &mut std::io::stdout().lock(),
            ))
        }),
        Command::Health(args) => {
            flotilla_node::cli::health::run(&args, &mut std::io::stdout().lock())
        }
        Command::Diff(args) => {
            let r = runtime().and_then(|rt| {
                rt.block_on(flotilla_node::cli::engine::run_diff(
                    &args,
                    &mut std::io::stdout().lock(),
                ))
            });
            return verdict(r, "out of sync");
        }
        Command::Node(_) => Ok(()),
        Command::Dev(args) => {
            let r = runtime().and_then(|rt| rt.block_on(flotilla_node::dev::run(&args)));
            return verdict(
                r,
                "flotilla dev: not every application became Synced and Healthy",
            );
        }
        Command::Sync(args) => {
            let r = runtime().and_then(|rt| {
                rt.block_on(flotilla_node::cli::engine::run_sync(
                    &args,
                    &mut std::io::stdout().lock(),
                ))
            });
            return verdict(r, "sync failed");
        }
        Command::App(args) => remote!(cli::app::run, args),
        Command::Cluster(args) => remote!(cli::admin::run_cluster, args),
        Command::Repo(args) => remote!(cli::admin::run_repo, args),
        Command::Member(args) => remote!(cli::admin::run_member, args),
        Command::Shard(args) => remote!(cli::admin::run_shard, args),
        Command::Admin(args) => remote!(cli::admin::run_admin, args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_node(
    args: &flotilla_node::config::Args,
    log_format: flotilla_node::cli::LogFormat,
) -> std::process::ExitCode {
    let cfg = match flotilla_node::config::load_from_process(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(match log_format {
        flotilla_node::cli::LogFormat::Json => log_format,
        flotilla_node::cli::LogFormat::Text => cfg.log_format,
    });
    let r = runtime().and_then(|rt| {
        rt.block_on(flotilla_node::server::run(cfg, async {
            match flotilla_node::server::stop_signal().await {
                Ok(kind) => kind,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for signals; stopping");
                    flotilla_node::server::StopKind::Stop
                }
            }
        }))
    });
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

/// Exit 0 when `Ok(true)`, 1 when `Ok(false)`, 2 on error.
fn verdict(r: anyhow::Result<bool>, what: &str) -> std::process::ExitCode {
    match r {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("{what}");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
