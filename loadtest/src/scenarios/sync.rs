//! The `sync` scenario: a cold start of A apps over C clusters until every Application is
//! Synced and Healthy.
//!
//! It starts C simulated clusters in this process (`sim-0` is also the management cluster),
//! a Git server with a generated repository of A apps, cluster Secrets for every cluster,
//! and N `flotilla node` processes. Once the nodes have formed their group and hold the
//! shard map, it applies the A `Application` resources (concurrently, bounded) and polls
//! the management cluster every 500 ms until all of them are Synced and Healthy, sampling
//! each node's memory and CPU time from `/proc` meanwhile.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use flotilla_loadtest::cluster::launcher::{LocalCluster, NodeAddrs};
use flotilla_loadtest::cluster::{kube_client, setup};
use flotilla_loadtest::git::{Fixture, FixtureSpec, GitServer, GitServerConfig};
use flotilla_loadtest::simcluster::{ControllerConfig, SimConfig, SimFleet};
use futures::StreamExt as _;
use rustix::process::Signal;
use serde_json::{json, Value};

use super::common::{self, CommonArgs, OutDir, ProcSampler};

/// The namespace of the Application resources and Secrets.
const NAMESPACE: &str = "argocd";
/// Application resources applied at once.
const APPLY_CONCURRENCY: usize = 32;
/// How often the Application list is read.
const POLL: Duration = Duration::from_millis(500);
/// Apps not yet Synced and Healthy listed in the result of an incomplete run.
const STUCK_SHOWN: usize = 20;
/// How often a progress line is printed.
const PROGRESS: Duration = Duration::from_secs(5);

/// Arguments of `flotilla-loadtest sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The common scenario flags.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Counts from one read of the Application list.
#[derive(Debug, Clone, Copy)]
struct Progress {
    seconds: f64,
    synced: usize,
    synced_healthy: usize,
}

/// Run the scenario, print the summary and write the JSON; fails when not every app became
/// Synced and Healthy in time.
pub async fn run(args: SyncArgs) -> anyhow::Result<()> {
    let a = &args.common;
    a.validate()?;
    let flotilla = a.flotilla_binary()?;
    let out = OutDir::create(a.out.as_deref(), "sync")?;
    let dir = out.path();
    println!(
        "sync: {} apps over {} clusters, {} resources each, {} nodes; working in {}",
        a.apps,
        a.clusters,
        a.resources_per_app,
        a.nodes,
        dir.display()
    );

    let git_root = dir.join("git");
    if git_root.exists() {
        std::fs::remove_dir_all(&git_root)
            .with_context(|| format!("remove the previous {}", git_root.display()))?;
    }
    std::fs::create_dir_all(&git_root).with_context(|| format!("create {}", git_root.display()))?;
    let git = GitServer::start(&git_root, GitServerConfig::default())
        .await
        .context("start the Git server")?;
    let started = Instant::now();
    let fixture = Fixture::create(
        &git_root,
        "apps.git",
        FixtureSpec {
            apps: a.apps,
            clusters: a.clusters,
            resources_per_app: a.resources_per_app,
            repo_url: git.url_for("apps.git"),
            applications_namespace: NAMESPACE.into(),
            ..FixtureSpec::default()
        },
    )
    .context("generate the Git repository")?;
    println!(
        "  repository of {} apps generated in {:.1} s",
        a.apps,
        started.elapsed().as_secs_f64()
    );

    let fleet = SimFleet::start(
        a.clusters,
        0,
        SimConfig {
            name: "sim".into(),
            controllers: ControllerConfig {
                enabled: true,
                delay: Duration::from_millis(50),
                children: false,
            },
            ..SimConfig::default()
        },
    )
    .await
    .context("start the simulated clusters")?;
    let result = run_with(a, &flotilla, dir, &fleet, &fixture).await;
    fleet.shutdown().await;
    git.shutdown().await;
    let doc = result?;
    if let Some(path) = &a.json {
        common::write_json(path, &doc)?;
        println!("results written to {}", path.display());
    }
    if doc["interrupted"] == json!(true) {
        bail!("interrupted before every application was Synced and Healthy");
    }
    if doc["complete"] != json!(true) {
        bail!(
            "not every application became Synced and Healthy within {} s",
            a.timeout
        );
    }
    Ok(())
}

