//! The `failover` scenario: kill -9 of the leader or a follower during churn, repeated.
//!
//! Once every app is Synced and Healthy a background churn starts (`--rate` commits/s, each
//! changing `--churn-apps` apps, delivered by webhook to the running nodes in turn). Then,
//! `--kills` times: it reads the shard map (`flotilla shard list --per-shard`) and the
//! leader (`flotilla member list`), kills the chosen node with SIGKILL, and right away
//! pushes (to a surviving node) a change to up to `--probe-apps` apps the dead node owned.
//! `failover_s` is the time from the kill until every one of those changes is seen in its
//! destination cluster: the dead node's apps reconciling elsewhere. The killed node is then
//! restarted on its data directory and the next kill waits until it owns shards again.
//!
//! Lost acknowledged writes: before each kill every app's status is exported from a
//! surviving node (`flotilla admin export`); after the failover each must still be there,
//! with `reconciledAt` and its last operation's time (`operationState.finishedAt`, or
//! `startedAt` of an operation still running) no older than before.
//! Concurrent operations: from the nodes' JSON logs, syncs of one app that began while
//! another sync of it was running (on any node; a sync cut short by the kill ends there).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use flotilla_loadtest::cluster::logs::{self, now_ms};
use rustix::process::Signal;
use serde_json::{json, Value};

use super::changes::{self, quantile, Changes, Tag};
use super::common::{self, CommonArgs};
use super::world::{round1, World, NAMESPACE};

/// How often pending changes are polled while timing a failover.
const POLL: Duration = Duration::from_millis(100);
/// Load before each kill.
const WARM_UP: Duration = Duration::from_secs(2);
/// How long a restarted node may take to own shards again.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// A map unchanged this long after a restart counts as settled.
const SETTLED: Duration = Duration::from_secs(3);
/// Lost writes and overlaps listed in the JSON.
const SHOWN: usize = 20;

/// Which node each kill hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The Raft leader.
    Leader,
    /// A follower.
    Follower,
    /// The leader first, then a follower, and so on.
    Alternate,
}

/// Arguments of `flotilla-loadtest failover`.
#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// The common scenario flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Kills to make.
    #[arg(long, default_value_t = 2)]
    pub kills: u32,
    /// Which node to kill.
    #[arg(long, value_enum, default_value_t = Target::Alternate)]
    pub target: Target,
    /// Churn commits per second while measuring.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Apps each churn commit changes.
    #[arg(long, default_value_t = 5)]
    pub churn_apps: usize,
    /// Apps of the killed node changed right after the kill and timed.
    #[arg(long, default_value_t = 20)]
    pub probe_apps: usize,
    /// Give up on one failover after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub failover_timeout: u64,
}

/// Make the nodes started by this process log their syncs (needed for the overlap check):
/// adds [`logs::SYNC_LOG_DIRECTIVE`] to `RUST_LOG`. Call before any thread is started.
pub fn log_syncs_in_nodes() {
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    std::env::set_var("RUST_LOG", format!("{base},{}", logs::SYNC_LOG_DIRECTIVE));
}

/// Node flags of the scenarios that read the sync log lines.
pub fn json_log_flags() -> Vec<String> {
    vec!["--log-format".into(), "json".into()]
}

/// Run the scenario, print the summary and write the JSON.
pub async fn run(args: FailoverArgs) -> anyhow::Result<()> {
    if args.kills == 0 {
        bail!("--kills must be at least 1");
    }
    if args.common.nodes < 2 {
        bail!("--nodes must be at least 2 for a failover");
    }
    let mut world = World::start(&args.common, "failover", &json_log_flags()).await?;
    let result = measure(&mut world, &args).await;
    world.shutdown(result.is_err()).await;
    let doc = result?;
    if let Some(path) = &args.common.json {
        common::write_json(path, &doc)?;
        println!("results written to {}", path.display());
    }
    if doc["complete"] != json!(true) {
        bail!("the failover could not be measured completely (see the summary)");
    }
    Ok(())
}

/// The shard map as `flotilla shard list --per-shard` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    /// The owner of every shard (0 for none).
    pub owners: Vec<u64>,
    /// The apps in every shard.
    pub apps: Vec<u64>,
}

impl ShardMap {
    /// Read the map through the first running node.
    pub async fn read(world: &mut World) -> anyhow::Result<Self> {
        let api = world.api()?;
        let doc =
            common::cli_json(&world.flotilla, &api, &["shard", "list", "--per-shard"]).await?;
        Self::parse(&doc)
    }

