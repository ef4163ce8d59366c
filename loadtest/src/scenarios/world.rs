//! The running system every scenario measures: C simulated clusters in this process
//! (`sim-0` is also the management cluster), a Git server with a generated repository of A
//! apps, cluster Secrets for every cluster, and N `flotilla node` processes that have
//! formed their group and hold the shard map.
//!
//! A scenario starts a [`World`], applies the apps ([`World::apply_apps`]), usually waits
//! for them ([`World::wait_synced`]), does its own measuring, and ends with
//! [`World::shutdown`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use flotilla_loadtest::cluster::launcher::{LocalCluster, NodeAddrs};
use flotilla_loadtest::cluster::{kube_client, setup};
use flotilla_loadtest::git::webhook::{self, PushEvent, WebhookProvider};
use flotilla_loadtest::git::{CommitOutcome, Fixture, FixtureSpec, GitServer, GitServerConfig};
use flotilla_loadtest::simcluster::{ControllerConfig, SimConfig, SimFleet};
use futures::StreamExt as _;
use rustix::process::Signal;
use serde_json::{json, Value};

use super::common::{self, CommonArgs, OutDir};

/// The namespace of the Application resources and Secrets.
pub const NAMESPACE: &str = "argocd";
/// The secret the nodes verify webhook pushes with.
pub const WEBHOOK_SECRET: &str = "loadtest-webhook-secret";
/// Application resources applied at once.
const APPLY_CONCURRENCY: usize = 32;
/// How often the Application list is read while waiting.
const POLL: Duration = Duration::from_millis(500);
/// Apps not yet Synced and Healthy listed in the result of an incomplete wait.
const STUCK_SHOWN: usize = 20;
/// How often a progress line is printed.
const PROGRESS: Duration = Duration::from_secs(5);
/// How long SIGINT/SIGTERM may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything a scenario runs against.
pub struct World {
    /// The scenario's flags.
    pub args: CommonArgs,
    /// The `flotilla` binary.
    pub flotilla: PathBuf,
    /// The working directory (removed on drop when temporary).
    pub out: OutDir,
    /// The Git server holding `apps.git`.
    pub git: GitServer,
    /// The generated repository.
    pub fixture: Fixture,
    /// The simulated clusters; `clusters()[0]` is the management cluster.
    pub fleet: SimFleet,
    /// A client of the management cluster.
    pub client: kube::Client,
    /// The node processes.
    pub nodes: LocalCluster,
    /// Flags every node was started with (for nodes added later).
    #[allow(dead_code)]
    pub node_flags: Vec<String>,
    /// Seconds from starting the nodes to a shard map over all of them.
    pub seconds_nodes_ready: f64,
}

/// What [`World::wait_synced`] saw.
#[derive(Debug, Clone, Default)]
pub struct SyncWait {
    /// `(seconds, synced, synced and healthy)` per read of the Application list.
    pub timeline: Vec<(f64, usize, usize)>,
    /// Seconds until every app was Synced.
    pub seconds_to_synced: Option<f64>,
    /// Seconds until every app was Synced and Healthy.
    pub seconds_to_healthy: Option<f64>,
    /// Some apps that were not Synced and Healthy at the end (when incomplete).
    pub stuck: Vec<Value>,
    /// Ctrl-C ended the wait.
    pub interrupted: bool,
}

impl SyncWait {
    /// The timeline as JSON rows `[seconds, synced, synced_and_healthy]`.
    pub fn timeline_json(&self) -> Value {
        Value::Array(
            self.timeline
                .iter()
                .map(|&(s, a, b)| json!([round1(s), a, b]))
                .collect(),
        )
    }
}

