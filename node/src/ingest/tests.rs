//! Pure parts of ingestion: status documents, manifest reading and the
//! commands that reconcile the store.

use std::collections::BTreeMap;

use flotilla_raft::apply::FinishedOperation;
use flotilla_raft::{AppRecord, ClusterRef, Command, Json, OperationRecord, RepoRef, StatusRecord};
use serde_json::json;

use super::directory::{collect, directory_commands};
use super::secrets::{refs_commands, SecretRefs};
use super::*;

#[test]
fn status_document_takes_the_operation_record() {
    assert_eq!(status_document(None, None), None);
    let status = StatusRecord {
        app: "argocd/a".into(),
        node: 1,
        epoch: 1,
        status: Json::from(
            json!({"sync": {"status": "Synced"}, "health": {"status": "Healthy"},
            "reconciledAt": null}),
        ),
        updated_at: 0,
    };
    let mut op = OperationRecord {
        app: "argocd/a".into(),
        op_id: "op-1".into(),
        node: 1,
        epoch: 1,
        request: Json::from(json!({"initiatedBy": "automated", "revision": "abc", "prune": true})),
        started_at: 1_700_000_000_000,
        finished: None,
    };
    let doc = status_document(Some(&status), Some(&op)).expect("a status");
    assert_eq!(doc["sync"]["status"], "Synced");
    assert!(doc.get("reconciledAt").is_none(), "nulls are dropped");
    assert_eq!(doc["operationState"]["phase"], "Running");
    assert_eq!(doc["operationState"]["startedAt"], "2023-11-14T22:13:20Z");
    assert_eq!(
        doc["operationState"]["operation"]["initiatedBy"]["automated"],
        true
    );
    assert_eq!(doc["operationState"]["operation"]["sync"]["prune"], true);
    op.finished = Some(FinishedOperation {
        result: Json::from(
            json!({"phase": "Succeeded", "message": "done", "revision": "abc",
            "attempts": 2, "resources": [{"kind": "Service", "name": "s", "status": "Synced"}],
            "startedAt": "x", "dryRun": false}),
        ),
        at: 1_700_000_001_000,
    });
    let state = operation_state(&op);
    assert_eq!(state["phase"], "Succeeded");
    assert_eq!(state["finishedAt"], "2023-11-14T22:13:21Z");
    assert_eq!(state["retryCount"], 1);
    assert_eq!(state["syncResult"]["resources"][0]["name"], "s");
}

const APP: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: NAME\nspec:\n  project: default\n  source: {repoURL: 'https://example.com/r.git', path: p}\n  destination: {server: 'https://kubernetes.default.svc', namespace: d}\n";

#[test]
fn manifests_are_read_document_by_document() {
    let good = APP.replace("NAME", "one") + "---\n" + &APP.replace("NAME", "two");
    let bad = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: broken}\nspec: [1, 2]\n---\n".to_string()
        + &APP.replace("NAME", "three");
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    let syntax = "kind: Application\nmetadata: {name: [oops\n".to_string();
    let files = vec![
        ("a.yaml".to_string(), good),
        ("b.yaml".to_string(), bad),
        ("c.yaml".to_string(), other.to_string()),
        ("d.yaml".to_string(), syntax),
    ];
    let found = collect(&files, "argocd");
    let keys: Vec<&str> = found.apps.keys().map(String::as_str).collect();
    assert_eq!(keys, ["argocd/one", "argocd/three", "argocd/two"]);
    assert!(!found.complete, "a bad document makes the read incomplete");
    assert_eq!(
        origin_of(&found.apps["argocd/one"]),
        Some(origin::DIRECTORY)
    );
    assert_eq!(found.apps["argocd/one"]["metadata"]["namespace"], "argocd");
}

fn record(key: &str, doc: Value) -> AppRecord {
    AppRecord {
        app: key.into(),
        spec: Json::from(doc),
        generation: 1,
        updated_at: 0,
    }
}

#[test]
fn directory_commands_touch_only_directory_apps() {
    let files = vec![("a.yaml".to_string(), APP.replace("NAME", "one"))];
    let mut found = collect(&files, "argocd");
    assert!(found.complete);
    let one = found.apps["argocd/one"].clone();
    let stored = vec![
        record("argocd/one", one.clone()),
        record(
            "argocd/gone",
            with_origin(json!({"metadata": {}}), origin::DIRECTORY),
        ),
        record(
            "argocd/k8s",
            with_origin(json!({"metadata": {}}), origin::KUBERNETES),
        ),
    ];
    let cmds = directory_commands(&found, &stored);
    assert_eq!(
        cmds,
        vec![Command::DeleteApp {
            app: "argocd/gone".into()
        }]
    );
    found.complete = false;
    assert!(directory_commands(&found, &stored).is_empty());
    // Another origin's app of the same key is left alone.
    let stored = vec![record(
        "argocd/one",
        with_origin(one.clone(), origin::KUBERNETES),
    )];
    assert!(directory_commands(&found, &stored).is_empty());
}

#[test]
fn refs_commands_reconcile_only_this_namespace() {
    let ours = |n: &str| Some(format!("argocd/{n}"));
    let refs = SecretRefs {
        namespace: "argocd".into(),
        clusters: BTreeMap::from([(
            "c1".to_string(),
            ClusterRef {
                name: "c1".into(),
                server: "https://c1".into(),
                secret_ref: ours("s1"),
            },
        )]),
        repos: BTreeMap::from([(
            "https://r".to_string(),
            RepoRef {
                url: "https://r".into(),
                secret_ref: ours("s2"),
            },
        )]),
    };
    let stored_clusters = vec![
        ClusterRef {
            name: "old".into(),
            server: "https://old".into(),
            secret_ref: ours("s0"),
        },
        ClusterRef {
            name: "other".into(),
            server: "https://o".into(),
            secret_ref: Some("elsewhere/x".into()),
        },
    ];
    let stored_repos = vec![RepoRef {
        url: "https://r".into(),
        secret_ref: ours("s2"),
    }];
    let cmds = refs_commands(&refs, &stored_clusters, &stored_repos);
    assert_eq!(
        cmds,
        vec![
            Command::RemoveCluster { name: "old".into() },
            Command::PutCluster(refs.clusters["c1"].clone()),
        ]
    );
}

#[test]
fn canonical_documents_have_one_text() {
    let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": 1}}"#).expect("json");
    let b: Value = serde_json::from_str(r#"{"a": {"x": 1, "y": 2}, "b": 1}"#).expect("json");
    assert_eq!(
        Json::from(canonical(a)).as_str(),
        Json::from(canonical(b)).as_str()
    );
}
