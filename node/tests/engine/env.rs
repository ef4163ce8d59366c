//! A simulated cluster with a flotilla client for it, and helpers to sync and read objects.
#![allow(dead_code)]

use flotilla_loadtest::simcluster::{ControllerConfig, SimCluster, SimConfig};
use flotilla_node::clusters::{limit::Limits, Cluster, ClusterRegistry};
use flotilla_node::diff::DiffOptions;
use flotilla_node::health::lua::Customizations;
use flotilla_node::live::{compare_app, Comparison, Tracking};
use flotilla_node::sync::executor::{sync_app, SyncContext, SyncRequest};
use flotilla_node::sync::options::{Retry, SyncOptions};
use flotilla_node::sync::result::OperationResult;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// One simulated cluster and flotilla's view of it.
pub struct Env {
    pub sim: SimCluster,
    pub registry: ClusterRegistry,
    pub cluster: Arc<Cluster>,
    pub kubeconfig: String,
}

/// Start a cluster whose controllers report status quickly.
pub async fn start() -> Env {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
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
    let kubeconfig = sim.kubeconfig().expect("kubeconfig");
    let registry = ClusterRegistry::new();
    let cluster = registry
        .add_kubeconfig(&kubeconfig, None, Limits::default())
        .await
        .expect("cluster from kubeconfig");
    Env {
        sim,
        registry,
        cluster,
        kubeconfig,
    }
}

/// Settings of one test sync.
pub struct Sync<'a> {
    pub app: &'a str,
    pub namespace: &'a str,
    pub dry_run: bool,
    pub request: SyncRequest,
    pub diff: DiffOptions,
    pub custom: Customizations,
    pub retry: Option<Retry>,
    pub tracking: Tracking,
    pub step_timeout: Duration,
    pub namespace_metadata: Option<Value>,
    pub cancel: Option<tokio_util::sync::CancellationToken>,
}

impl<'a> Sync<'a> {
    pub fn new(app: &'a str) -> Self {
        Self {
            app,
            namespace: "default",
            dry_run: false,
            request: SyncRequest {
                prune: true,
                selection: None,
                options: SyncOptions::default(),
            },
            diff: DiffOptions::default(),
            custom: Customizations::none(),
            retry: None,
            tracking: Tracking::Label,
            step_timeout: Duration::from_secs(20),
            namespace_metadata: None,
            cancel: None,
        }
    }

    pub fn options(mut self, entries: &[&str]) -> Self {
        self.request.options = SyncOptions::default().with(entries.iter().copied()).0;
        self
    }

    pub async fn run(&self, env: &Env, desired: &[Value]) -> OperationResult {
        let ctx = SyncContext {
            cluster: &env.cluster,
            app: self.app,
            namespace: self.namespace,
            tracking: self.tracking,
            customizations: &self.custom,
            dry_run: self.dry_run,
            create_namespace: self.request.options.create_namespace,
            namespace_metadata: self.namespace_metadata.as_ref(),
            revision: "test",
            step_timeout: self.step_timeout,
            poll_interval: Duration::from_millis(50),
            retry: self.retry,
            ignore: &self.diff.ignore,
            cancel: self.cancel.as_ref(),
            gate: None,
        };
        let (op, _) = sync_app(&ctx, desired, &self.request, &self.diff)
            .await
            .expect("sync runs");
        op
    }

    pub async fn compare(&self, env: &Env, desired: &[Value]) -> Comparison {
        compare_app(
            &env.cluster,
            self.app,
            desired,
            self.namespace,
            self.tracking,
            &self.diff,
            None,
        )
        .await
        .expect("compare")
    }
}

/// Parse YAML documents.
pub fn docs(yaml: &str) -> Vec<Value> {
    flotilla_node::render::parse_manifests("test", yaml)
        .expect("valid YAML")
        .into_iter()
        .map(|m| m.object)
        .collect()
}

/// Read an object straight from the cluster.
pub async fn get(env: &Env, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
    let probe = serde_json::json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": ns}});
    flotilla_node::live::get_live(&env.cluster, &probe)
        .await
        .expect("get")
}

/// Change an object with another field manager, as a person with kubectl would.
pub async fn patch_live(
    env: &Env,
    api_version: &str,
    kind: &str,
    ns: &str,
    name: &str,
    patch: Value,
) {
    use kube::api::{Patch, PatchParams};
    let k = env.cluster.kind(api_version, kind).await.expect("kind");
    env.cluster
        .api(&k, ns)
        .patch(
            name,
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .expect("patch live");
}

/// A ConfigMap document.
pub fn cm(name: &str, data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  x: \"{data}\"\n---\n"
    )
}

/// A Deployment document.
pub fn deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: nginx:1\n---\n"
    )
}

/// Status names of an operation's resources, as `Kind/name=Status`.
pub fn statuses(op: &OperationResult) -> Vec<String> {
    op.resources
        .iter()
        .map(|r| format!("{}/{}={:?}", r.kind, r.name, r.status))
        .collect()
}
