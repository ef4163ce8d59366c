//! A node for API tests: a one-member store with its shard node, the API on a loopback port.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_node::api::client::ApiClient;
use flotilla_node::api::server::{serve, ApiDeps, ApiTls};
use flotilla_node::clusters::ClusterRegistry;
use flotilla_node::status::AppStatus;
use flotilla_raft::{Command, Json, NodeInfo, ShardConfig, ShardNode, Store, StoreConfig};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// One node: store, shard node, API.
pub struct Node {
    pub store: Store,
    pub shards: ShardNode,
    pub addr: String,
    pub token: Option<String>,
    pub cancel: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
    pub dir: TempDir,
}

/// Poll `f` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Node {
    /// Start a fresh node 1 that forms its own group, with an API token if given.
    pub async fn start(token: Option<&str>, clusters: Arc<ClusterRegistry>) -> Node {
        Self::start_member(1, token, clusters, true, None).await
    }

    /// Start node 1 with a management cluster client.
    pub async fn start_managed(clusters: Arc<ClusterRegistry>, management: kube::Client) -> Node {
        Self::start_member(1, None, clusters, true, Some(management)).await
    }

    /// Start node `id`; with `init` it forms a one-member group and publishes its addresses,
    /// without it waits to be added to a group.
    pub async fn start_member(
        id: u64,
        token: Option<&str>,
        clusters: Arc<ClusterRegistry>,
        init: bool,
        management: Option<kube::Client>,
    ) -> Node {
        Self::start_member_tls(id, token, clusters, init, management, None).await
    }

    /// A member whose API serves TLS when `tls` is given.
    pub async fn start_member_tls(
        id: u64,
        token: Option<&str>,
        clusters: Arc<ClusterRegistry>,
        init: bool,
        management: Option<kube::Client>,
        tls: Option<ApiTls>,
    ) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = StoreConfig::new(
            id,
            dir.path().join("store"),
            "127.0.0.1:0".parse().expect("addr"),
        );
        flotilla_raft::shards::tune_store(&mut cfg);
        let store = Store::start(cfg).await.expect("store starts");
        if init {
            store
                .initialize(BTreeMap::from([(id, store.addr().to_string())]))
                .await
                .expect("initialize");
            eventually("a leader", 20, || async {
                store.metrics().is_leader.then_some(())
            })
            .await;
        }
        let shards = ShardNode::start(store.clone(), ShardConfig::default())
            .await
            .expect("shard node");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        if init {
            publish(&store, &addr).await;
        }

        let renderer = Arc::new(crate::support::renderer(
            dir.path(),
            Default::default(),
            crate::support::settings(),
        ));
        let deps = ApiDeps {
            store: store.clone(),
            renderer,
            clusters,
            management,
            token: token.map(str::to_string),
            tls,
        };
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let server = tokio::spawn(async move {
            serve(listener, deps, c).await.expect("API serves");
        });
        Node {
            store,
            shards,
            addr,
            token: token.map(str::to_string),
            cancel,
            server,
            dir,
        }
    }

    /// A client with the node's token.
    pub fn client(&self) -> ApiClient {
        ApiClient::connect_lazy(&self.addr, self.token.as_deref()).expect("client")
    }

    /// Store an application (origin `api`).
    pub async fn put_app(&self, ns: &str, name: &str, project: &str, labels: Value, source: Value) {
        let spec = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                         "annotations": {"flotilla.dev/origin": "api"}},
            "spec": {"project": project, "source": source,
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": "dest"}},
        });
        self.store
            .propose(Command::PutApp {
                app: format!("{ns}/{name}"),
                spec: Json::from(spec),
                at: 1,
            })
            .await
            .expect("put app");
    }

    /// Write an application's status as its shard's owner would.
    pub async fn set_status(&self, key: &str, status: &AppStatus) {
        let count = eventually("a shard map", 30, || async {
            self.store
                .local()
                .shard_map()
                .ok()
                .flatten()
                .map(|m| m.shard_count())
        })
        .await;
        let shard = flotilla_shard::shard_of(key, count);
        let epoch = eventually("ownership of the app's shard", 30, || async {
            self.shards.may_act(shard).ok()
        })
        .await;
        self.store
            .propose(Command::SetStatus {
                app: key.into(),
                node: self.store.id(),
                epoch,
                status: Json::from(serde_json::to_value(status).expect("status")),
                at: 2,
            })
            .await
            .expect("set status");
    }

    /// Stop the API and the store.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        self.shards.shutdown().await;
        self.store.shutdown().await;
    }
}

/// What one run of the binary printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Assert exit 0 and return self.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Run `flotilla ARGS --server ADDR` with `env` (the caller's FLOTILLA_* are cleared).
pub async fn flotilla(addr: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args(args)
        .arg("--server")
        .arg(addr)
        .env_remove("FLOTILLA_TOKEN")
        .env_remove("FLOTILLA_TOKEN_FILE")
        .env_remove("FLOTILLA_SERVER")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("flotilla finishes")
        .expect("flotilla runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Publish a node's addresses (`peer=`, `api=`) in the store.
pub async fn publish(store: &Store, api: &str) {
    store
        .propose(Command::PutNodeInfo(NodeInfo {
            id: store.id(),
            addresses: vec![format!("peer={}", store.addr()), format!("api={api}")],
            version: "test".into(),
            at: 0,
            extra: Json::default(),
            draining: false,
        }))
        .await
        .expect("node info");
}
