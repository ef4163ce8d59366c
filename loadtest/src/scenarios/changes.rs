//! Changes pushed while a scenario measures something else, and how long each took to reach
//! its cluster: the background churn of the `failover` and `scale-out` scenarios and the
//! targeted pushes they time.
//!
//! Every change is a commit that bumps the `generation` of some apps' first ConfigMap,
//! delivered by webhook to a running node (as [`World::push_change`] does). [`Changes::poll`] reads
//! only the ConfigMaps of apps with a change still pending (bounded concurrency), so the
//! cost follows the number of changes in flight, not the number of apps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use flotilla_loadtest::cluster::kube_client;
use flotilla_loadtest::git::webhook::{self, PushEvent, WebhookProvider};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;

use super::world::{World, WEBHOOK_SECRET};

/// ConfigMap reads in flight at once.
const POLL_CONCURRENCY: usize = 32;
/// Churn commits pushed at most per call of [`Changes::churn`] (when it falls behind).
const CATCH_UP: usize = 5;

/// What a change was pushed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    /// The background churn.
    Churn,
    /// A timed change, numbered by the scenario.
    Probe(u32),
}

/// A change that reached its cluster.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// The app.
    pub app: usize,
    /// Why it was pushed.
    pub tag: Tag,
    /// When the webhook was sent.
    pub pushed: Instant,
    /// When its ConfigMap was first seen with the change.
    pub applied: Instant,
}

impl Applied {
    /// Seconds from the push to the change seen in the cluster.
    pub fn latency_s(&self) -> f64 {
        self.applied.duration_since(self.pushed).as_secs_f64()
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    app: usize,
    generation: u64,
    tag: Tag,
    pushed: Instant,
}

/// The changes pushed so far, pending and applied.
pub struct Changes {
    generations: Vec<u64>,
    clients: Vec<kube::Client>,
    pending: Vec<Pending>,
    /// Changes seen in their cluster, in the order they were seen.
    pub applied: Vec<Applied>,
    /// Webhook deliveries that failed or were refused.
    pub push_failures: u64,
    /// Churn commits pushed.
    pub churn_commits: u64,
    rate: f64,
    per_commit: usize,
    next_due: Option<Instant>,
    rng: u64,
    via_turn: usize,
}

impl Changes {
    /// Clients for every cluster of `world`; churn of `rate` commits/s (0 for none) changing
    /// `per_commit` apps each.
    pub async fn new(world: &World, rate: f64, per_commit: usize) -> anyhow::Result<Self> {
        let dir = world.dir().join("clusters");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut clients = Vec::new();
        for (i, c) in world.fleet.clusters().iter().enumerate() {
            let path = dir.join(format!("sim-{i}.kubeconfig"));
            std::fs::write(&path, c.kubeconfig()?)
                .with_context(|| format!("write {}", path.display()))?;
            clients.push(kube_client(&path).await?);
        }
        Ok(Self {
            generations: vec![0; world.args.apps],
            clients,
            pending: Vec::new(),
            applied: Vec::new(),
            push_failures: 0,
            churn_commits: 0,
            rate,
            per_commit: per_commit.clamp(1, world.args.apps),
            next_due: None,
            rng: 0x9e37_79b9_7f4a_7c15,
            via_turn: 0,
        })
    }

    /// Commit a change to `apps` and deliver it to node `via`'s webhook endpoint as GitHub
    /// would; returns when the webhook was sent.
    pub async fn push(
        &mut self,
        world: &mut World,
        apps: &[usize],
        via: u64,
        tag: Tag,
    ) -> anyhow::Result<Instant> {
        let commit = world
            .fixture
            .commit_change(apps, "loadtest change")
            .context("commit a change")?;
        for &a in apps {
            self.generations[a] += 1;
        }
        let ev = PushEvent::new(
            &world.git.url_for("apps.git"),
            "main",
            &commit.parent,
            &commit.id,
            commit.modified.clone(),
        );
        let req = webhook::build(WebhookProvider::GitHub, &ev, Some(WEBHOOK_SECRET));
        let url = format!("http://{}/api/webhook", world.nodes.node(via)?.http);
        let pushed = Instant::now();
        let status = match webhook::send(&url, &req).await {
            Ok(s) => s,
            Err(e) => {
                self.push_failures += 1;
                return Err(anyhow::Error::new(e).context(format!("deliver the push to {url}")));
            }
        };
        if !(200..300).contains(&status) {
            self.push_failures += 1;
            anyhow::bail!("node {via}'s webhook answered {status}");
        }
        for &app in apps {
            self.pending.push(Pending {
                app,
                generation: self.generations[app],
                tag,
                pushed,
            });
        }
        Ok(pushed)
    }

