//! Deleting applications that come from the management cluster: the `Application` resource
//! is deleted there, with or without Argo CD's cascade finalizer.

use std::sync::Arc;

use flotilla_loadtest::simcluster::{SimCluster, SimConfig};
use flotilla_node::clusters::{limit::Limits, Cluster, ClusterRegistry};
use flotilla_raft::{Command, Json};
use kube::api::PostParams;
use serde_json::{json, Value};

use crate::harness::{flotilla, Node};

const CRD: &str = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "applications.argoproj.io"},
  "spec": {"group": "argoproj.io", "scope": "Namespaced",
    "names": {"kind": "Application", "plural": "applications", "singular": "application",
              "listKind": "ApplicationList"},
    "versions": [{"name": "v1alpha1", "served": true, "storage": true,
      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#;

async fn create(cluster: &Cluster, doc: Value) {
    let api_version = doc["apiVersion"].as_str().expect("apiVersion").to_string();
    let kind = doc["kind"].as_str().expect("kind").to_string();
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let k = cluster
        .kind(&api_version, &kind)
        .await
        .expect("kind served");
    cluster
        .api(&k, &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(doc).expect("object"),
        )
        .await
        .expect("create");
}

async fn get_app(cluster: &Cluster, name: &str) -> Option<Value> {
    let probe = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"}});
    flotilla_node::live::get_live(cluster, &probe)
        .await
        .expect("get")
}

fn application(name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd",
                     "annotations": {"flotilla.dev/origin": "kubernetes"}},
        "spec": {"project": "default",
                 "source": {"repoURL": "https://git.example.com/r.git", "path": name},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "d"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_from_kubernetes_are_deleted_there() {
    let sim = SimCluster::start(SimConfig::default())
        .await
        .expect("simcluster starts");
    let registry = ClusterRegistry::new();
    let mgmt = registry
        .add_kubeconfig(
            &sim.kubeconfig().expect("kubeconfig"),
            None,
            Limits::default(),
        )
        .await
        .expect("cluster");
    create(&mgmt, serde_json::from_str(CRD).expect("crd")).await;
    mgmt.invalidate_kinds().await;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}});
    if flotilla_node::live::get_live(&mgmt, &ns)
        .await
        .expect("get")
        .is_none()
    {
        create(&mgmt, ns).await;
    }
    let node = Node::start_managed(Arc::new(ClusterRegistry::new()), mgmt.client().clone()).await;
    for name in ["keep", "cascade"] {
        let app = application(name);
        create(&mgmt, app.clone()).await;
        node.store
            .propose(Command::PutApp {
                app: format!("argocd/{name}"),
                spec: Json::from(app),
                at: 1,
            })
            .await
            .expect("put app");
    }

    tracing::info!("without cascade the resource goes at once, its resources are kept");
    let out = flotilla(
        &node.addr,
        &["app", "delete", "keep", "--cascade=false"],
        &[],
    )
    .await
    .ok();
    assert!(out.stdout.contains("resources are kept"), "{}", out.stdout);
    assert!(get_app(&mgmt, "keep").await.is_none());

    tracing::info!(
        "with cascade the finalizer holds it until the controller deletes the resources"
    );
    flotilla(&node.addr, &["app", "delete", "cascade"], &[])
        .await
        .ok();
    let held = get_app(&mgmt, "cascade")
        .await
        .expect("held by its finalizer");
    assert_eq!(
        held["metadata"]["finalizers"],
        json!(["resources-finalizer.argocd.argoproj.io"])
    );
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    assert!(
        node.store
            .local()
            .app("argocd/cascade")
            .expect("read")
            .is_some(),
        "the store copy goes when ingestion sees the resource go"
    );

    tracing::info!("an Application missing from the management cluster is NotFound");
    node.store
        .propose(Command::PutApp {
            app: "argocd/ghost".into(),
            spec: Json::from(application("ghost")),
            at: 1,
        })
        .await
        .expect("put app");
    let ghost = flotilla(&node.addr, &["app", "delete", "ghost"], &[]).await;
    assert_eq!(ghost.code, 2);
    assert!(
        ghost.stderr.contains("NotFound") && ghost.stderr.contains("management cluster"),
        "{}",
        ghost.stderr
    );

    node.stop().await;
    drop(sim);
}
