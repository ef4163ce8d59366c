//! The `drift` scenario: live objects changed behind flotilla's back; measures the time
//! until each is healed back to what Git says.
//!
//! It starts a [`World`], applies the apps and waits until all are Synced and Healthy, then
//! starts an [`Observer`] (one watch per cluster). Mutation `k` (made at `k / rate`
//! seconds) patches `data.generation` of app `k mod A`'s first ConfigMap directly in its
//! cluster (a JSON merge patch with its own field manager), as someone with `kubectl edit`
//! would. The fixture's Applications have `syncPolicy.automated.selfHeal: true`. A mutation
//! is measured from the moment the patch request is sent to the moment the observer's watch
//! delivers the object with its Git data again (after having seen it differ).
//!
//! The nodes run with `--resync-seconds 600` (the scenarios' default), so a heal measured in
//! seconds comes from flotilla's watch of the destination clusters (its live-state cache
//! announces changed managed objects and the app is reconciled after a short debounce),
//! not from the periodic resync; `resync_seconds` is in the JSON to make that checkable.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};

use super::common::{self, CommonArgs};
use super::observe::{self, ms_between, round_ms, Data, Latencies, Observer};
use super::world::{round1, World};

/// The field manager of the mutations.
const MANAGER: &str = "flotilla-loadtest-drift";
/// `--resync-seconds` of the nodes (the scenarios' default, stated in the JSON).
const RESYNC_SECONDS: u64 = 600;

/// Arguments of `flotilla-loadtest drift`.
#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    /// The common scenario flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Live objects to change.
    #[arg(long, default_value_t = 20)]
    pub mutations: usize,
    /// Mutations per second.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Seconds a mutation may stay unhealed before it counts as missed.
    #[arg(long, default_value_t = 60)]
    pub heal_timeout: u64,
}

/// One mutation of one app's object.
struct Mutation {
    app: usize,
    expected: Data,
    sent: Instant,
}

/// Run the scenario, print the summary and write the JSON; fails when the apps did not sync
/// first, or when a mutation was not healed in time.
pub async fn run(args: DriftArgs) -> anyhow::Result<()> {
    if args.mutations == 0 {
        bail!("--mutations must be at least 1");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of mutations per second");
    }
    let a = &args.common;
    let extra = ["--resync-seconds".to_string(), RESYNC_SECONDS.to_string()];
    let mut world = World::start(a, "drift", &extra).await?;
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
    if doc["healed"] == json!(0) {
        bail!("no mutation was healed within {} s", args.heal_timeout);
    }
    if doc["complete"] != json!(true) {
        bail!(
            "{} of {} mutations were not healed within {} s",
            doc["missed"],
            doc["mutations"],
            args.heal_timeout
        );
    }
    Ok(())
}

async fn measure(world: &mut World, args: &DriftArgs) -> anyhow::Result<Value> {
    let a = world.args.clone();
    let wait = world.deploy_all().await?;
    let observer = Observer::start(world.fleet.clusters(), a.apps).await?;
    observer.ready(Duration::from_secs(120)).await?;
    let mut clients = Vec::with_capacity(a.clusters);
    for c in world.fleet.clusters() {
        clients.push(observe::client_for(c).await?);
    }

    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut mutations = Vec::with_capacity(args.mutations);
    let mut baseline: HashMap<usize, Data> = HashMap::new();
    let start = Instant::now();
    let mut last_print = Instant::now();
    println!("  drift: {} mutations at {}/s", args.mutations, args.rate);
    for k in 0..args.mutations {
        tokio::time::sleep_until((start + period * k as u32).into()).await;
        let app = k % a.apps;
        // Synced and Healthy with no commit since: what the cluster shows before an app's
        // first mutation is what Git says (generation 0, see the fixture).
        let expected = match baseline.get(&app) {
            Some(d) => d.clone(),
            None => {
                let d = observer
                    .latest(app)
                    .map(|d| (*d).clone())
                    .with_context(|| format!("app {app} has no first ConfigMap in its cluster"))?;
                if d.get("generation").map(String::as_str) != Some("0") {
                    bail!("app {app} does not show Git's data before its mutation: {d:?}");
                }
                baseline.insert(app, d.clone());
                d
            }
        };
        let api: kube::Api<ConfigMap> =
            kube::Api::namespaced(clients[app % a.clusters].clone(), &format!("app-{app}"));
        let sent = Instant::now();
        api.patch(
            &format!("app-{app}-cm-0"),
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"data": {"generation": format!("drift-{k}")}})),
        )
        .await
        .with_context(|| format!("change app {app}'s ConfigMap in sim-{}", app % a.clusters))?;
        mutations.push(Mutation {
            app,
            expected,
            sent,
        });
        if last_print.elapsed() >= Duration::from_secs(5) {
            let healed = mutations
                .iter()
                .filter(|m| observer.restored_seen(m.app, m.sent, &m.expected).is_some())
                .count();
            println!(
                "  {:>6.1} s: {} mutations made, {healed} healed",
                start.elapsed().as_secs_f64(),
                k + 1
            );
            last_print = Instant::now();
        }
    }
    world.check_running(&[])?;

    let timeout = Duration::from_secs(args.heal_timeout);
    let mut samples = Vec::with_capacity(mutations.len());
    let mut missed = Vec::new();
    for m in &mutations {
        match observer
            .wait_restored(m.app, m.sent, &m.expected, m.sent + timeout)
            .await
        {
            Some(at) if at <= m.sent + timeout => samples.push(ms_between(m.sent, at)),
            _ => missed.push(m.app),
        }
    }
    world.check_running(&[])?;
    let lat = Latencies::new(samples);
    let obs = observer.stats();
    let doc = json!({
        "scenario": "drift",
        "complete": missed.is_empty(),
        "apps": a.apps,
        "clusters": a.clusters,
        "nodes": a.nodes,
        "resources_per_app": a.resources_per_app,
        "workers": a.workers,
        "mutations": mutations.len(),
        "rate": args.rate,
        "healed": lat.len(),
        "missed": missed.len(),
        "missed_apps": missed.iter().take(20).collect::<Vec<_>>(),
        "heal_timeout_s": args.heal_timeout,
        "resync_seconds": RESYNC_SECONDS,
        "heal_p50_ms": lat.percentile(50.0).map(round_ms),
        "heal_p90_ms": lat.percentile(90.0).map(round_ms),
        "heal_p99_ms": lat.percentile(99.0).map(round_ms),
        "heal_max_ms": lat.max().map(round_ms),
        "heal_mean_ms": lat.mean().map(round_ms),
        "samples_ms": lat.samples_json(),
        "seconds_to_synced": wait.seconds_to_healthy.map(round1),
        "observer_events": obs.events,
        "observer_errors": obs.errors,
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
        "drift: {} apps, {} clusters, {} nodes; {} mutations at {}/s; resync every {} s",
        doc["apps"],
        doc["clusters"],
        doc["nodes"],
        doc["mutations"],
        doc["rate"],
        doc["resync_seconds"]
    );
    println!("  {:<28} {:>10}   TARGET", "MUTATION TO HEALED", "VALUE");
    for (label, key, target) in [
        ("healed", "healed", ""),
        ("missed", "missed", "0"),
        ("heal p50 ms", "heal_p50_ms", ""),
        ("heal p90 ms", "heal_p90_ms", ""),
        (
            "heal p99 ms",
            "heal_p99_ms",
            "(none set; resync would be 600 s)",
        ),
        ("heal max ms", "heal_max_ms", ""),
    ] {
        println!("  {label:<28} {:>10}   {target}", show(&doc[key]));
    }
    println!();
}
