//! The `flotilla-loadtest simcluster` command: runs N clusters and writes their kubeconfigs.

use super::fleet::{FleetError, SimFleet};
use super::{ControllerConfig, SimConfig};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `flotilla-loadtest simcluster`.
#[derive(Clone, clap::Args)]
pub struct SimclusterArgs {
    /// Number of clusters to run.
    #[arg(long, default_value_t = 1)]
    pub clusters: usize,
    /// Port of the first cluster; cluster i listens on port-base + i (0: any free ports).
    #[arg(long, default_value_t = 0)]
    pub port_base: u16,
    /// Directory for `sim-<i>.kubeconfig` files and `all.kubeconfig`.
    #[arg(long, default_value = "simcluster")]
    pub dir: PathBuf,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    pub plain_http: bool,
    /// Bearer token for every cluster (default: a random token per cluster).
    #[arg(long)]
    pub token: Option<String>,
    /// Delay of the simulated controllers, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub controller_delay_ms: u64,
    /// Turn the simulated controllers off.
    #[arg(long)]
    pub no_controllers: bool,
    /// Controllers write status only: no ReplicaSets and Pods for Deployments.
    #[arg(long)]
    pub no_children: bool,
    /// Past events each cluster keeps for resuming watches (bounds memory under load).
    #[arg(long, default_value_t = 256)]
    pub watch_history: usize,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long)]
    pub exit_after_secs: Option<u64>,
}

impl std::fmt::Debug for SimclusterArgs {
    // `--token` is a credential: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimclusterArgs")
            .field("clusters", &self.clusters)
            .field("port_base", &self.port_base)
            .field("dir", &self.dir)
            .field("plain_http", &self.plain_http)
            .field("token", &format_args!("{}", super::redacted(&self.token)))
            .field("controller_delay_ms", &self.controller_delay_ms)
            .field("no_controllers", &self.no_controllers)
            .field("no_children", &self.no_children)
            .field("watch_history", &self.watch_history)
            .field("exit_after_secs", &self.exit_after_secs)
            .finish()
    }
}

/// Runs the fleet until Ctrl-C (or `--exit-after-secs`).
pub async fn run(args: SimclusterArgs) -> Result<(), FleetError> {
    let template = SimConfig {
        name: "sim".into(),
        tls: !args.plain_http,
        token: args.token.clone(),
        controllers: ControllerConfig {
            enabled: !args.no_controllers,
            delay: Duration::from_millis(args.controller_delay_ms),
            children: !args.no_children,
        },
        watch_history: args.watch_history,
        ..SimConfig::default()
    };
    let fleet = SimFleet::start(args.clusters, args.port_base, template).await?;
    fleet.write_kubeconfigs(&args.dir)?;
    for c in fleet.clusters() {
        println!(
            "{} {} {}",
            c.name(),
            c.url(),
            args.dir.join(format!("{}.kubeconfig", c.name())).display()
        );
    }
    println!(
        "ready: {} cluster(s); all contexts in {}",
        fleet.clusters().len(),
        args.dir.join("all.kubeconfig").display()
    );
    match args.exit_after_secs {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    fleet.shutdown().await;
    Ok(())
}
