//! The `steady` scenario: what the nodes cost when nothing changes — all A apps Synced and
//! Healthy, only the periodic resync running.
//!
//! It starts a [`World`] with `--resync-seconds` set, applies the apps and waits until all
//! are Synced and Healthy; then it watches the nodes for `--duration` seconds, sampling each
//! node's `/proc` every 500 ms: CPU time used in the window over the window's wall time
//! (`cpu_percent`, 100 = one core), and resident memory (`rss_mb` is the largest sample,
//! `rss_mb_mean` the mean). Reconciliations done in the window are counted from each node's
//! `argocd_app_reconcile` histogram on `/metrics`. Target: ≤ 150 MB RSS per node at
//! 10,000 apps. The cold start's peak memory is kept too (`cold_start_peak_rss_mb`), so a
//! run whose apps never all get Synced still reports what the nodes used.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use flotilla_loadtest::cluster::setup;

use super::common::{self, CommonArgs, ProcSampler};
use super::world::{round1, World, NAMESPACE};

/// The memory target per node, MB (stated for 10,000 apps).
const RSS_TARGET_MB: f64 = 150.0;
/// How long one `/metrics` read may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `flotilla-loadtest steady`.
#[derive(Debug, clap::Args)]
pub struct SteadyArgs {
    /// The common scenario flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Seconds to measure once every app is Synced and Healthy.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// The nodes' periodic resync interval (`flotilla node --resync-seconds`).
    #[arg(long, default_value_t = 30)]
    pub resync_seconds: u64,
}

/// Run the scenario, print the summary and write the JSON; fails when the apps did not all
/// become Synced and Healthy (nothing steady to measure) or a node exited.
pub async fn run(args: SteadyArgs) -> anyhow::Result<()> {
    if args.duration == 0 || args.resync_seconds == 0 {
        bail!("--duration and --resync-seconds must be at least 1");
    }
    let a = &args.common;
    let extra = [
        "--resync-seconds".to_string(),
        args.resync_seconds.to_string(),
    ];
    let mut world = World::start(a, "steady", &extra).await?;
    let result = measure(&mut world, &args).await;
    world.shutdown(result.is_err()).await;
    let doc = result?;
    if let Some(path) = &a.json {
        common::write_json(path, &doc)?;
        println!("results written to {}", path.display());
    }
    if doc["interrupted"] == json!(true) {
        bail!("interrupted before the measurement ended");
    }
    if doc["complete"] != json!(true) {
        bail!(
            "not every application became Synced and Healthy within {} s; nothing steady to measure",
            a.timeout
        );
    }
    Ok(())
}

/// What the measuring window saw.
struct Window {
    seconds: f64,
    stats: BTreeMap<u64, common::ProcStats>,
    reconciles: BTreeMap<u64, Option<u64>>,
    interrupted: bool,
}

