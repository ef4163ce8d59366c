//! A world for end-to-end tests: a management cluster (also destination `sim-0`), a second
//! destination `sim-1`, a smart-HTTP Git server with a generated repository of apps, and
//! `flotilla node` processes started from the real binary.
#![allow(dead_code)]

use std::time::Duration;

pub use flotilla_loadtest::cluster::logs::{now_ms, overlapping_syncs};
use flotilla_loadtest::cluster::logs::{read_sync_intervals, SyncInterval};
use flotilla_loadtest::git::{Fixture, FixtureSpec, GitServer, GitServerConfig};
use flotilla_loadtest::simcluster::{ControllerConfig, SimCluster, SimConfig};
use flotilla_node::dev::launcher::{LocalCluster, NodeAddrs};
use flotilla_node::dev::setup;
use serde_json::Value;

/// The management namespace.
pub const NS: &str = "argocd";
/// The webhook secret the nodes verify.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";

pub struct World {
    pub dir: tempfile::TempDir,
    pub mgmt: SimCluster,
    pub dest: SimCluster,
    pub git: GitServer,
    pub fixture: Fixture,
    pub client: kube::Client,
    pub dest_client: kube::Client,
    pub nodes: LocalCluster,
    pub apps: usize,
}

async fn sim(name: &str) -> SimCluster {
    SimCluster::start(SimConfig {
        name: name.into(),
        controllers: ControllerConfig {
            enabled: true,
            delay: Duration::from_millis(50),
            children: true,
        },
        ..SimConfig::default()
    })
    .await
    .expect("simcluster starts")
}

impl World {
    /// Start the clusters, the Git server and `nodes` nodes managing `apps` apps.
    pub async fn start(apps: usize, nodes: u64, extra: &[&str]) -> World {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("git");
        std::fs::create_dir_all(&root).expect("git root");
        let git = GitServer::start(&root, GitServerConfig::default())
            .await
            .expect("git server");
        let fixture = Fixture::create(
            &root,
            "apps.git",
            FixtureSpec {
                apps,
                clusters: 2,
                resources_per_app: 1,
                repo_url: git.url_for("apps.git"),
                ..FixtureSpec::default()
            },
        )
        .expect("fixture");
        let mgmt = sim("mgmt").await;
        let dest = sim("dest").await;
        let kubeconfig = dir.path().join("mgmt.kubeconfig");
        std::fs::write(&kubeconfig, mgmt.kubeconfig().expect("kubeconfig")).expect("write");
        let client = flotilla_node::dev::kube_client(&kubeconfig)
            .await
            .expect("mgmt client");
        let dest_kc = dir.path().join("dest.kubeconfig");
        std::fs::write(&dest_kc, dest.kubeconfig().expect("kubeconfig")).expect("write");
        let dest_client = flotilla_node::dev::kube_client(&dest_kc)
            .await
            .expect("dest client");
        setup::install_crds(&client).await.expect("crds");
        setup::apply(&client, &setup::namespace(NS))
            .await
            .expect("ns");
        for (name, s) in [("sim-0", &mgmt), ("sim-1", &dest)] {
            setup::apply(
                &client,
                &setup::cluster_secret(NS, name, &s.url(), s.token(), s.ca_pem()),
            )
            .await
            .expect("cluster secret");
        }
        let secret_file = dir.path().join("webhook-secret");
        std::fs::write(&secret_file, WEBHOOK_SECRET).expect("secret file");
        let mut common: Vec<String> = vec![
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--namespaces".into(),
            NS.into(),
            "--webhook-secret-file".into(),
            secret_file.display().to_string(),
            "--repo-poll-seconds".into(),
            "3600".into(),
            "--grace-period-seconds".into(),
            "15".into(),
        ];
        common.extend(extra.iter().map(|s| s.to_string()));
        let addrs = (1..=nodes)
            .map(|id| NodeAddrs::free(id).expect("ports"))
            .collect();
        let mut cluster = LocalCluster::new(
            env!("CARGO_BIN_EXE_flotilla").into(),
            &dir.path().join("nodes"),
            addrs,
            common,
        );
        cluster.env("RUST_LOG", "info,openraft=warn,kube=warn");
        cluster.start_all().expect("nodes start");
        let world = World {
            dir,
            mgmt,
            dest,
            git,
            fixture,
            client,
            dest_client,
            nodes: cluster,
            apps,
        };
        for i in 0..apps {
            world.apply_app(i).await;
        }
        world
    }

