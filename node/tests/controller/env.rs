//! A single-member store with its shard node, a simulated destination cluster, local Git
//! repositories, and a controller over them.
#![allow(dead_code)]

use crate::support::{self, Repo};
use flotilla_loadtest::simcluster::{ControllerConfig, SimCluster, SimConfig};
use flotilla_node::clusters::{limit::Limits, Cluster, ClusterRegistry};
use flotilla_node::controller::{Controller, ControllerDeps, ControllerSettings};
use flotilla_node::model::Credentials;
use flotilla_node::status::{self, AppStatus};
use flotilla_raft::shards::{self, Isolation};
use flotilla_raft::{ChangeEvent, Command, Json, ShardConfig, ShardNode, Store, StoreConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// Everything a controller test needs.
pub struct Env {
    pub dir: TempDir,
    pub store: Store,
    pub shards: Arc<ShardNode>,
    pub isolation: Isolation,
    pub sim: SimCluster,
    pub clusters: Arc<ClusterRegistry>,
    pub cluster: Arc<Cluster>,
    pub repo: Repo,
    pub renderer: Arc<flotilla_node::render::Renderer>,
}

/// Poll `cond` every 50 ms until it holds; panics with `what` after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start the store, wait until this node owns every shard, start a simulated cluster and
/// create a Git repository (not yet committed).
pub async fn start() -> Env {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = StoreConfig::new(
        1,
        dir.path().join("store"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    shards::tune_store(&mut cfg);
    let store = Store::start(cfg).await.expect("store starts");
    store
        .initialize([(1, store.addr().to_string())].into())
        .await
        .expect("initialize");
    let isolation = Isolation::new();
    let shards = Arc::new(
        ShardNode::start(
            store.clone(),
            ShardConfig {
                isolation: Some(isolation.clone()),
                ..ShardConfig::default()
            },
        )
        .await
        .expect("shard node starts"),
    );
    let s = shards.clone();
    wait_for(
        "this node owns every shard",
        Duration::from_secs(30),
        || {
            let s = s.clone();
            async move {
                let o = s.ownership().borrow().clone();
                o.lease_valid
                    && !o.owned.is_empty()
                    && o.owned.iter().all(|&x| s.may_act(x).is_ok())
            }
        },
    )
    .await;
    let sim = SimCluster::start(SimConfig {
        controllers: ControllerConfig {
            enabled: true,
            delay: Duration::from_millis(50),
            children: true,
        },
        ..SimConfig::default()
    })
    .await
    .expect("simcluster starts");
    let clusters = Arc::new(ClusterRegistry::new());
    let cluster = clusters
        .add_kubeconfig(
            &sim.kubeconfig().expect("kubeconfig"),
            None,
            Limits::default(),
        )
        .await
        .expect("cluster");
    let repo = Repo::init(&dir.path().join("repo"));
    let renderer = Arc::new(support::renderer(
        dir.path(),
        Credentials::default(),
        support::settings(),
    ));
    Env {
        dir,
        store,
        shards,
        isolation,
        sim,
        clusters,
        cluster,
        repo,
        renderer,
    }
}

/// Settings for tests: quick resyncs and syncs.
pub fn settings() -> ControllerSettings {
    ControllerSettings {
        resync: Duration::from_millis(700),
        resync_jitter: Duration::ZERO,
        workers: 4,
        debounce: Duration::from_millis(50),
        self_heal_backoff: Duration::from_millis(100),
        sync_step_timeout: Duration::from_secs(20),
        sync_poll_interval: Duration::from_millis(50),
        error_retry: Duration::from_millis(200),
        ..ControllerSettings::default()
    }
}

impl Env {
    /// Start a controller over this environment.
    pub fn controller(
        &self,
        settings: ControllerSettings,
        cancel: &CancellationToken,
    ) -> Controller {
        Controller::start(
            ControllerDeps {
                store: self.store.clone(),
                shards: self.shards.clone(),
                clusters: self.clusters.clone(),
                renderer: self.renderer.clone(),
            },
            settings,
            cancel.clone(),
        )
    }

    /// An Application document deploying `path` of the test repository.
    pub fn app(&self, name: &str, path: &str, sync_policy: Value) -> Value {
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {"repoURL": self.repo.url(), "path": path, "targetRevision": "main"},
                "destination": {"server": self.cluster.server(), "namespace": "default"},
                "syncPolicy": sync_policy
            }
        })
    }

    /// Put an application into the store.
    pub async fn put_app(&self, doc: &Value) {
        let name = doc["metadata"]["name"].as_str().expect("name");
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or("argocd");
        self.store
            .propose(Command::PutApp {
                app: status::app_key(ns, name),
                spec: Json::from(status::stored_app(doc)),
                at: 0,
            })
            .await
            .expect("put app");
    }

    /// The stored status of an app (`name` in `argocd`, or `namespace/name`).
    pub fn status(&self, name: &str) -> Option<AppStatus> {
        let key = if name.contains('/') {
            name.to_string()
        } else {
            status::app_key("argocd", name)
        };
        let rec = self.store.local().status(&key).expect("read status")?;
        Some(serde_json::from_str(rec.status.as_str()).expect("status document"))
    }

    /// Wait until the app's status satisfies `f`.
    pub async fn wait_status(&self, name: &str, what: &str, f: impl Fn(&AppStatus) -> bool) {
        let limit = Duration::from_secs(40);
        let start = Instant::now();
        loop {
            let st = self.status(name);
            if st.as_ref().is_some_and(&f) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {name}: {what}; status now: {st:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A ConfigMap in the `default` namespace of the simulated cluster.
    pub async fn configmap(&self, name: &str) -> Option<Value> {
        let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}});
        flotilla_node::live::get_live(&self.cluster, &probe)
            .await
            .expect("read configmap")
    }

    /// Wait until a ConfigMap exists (or not) with `x` set to `value`.
    pub async fn wait_configmap(&self, name: &str, value: Option<&str>) {
        let limit = Duration::from_secs(40);
        let start = Instant::now();
        loop {
            let cm = self.configmap(name).await;
            let got = cm
                .as_ref()
                .map(|c| c["data"]["x"].as_str().unwrap_or("").to_string());
            if got.as_deref() == value {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for ConfigMap {name} = {value:?}; now {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Change a ConfigMap's `x` with another field manager, as a person would.
    pub async fn edit_configmap(&self, name: &str, value: &str) {
        use kube::api::{Patch, PatchParams};
        let k = self.cluster.kind("v1", "ConfigMap").await.expect("kind");
        self.cluster
            .api(&k, "default")
            .patch(
                name,
                &PatchParams {
                    field_manager: Some("kubectl-edit".into()),
                    ..Default::default()
                },
                &Patch::Merge(&json!({"data": {"x": value}})),
            )
            .await
            .expect("patch live");
    }

    /// Delete a ConfigMap behind the controller's back.
    pub async fn delete_configmap(&self, name: &str) {
        let k = self.cluster.kind("v1", "ConfigMap").await.expect("kind");
        self.cluster
            .api(&k, "default")
            .delete(name, &Default::default())
            .await
            .expect("delete configmap");
    }

    /// Count `SetStatus` commands for an app on a change stream receiver, without waiting.
    pub fn count_status_writes(
        rx: &mut tokio::sync::broadcast::Receiver<Arc<ChangeEvent>>,
        key: &str,
    ) -> usize {
        let mut n = 0;
        while let Ok(ev) = rx.try_recv() {
            if let ChangeEvent::Applied {
                command: Command::SetStatus { app, .. },
                result: Ok(_),
                ..
            } = &*ev
            {
                if app == key {
                    n += 1;
                }
            }
        }
        n
    }
}

/// A ConfigMap document with `x: value`.
pub fn cm(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  x: \"{value}\"\n---\n")
}