/// Apply the apps, wait for all of them, then measure the window; returns the result
/// document (`complete: false` and no figures when the apps did not all get there).
async fn measure(world: &mut World, args: &SteadyArgs) -> anyhow::Result<Value> {
    let a = world.args.clone();
    // Memory during the cold start too, so a run that never gets steady still tells.
    let cold = ProcSampler::start(world.pids());
    let t0 = Instant::now();
    world.apply_apps().await?;
    let wait = world
        .wait_synced(t0, Duration::from_secs(a.timeout))
        .await?;
    let cold = cold.finish();
    let cold_peak: Vec<f64> = world
        .nodes
        .nodes()
        .iter()
        .map(|n| round1(cold.get(&n.id).map_or(0, |s| s.peak_rss_kb) as f64 / 1024.0))
        .collect();
    let mut doc = json!({
        "scenario": "steady",
        "complete": false,
        "interrupted": wait.interrupted,
        "apps": a.apps,
        "clusters": a.clusters,
        "resources_per_app": a.resources_per_app,
        "nodes": a.nodes,
        "workers": a.workers,
        "resync_seconds": args.resync_seconds,
        "seconds_nodes_ready": round1(world.seconds_nodes_ready),
        "seconds_to_healthy": wait.seconds_to_healthy.map(round1),
        "cold_start_peak_rss_mb": cold_peak,
        "synced_and_healthy_after_wait": wait.timeline.last().map(|&(_, _, h)| h),
        "duration_s": Value::Null,
        "cpu_percent": Value::Null,
        "rss_mb": Value::Null,
        "rss_mb_mean": Value::Null,
        "reconciliations": Value::Null,
        "timeline": wait.timeline_json(),
        "machine": common::machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    if wait.seconds_to_healthy.is_none() || wait.interrupted {
        doc["not_synced_and_healthy"] = json!(wait.stuck);
        return Ok(doc);
    }

    println!(
        "  all {} apps Synced and Healthy; measuring for {} s",
        a.apps, args.duration
    );
    let w = window(world, Duration::from_secs(args.duration)).await?;
    let at_end = synced_and_healthy(world).await;
    let per_node = world.shard_nodes().await.unwrap_or_else(|e| {
        eprintln!("  reading the shard map: {e}");
        Vec::new()
    });

    let ticks = common::clock_ticks_per_second();
    let mut rows = Vec::new();
    for n in world.nodes.nodes() {
        let s = w.stats.get(&n.id).copied().unwrap_or_default();
        let (shards, apps) = per_node
            .iter()
            .find(|&&(id, _, _)| id == n.id)
            .map(|&(_, sh, ap)| (sh, ap))
            .unwrap_or((0, 0));
        let cpu = s.cpu_ticks_used() as f64 / ticks / w.seconds.max(1e-3) * 100.0;
        rows.push(json!({
            "node": n.id,
            "shards": shards,
            "apps": apps,
            "cpu_percent": round1(cpu),
            "rss_mb": round1(s.peak_rss_kb as f64 / 1024.0),
            "rss_mb_mean": round1(s.mean_rss_kb() / 1024.0),
            "samples": s.samples,
            "reconciliations": w.reconciles.get(&n.id).copied().flatten(),
        }));
    }
    let column = |k: &str| rows.iter().map(|r| r[k].clone()).collect::<Vec<_>>();
    let total: Option<u64> = w.reconciles.values().copied().sum();
    doc["complete"] = json!(!w.interrupted);
    doc["interrupted"] = json!(w.interrupted);
    doc["duration_s"] = json!(round1(w.seconds));
    doc["cpu_percent"] = json!(column("cpu_percent"));
    doc["rss_mb"] = json!(column("rss_mb"));
    doc["rss_mb_mean"] = json!(column("rss_mb_mean"));
    doc["reconciliations"] = json!(total);
    doc["reconciliations_per_sec"] = json!(total.map(|t| round1(t as f64 / w.seconds.max(1e-3))));
    doc["synced_and_healthy_at_end"] = json!(at_end);
    doc["per_node"] = Value::Array(rows);
    print_summary(&doc);
    Ok(doc)
}

/// Watch the nodes for `duration` (or until Ctrl-C): `/proc` samples and the reconcile
/// counts before and after.
async fn window(world: &mut World, duration: Duration) -> anyhow::Result<Window> {
    let before = reconcile_counts(world).await;
    let sampler = ProcSampler::start(world.pids());
    let start = Instant::now();
    let bar = common::progress_bar(duration.as_secs(), "seconds measured");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    while start.elapsed() < duration {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => {
                println!("  interrupted; stopping the nodes");
                interrupted = true;
                break;
            }
        }
        world.check_running(&[])?;
        bar.set_position(start.elapsed().as_secs().min(duration.as_secs()));
    }
    let stats = sampler.finish();
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let after = reconcile_counts(world).await;
    let reconciles = after
        .into_iter()
        .map(|(id, a)| {
            let b = before.get(&id).copied().flatten();
            (id, a.zip(b).map(|(a, b)| a.saturating_sub(b)))
        })
        .collect();
    Ok(Window {
        seconds,
        stats,
        reconciles,
        interrupted,
    })
}

/// Applications Synced and Healthy now (`None` when the list cannot be read).
async fn synced_and_healthy(world: &World) -> Option<usize> {
    match setup::list_applications(&world.client, NAMESPACE).await {
        Ok(apps) => Some(
            apps.iter()
                .filter(|app| {
                    let (s, h) = setup::sync_and_health(app);
                    s == "Synced" && h == "Healthy"
                })
                .count(),
        ),
        Err(e) => {
            eprintln!("  reading Applications: {e}");
            None
        }
    }
}

/// Each node's `argocd_app_reconcile` count (`None` for a node whose `/metrics` could
/// not be read or has no such series).
async fn reconcile_counts(world: &World) -> BTreeMap<u64, Option<u64>> {
    let mut counts = BTreeMap::new();
    for n in world.nodes.nodes() {
        let count = match tokio::time::timeout(METRICS_TIMEOUT, get_metrics(&n.http)).await {
            Ok(Ok(text)) => reconcile_count(&text),
            Ok(Err(e)) => {
                eprintln!("  reading /metrics of node {}: {e:#}", n.id);
                None
            }
            Err(_) => {
                eprintln!("  reading /metrics of node {}: no answer in 10 s", n.id);
                None
            }
        };
        counts.insert(n.id, count);
    }
    counts
}

/// The sum of every `argocd_app_reconcile_count` series in Prometheus text `metrics`.
pub fn reconcile_count(metrics: &str) -> Option<u64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| {
            l.strip_prefix("argocd_app_reconcile_count")
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>().round() as u64)
}