    /// Parse the `-o json` document.
    pub fn parse(doc: &Value) -> anyhow::Result<Self> {
        let shards = doc["shards"]
            .as_array()
            .context("`flotilla shard list --per-shard` printed no shards")?;
        let mut map = Self {
            owners: vec![0; shards.len()],
            apps: vec![0; shards.len()],
        };
        for s in shards {
            let i = s["shard"].as_u64().context("a shard without its number")? as usize;
            if i >= shards.len() {
                bail!("shard {i} out of range (the map lists {})", shards.len());
            }
            map.owners[i] = s["owner"].as_u64().unwrap_or(0);
            map.apps[i] = s["apps"].as_u64().unwrap_or(0);
        }
        Ok(map)
    }

    /// Fail unless `app_shard` (from [`app_shards`]) puts as many apps in every shard as the
    /// map counts: a check that the apps' keys are hashed as the nodes hash them.
    pub fn check_apps(&self, app_shard: &[usize]) -> anyhow::Result<()> {
        let mut counts = vec![0u64; self.apps.len()];
        for &s in app_shard {
            counts[s] += 1;
        }
        if counts != self.apps {
            let i = (0..counts.len())
                .find(|&i| counts[i] != self.apps[i])
                .unwrap_or(0);
            bail!(
                "the apps' keys do not hash to the shards the map reports (shard {i}: {} computed, {} in the map)",
                counts[i],
                self.apps[i]
            );
        }
        Ok(())
    }
}

/// The shard of every app `0..apps` in a map of `shards` shards.
pub fn app_shards(apps: usize, shards: usize) -> Vec<usize> {
    (0..apps)
        .map(|i| flotilla_shard::shard_of(&format!("{NAMESPACE}/app-{i}"), shards as u32) as usize)
        .collect()
}

/// The leader, as the first running node sees it.
async fn leader(world: &mut World) -> anyhow::Result<u64> {
    let api = world.api()?;
    let doc = common::cli_json(&world.flotilla, &api, &["member", "list"]).await?;
    doc["leader"]
        .as_u64()
        .filter(|&l| l != 0)
        .context("no leader in `flotilla member list`")
}

/// The running nodes other than `down`.
fn alive(world: &World, down: Option<u64>) -> Vec<u64> {
    world
        .pids()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|&id| Some(id) != down)
        .collect()
}

/// `(reconciledAt, operation time)` of every app's status, via node `via`; the operation
/// time is `operationState.finishedAt`, or its `startedAt` while it runs.
async fn statuses(world: &World, via: u64) -> anyhow::Result<BTreeMap<String, (Value, Value)>> {
    let api = world.nodes.node(via)?.api.clone();
    let doc = common::cli_json(&world.flotilla, &api, &["admin", "export"]).await?;
    let mut out = BTreeMap::new();
    for s in doc["statuses"].as_array().into_iter().flatten() {
        if let Some(app) = s["app"].as_str() {
            let st = &s["status"];
            out.insert(
                app.to_owned(),
                (
                    st["reconciledAt"].clone(),
                    operation_time(&st["operationState"]),
                ),
            );
        }
    }
    Ok(out)
}

/// When the last operation finished, or started when it still runs.
fn operation_time(op: &Value) -> Value {
    match &op["finishedAt"] {
        Value::Null => op["startedAt"].clone(),
        at => at.clone(),
    }
}

/// Whether timestamp `after` is older than `before` (absent counts as oldest).
fn went_back(before: &Value, after: &Value) -> bool {
    let ms = |v: &Value| {
        v.as_str()
            .map(|s| logs::parse_rfc3339_ms(s).ok_or(s.to_owned()))
    };
    match (ms(before), ms(after)) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(Ok(b)), Some(Ok(a))) => a < b,
        (Some(b), Some(a)) => {
            let text = |x: Result<i64, String>| x.map_or_else(|s| s, |v| v.to_string());
            text(a) < text(b)
        }
    }
}

/// Statuses of `before` missing from `after` or older there.
fn lost_writes(
    before: &BTreeMap<String, (Value, Value)>,
    after: &BTreeMap<String, (Value, Value)>,
) -> Vec<String> {
    let mut lost = Vec::new();
    for (app, (rec_b, fin_b)) in before {
        match after.get(app) {
            None => lost.push(format!("{app}: status missing")),
            Some((rec_a, fin_a)) => {
                if went_back(rec_b, rec_a) {
                    lost.push(format!("{app}: reconciledAt {rec_b} then {rec_a}"));
                } else if went_back(fin_b, fin_a) {
                    lost.push(format!(
                        "{app}: operationState.finishedAt {fin_b} then {fin_a}"
                    ));
                }
            }
        }
    }
    lost
}

