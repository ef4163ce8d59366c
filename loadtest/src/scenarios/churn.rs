//! The `churn` scenario: commits at a steady rate, each changing a few apps, delivered by
//! webhook; measures for every changed app the time from the push to its object changing
//! in its cluster.
//!
//! It starts a [`World`], applies the apps and waits until all are Synced and Healthy, then
//! starts an [`Observer`] (one watch per cluster). Commit `k` (made at `k / rate` seconds)
//! changes `--apps-per-commit` apps, taken round-robin over the app indices (app `i` lives
//! in cluster `i % C`, so consecutive apps spread over clusters and shards); each commit
//! builds on the previous one and is announced as a GitHub push to node `1 + k % N`. A
//! change is measured from the moment the webhook request is sent to the moment the
//! observer's watch delivers the app's ConfigMap with the new `generation` (or a later
//! one). Nodes poll the repository only hourly, so the webhook is the only trigger.
//!
//! Committing is part of the loop and takes time that grows with the repository (libgit2
//! rewrites the `apps/` tree of A entries): its cost is reported as `commit_ms_*`, and the
//! rate actually reached as `achieved_rate`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};

use super::common::{self, CommonArgs, ProcSampler};
use super::observe::{ms_between, round_ms, Latencies, Observer};
use super::world::{round1, World};

/// The p99 target at 10,000 apps.
const TARGET_P99_MS: f64 = 2000.0;

/// Arguments of `flotilla-loadtest churn`.
#[derive(Debug, clap::Args)]
pub struct ChurnArgs {
    /// The common scenario flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Commits to make.
    #[arg(long, default_value_t = 20)]
    pub commits: usize,
    /// Commits per second.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Apps changed by each commit.
    #[arg(long, default_value_t = 5)]
    pub apps_per_commit: usize,
    /// Seconds a change may take to reach its cluster before it counts as missed.
    #[arg(long, default_value_t = 60)]
    pub change_timeout: u64,
}

/// One change of one app.
struct Change {
    commit: usize,
    app: usize,
    generation: u64,
    pushed: Instant,
}