/// `GET /metrics` from a node's HTTP address.
async fn get_metrics(addr: &str) -> anyhow::Result<String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {addr}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, addr)
        .body(Empty::<Bytes>::new())?;
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("GET http://{addr}/metrics: HTTP {status}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
    .await;
    driver.abort();
    result
}

fn print_summary(doc: &Value) {
    let show = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::Array(items) => items
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        other => other.to_string(),
    };
    let max_rss = doc["rss_mb"]
        .as_array()
        .and_then(|r| r.iter().filter_map(Value::as_f64).reduce(f64::max));
    let at_target_size = doc["apps"].as_u64().is_some_and(|a| a >= 10_000);
    let verdict = match (max_rss, at_target_size) {
        (None, _) => "no figure",
        (Some(m), true) if m <= RSS_TARGET_MB => "met",
        (Some(_), true) => "MISSED",
        (Some(m), false) if m <= RSS_TARGET_MB => "within it, at fewer apps",
        (Some(_), false) => "MISSED even at fewer apps",
    };
    let row =
        |name: &str, value: String, target: &str| (name.to_string(), value, target.to_string());
    let rows = [
        row(
            "rss_mb per node (max)",
            show(&doc["rss_mb"]),
            &format!("<= {RSS_TARGET_MB} per node at 10000 apps: {verdict}"),
        ),
        row("rss_mb per node (mean)", show(&doc["rss_mb_mean"]), ""),
        row("cpu_percent per node", show(&doc["cpu_percent"]), ""),
        row("seconds measured", show(&doc["duration_s"]), ""),
        row("reconciliations", show(&doc["reconciliations"]), ""),
        row(
            "reconciliations per second",
            show(&doc["reconciliations_per_sec"]),
            "",
        ),
        row(
            "synced and healthy at the end",
            show(&doc["synced_and_healthy_at_end"]),
            &doc["apps"].to_string(),
        ),
        row(
            "seconds to synced + healthy",
            show(&doc["seconds_to_healthy"]),
            "",
        ),
    ];
    common::print_table(
        &format!(
            "steady: {} apps, {} clusters, {} nodes, resync every {} s",
            doc["apps"], doc["clusters"], doc["nodes"], doc["resync_seconds"]
        ),
        &rows,
    );
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_count_sums_every_series_of_the_histogram() {
        let text = "\
# TYPE argocd_app_reconcile histogram
argocd_app_reconcile_bucket{namespace=\"argocd\",dest_server=\"a\",le=\"0.25\"} 3
argocd_app_reconcile_sum{namespace=\"argocd\",dest_server=\"a\"} 0.5
argocd_app_reconcile_count{namespace=\"argocd\",dest_server=\"a\"} 7
argocd_app_reconcile_count{namespace=\"argocd\",dest_server=\"b\"} 5
argocd_app_reconcile_count_other 100
";
        assert_eq!(reconcile_count(text), Some(12));
        assert_eq!(reconcile_count("argocd_app_info{name=\"x\"} 1\n"), None);
    }
}