    /// Push the churn commits that are due, through the nodes in `via` in turn.
    pub async fn churn(&mut self, world: &mut World, via: &[u64]) {
        if self.rate <= 0.0 || via.is_empty() {
            return;
        }
        let period = Duration::from_secs_f64(1.0 / self.rate);
        let now = Instant::now();
        let mut due = *self.next_due.get_or_insert(now);
        let mut pushed = 0;
        while due <= now && pushed < CATCH_UP {
            let apps = self.pick(world.args.apps);
            let node = via[self.via_turn % via.len()];
            self.via_turn += 1;
            match self.push(world, &apps, node, Tag::Churn).await {
                Ok(_) => self.churn_commits += 1,
                Err(e) => eprintln!("  churn push: {e:#}"),
            }
            due += period;
            pushed += 1;
        }
        // Falling behind by more than the catch-up skips ahead rather than bursting.
        self.next_due = Some(if due <= now { now + period } else { due });
    }

    /// `per_commit` distinct pseudo-random apps.
    fn pick(&mut self, apps: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(self.per_commit);
        while out.len() < self.per_commit.min(apps) {
            // xorshift64
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let a = (self.rng % apps as u64) as usize;
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// Read the ConfigMap of every app with a pending change once; changes seen are moved to
    /// [`Changes::applied`].
    pub async fn poll(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut wanted: BTreeMap<usize, ()> = BTreeMap::new();
        for p in &self.pending {
            wanted.insert(p.app, ());
        }
        let clients = &self.clients;
        let seen: BTreeMap<usize, (u64, Instant)> = futures::stream::iter(wanted.into_keys())
            .map(|app| async move {
                let client = clients[app % clients.len()].clone();
                let api: kube::Api<ConfigMap> =
                    kube::Api::namespaced(client, &format!("app-{app}"));
                let got = api.get_opt(&format!("app-{app}-cm-0")).await;
                let at = Instant::now();
                let generation = got.ok().flatten().and_then(|cm| {
                    cm.data?
                        .get("generation")
                        .and_then(|g| g.parse::<u64>().ok())
                });
                generation.map(|g| (app, (g, at)))
            })
            .buffer_unordered(POLL_CONCURRENCY)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        let mut still = Vec::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            match seen.get(&p.app) {
                Some(&(g, at)) if g >= p.generation => self.applied.push(Applied {
                    app: p.app,
                    tag: p.tag,
                    pushed: p.pushed,
                    applied: at,
                }),
                _ => still.push(p),
            }
        }
        self.pending = still;
    }

    /// Changes with `tag` not yet seen in their cluster.
    pub fn pending_with(&self, tag: Tag) -> usize {
        self.pending.iter().filter(|p| p.tag == tag).count()
    }

    /// Changes not yet seen in their cluster.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Changes pushed in `[from, until]` that are still pending.
    pub fn pending_between(&self, from: Instant, until: Instant) -> usize {
        self.pending
            .iter()
            .filter(|p| p.pushed >= from && p.pushed <= until)
            .count()
    }

    /// Stop the churn; pending changes are still polled.
    pub fn stop_churn(&mut self) {
        self.rate = 0.0;
    }

    /// Churn and poll until no change is pending or `timeout` passes (one poll per
    /// `interval` at most).
    pub async fn drain(&mut self, timeout: Duration, interval: Duration) {
        let deadline = Instant::now() + timeout;
        while self.pending() > 0 && Instant::now() < deadline {
            let t = Instant::now();
            self.poll().await;
            tokio::time::sleep(interval.saturating_sub(t.elapsed())).await;
        }
    }
}

/// Push-to-applied latencies (ms, rounded to 0.1) of churn changes, in the order applied.
pub fn churn_samples_ms(applied: &[Applied]) -> Vec<f64> {
    applied
        .iter()
        .filter(|a| a.tag == Tag::Churn)
        .map(|a| (a.latency_s() * 10_000.0).round() / 10.0)
        .collect()
}

/// The `q` quantile (0..=1, nearest rank) of `v`.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 1.0), Some(5.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
