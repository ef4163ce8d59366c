//! `flotilla dev`: a complete flotilla on one machine, from nothing but this repository.
//!
//! It starts a simulated Kubernetes API server (the management cluster and the destination
//! in one), a Git server with a repository of example applications, and three `flotilla
//! node` processes; it applies the `Application` resources, shows their status as the nodes
//! sync them, and prints how to use the CLI, `kubectl` and the metrics. Ctrl-C stops
//! everything; node data stays in the directory and the next start resumes from it (the
//! simulated cluster starts empty each time, so the apps are synced again).
//!
//! [`launcher`] and [`setup`] are also what the end-to-end tests use.

pub mod examples;
pub use flotilla_loadtest::cluster::{launcher, setup};

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use flotilla_loadtest::git::{GitServer, GitServerConfig};
use flotilla_loadtest::simcluster::{ControllerConfig, SimCluster, SimConfig};
use rustix::process::Signal;

use launcher::{LocalCluster, NodeAddrs};

/// Arguments of `flotilla dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where node data, logs, the kubeconfig and the example repository live.
    #[arg(long, default_value = ".flotilla-dev")]
    pub dir: PathBuf,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Ports: node N serves its API on BASE+N, peers on BASE+100+N, HTTP on BASE+200+N.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Port of the simulated Kubernetes API server.
    #[arg(long, default_value_t = 6443)]
    pub kube_port: u16,
    /// Port of the Git server.
    #[arg(long, default_value_t = 7300)]
    pub git_port: u16,
    /// Stop once every app is Synced and Healthy (exit 0), or after --timeout (exit 1).
    #[arg(long)]
    pub exit_when_synced: bool,
    /// Seconds to wait with --exit-when-synced.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// The management namespace of `flotilla dev`.
pub const NAMESPACE: &str = "argocd";

/// Find `.tools/bin/helm` (installed by `scripts/install-tools.sh`) above the working
/// directory or the executable.
fn find_project_helm() -> Option<PathBuf> {
    let mut starts = Vec::new();
    if let Ok(d) = std::env::current_dir() {
        starts.push(d);
    }
    if let Ok(e) = std::env::current_exe() {
        starts.push(e);
    }
    starts.iter().find_map(|s| {
        s.ancestors()
            .map(|a| a.join(".tools/bin/helm"))
            .find(|p| p.is_file())
    })
}

