//! Each sync option against the cluster.
use crate::env::{cm, docs, get, patch_live, start, statuses, Sync};
use flotilla_node::live::Tracking;
use flotilla_node::sync::result::{OperationPhase, ResultCode};
use serde_json::json;

#[tokio::test]
async fn replace_client_side_apply_and_create_namespace() {
    let env = start().await;
    tracing::info!("CreateNamespace=true creates the destination namespace");
    let mut s = Sync::new("opts").options(&["CreateNamespace=true"]);
    s.namespace = "fresh";
    s.namespace_metadata = Some(json!({"labels": {"team": "blue"},
        "annotations": {"owner": "ops@example.com"}}));
    assert!(get(&env, "v1", "Namespace", "", "fresh").await.is_none());
    let op = s.run(&env, &docs(&cm("in-fresh", "1"))).await;
    assert!(op.succeeded(), "{op:#?}");
    let ns = get(&env, "v1", "Namespace", "", "fresh")
        .await
        .expect("namespace created");
    assert_eq!(ns["metadata"]["labels"]["team"], "blue", "{ns:#}");
    assert_eq!(
        ns["metadata"]["annotations"]["owner"], "ops@example.com",
        "{ns:#}"
    );
    assert!(
        get(&env, "v1", "ConfigMap", "fresh", "in-fresh")
            .await
            .is_some(),
        "namespace defaulted"
    );

    tracing::info!(
        "ServerSideApply=false keeps the last-applied annotation and removes dropped keys"
    );
    let csa = Sync::new("csa").options(&["ServerSideApply=false"]);
    let two =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: csa}\ndata: {x: \"1\", y: \"2\"}\n";
    assert!(csa.run(&env, &docs(two)).await.succeeded());
    let live = get(&env, "v1", "ConfigMap", "default", "csa")
        .await
        .expect("live");
    let last = live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("annotation");
    assert!(last.contains("\"y\":\"2\""), "{last}");
    assert!(csa.run(&env, &docs(&cm("csa", "3"))).await.succeeded());
    let live = get(&env, "v1", "ConfigMap", "default", "csa")
        .await
        .expect("live");
    assert_eq!(live["data"], json!({"x": "3"}));

    tracing::info!("Replace=true puts the whole object");
    let rep = Sync::new("rep").options(&["Replace=true"]);
    assert!(rep.run(&env, &docs(&cm("rep", "1"))).await.succeeded());
    patch_live(
        &env,
        "v1",
        "ConfigMap",
        "default",
        "rep",
        json!({"data": {"extra": "z"}}),
    )
    .await;
    let op = rep.run(&env, &docs(&cm("rep", "2"))).await;
    assert_eq!(op.resources[0].message, "replaced");
    let live = get(&env, "v1", "ConfigMap", "default", "rep")
        .await
        .expect("live");
    assert_eq!(
        live["data"],
        json!({"x": "2"}),
        "replace drops fields others added"
    );
}

#[tokio::test]
async fn dry_run_apply_out_of_sync_only_and_shared_resources() {
    let env = start().await;
    tracing::info!("dry run persists nothing");
    let mut dry = Sync::new("dry");
    dry.dry_run = true;
    let op = dry.run(&env, &docs(&cm("ghost", "1"))).await;
    assert!(op.succeeded() && op.dry_run, "{op:#?}");
    assert!(op.resources[0].message.contains("dry run"));
    assert!(get(&env, "v1", "ConfigMap", "default", "ghost")
        .await
        .is_none());

    tracing::info!("ApplyOutOfSyncOnly skips resources already in sync");
    let s = Sync::new("oos").options(&["ApplyOutOfSyncOnly=true"]);
    let both = docs(&(cm("one", "1") + &cm("two", "1")));
    assert_eq!(s.run(&env, &both).await.resources.len(), 2);
    let changed = docs(&(cm("one", "1") + &cm("two", "2")));
    assert_eq!(
        statuses(&s.run(&env, &changed).await),
        ["ConfigMap/two=Synced"]
    );

    tracing::info!("FailOnSharedResource refuses an object another app tracks");
    let other = Sync::new("other").options(&["FailOnSharedResource=true"]);
    let op = other.run(&env, &docs(&cm("one", "9"))).await;
    assert_eq!(op.phase, OperationPhase::Failed);
    assert_eq!(op.resources[0].status, ResultCode::SyncFailed);
    assert!(
        op.resources[0].message.contains("\"oos\""),
        "{}",
        op.resources[0].message
    );
    assert_eq!(
        get(&env, "v1", "ConfigMap", "default", "one")
            .await
            .expect("live")["data"]["x"],
        "1"
    );
}