/// Churn and poll for `d`, failing when a node other than `down` exits.
pub async fn load_for(
    world: &mut World,
    ch: &mut Changes,
    down: Option<u64>,
    d: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        let t = Instant::now();
        world.check_running(down.as_slice())?;
        let via = alive(world, down);
        ch.churn(world, &via).await;
        ch.poll().await;
        tokio::time::sleep(POLL.saturating_sub(t.elapsed())).await;
    }
    Ok(())
}

/// Churn (through the other nodes) until the restarted node `id` runs, every node owns
/// shards, no shard lacks an owner and the map has not changed for [`SETTLED`].
async fn wait_rejoined(world: &mut World, ch: &mut Changes, id: u64) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let want = world.nodes.nodes().len();
    let mut last: Vec<u64> = Vec::new();
    let mut since = Instant::now();
    loop {
        load_for(world, ch, Some(id), Duration::from_millis(500)).await?;
        if !world.nodes.is_running(id) {
            bail!(
                "node {id} exited after its restart; see {}",
                world.nodes.log_file(id).display()
            );
        }
        if let Ok(ShardMap { owners, .. }) = ShardMap::read(world).await {
            if owners != last {
                last = owners;
                since = Instant::now();
            }
            let mut holders: Vec<u64> = last.iter().copied().filter(|&o| o != 0).collect();
            holders.sort_unstable();
            holders.dedup();
            if holders.len() >= want && !last.contains(&0) && since.elapsed() >= SETTLED {
                return Ok(since.duration_since(t0).as_secs_f64());
            }
        }
        if t0.elapsed() >= REJOIN_TIMEOUT {
            bail!(
                "node {id} did not own shards again in a settled map within {} s",
                REJOIN_TIMEOUT.as_secs()
            );
        }
    }
}

