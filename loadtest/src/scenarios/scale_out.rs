//! The `scale-out` scenario: a node added to N running nodes under load.
//!
//! Once every app is Synced and Healthy a background churn starts (`--rate` commits/s, each
//! changing `--churn-apps` apps). The shard map is read with its owner per shard, node N+1
//! is started with the same flags and a peer list naming every node (so it joins the group,
//! as `flotilla node` does when it is not the lowest id), and the map is read every 500 ms
//! until the new node owns shards, every shard has an owner and no owner changed for
//! `--quiet-seconds`.
//!
//! - `shards_moved`: shards whose owner differs between the map before the join and the
//!   settled map; `ideal_moved` = shards / (N+1), what a perfectly even hand-over moves.
//! - `seconds_to_settle`: from starting the new node to the last owner change.
//! - `max_reconcile_gap_s`: the largest push-to-applied latency (webhook sent → the changed
//!   ConfigMap seen in its cluster, polled every 100 ms) of every change pushed between
//!   starting the new node and the end of the quiet period: the churn's random apps, plus,
//!   on every map read, a change to one app of each shard seen with a new owner (up to
//!   `--probe-apps` per read), so apps whose shard just moved are measured too.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use flotilla_loadtest::cluster::launcher::NodeAddrs;
use serde_json::{json, Value};

use super::changes::{self, quantile, Changes, Tag};
use super::common::{self, CommonArgs};
use super::failover::{app_shards, json_log_flags, load_for, overlaps, round2, ShardMap};
use super::world::{round1, World};

/// How often the shard map is read while it settles.
const MAP_READ: Duration = Duration::from_millis(500);
/// Load before the join.
const WARM_UP: Duration = Duration::from_secs(2);
/// How long the changes pushed during the move may take to show before they count as lost.
const DRAIN: Duration = Duration::from_secs(30);

/// Arguments of `flotilla-loadtest scale-out`.
#[derive(Debug, clap::Args)]
pub struct ScaleOutArgs {
    /// The common scenario flags (`--nodes` is the count before the join).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Churn commits per second while measuring.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Apps each churn commit changes.
    #[arg(long, default_value_t = 5)]
    pub churn_apps: usize,
    /// Apps of newly moved shards changed per map read.
    #[arg(long, default_value_t = 20)]
    pub probe_apps: usize,
    /// The map counts as settled after this many seconds without an owner change.
    #[arg(long, default_value_t = 5)]
    pub quiet_seconds: u64,
    /// Give up waiting for the map to settle after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub settle_timeout: u64,
}

/// Run the scenario, print the summary and write the JSON.
pub async fn run(args: ScaleOutArgs) -> anyhow::Result<()> {
    let mut world = World::start(&args.common, "scale-out", &json_log_flags()).await?;
    let result = measure(&mut world, &args).await;
    world.shutdown(result.is_err()).await;
    let doc = result?;
    if let Some(path) = &args.common.json {
        common::write_json(path, &doc)?;
        println!("results written to {}", path.display());
    }
    if doc["complete"] != json!(true) {
        bail!("the scale-out could not be measured completely (see the summary)");
    }
    Ok(())
}

