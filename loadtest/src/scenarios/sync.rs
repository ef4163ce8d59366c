//! The `sync` scenario: a cold start of A apps over C clusters until every Application is
//! Synced and Healthy.
//!
//! It starts a [`World`] (clusters, Git server, nodes). Once the nodes have formed their
//! group and hold the shard map, it applies the A `Application` resources (concurrently,
//! bounded) and polls the management cluster every 500 ms until all of them are Synced and
//! Healthy, sampling each node's memory and CPU time from `/proc` meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};

use super::common::{self, CommonArgs, ProcSampler};
use super::world::{round1, World};

/// Arguments of `flotilla-loadtest sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The common scenario flags.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Run the scenario, print the summary and write the JSON; fails when not every app became
/// Synced and Healthy in time.
pub async fn run(args: SyncArgs) -> anyhow::Result<()> {
    let a = &args.common;
    let mut world = World::start(a, "sync", &[]).await?;
    let result = measure(&mut world).await;
    world.shutdown(result.is_err()).await;
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

/// Apply the apps and poll until all are Synced and Healthy; returns the result document
/// (with `complete: false` when the apps did not all get there in time).
async fn measure(world: &mut World) -> anyhow::Result<Value> {
    let a = world.args.clone();
    let sampler = ProcSampler::start(world.pids());
    let t0 = Instant::now();
    let seconds_to_applied = world.apply_apps().await?;
    let wait = world
        .wait_synced(t0, Duration::from_secs(a.timeout))
        .await?;

    let per_node = match world.shard_nodes().await {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("  reading the shard map: {e}");
            Vec::new()
        }
    };
    let stats = sampler.finish();
    let ticks = common::clock_ticks_per_second();
    let apps_per_node: Vec<u64> = per_node.iter().map(|&(_, _, apps)| apps).collect();
    let max_over_mean = common::max_over_mean(&apps_per_node);
    let apps_per_sec = wait.seconds_to_healthy.map(|s| a.apps as f64 / s.max(1e-3));

    let mut node_rows: BTreeMap<u64, Value> = BTreeMap::new();
    for n in world.nodes.nodes() {
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
        "complete": wait.seconds_to_healthy.is_some(),
        "interrupted": wait.interrupted,
        "not_synced_and_healthy": wait.stuck,
        "apps": a.apps,
        "clusters": a.clusters,
        "resources_per_app": a.resources_per_app,
        "nodes": a.nodes,
        "workers": a.workers,
        "seconds_nodes_ready": round1(world.seconds_nodes_ready),
        "seconds_to_applied": round1(seconds_to_applied),
        "seconds_to_synced": wait.seconds_to_synced.map(round1),
        "seconds_to_healthy": wait.seconds_to_healthy.map(round1),
        "apps_per_sec": apps_per_sec.map(round1),
        "max_over_mean_apps_per_node": (max_over_mean * 1000.0).round() / 1000.0,
        "peak_rss_mb": node_rows.values().map(|r| r["peak_rss_mb"].clone()).collect::<Vec<_>>(),
        "cpu_seconds": node_rows.values().map(|r| r["cpu_seconds"].clone()).collect::<Vec<_>>(),
        "per_node": node_rows.values().cloned().collect::<Vec<_>>(),
        "timeline": wait.timeline_json(),
        "machine": common::machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    print_summary(&doc);
    println!(
        "  node data and logs: {}",
        world.dir().join("nodes").display()
    );
    Ok(doc)
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