/// Stop the nodes and count syncs of one app that overlapped in their logs.
pub async fn overlaps(
    world: &mut World,
    ended_at: &mut Vec<(u64, i64)>,
) -> anyhow::Result<Vec<String>> {
    world
        .nodes
        .stop_all(Signal::INT, Duration::from_secs(15))
        .await;
    let stopped = now_ms();
    let files: Vec<(u64, std::path::PathBuf)> = world
        .nodes
        .nodes()
        .iter()
        .map(|n| (n.id, world.nodes.log_file(n.id)))
        .collect();
    for (id, _) in &files {
        ended_at.push((*id, stopped));
    }
    let intervals = logs::read_sync_intervals(&files)?;
    if intervals.is_empty() {
        bail!("the node logs have no sync lines (are they JSON with the sync module at info?)");
    }
    Ok(logs::overlapping_syncs(&intervals, ended_at)
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// One kill and its failover.
struct Kill {
    victim: u64,
    was_leader: bool,
    failover_s: Option<f64>,
    probe_apps: usize,
    lost: Vec<String>,
    rejoin_s: Option<f64>,
}

async fn measure(world: &mut World, args: &FailoverArgs) -> anyhow::Result<Value> {
    let a = world.args.clone();
    let wait = world.deploy_all().await?;
    let mut ch = Changes::new(world, args.rate, args.churn_apps).await?;
    let mut kills: Vec<Kill> = Vec::new();
    let mut ended_at: Vec<(u64, i64)> = Vec::new();
    let mut app_shard: Option<Vec<usize>> = None;
    for k in 0..args.kills {
        load_for(world, &mut ch, None, WARM_UP).await?;
        let leader = leader(world).await?;
        let want_leader = match args.target {
            Target::Leader => true,
            Target::Follower => false,
            Target::Alternate => k % 2 == 0,
        };
        let map = ShardMap::read(world).await?;
        if app_shard.is_none() {
            let computed = app_shards(a.apps, map.owners.len());
            map.check_apps(&computed)?;
            app_shard = Some(computed);
        }
        let shards = app_shard.as_deref().unwrap_or_default();
        let owned_by = |node: u64| -> Vec<usize> {
            (0..a.apps)
                .filter(|&i| map.owners.get(shards[i]) == Some(&node))
                .collect()
        };
        // The follower with the most apps, so there is something to fail over.
        let victim = if want_leader {
            leader
        } else {
            alive(world, Some(leader))
                .into_iter()
                .max_by_key(|&n| owned_by(n).len())
                .context("no follower to kill")?
        };
        let survivor = *alive(world, Some(victim))
            .first()
            .context("no node would survive")?;
        let owned = owned_by(victim);
        let step = (owned.len() / args.probe_apps.max(1)).max(1);
        let probe: Vec<usize> = owned
            .iter()
            .step_by(step)
            .take(args.probe_apps)
            .copied()
            .collect();
        let before = statuses(world, survivor).await?;
        println!(
            "  kill {}: node {victim} ({}), owner of {} apps; timing {} of them",
            k + 1,
            if victim == leader {
                "leader"
            } else {
                "follower"
            },
            owned.len(),
            probe.len()
        );

        let killed = Instant::now();
        ended_at.push((victim, now_ms()));
        world.nodes.kill(victim).await?;
        let tag = Tag::Probe(k);
        if !probe.is_empty() {
            ch.push(world, &probe, survivor, tag).await?;
        }
        let deadline = killed + Duration::from_secs(args.failover_timeout);
        while ch.pending_with(tag) > 0 && Instant::now() < deadline {
            load_for(world, &mut ch, Some(victim), POLL).await?;
        }
        let failover_s = if ch.pending_with(tag) == 0 {
            ch.applied
                .iter()
                .filter(|x| x.tag == tag)
                .map(|x| x.applied.duration_since(killed).as_secs_f64())
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        } else {
            None
        };
        match failover_s {
            Some(s) => {
                println!("    the dead node's apps reconciled elsewhere {s:.2} s after the kill")
            }
            None => println!(
                "    {} of the dead node's apps not reconciled {} s after the kill",
                ch.pending_with(tag),
                args.failover_timeout
            ),
        }
        let after = statuses(world, survivor).await?;
        let lost = lost_writes(&before, &after);
        world.nodes.start(victim)?;
        let rejoin_s = match wait_rejoined(world, &mut ch, victim).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("  {e:#}");
                None
            }
        };
        println!(
            "    node {victim} restarted; owns shards again after {}",
            rejoin_s.map_or("(timed out)".to_string(), |s| format!("{s:.1} s"))
        );
        kills.push(Kill {
            victim,
            was_leader: victim == leader,
            failover_s,
            probe_apps: probe.len(),
            lost,
            rejoin_s,
        });
        if rejoin_s.is_none() {
            break;
        }
    }
    ch.stop_churn();
    ch.drain(Duration::from_secs(30), POLL).await;
    let overlaps = overlaps(world, &mut ended_at).await?;

    let samples: Vec<f64> = kills.iter().filter_map(|k| k.failover_s).collect();
    let lost: Vec<String> = kills.iter().flat_map(|k| k.lost.clone()).collect();
    let churn_ms = changes::churn_samples_ms(&ch.applied);
    let complete = kills.len() == args.kills as usize
        && samples.len() == kills.len()
        && kills
            .iter()
            .all(|k| k.rejoin_s.is_some() && k.probe_apps > 0);
    let doc = json!({
        "scenario": "failover",
        "complete": complete,
        "apps": a.apps,
        "clusters": a.clusters,
        "nodes": a.nodes,
        "resources_per_app": a.resources_per_app,
        "workers": a.workers,
        "target": format!("{:?}", args.target).to_lowercase(),
        "kills": kills.len(),
        "failover_p50_s": quantile(&samples, 0.5).map(round2),
        "failover_max_s": quantile(&samples, 1.0).map(round2),
        "samples_s": samples.iter().copied().map(round2).collect::<Vec<_>>(),
        "samples_ms": samples.iter().map(|s| (s * 10_000.0).round() / 10.0).collect::<Vec<_>>(),
        "lost_acknowledged_writes": lost.len(),
        "lost_examples": lost.iter().take(SHOWN).collect::<Vec<_>>(),
        "concurrent_operations": overlaps.len(),
        "concurrent_examples": overlaps.iter().take(SHOWN).collect::<Vec<_>>(),
        "per_kill": kills.iter().map(|k| json!({
            "node": k.victim,
            "leader": k.was_leader,
            "failover_s": k.failover_s.map(round2),
            "probe_apps": k.probe_apps,
            "lost_acknowledged_writes": k.lost.len(),
            "seconds_to_rejoin": k.rejoin_s.map(round1),
        })).collect::<Vec<_>>(),
        "churn_rate": args.rate,
        "churn_apps": args.churn_apps,
        "churn_commits": ch.churn_commits,
        "churn_push_failures": ch.push_failures,
        "churn_unapplied": ch.pending(),
        "churn_p50_ms": quantile(&churn_ms, 0.5),
        "churn_p99_ms": quantile(&churn_ms, 0.99),
        "churn_max_ms": quantile(&churn_ms, 1.0),
        "churn_samples_ms": churn_ms,
        "seconds_to_healthy": wait.seconds_to_healthy.map(round1),
        "machine": common::machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    print_summary(&doc);
    Ok(doc)
}

/// Round to two decimals.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn print_summary(doc: &Value) {
    let show = |v: &Value| match v {
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    println!();
    println!(
        "failover: {} apps, {} clusters, {} nodes, {} kills ({})",
        doc["apps"],
        doc["clusters"],
        doc["nodes"],
        doc["kills"],
        show(&doc["target"])
    );
    println!(
        "  failover p50 s               {}",
        show(&doc["failover_p50_s"])
    );
    println!(
        "  failover max s               {}   (target ≤ 5)",
        show(&doc["failover_max_s"])
    );
    println!(
        "  lost acknowledged writes     {}   (target 0)",
        show(&doc["lost_acknowledged_writes"])
    );
    println!(
        "  concurrent operations        {}   (target 0)",
        show(&doc["concurrent_operations"])
    );
    println!(
        "  churn commits / p99 ms       {} / {}",
        show(&doc["churn_commits"]),
        show(&doc["churn_p99_ms"])
    );
    for k in doc["per_kill"].as_array().into_iter().flatten() {
        println!(
            "  node {:<3} leader={:<5} failover {} s, rejoined after {} s",
            show(&k["node"]),
            show(&k["leader"]),
            show(&k["failover_s"]),
            show(&k["seconds_to_rejoin"])
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(rec: &str, fin: Option<&str>) -> (Value, Value) {
        (json!(rec), fin.map_or(Value::Null, |f| json!(f)))
    }

    #[test]
    fn a_missing_or_older_status_is_a_lost_write() {
        let before: BTreeMap<String, (Value, Value)> = [
            (
                "a".to_string(),
                st("2026-01-01T00:00:02Z", Some("2026-01-01T00:00:01Z")),
            ),
            ("b".to_string(), st("2026-01-01T00:00:02Z", None)),
            (
                "c".to_string(),
                st("2026-01-01T00:00:02Z", Some("2026-01-01T00:00:01Z")),
            ),
            ("d".to_string(), st("2026-01-01T00:00:02Z", None)),
        ]
        .into();
        let after: BTreeMap<String, (Value, Value)> = [
            // Newer: fine.
            (
                "a".to_string(),
                st("2026-01-01T00:00:03Z", Some("2026-01-01T00:00:03Z")),
            ),
            // Older reconciledAt.
            ("b".to_string(), st("2026-01-01T00:00:01.5Z", None)),
            // finishedAt gone.
            ("c".to_string(), st("2026-01-01T00:00:02Z", None)),
            // d missing
        ]
        .into();
        let lost = lost_writes(&before, &after);
        assert_eq!(lost.len(), 3, "{lost:?}");
        assert!(lost[0].starts_with("b:"));
        assert!(lost[1].starts_with("c:"));
        assert!(lost[2].starts_with("d: status missing"));
    }

    #[test]
    fn a_newer_running_operation_replaces_a_finished_one() {
        let done =
            json!({"startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:02Z"});
        let running = json!({"startedAt": "2026-01-01T00:00:03Z"});
        let stale = json!({"startedAt": "2026-01-01T00:00:00Z"});
        assert!(!went_back(
            &operation_time(&done),
            &operation_time(&running)
        ));
        assert!(went_back(&operation_time(&done), &operation_time(&stale)));
        assert!(!went_back(&Value::Null, &operation_time(&stale)));
    }

    #[test]
    fn parses_the_per_shard_map_and_checks_the_app_hash() {
        let doc = json!({"shards": [
            {"shard": 1, "owner": 2, "apps": 1},
            {"shard": 0, "owner": 1, "apps": 0},
        ]});
        let map = ShardMap::parse(&doc).expect("parse");
        assert_eq!(map.owners, vec![1, 2]);
        assert_eq!(map.apps, vec![0, 1]);
        assert!(map.check_apps(&[1]).is_ok());
        assert!(map.check_apps(&[0]).is_err());
        assert!(ShardMap::parse(&json!({"shards": [{"shard": 5, "owner": 1}]})).is_err());
    }

    #[test]
    fn app_shards_are_in_range_and_stable() {
        let s = app_shards(50, 4096);
        assert!(s.iter().all(|&x| x < 4096));
        assert_eq!(s, app_shards(50, 4096));
    }
}