async fn measure(world: &mut World, args: &ScaleOutArgs) -> anyhow::Result<Value> {
    let a = world.args.clone();
    let wait = world.deploy_all().await?;
    let mut ch = Changes::new(world, args.rate, args.churn_apps).await?;
    load_for(world, &mut ch, None, WARM_UP).await?;
    let before = ShardMap::read(world).await?;
    let app_shard = app_shards(a.apps, before.owners.len());
    before.check_apps(&app_shard)?;
    let mut first_app: Vec<Option<usize>> = vec![None; before.owners.len()];
    for (app, &s) in app_shard.iter().enumerate() {
        first_app[s].get_or_insert(app);
    }

    let nodes_before = world.nodes.nodes().len();
    let new_id = world.nodes.nodes().iter().map(|n| n.id).max().unwrap_or(0) + 1;
    world.nodes.add(NodeAddrs::free(new_id)?);
    let joined = Instant::now();
    world.nodes.start(new_id)?;
    println!("  node {new_id} started; waiting for the shard map to settle");

    let quiet = Duration::from_secs(args.quiet_seconds);
    let mut last = before.owners.clone();
    let mut last_change = joined;
    let mut probed = vec![false; before.owners.len()];
    let mut probe_commits = 0u32;
    let mut settled = false;
    while joined.elapsed() < Duration::from_secs(args.settle_timeout) {
        load_for(world, &mut ch, None, MAP_READ).await?;
        let map = match ShardMap::read(world).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("  reading the shard map: {e:#}");
                continue;
            }
        };
        if map.owners != last {
            last_change = Instant::now();
            last = map.owners.clone();
        }
        // One app of each shard seen with a new owner gets a change (up to probe_apps).
        let mut probe = Vec::new();
        for s in 0..last.len() {
            if probe.len() >= args.probe_apps {
                break;
            }
            if !probed[s] && last[s] != before.owners[s] && last[s] != 0 {
                probed[s] = true;
                if let Some(app) = first_app[s] {
                    probe.push(app);
                }
            }
        }
        if !probe.is_empty() {
            let via = world
                .pids()
                .first()
                .map(|&(id, _)| id)
                .context("no node runs")?;
            match ch.push(world, &probe, via, Tag::Probe(probe_commits)).await {
                Ok(_) => probe_commits += 1,
                Err(e) => eprintln!("  probe push: {e:#}"),
            }
        }
        if last.contains(&new_id) && !last.contains(&0) && last_change.elapsed() >= quiet {
            settled = true;
            break;
        }
    }
    let measured_until = Instant::now();
    let seconds_to_settle = settled.then(|| last_change.duration_since(joined).as_secs_f64());
    ch.stop_churn();
    ch.drain(DRAIN, Duration::from_millis(100)).await;
    let unapplied = ch.pending_between(joined, measured_until);
    let during: Vec<&changes::Applied> = ch
        .applied
        .iter()
        .filter(|x| x.pushed >= joined && x.pushed <= measured_until)
        .collect();
    let samples_ms: Vec<f64> = during
        .iter()
        .map(|x| (x.latency_s() * 10_000.0).round() / 10.0)
        .collect();
    let moved_shard_changes = during.iter().filter(|x| x.tag != Tag::Churn).count();
    let max_gap = quantile(&samples_ms, 1.0).map(|ms| ms / 1000.0);
    let slowest = during
        .iter()
        .max_by(|x, y| x.latency_s().total_cmp(&y.latency_s()))
        .map(|x| format!("app-{}", x.app));

    let shards = before.owners.len();
    let shards_moved = (0..shards).filter(|&s| before.owners[s] != last[s]).count();
    let nodes_after = nodes_before + 1;
    let ideal_moved = shards as f64 / nodes_after as f64;
    let owned_by_new = last.iter().filter(|&&o| o == new_id).count();
    let mut ended_at = Vec::new();
    let overlaps = overlaps(world, &mut ended_at).await?;
    let per_node: Vec<Value> = world
        .nodes
        .nodes()
        .iter()
        .map(|n| {
            json!({
                "node": n.id,
                "shards_before": before.owners.iter().filter(|&&o| o == n.id).count(),
                "shards_after": last.iter().filter(|&&o| o == n.id).count(),
            })
        })
        .collect();
    let complete = settled && unapplied == 0 && !samples_ms.is_empty();
    let doc = json!({
        "scenario": "scale-out",
        "complete": complete,
        "apps": a.apps,
        "clusters": a.clusters,
        "nodes": a.nodes,
        "resources_per_app": a.resources_per_app,
        "workers": a.workers,
        "nodes_before": nodes_before,
        "nodes_after": nodes_after,
        "shards": shards,
        "shards_moved": shards_moved,
        "ideal_moved": round1(ideal_moved),
        "moved_over_ideal": (shards_moved as f64 / ideal_moved * 1000.0).round() / 1000.0,
        "shards_owned_by_new_node": owned_by_new,
        "seconds_to_settle": seconds_to_settle.map(round1),
        "max_reconcile_gap_s": max_gap.map(round2),
        "max_reconcile_gap_definition": "largest push-to-applied latency of the changes pushed between starting the new node and the end of the quiet period (churn plus one app of each newly moved shard)",
        "slowest_change_app": slowest,
        "gap_p50_ms": quantile(&samples_ms, 0.5),
        "gap_p99_ms": quantile(&samples_ms, 0.99),
        "gap_changes": samples_ms.len(),
        "gap_changes_in_moved_shards": moved_shard_changes,
        "unapplied_changes": unapplied,
        "samples_ms": samples_ms,
        "concurrent_operations": overlaps.len(),
        "concurrent_examples": overlaps.iter().take(20).collect::<Vec<_>>(),
        "churn_rate": args.rate,
        "churn_apps": args.churn_apps,
        "churn_commits": ch.churn_commits,
        "churn_push_failures": ch.push_failures,
        "per_node": per_node,
        "seconds_to_healthy": wait.seconds_to_healthy.map(round1),
        "machine": common::machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    print_summary(&doc);
    Ok(doc)
}

fn print_summary(doc: &Value) {
    let show = |v: &Value| match v {
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    println!();
    println!(
        "scale-out: {} apps, {} clusters, {} → {} nodes",
        doc["apps"], doc["clusters"], doc["nodes_before"], doc["nodes_after"]
    );
    println!(
        "  shards moved / ideal         {} / {}   (target ≤ 1.1 × ideal)",
        show(&doc["shards_moved"]),
        show(&doc["ideal_moved"])
    );
    println!(
        "  seconds to settle            {}",
        show(&doc["seconds_to_settle"])
    );
    println!(
        "  max reconcile gap s          {}   (target ≤ 5; {} changes, {} in moved shards)",
        show(&doc["max_reconcile_gap_s"]),
        show(&doc["gap_changes"]),
        show(&doc["gap_changes_in_moved_shards"])
    );
    println!(
        "  change latency p50 / p99 ms  {} / {}",
        show(&doc["gap_p50_ms"]),
        show(&doc["gap_p99_ms"])
    );
    println!(
        "  changes not applied          {}",
        show(&doc["unapplied_changes"])
    );
    println!(
        "  concurrent operations        {}   (target 0)",
        show(&doc["concurrent_operations"])
    );
    println!();
    println!(
        "  {:<6} {:>14} {:>13}",
        "NODE", "SHARDS BEFORE", "SHARDS AFTER"
    );
    for r in doc["per_node"].as_array().into_iter().flatten() {
        println!(
            "  {:<6} {:>14} {:>13}",
            show(&r["node"]),
            show(&r["shards_before"]),
            show(&r["shards_after"])
        );
    }
    println!();
}