#[tokio::test]
async fn annotation_tracking_marks_and_finds_objects() {
    let env = start().await;
    let mut s = Sync::new("annot");
    s.tracking = Tracking::Annotation;
    assert!(s
        .run(&env, &docs(&(cm("t1", "1") + &cm("t2", "1"))))
        .await
        .succeeded());
    let live = get(&env, "v1", "ConfigMap", "default", "t1")
        .await
        .expect("live");
    assert_eq!(
        live["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"],
        "annot:/ConfigMap:default/t1"
    );
    let op = s.run(&env, &docs(&cm("t1", "1"))).await;
    assert!(
        statuses(&op).contains(&"ConfigMap/t2=Pruned".to_string()),
        "{op:#?}"
    );
}

async fn replica_sets_of(env: &crate::env::Env, deployment: &str) -> Vec<serde_json::Value> {
    let kind = env
        .cluster
        .kind("apps/v1", "ReplicaSet")
        .await
        .expect("kind");
    let list = env
        .cluster
        .api(&kind, "default")
        .list(&Default::default())
        .await
        .expect("list");
    list.items
        .into_iter()
        .map(|o| serde_json::to_value(o).expect("json"))
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{deployment}-")))
        })
        .collect()
}

#[tokio::test]
async fn prune_propagation_policy_and_selective_sync() {
    let env = start().await;
    tracing::info!("orphan: pruning a Deployment leaves its ReplicaSet");
    let orphan = Sync::new("prop").options(&["PrunePropagationPolicy=orphan"]);
    assert!(orphan
        .run(&env, &docs(&crate::env::deployment("lonely", 1)))
        .await
        .succeeded());
    assert_eq!(replica_sets_of(&env, "lonely").await.len(), 1);
    let op = orphan.run(&env, &docs(&cm("keep-app-nonempty", "1"))).await;
    assert!(
        statuses(&op).contains(&"Deployment/lonely=Pruned".to_string()),
        "{op:#?}"
    );
    let rs = replica_sets_of(&env, "lonely").await;
    assert_eq!(rs.len(), 1, "orphaned ReplicaSet stays");
    assert!(
        rs[0]["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{:#}",
        rs[0]
    );

    tracing::info!("foreground (the default): the ReplicaSet goes with it");
    let fg = Sync::new("prop2");
    assert!(fg
        .run(&env, &docs(&crate::env::deployment("family", 1)))
        .await
        .succeeded());
    assert_eq!(replica_sets_of(&env, "family").await.len(), 1);
    assert!(fg.run(&env, &docs(&cm("other", "1"))).await.succeeded());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !replica_sets_of(&env, "family").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ReplicaSet never collected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    tracing::info!("selective sync applies only the named resources");
    let mut sel = Sync::new("sel");
    let both = docs(&(cm("s1", "1") + &cm("s2", "1")));
    sel.request.selection = Some([flotilla_node::diff::ResourceKey::of(&serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s2", "namespace": "default"}}))]
    .into());
    let op = sel.run(&env, &both).await;
    assert_eq!(statuses(&op), ["ConfigMap/s2=Synced"]);
    assert!(get(&env, "v1", "ConfigMap", "default", "s1")
        .await
        .is_none());
}