/// Run the scenario, print the summary and write the JSON; fails when the apps did not sync
/// first, or when a change was not seen in its cluster in time.
pub async fn run(args: ChurnArgs) -> anyhow::Result<()> {
    if args.commits == 0 || args.apps_per_commit == 0 {
        bail!("--commits and --apps-per-commit must be at least 1");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of commits per second");
    }
    let a = &args.common;
    let mut world = World::start(a, "churn", &[]).await?;
    let result = tokio::select! {
        r = measure(&mut world, &args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    world.shutdown(result.is_err()).await;
    let doc = result?;
    if let Some(path) = &a.json {
        common::write_json(path, &doc)?;
        println!("results written to {}", path.display());
    }
    if doc["changes"] == json!(0) {
        bail!(
            "no change reached its cluster within {} s",
            args.change_timeout
        );
    }
    if doc["complete"] != json!(true) {
        bail!(
            "{} of {} changes did not reach their cluster within {} s",
            doc["missed"],
            doc["changes_pushed"],
            args.change_timeout
        );
    }
    Ok(())
}

/// The apps commit `k` changes: `per_commit` consecutive indices, round-robin over `apps`
/// (distinct within a commit).
pub fn apps_of_commit(k: usize, per_commit: usize, apps: usize) -> Vec<usize> {
    let n = per_commit.min(apps);
    (0..n).map(|j| (k * n + j) % apps).collect()
}

async fn measure(world: &mut World, args: &ChurnArgs) -> anyhow::Result<Value> {
    let a = world.args.clone();
    let wait = world.deploy_all().await?;
    let observer = Observer::start(world.fleet.clusters(), a.apps).await?;
    observer.ready(Duration::from_secs(120)).await?;
    let unseen = (0..a.apps)
        .filter(|&i| observer.latest(i).is_none())
        .count();
    if unseen > 0 {
        bail!("{unseen} apps have no first ConfigMap in their cluster although Synced");
    }

    let sampler = ProcSampler::start(world.pids());
    let mut generations: BTreeMap<usize, u64> = BTreeMap::new();
    let mut changes = Vec::with_capacity(args.commits * args.apps_per_commit);
    let mut commit_ms = Vec::with_capacity(args.commits);
    let mut webhook_ms = Vec::with_capacity(args.commits);
    let mut webhook_failures = 0usize;
    let (mut first_push, mut last_push) = (None, None);
    let mut vias = Vec::with_capacity(args.commits);
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    println!(
        "  churn: {} commits of {} apps at {}/s",
        args.commits, args.apps_per_commit, args.rate
    );
    let mut last_print = Instant::now();
    for k in 0..args.commits {
        tokio::time::sleep_until((start + period * k as u32).into()).await;
        let apps = apps_of_commit(k, args.apps_per_commit, a.apps);
        let via = 1 + (k as u64 % a.nodes);
        let pushed = world.push_change(&apps, via).await?;
        commit_ms.push(pushed.commit.elapsed.as_secs_f64() * 1000.0);
        webhook_ms.push(ms_between(pushed.pushed, Instant::now()));
        first_push.get_or_insert(pushed.pushed);
        last_push = Some(pushed.pushed);
        vias.push(via);
        if !(200..300).contains(&pushed.status) {
            webhook_failures += 1;
            eprintln!(
                "  commit {k}: node {via} answered the webhook with {}",
                pushed.status
            );
        }
        for app in apps {
            let g = generations.entry(app).or_insert(0);
            *g += 1;
            changes.push(Change {
                app,
                generation: *g,
                commit: k,
                pushed: pushed.pushed,
            });
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            let seen = changes
                .iter()
                .filter(|c| observer.generation_seen(c.app, c.generation).is_some())
                .count();
            println!(
                "  {:>6.1} s: {} commits pushed, {seen} of {} changes seen in their clusters",
                start.elapsed().as_secs_f64(),
                k + 1,
                changes.len()
            );
            last_print = Instant::now();
        }
    }
    // Commits per second between the first and the last push.
    let achieved_rate = match (first_push, last_push) {
        (Some(a), Some(b)) if args.commits > 1 && b > a => {
            ((args.commits - 1) as f64 / (b - a).as_secs_f64() * 100.0).round() / 100.0
        }
        _ => args.rate,
    };
    world.check_running(&[])?;

    // The observer stamped every change as it arrived; waiting here only bounds how long.
    let timeout = Duration::from_secs(args.change_timeout);
    let mut samples = Vec::with_capacity(changes.len());
    let mut missed = Vec::new();
    let mut commit_worst: Vec<Option<f64>> = vec![None; args.commits];
    for c in &changes {
        match observer
            .wait_generation(c.app, c.generation, c.pushed + timeout)
            .await
        {
            Some(seen) if seen <= c.pushed + timeout => {
                let ms = ms_between(c.pushed, seen);
                samples.push(ms);
                let worst = &mut commit_worst[c.commit];
                *worst = Some(worst.map_or(ms, |w: f64| w.max(ms)));
            }
            _ => missed.push(c),
        }
    }
    world.check_running(&[])?;
    let stats = sampler.finish();
    let ticks = common::clock_ticks_per_second();
    let lat = Latencies::new(samples);
    let commit = Latencies::new(commit_ms.clone());
    let per_commit: Vec<Value> = (0..args.commits)
        .map(|k| {
            json!({
                "commit": k,
                "via_node": vias.get(k),
                "commit_ms": commit_ms.get(k).map(|&v| round_ms(v)),
                "webhook_ms": webhook_ms.get(k).map(|&v| round_ms(v)),
                "max_ms": commit_worst[k].map(round_ms),
            })
        })
        .collect();
    let hook = Latencies::new(webhook_ms);
    let obs = observer.stats();
    let per_node: Vec<Value> = world
        .nodes
        .nodes()
        .iter()
        .map(|n| {
            let s = stats.get(&n.id).copied().unwrap_or_default();
            json!({
                "node": n.id,
                "peak_rss_mb": round1(s.peak_rss_kb as f64 / 1024.0),
                "cpu_seconds": round1(s.cpu_ticks as f64 / ticks),
            })
        })
        .collect();
    let doc = json!({
        "scenario": "churn",
        "complete": missed.is_empty() && webhook_failures == 0,
        "apps": a.apps,
        "clusters": a.clusters,
        "nodes": a.nodes,
        "resources_per_app": a.resources_per_app,
        "workers": a.workers,
        "commits": args.commits,
        "apps_per_commit": args.apps_per_commit.min(a.apps),
        "rate": args.rate,
        "achieved_rate": achieved_rate,
        "changes_pushed": changes.len(),
        "changes": lat.len(),
        "missed": missed.len(),
        "missed_apps": missed.iter().take(20).map(|c| json!({"app": c.app, "generation": c.generation})).collect::<Vec<_>>(),
        "webhook_failures": webhook_failures,
        "change_timeout_s": args.change_timeout,
        "p50_ms": lat.percentile(50.0).map(round_ms),
        "p90_ms": lat.percentile(90.0).map(round_ms),
        "p99_ms": lat.percentile(99.0).map(round_ms),
        "max_ms": lat.max().map(round_ms),
        "mean_ms": lat.mean().map(round_ms),
        "target_p99_ms": TARGET_P99_MS,
        "samples_ms": lat.samples_json(),
        "commit_ms_p50": commit.percentile(50.0).map(round_ms),
        "commit_ms_max": commit.max().map(round_ms),
        "webhook_ms_p50": hook.percentile(50.0).map(round_ms),
        "webhook_ms_max": hook.max().map(round_ms),
        "seconds_to_synced": wait.seconds_to_healthy.map(round1),
        "observer_events": obs.events,
        "observer_errors": obs.errors,
        "per_node": per_node,
        "per_commit": per_commit,
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
        "churn: {} apps, {} clusters, {} nodes; {} commits of {} apps at {}/s (reached {}/s)",
        doc["apps"],
        doc["clusters"],
        doc["nodes"],
        doc["commits"],
        doc["apps_per_commit"],
        doc["rate"],
        doc["achieved_rate"]
    );
    println!(
        "  {:<34} {:>10}   TARGET",
        "PUSH TO CLUSTER OBJECT", "VALUE"
    );
    let rows: [(&str, &str, String); 8] = [
        ("changes measured", "changes", String::new()),
        ("missed", "missed", "0".into()),
        ("webhook failures", "webhook_failures", "0".into()),
        ("p50 ms", "p50_ms", String::new()),
        ("p90 ms", "p90_ms", String::new()),
        (
            "p99 ms",
            "p99_ms",
            format!("<= {} (at 10,000 apps)", doc["target_p99_ms"]),
        ),
        ("max ms", "max_ms", String::new()),
        ("commit ms (p50 / max)", "commit_ms_p50", String::new()),
    ];
    for (label, key, target) in rows {
        let value = if key == "commit_ms_p50" {
            format!("{} / {}", show(&doc[key]), show(&doc["commit_ms_max"]))
        } else {
            show(&doc[key])
        };
        println!("  {label:<34} {value:>10}   {target}");
    }
    println!(
        "  {:<34} {:>10}",
        "webhook round trip ms (p50 / max)",
        format!(
            "{} / {}",
            show(&doc["webhook_ms_p50"]),
            show(&doc["webhook_ms_max"])
        )
    );
    println!();
    println!(
        "  {:<6} {:>12} {:>12}",
        "NODE", "PEAK RSS MB", "CPU SECONDS"
    );
    for r in doc["per_node"].as_array().into_iter().flatten() {
        println!(
            "  {:<6} {:>12} {:>12}",
            show(&r["node"]),
            show(&r["peak_rss_mb"]),
            show(&r["cpu_seconds"])
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::apps_of_commit;

    #[test]
    fn commits_take_apps_round_robin_and_distinct() {
        assert_eq!(apps_of_commit(0, 3, 10), vec![0, 1, 2]);
        assert_eq!(apps_of_commit(1, 3, 10), vec![3, 4, 5]);
        assert_eq!(apps_of_commit(3, 3, 10), vec![9, 0, 1]);
        // More apps per commit than apps: each app once.
        assert_eq!(apps_of_commit(2, 5, 3), vec![0, 1, 2]);
        // Over enough commits every app is changed.
        let mut seen = [false; 7];
        for k in 0..3 {
            for i in apps_of_commit(k, 3, 7) {
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }
}