/// A change delivered by [`World::push_change`].
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Pushed {
    /// The commit.
    pub commit: CommitOutcome,
    /// When the webhook request was sent.
    pub pushed: Instant,
    /// The webhook's HTTP status code.
    pub status: u16,
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

impl World {
    /// Start the clusters, the Git server and the nodes, and wait for the group. `extra`
    /// flags are added to every node's command line (replacing a default of the same name).
    pub async fn start(
        args: &CommonArgs,
        scenario: &str,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        args.validate()?;
        let flotilla = args.flotilla_binary()?;
        let out = OutDir::create(args.out.as_deref(), scenario)?;
        let dir = out.path().to_path_buf();
        println!(
            "{scenario}: {} apps over {} clusters, {} resources each, {} nodes; working in {}",
            args.apps,
            args.clusters,
            args.resources_per_app,
            args.nodes,
            dir.display()
        );

        let git_root = dir.join("git");
        if git_root.exists() {
            std::fs::remove_dir_all(&git_root)
                .with_context(|| format!("remove the previous {}", git_root.display()))?;
        }
        std::fs::create_dir_all(&git_root)
            .with_context(|| format!("create {}", git_root.display()))?;
        let git = GitServer::start(&git_root, GitServerConfig::default())
            .await
            .context("start the Git server")?;
        let started = Instant::now();
        let fixture = Fixture::create(
            &git_root,
            "apps.git",
            FixtureSpec {
                apps: args.apps,
                clusters: args.clusters,
                resources_per_app: args.resources_per_app,
                repo_url: git.url_for("apps.git"),
                applications_namespace: NAMESPACE.into(),
                generate_paths: !args.no_generate_paths,
                ..FixtureSpec::default()
            },
        )
        .context("generate the Git repository")?;
        println!(
            "  repository of {} apps generated in {:.1} s",
            args.apps,
            started.elapsed().as_secs_f64()
        );

        let fleet = SimFleet::start(
            args.clusters,
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
        match Self::start_nodes(args, &flotilla, &dir, &fleet, extra).await {
            Ok((client, nodes, node_flags, seconds_nodes_ready)) => Ok(Self {
                args: args.clone(),
                flotilla,
                out,
                git,
                fixture,
                fleet,
                client,
                nodes,
                node_flags,
                seconds_nodes_ready,
            }),
            Err(e) => {
                fleet.shutdown().await;
                git.shutdown().await;
                Err(e)
            }
        }
    }

    /// Set up the management cluster, start the nodes (again on other ports when one exits
    /// while the group forms), and wait for the shard map.
    async fn start_nodes(
        a: &CommonArgs,
        flotilla: &Path,
        dir: &Path,
        fleet: &SimFleet,
        extra: &[String],
    ) -> anyhow::Result<(kube::Client, LocalCluster, Vec<String>, f64)> {
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
        let secret_file = dir.join("webhook-secret");
        std::fs::write(&secret_file, WEBHOOK_SECRET)
            .with_context(|| format!("write {}", secret_file.display()))?;

        let mut flags: Vec<String> = [
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--namespaces",
            NAMESPACE,
            "--webhook-secret-file",
            &secret_file.display().to_string(),
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
        // A flag given in `extra` replaces the default of the same name.
        let mut i = 0;
        while i + 1 < flags.len() {
            if extra.contains(&flags[i]) {
                flags.drain(i..i + 2);
            } else {
                i += 2;
            }
        }
        flags.extend(extra.iter().cloned());
        let nodes_dir = dir.join("nodes");
        let t_nodes = Instant::now();
        // Free ports are picked, released and then bound by the nodes; another process may
        // take one in between, so a node that exits while the group forms is retried with
        // new ports (twice at most).
        let mut attempt = 1;
        loop {
            if nodes_dir.exists() {
                std::fs::remove_dir_all(&nodes_dir)
                    .with_context(|| format!("remove the previous {}", nodes_dir.display()))?;
            }
            let addrs = (1..=a.nodes)
                .map(NodeAddrs::free)
                .collect::<Result<Vec<_>, _>>()?;
            let mut nodes =
                LocalCluster::new(flotilla.to_path_buf(), &nodes_dir, addrs, flags.clone());
            nodes.env(
                "RUST_LOG",
                &std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
            nodes.start_all()?;
            match wait_for_group(a.nodes, flotilla, &mut nodes).await {
                Ok(()) => {
                    let seconds = t_nodes.elapsed().as_secs_f64();
                    println!(
                        "  {} nodes hold the shard map after {seconds:.1} s",
                        a.nodes
                    );
                    return Ok((client, nodes, flags, seconds));
                }
                Err(e @ StartFailure::Exited { .. }) if attempt < 3 => {
                    eprintln!("  {e}; starting the nodes again on other ports");
                    nodes.stop_all(Signal::INT, STOP_TIMEOUT).await;
                    attempt += 1;
                }
                Err(e) => {
                    nodes.stop_all(Signal::INT, STOP_TIMEOUT).await;
                    return Err(e.into());
                }
            }
        }
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        self.out.path()
    }

    /// The API address of the first running node.
    pub fn api(&mut self) -> anyhow::Result<String> {
        for n in self.nodes.nodes().to_vec() {
            if self.nodes.is_running(n.id) {
                return Ok(n.api);
            }
        }
        anyhow::bail!("no node is running")
    }

    /// `(node id, pid)` of every running node.
    pub fn pids(&self) -> Vec<(u64, u32)> {
        self.nodes
            .nodes()
            .iter()
            .filter_map(|n| self.nodes.pid(n.id).map(|p| (n.id, p)))
            .collect()
    }

    /// Fail when a node that should run has exited.
    pub fn check_running(&mut self, expected_down: &[u64]) -> anyhow::Result<()> {
        for n in self.nodes.nodes().to_vec() {
            if !expected_down.contains(&n.id) && !self.nodes.is_running(n.id) {
                anyhow::bail!(
                    "node {} exited; see {}",
                    n.id,
                    self.nodes.log_file(n.id).display()
                );
            }
        }
        Ok(())
    }

    /// Apply the `Application` resources of apps `0..apps` (bounded concurrency); returns
    /// the seconds it took.
    pub async fn apply_apps(&self) -> anyhow::Result<f64> {
        let t0 = Instant::now();
        let manifests = (0..self.args.apps)
            .map(|i| {
                serde_yaml::from_str::<Value>(&self.fixture.application_yaml(i))
                    .with_context(|| format!("Application manifest of app {i}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let bar = common::progress_bar(self.args.apps as u64, "Applications applied");
        let mut applies = futures::stream::iter(manifests.iter())
            .map(|m| setup::apply(&self.client, m))
            .buffer_unordered(APPLY_CONCURRENCY);
        while let Some(r) = applies.next().await {
            r?;
            bar.inc(1);
        }
        drop(applies);
        bar.finish_and_clear();
        let seconds = t0.elapsed().as_secs_f64();
        println!(
            "  {} Applications applied in {seconds:.1} s",
            self.args.apps
        );
        Ok(seconds)
    }

    /// Poll the Application list until every app is Synced and Healthy, `timeout` passes
    /// or Ctrl-C; times are measured from `t0`. Fails only when a node exits.
    pub async fn wait_synced(
        &mut self,
        t0: Instant,
        timeout: Duration,
    ) -> anyhow::Result<SyncWait> {
        let apps_total = self.args.apps;
        let deadline = Instant::now() + timeout;
        let mut wait = SyncWait::default();
        let mut last_print = Instant::now();
        // A progress bar on a terminal; plain lines every few seconds otherwise.
        let bar = common::progress_bar(apps_total as u64, "synced and healthy");
        let mut tick = tokio::time::interval(POLL);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut ctrl_c => {
                    println!("  interrupted; stopping the nodes");
                    wait.interrupted = true;
                    break;
                }
            }
            self.check_running(&[])?;
            let apps = match setup::list_applications(&self.client, NAMESPACE).await {
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
            wait.stuck.clear();
            for app in &apps {
                let (s, h) = setup::sync_and_health(app);
                if s == "Synced" {
                    synced += 1;
                }
                if s == "Synced" && h == "Healthy" {
                    synced_healthy += 1;
                    continue;
                }
                if wait.stuck.len() < STUCK_SHOWN {
                    wait.stuck.push(json!({
                        "name": app["metadata"]["name"],
                        "sync": s,
                        "health": h,
                        "phase": app["status"]["operationState"]["phase"],
                        "message": app["status"]["operationState"]["message"],
                    }));
                }
            }
            wait.timeline.push((seconds, synced, synced_healthy));
            if wait.seconds_to_synced.is_none() && synced >= apps_total {
                wait.seconds_to_synced = Some(seconds);
            }
            if synced_healthy >= apps_total {
                wait.seconds_to_healthy = Some(seconds);
                wait.stuck.clear();
            }
            bar.set_position(synced_healthy as u64);
            bar.set_message(format!("({synced} synced)"));
            if wait.seconds_to_healthy.is_some()
                || (bar.is_hidden() && last_print.elapsed() >= PROGRESS)
            {
                bar.finish_and_clear();
                println!(
                    "  {seconds:>6.1} s: {synced}/{apps_total} synced, {synced_healthy} synced and healthy"
                );
                last_print = Instant::now();
            }
            if wait.seconds_to_healthy.is_some() || Instant::now() >= deadline {
                break;
            }
        }
        bar.finish_and_clear();
        Ok(wait)
    }

    /// Commit a change to `apps` (their first ConfigMap gets a new `generation`) and
    /// deliver the push to node `via`'s webhook endpoint as GitHub would.
    #[allow(dead_code)]
    pub async fn push_change(&mut self, apps: &[usize], via: u64) -> anyhow::Result<Pushed> {
        let commit = self
            .fixture
            .commit_change(apps, "loadtest change")
            .context("commit a change")?;
        let ev = PushEvent::new(
            &self.git.url_for("apps.git"),
            "main",
            &commit.parent,
            &commit.id,
            commit.modified.clone(),
        );
        let req = webhook::build(WebhookProvider::GitHub, &ev, Some(WEBHOOK_SECRET));
        let url = format!("http://{}/api/webhook", self.nodes.node(via)?.http);
        let pushed = Instant::now();
        let status = webhook::send(&url, &req)
            .await
            .with_context(|| format!("deliver the push to {url}"))?;
        Ok(Pushed {
            commit,
            pushed,
            status,
        })
    }

    /// `(node, shards, apps)` per node, from the shard map.
    pub async fn shard_nodes(&mut self) -> anyhow::Result<Vec<(u64, u64, u64)>> {
        let api = self.api()?;
        let doc = common::cli_json(&self.flotilla, &api, &["shard", "list"]).await?;
        Ok(common::shard_nodes(&doc))
    }

    /// Apply every app and wait until all are Synced and Healthy (`--timeout`); fails,
    /// naming the first stuck apps, when they are not. For scenarios that measure something
    /// else once the apps are deployed.
    pub async fn deploy_all(&mut self) -> anyhow::Result<SyncWait> {
        let t0 = Instant::now();
        self.apply_apps().await?;
        let timeout = self.args.timeout;
        let wait = self.wait_synced(t0, Duration::from_secs(timeout)).await?;
        if wait.seconds_to_healthy.is_none() {
            let first: Vec<Value> = wait.stuck.iter().take(5).cloned().collect();
            anyhow::bail!(
                "the apps were not all Synced and Healthy within {timeout} s; not measuring (first stuck: {})",
                Value::Array(first)
            );
        }
        Ok(wait)
    }

    /// Stop the nodes, the clusters and the Git server; print where the logs are when the
    /// scenario failed.
    pub async fn shutdown(mut self, failed: bool) {
        self.nodes.stop_all(Signal::INT, STOP_TIMEOUT).await;
        if failed {
            for n in self.nodes.nodes() {
                eprintln!(
                    "  log of node {}: {}",
                    n.id,
                    self.nodes.log_file(n.id).display()
                );
            }
        }
        self.fleet.shutdown().await;
        self.git.shutdown().await;
    }
}

/// Wait until the first node reports a shard map spread over `want` nodes.
async fn wait_for_group(
    want: u64,
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
                if owners as u64 >= want {
                    return Ok(());
                }
                format!("{owners} of {want} nodes own shards")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(StartFailure::Timeout(last_err));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Round to one decimal.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
