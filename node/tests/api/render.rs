//! Render calls: manifests and diff of a stored app from a local Git repository against a
//! simulated cluster.

use std::sync::Arc;

use flotilla_loadtest::simcluster::{SimCluster, SimConfig};
use flotilla_node::clusters::{limit::Limits, ClusterRegistry};
use flotilla_proto::v1 as pb;
use serde_json::json;

use crate::harness::{flotilla, Node};
use crate::support::{cm, Repo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_and_diff_render_on_the_node() {
    let sim = SimCluster::start(SimConfig::default())
        .await
        .expect("simcluster starts");
    let registry = Arc::new(ClusterRegistry::new());
    let cluster = registry
        .add_kubeconfig(
            &sim.kubeconfig().expect("kubeconfig"),
            None,
            Limits::default(),
        )
        .await
        .expect("cluster");
    let node = Node::start(None, registry.clone()).await;
    let repo = Repo::init(&node.dir.path().join("repo"));
    repo.write("web/cm.yaml", &cm("web-config"));
    let sha = repo.commit("first");
    let source = json!({"repoURL": repo.url(), "path": "web", "targetRevision": "main"});
    node.put_app("argocd", "web", "default", json!({}), source.clone())
        .await;
    // Point the app at the simulated cluster.
    let spec = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "web", "namespace": "argocd"},
        "spec": {"project": "default", "source": source,
                 "destination": {"server": cluster.server(), "namespace": "dest"}},
    });
    node.store
        .propose(flotilla_raft::Command::PutApp {
            app: "argocd/web".into(),
            spec: flotilla_raft::Json::from(spec),
            at: 3,
        })
        .await
        .expect("put app");
    let addr = node.addr.clone();

    tracing::info!("manifests come from the repository at its current commit");
    let client = node.client();
    let m = client
        .grpc()
        .get_manifests(pb::GetManifestsRequest { app: "web".into() })
        .await
        .expect("manifests")
        .into_inner();
    assert_eq!(m.revision, sha);
    assert_eq!(m.manifests_json.len(), 1);
    let obj: serde_json::Value = serde_json::from_str(&m.manifests_json[0]).expect("json");
    assert_eq!(obj["metadata"]["name"], "web-config");
    let yaml = flotilla(&addr, &["app", "manifests", "web"], &[])
        .await
        .ok();
    assert!(
        yaml.stdout.contains("kind: ConfigMap") && yaml.stdout.contains("web-config"),
        "{}",
        yaml.stdout
    );

    tracing::info!("diff: the object is missing from the cluster");
    let d = client
        .grpc()
        .diff_app(pb::DiffAppRequest {
            app: "argocd/web".into(),
        })
        .await
        .expect("diff")
        .into_inner();
    assert!(!d.in_sync);
    assert_eq!(d.diffs.len(), 1);
    assert_eq!(d.diffs[0].drift, "Missing");
    assert!(d.diffs[0].key.contains("web-config"), "{}", d.diffs[0].key);
    let cli = flotilla(&addr, &["app", "diff", "web"], &[]).await;
    assert_eq!(cli.code, 1, "{}", cli.stderr);
    assert!(
        cli.stdout.contains("missing from the cluster"),
        "{}",
        cli.stdout
    );

    tracing::info!("an unknown destination is a clear precondition failure");
    node.put_app(
        "argocd",
        "lost",
        "default",
        json!({}),
        json!({"repoURL": repo.url(), "path": "web"}),
    )
    .await;
    let lost = client
        .grpc()
        .diff_app(pb::DiffAppRequest { app: "lost".into() })
        .await
        .expect_err("no such cluster");
    assert_eq!(lost.code(), tonic::Code::FailedPrecondition);
    assert!(lost.message().contains("argocd/lost"), "{}", lost.message());

    node.stop().await;
    drop(sim);
}
