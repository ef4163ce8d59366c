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
    assert!(get(&env, "v1", "Namespace", "", "fresh").await.is_none());
    let op = s.run(&env, &docs(&cm("in-fresh", "1"))).await;
    assert!(op.succeeded(), "{op:#?}");
    assert!(get(&env, "v1", "Namespace", "", "fresh").await.is_some());
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