/// Everything after the clusters and the Git server are up; returns the result document
/// (with `complete: false` when the apps did not all get there in time).
async fn run_with(
    a: &CommonArgs,
    flotilla: &Path,
    dir: &Path,
    fleet: &SimFleet,
    fixture: &Fixture,
) -> anyhow::Result<Value> {
    let mgmt = &fleet.clusters()[0];
    let kubeconfig = dir.join("mgmt.kubeconfig");
    std::fs::write(&kubeconfig, mgmt.kubeconfig()?)
        .with_context(|| format!("write {}", kubeconfig.display()))?;
    let client = kube_client(&kubeconfig).await?;
    setup::install_crds(&client).await?;
    setup::apply(&client, &setup::namespace(NAMESPACE)).await?;
    for (i, c) in fleet.clusters().iter().enumerate() {
        let secret = setup::cluster_secret(
            NAMESPACE,
            &format!("sim-{i}"),
            &c.url(),
            c.token(),
            c.ca_pem(),
        );
        setup::apply(&client, &secret).await?;
    }

    let common_flags: Vec<String> = [
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--namespaces",
        NAMESPACE,
        "--repo-poll-seconds",
        "3600",
        "--resync-seconds",
        "600",
        "--workers",
        &a.workers.to_string(),
        "--grace-period-seconds",
        "15",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let nodes_dir = dir.join("nodes");
    let t_nodes = Instant::now();
    // Free ports are picked, released and then bound by the nodes; another process may
    // take one in between, so a node that exits while the group forms is retried with new
    // ports (twice at most).
    let mut attempt = 1;
    let (mut nodes, ready) = loop {
        if nodes_dir.exists() {
            std::fs::remove_dir_all(&nodes_dir)
                .with_context(|| format!("remove the previous {}", nodes_dir.display()))?;
        }
        let addrs = (1..=a.nodes)
            .map(NodeAddrs::free)
            .collect::<Result<Vec<_>, _>>()?;
        let mut nodes = LocalCluster::new(
            flotilla.to_path_buf(),
            &nodes_dir,
            addrs,
            common_flags.clone(),
        );
        nodes.env(
            "RUST_LOG",
            &std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        nodes.start_all()?;
        let ready = wait_for_group(a, flotilla, &mut nodes).await;
        match ready {
            Err(e @ StartFailure::Exited { .. }) if attempt < 3 => {
                eprintln!("  {e}; starting the nodes again on other ports");
                nodes.stop_all(Signal::INT, Duration::from_secs(15)).await;
                attempt += 1;
            }
            other => break (nodes, other),
        }
    };
    let result = match ready {
        Ok(()) => {
            let seconds_nodes_ready = t_nodes.elapsed().as_secs_f64();
            println!(
                "  {} nodes hold the shard map after {seconds_nodes_ready:.1} s",
                a.nodes
            );
            measure(
                a,
                flotilla,
                &mut nodes,
                &client,
                fixture,
                seconds_nodes_ready,
            )
            .await
        }
        Err(e) => Err(anyhow::anyhow!(e)),
    };
    nodes.stop_all(Signal::INT, Duration::from_secs(15)).await;
    if result.is_err() {
        for n in nodes.nodes() {
            eprintln!("  log of node {}: {}", n.id, nodes.log_file(n.id).display());
        }
    }
    result
}

/// Wait for the group, apply the apps, poll until all are Synced and Healthy.
async fn measure(
    a: &CommonArgs,
    flotilla: &Path,
    nodes: &mut LocalCluster,
    client: &kube::Client,
    fixture: &Fixture,
    seconds_nodes_ready: f64,
) -> anyhow::Result<Value> {
    let api = nodes.node(1)?.api.clone();
    let pids: Vec<(u64, u32)> = nodes
        .nodes()
        .iter()
        .filter_map(|n| nodes.pid(n.id).map(|p| (n.id, p)))
        .collect();
    let sampler = ProcSampler::start(pids);

    let t0 = Instant::now();
    let manifests = (0..a.apps)
        .map(|i| {
            serde_yaml::from_str::<Value>(&fixture.application_yaml(i))
                .with_context(|| format!("Application manifest of app {i}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut applies = futures::stream::iter(manifests.iter())
        .map(|m| setup::apply(client, m))
        .buffer_unordered(APPLY_CONCURRENCY);
    while let Some(r) = applies.next().await {
        r?;
    }
    drop(applies);
    let seconds_to_applied = t0.elapsed().as_secs_f64();
    println!(
        "  {} Applications applied in {seconds_to_applied:.1} s",
        a.apps
    );

    let deadline = t0 + Duration::from_secs(a.timeout);
    let mut timeline: Vec<Progress> = Vec::new();
    let mut seconds_to_synced: Option<f64> = None;
    let mut seconds_to_healthy: Option<f64> = None;
    let mut last_print = Instant::now();
    let mut tick = tokio::time::interval(POLL);
    let mut interrupted = false;
    let mut stuck: Vec<Value> = Vec::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => {
                println!("  interrupted; stopping the nodes");
                interrupted = true;
                break;
            }
        }
        for n in nodes.nodes().to_vec() {
            if !nodes.is_running(n.id) {
                bail!(
                    "node {} exited; see {}",
                    n.id,
                    nodes.log_file(n.id).display()
                );
            }
        }
        let apps = match setup::list_applications(client, NAMESPACE).await {
            Ok(apps) => apps,
            Err(e) => {
                eprintln!("  reading Applications: {e}");
                if Instant::now() >= deadline {
                    break;
                }
                continue;
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        let mut synced = 0;
        let mut synced_healthy = 0;
        stuck.clear();
        for app in &apps {
            let (s, h) = setup::sync_and_health(app);
            if s == "Synced" && h == "Healthy" {
                synced += 1;
                synced_healthy += 1;
                continue;
            }
            if s == "Synced" {
                synced += 1;
            }
            if stuck.len() < STUCK_SHOWN {
                stuck.push(json!({
                    "name": app["metadata"]["name"],
                    "sync": s,
                    "health": h,
                    "phase": app["status"]["operationState"]["phase"],
                    "message": app["status"]["operationState"]["message"],
                }));
            }
        }
        timeline.push(Progress {
            seconds,
            synced,
            synced_healthy,
        });
        if seconds_to_synced.is_none() && synced >= a.apps {
            seconds_to_synced = Some(seconds);
        }
        if synced_healthy >= a.apps {
            seconds_to_healthy = Some(seconds);
        }
        if seconds_to_healthy.is_some() || last_print.elapsed() >= PROGRESS {
            println!(
                "  {seconds:>6.1} s: {synced}/{} synced, {synced_healthy} synced and healthy",
                a.apps
            );
            last_print = Instant::now();
        }
        if seconds_to_healthy.is_some() || Instant::now() >= deadline {
            break;
        }
    }

    let per_node = match common::cli_json(flotilla, &api, &["shard", "list"]).await {
        Ok(doc) => common::shard_nodes(&doc),
        Err(e) => {
            eprintln!("  reading the shard map: {e}");
            Vec::new()
        }
    };
    let stats = sampler.finish();
    let ticks = common::clock_ticks_per_second();
    let apps_per_node: Vec<u64> = per_node.iter().map(|&(_, _, apps)| apps).collect();
    let max_over_mean = common::max_over_mean(&apps_per_node);
    let apps_per_sec = seconds_to_healthy.map(|s| a.apps as f64 / s.max(1e-3));

    let mut node_rows: BTreeMap<u64, Value> = BTreeMap::new();
    for n in nodes.nodes() {
        let s = stats.get(&n.id).copied().unwrap_or_default();
        let (shards, apps) = per_node
            .iter()
            .find(|&&(id, _, _)| id == n.id)
            .map(|&(_, sh, ap)| (sh, ap))
            .unwrap_or((0, 0));
        node_rows.insert(
            n.id,
            json!({
                "node": n.id,
                "shards": shards,
                "apps": apps,
                "peak_rss_mb": round1(s.peak_rss_kb as f64 / 1024.0),
                "cpu_seconds": round1(s.cpu_ticks as f64 / ticks),
            }),
        );
    }
    let doc = json!({
        "scenario": "sync",
        "complete": seconds_to_healthy.is_some(),
        "interrupted": interrupted,
        "not_synced_and_healthy": if seconds_to_healthy.is_some() { Vec::new() } else { stuck },
        "apps": a.apps,
        "clusters": a.clusters,
        "resources_per_app": a.resources_per_app,
        "nodes": a.nodes,
        "workers": a.workers,
        "seconds_nodes_ready": round1(seconds_nodes_ready),
        "seconds_to_applied": round1(seconds_to_applied),
        "seconds_to_synced": seconds_to_synced.map(round1),
        "seconds_to_healthy": seconds_to_healthy.map(round1),
        "apps_per_sec": apps_per_sec.map(round1),
        "max_over_mean_apps_per_node": (max_over_mean * 1000.0).round() / 1000.0,
        "peak_rss_mb": node_rows.values().map(|r| r["peak_rss_mb"].clone()).collect::<Vec<_>>(),
        "cpu_seconds": node_rows.values().map(|r| r["cpu_seconds"].clone()).collect::<Vec<_>>(),
        "per_node": node_rows.values().cloned().collect::<Vec<_>>(),
        "timeline": timeline
            .iter()
            .map(|p| json!([round1(p.seconds), p.synced, p.synced_healthy]))
            .collect::<Vec<_>>(),
        "machine": common::machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    print_summary(&doc);
    Ok(doc)
}

/// Why the nodes did not form their group.
#[derive(Debug, thiserror::Error)]
enum StartFailure {
    /// A node process exited (often: one of its ports was taken).
    #[error("node {node} exited while starting; see {log}")]
    Exited {
        /// The node id.
        node: u64,
        /// Its log file.
        log: String,
    },
    /// No shard map over all nodes in time.
    #[error("the nodes did not form a group with a shard map in 120 s: {0}")]
    Timeout(String),
    /// The launcher failed.
    #[error(transparent)]
    Launch(#[from] flotilla_loadtest::cluster::launcher::LaunchError),
}

/// Wait until node 1 reports a shard map spread over all `a.nodes` nodes.
async fn wait_for_group(
    a: &CommonArgs,
    flotilla: &Path,
    nodes: &mut LocalCluster,
) -> Result<(), StartFailure> {
    let api = nodes.node(1)?.api.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for n in nodes.nodes().to_vec() {
            if !nodes.is_running(n.id) {
                return Err(StartFailure::Exited {
                    node: n.id,
                    log: nodes.log_file(n.id).display().to_string(),
                });
            }
        }
        let last_err = match common::cli_json(flotilla, &api, &["shard", "list"]).await {
            Ok(doc) => {
                let owners = common::shard_nodes(&doc)
                    .iter()
                    .filter(|&&(_, shards, _)| shards > 0)
                    .count();
                if owners as u64 >= a.nodes {
                    return Ok(());
                }
                format!("{owners} of {} nodes own shards", a.nodes)
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(StartFailure::Timeout(last_err));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn print_summary(doc: &Value) {
    let show = |v: &Value| match v {
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    println!();
    println!(
        "sync: {} apps, {} clusters, {} nodes",
        doc["apps"], doc["clusters"], doc["nodes"]
    );
    println!(
        "  seconds to synced            {}",
        show(&doc["seconds_to_synced"])
    );
    println!(
        "  seconds to synced + healthy  {}",
        show(&doc["seconds_to_healthy"])
    );
    println!(
        "  apps per second              {}",
        show(&doc["apps_per_sec"])
    );
    println!(
        "  max/mean apps per node       {}",
        show(&doc["max_over_mean_apps_per_node"])
    );
    println!();
    println!(
        "  {:<6} {:>7} {:>7} {:>12} {:>12}",
        "NODE", "SHARDS", "APPS", "PEAK RSS MB", "CPU SECONDS"
    );
    for r in doc["per_node"].as_array().into_iter().flatten() {
        println!(
            "  {:<6} {:>7} {:>7} {:>12} {:>12}",
            show(&r["node"]),
            show(&r["shards"]),
            show(&r["apps"]),
            show(&r["peak_rss_mb"]),
            show(&r["cpu_seconds"])
        );
    }
    println!();
    let stuck = doc["not_synced_and_healthy"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !stuck.is_empty() {
        println!("  not Synced and Healthy (first {}):", stuck.len());
        for a in &stuck {
            println!(
                "    {} {}/{} {}: {}",
                show(&a["name"]),
                show(&a["sync"]),
                show(&a["health"]),
                show(&a["phase"]),
                show(&a["message"])
            );
        }
        println!();
    }
}