    /// Apply app `i`'s Application resource to the management cluster.
    pub async fn apply_app(&self, i: usize) {
        let v: Value = serde_yaml::from_str(&self.fixture.application_yaml(i)).expect("yaml");
        setup::apply(&self.client, &v).await.expect("apply app");
    }

    /// The Application resources' `(name, sync, health, revision)`, sorted by name.
    pub async fn statuses(&self) -> Vec<(String, String, String, String)> {
        let mut out: Vec<_> = setup::list_applications(&self.client, NS)
            .await
            .unwrap_or_default()
            .iter()
            .map(|a| {
                let (s, h) = setup::sync_and_health(a);
                (
                    a["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    s,
                    h,
                    a["status"]["sync"]["revision"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The client of the destination cluster of app `i`.
    pub fn dest_of(&self, i: usize) -> &kube::Client {
        if i.is_multiple_of(2) {
            &self.client
        } else {
            &self.dest_client
        }
    }

    /// App `i`'s ConfigMap in its destination cluster.
    pub async fn configmap(&self, i: usize) -> Option<Value> {
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(self.dest_of(i).clone(), &format!("app-{i}"));
        api.get_opt(&format!("app-{i}-cm-0"))
            .await
            .ok()
            .flatten()
            .and_then(|c| serde_json::to_value(c).ok())
    }

    /// Poll `check` every 250 ms until it holds or `secs` pass; panics with `what` and the
    /// node logs' tails on timeout.
    pub async fn wait_for<F, Fut>(&self, what: &str, secs: u64, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if check().await {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                self.dump_logs();
                panic!("timed out after {secs} s waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every app Synced and Healthy on its Application resource.
    pub async fn all_synced(&self) -> bool {
        let s = self.statuses().await;
        s.len() == self.apps
            && s.iter()
                .all(|(_, sy, h, _)| sy == "Synced" && h == "Healthy")
    }

    /// Print the last lines of every node's log.
    pub fn dump_logs(&self) {
        for n in self.nodes.nodes() {
            let text = std::fs::read_to_string(self.nodes.log_file(n.id)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("===== node {} log (last 40 lines)", n.id);
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }
}

impl World {
    /// Run the real CLI against node `id`'s API with `-o json` and parse its output.
    pub fn cli(&self, id: u64, args: &[&str]) -> Result<Value, String> {
        let api = self.nodes.node(id).map_err(|e| e.to_string())?.api.clone();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .args(["--server", &api, "-o", "json"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "{e}: {}",
                String::from_utf8_lossy(&out.stdout)
                    .chars()
                    .take(400)
                    .collect::<String>()
            )
        })
    }

    /// The leader as node `via` sees it, if any.
    pub fn leader(&self, via: u64) -> Option<u64> {
        let v = self.cli(via, &["member", "list"]).ok()?;
        v["members"]
            .as_array()?
            .iter()
            .find(|m| m["leader"].as_bool() == Some(true))
            .and_then(|m| m["id"].as_u64())
    }

    /// Members (ids) as node `via` sees them.
    pub fn members(&self, via: u64) -> Vec<u64> {
        self.cli(via, &["member", "list"])
            .ok()
            .and_then(|v| {
                v["members"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|m| m["id"].as_u64()).collect())
            })
            .unwrap_or_default()
    }

    /// The export of the whole state, through node `via`; retried for up to 30 s while the
    /// node (re)starts.
    pub async fn export(&self, via: u64) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.cli(via, &["admin", "export"]) {
                Ok(v) => return Ok(v),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

/// GET `path` from `addr` over plain HTTP/1.1; returns the status and body.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The `sync started` / `sync finished` intervals of every node's JSON log.
pub fn sync_intervals(world: &World) -> Vec<SyncInterval> {
    let logs: Vec<(u64, std::path::PathBuf)> = world
        .nodes
        .nodes()
        .iter()
        .map(|n| (n.id, world.nodes.log_file(n.id)))
        .collect();
    read_sync_intervals(&logs).expect("node logs readable")
}