/// Run `flotilla dev`; returns whether all apps became Synced and Healthy (always true
/// without `--exit-when-synced`).
pub async fn run(args: &DevArgs) -> anyhow::Result<bool> {
    let dir = absolute(&args.dir)?;
    std::fs::create_dir_all(dir.join("git"))
        .with_context(|| format!("create {}", dir.display()))?;
    let head = examples::write_repo(&dir.join("git/examples.git"), &examples::files())
        .context("write the example repository")?;
    let git = GitServer::start(
        dir.join("git"),
        GitServerConfig {
            port: args.git_port,
            ..GitServerConfig::default()
        },
    )
    .await
    .with_context(|| format!("start the Git server on 127.0.0.1:{}", args.git_port))?;
    let repo_url = git.url_for("examples.git");

    let sim = SimCluster::start(SimConfig {
        name: "flotilla-dev".into(),
        port: args.kube_port,
        controllers: ControllerConfig {
            enabled: true,
            delay: Duration::from_millis(500),
            children: true,
        },
        ..SimConfig::default()
    })
    .await
    .with_context(|| {
        format!(
            "start the simulated cluster on 127.0.0.1:{}",
            args.kube_port
        )
    })?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig()?)
        .with_context(|| format!("write {}", kubeconfig.display()))?;
    let client = kube_client(&kubeconfig).await?;
    setup::install_crds(&client).await?;
    setup::apply(&client, &setup::namespace(NAMESPACE)).await?;
    setup::apply(
        &client,
        &setup::cluster_secret(
            NAMESPACE,
            "in-cluster",
            &sim.url(),
            sim.token(),
            sim.ca_pem(),
        ),
    )
    .await?;
    for (name, path, ns) in examples::APPS {
        setup::apply(
            &client,
            &examples::application(name, path, ns, &repo_url, &sim.url()),
        )
        .await?;
    }

    let exe = std::env::current_exe().context("find the flotilla executable")?;
    let addrs: Vec<NodeAddrs> = (1..=args.nodes)
        .map(|id| NodeAddrs::fixed(id, args.base_port))
        .collect();
    let common = vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--namespaces".into(),
        NAMESPACE.into(),
        "--resync-seconds".into(),
        "60".into(),
        "--repo-poll-seconds".into(),
        "15".into(),
        "--grace-period-seconds".into(),
        "10".into(),
    ];
    let mut nodes = LocalCluster::new(exe, &dir, addrs, common);
    if let Some(helm) = find_project_helm() {
        nodes.env("FLOTILLA_HELM", &helm.display().to_string());
    }
    nodes.start_all()?;
    print_banner(args, &dir, &nodes, &repo_url, &head);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut last = String::new();
    let mut ok = !args.exit_when_synced;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = term.recv() => break,
            _ = tick.tick() => {}
        }
        for n in nodes.nodes().to_vec() {
            if !nodes.is_running(n.id) {
                eprintln!(
                    "node {} is not running; see {}",
                    n.id,
                    nodes.log_file(n.id).display()
                );
            }
        }
        let apps = match setup::list_applications(&client, NAMESPACE).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("reading Applications: {e}");
                continue;
            }
        };
        let table = status_table(&apps);
        if table != last {
            println!("{table}");
            last = table;
        }
        let all = !apps.is_empty()
            && apps.iter().all(|a| {
                let (s, h) = setup::sync_and_health(a);
                s == "Synced" && h == "Healthy"
            });
        if args.exit_when_synced {
            if all {
                println!("all {} applications are Synced and Healthy", apps.len());
                ok = true;
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                eprintln!(
                    "not every application became Synced and Healthy in {} s",
                    args.timeout
                );
                break;
            }
        }
    }
    println!("stopping the nodes");
    std::io::Write::flush(&mut std::io::stdout())?;
    nodes.stop_all(Signal::INT, Duration::from_secs(15)).await;
    sim.shutdown().await;
    git.shutdown().await;
    Ok(ok)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// A kube client for a kubeconfig file.
pub async fn kube_client(path: &Path) -> anyhow::Result<kube::Client> {
    Ok(flotilla_loadtest::cluster::kube_client(path).await?)
}

fn status_table(apps: &[serde_json::Value]) -> String {
    let mut rows = vec![format!(
        "{:<22} {:<10} {:<12} {:<10}",
        "NAME", "SYNC", "HEALTH", "REVISION"
    )];
    let mut sorted: Vec<&serde_json::Value> = apps.iter().collect();
    sorted.sort_by_key(|a| {
        a["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    for a in sorted {
        let (s, h) = setup::sync_and_health(a);
        let rev = a["status"]["sync"]["revision"].as_str().unwrap_or("");
        rows.push(format!(
            "{:<22} {:<10} {:<12} {:<10}",
            a["metadata"]["name"].as_str().unwrap_or("?"),
            s,
            h,
            &rev[..rev.len().min(8)]
        ));
    }
    rows.join("\n")
}

fn print_banner(args: &DevArgs, dir: &Path, nodes: &LocalCluster, repo: &str, head: &str) {
    let first = &nodes.nodes()[0];
    println!(
        "flotilla dev: {} nodes, data and logs in {}",
        args.nodes,
        dir.display()
    );
    println!(
        "  example repository {repo} at {}",
        &head[..head.len().min(8)]
    );
    println!();
    println!("Try, from another terminal:");
    println!("  flotilla app list --server {}", first.api);
    println!("  flotilla member list --server {}", first.api);
    println!(
        "  kubectl --kubeconfig {} get applications -n {NAMESPACE}",
        dir.join("kubeconfig").display()
    );
    println!(
        "  kubectl --kubeconfig {} get deployments -A",
        dir.join("kubeconfig").display()
    );
    println!(
        "  curl -s http://{}/metrics | grep argocd_app_info",
        first.http
    );
    println!(
        "Ctrl-C stops everything; the next start resumes from {}.",
        dir.display()
    );
    println!();
}
