//! Application calls: list, get, sync, refresh, history, rollback, wait, delete.

use std::sync::Arc;
use std::time::Duration;

use flotilla_node::clusters::ClusterRegistry;
use flotilla_node::status::{AppStatus, HistoryEntry};
use flotilla_proto::v1 as pb;
use flotilla_raft::{ChangeEvent, Command};
use serde_json::{json, Value};

use crate::harness::{eventually, flotilla, Node};

const TOKEN: &str = "tok-5f1e2d3c4b";

fn source(path: &str) -> Value {
    json!({"repoURL": "https://git.example.com/apps.git", "path": path, "targetRevision": "main"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_listed_synced_refreshed_and_waited_for() {
    let node = Node::start(Some(TOKEN), Arc::new(ClusterRegistry::new())).await;
    let env = [("FLOTILLA_TOKEN", TOKEN)];
    let addr = node.addr.clone();
    node.put_app(
        "argocd",
        "web",
        "default",
        json!({"team": "a"}),
        source("web"),
    )
    .await;
    node.put_app(
        "team-b",
        "api",
        "other",
        json!({"team": "b"}),
        source("api"),
    )
    .await;

    tracing::info!("list and get through the client");
    let client = node.client();
    let all = client
        .grpc()
        .list_apps(pb::ListAppsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let keys: Vec<_> = all.apps.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["argocd/web", "team-b/api"]);
    let by_project = client
        .grpc()
        .list_apps(pb::ListAppsRequest {
            project: "other".into(),
            consistent: true,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(by_project.apps.len(), 1);
    assert_eq!(by_project.apps[0].key, "team-b/api");
    let by_label = client
        .grpc()
        .list_apps(pb::ListAppsRequest {
            selector: "team=a".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(by_label.apps.len(), 1);
    assert_eq!(by_label.apps[0].key, "argocd/web");
    let missing = client
        .grpc()
        .get_app(pb::GetAppRequest {
            app: "nope".into(),
            consistent: false,
        })
        .await
        .expect_err("unknown app");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(
        missing.message().contains("argocd/nope"),
        "{}",
        missing.message()
    );

    tracing::info!("list and get through the CLI");
    let table = flotilla(&addr, &["app", "list"], &env).await.ok();
    let header = table.stdout.lines().next().expect("header");
    for col in [
        "NAME",
        "CLUSTER",
        "NAMESPACE",
        "PROJECT",
        "STATUS",
        "HEALTH",
        "SYNCPOLICY",
        "CONDITIONS",
        "REPO",
        "PATH",
        "TARGET",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(table.stdout.contains("argocd/web"), "{}", table.stdout);
    assert!(table.stdout.contains("Unknown"), "{}", table.stdout);
    let listed = flotilla(&addr, &["app", "list", "-o", "json", "-l", "team=b"], &env)
        .await
        .ok()
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["metadata"]["name"], "api");
    let yaml = flotilla(&addr, &["app", "get", "team-b/api", "-o", "yaml"], &env)
        .await
        .ok();
    let doc: Value = serde_yaml::from_str(&yaml.stdout).expect("yaml");
    assert_eq!(doc["spec"]["project"], "other");
    let unknown = flotilla(&addr, &["app", "get", "ghost"], &env).await;
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("NotFound") && unknown.stderr.contains("argocd/ghost"),
        "{}",
        unknown.stderr
    );

    tracing::info!("sync asks for an operation with the flags given");
    let sync = flotilla(
        &addr,
        &[
            "app",
            "sync",
            "web",
            "--prune",
            "--dry-run",
            "--revision",
            "abc123",
            "--resource",
            "apps:Deployment:web",
            "--resource",
            ":ConfigMap:dest/cfg",
            "-o",
            "json",
        ],
        &env,
    )
    .await
    .ok()
    .json();
    let op_id = sync["opId"].as_str().expect("op id").to_string();
    let got = client
        .grpc()
        .get_app(pb::GetAppRequest {
            app: "argocd/web".into(),
            consistent: true,
        })
        .await
        .expect("get")
        .into_inner();
    let pending: Value = serde_json::from_str(&got.pending_json).expect("pending");
    assert_eq!(pending["opId"], op_id.as_str());
    let req = &pending["request"];
    assert_eq!(req["prune"], true);
    assert_eq!(req["dryRun"], true);
    assert_eq!(req["revision"], "abc123");
    assert_eq!(
        req["resources"],
        json!(["apps/Deployment//web", "/ConfigMap/dest/cfg"])
    );
    let shown = flotilla(&addr, &["app", "get", "web", "-o", "json"], &env)
        .await
        .ok()
        .json();
    assert_eq!(shown["operation"]["sync"]["prune"], true);
    assert_eq!(shown["operation"]["opId"], op_id.as_str());
    let plain = flotilla(&addr, &["app", "sync", "web"], &env).await.ok();
    assert!(
        plain.stdout.contains("sync of argocd/web requested"),
        "{}",
        plain.stdout
    );
    let bad = flotilla(
        &addr,
        &["app", "sync", "web", "--resource", "Deployment/web"],
        &env,
    )
    .await;
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("GROUP:KIND:NAME"), "{}", bad.stderr);

    let ghost = flotilla(&addr, &["app", "sync", "ghost"], &env).await;
    assert_eq!(ghost.code, 2);
    assert!(
        ghost
            .stderr
            .contains("NotFound: application argocd/ghost not found"),
        "{}",
        ghost.stderr
    );

    tracing::info!("refresh reaches the change stream");
    let mut changes = node.store.subscribe();
    flotilla(&addr, &["app", "refresh", "web", "--hard"], &env)
        .await
        .ok();
    let hard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(ev) = changes.recv().await {
                if let ChangeEvent::Applied {
                    command: Command::RequestRefresh { app, hard, .. },
                    ..
                } = ev.as_ref()
                {
                    break (app.clone(), *hard);
                }
            }
        }
    })
    .await
    .expect("refresh applied");
    assert_eq!(hard, ("argocd/web".to_string(), true));

    tracing::info!("wait times out while the app is not healthy, then succeeds");
    let waited = flotilla(&addr, &["app", "wait", "web", "--timeout", "1s"], &env).await;
    assert_eq!(waited.code, 1, "{}", waited.stderr);
    assert!(
        waited.stderr.contains("timed out")
            && waited.stderr.contains("sync status Unknown")
            && waited.stderr.contains("requested"),
        "{}",
        waited.stderr
    );
    let addr2 = addr.clone();
    let waiter = tokio::spawn(async move {
        flotilla(
            &addr2,
            &[
                "app",
                "wait",
                "web",
                "--sync",
                "--health",
                "--timeout",
                "60s",
            ],
            &[("FLOTILLA_TOKEN", TOKEN)],
        )
        .await
    });
    let mut status = AppStatus::default();
    status.sync.status = "Synced".into();
    status.health.status = "Healthy".into();
    status.history = vec![
        HistoryEntry {
            id: 0,
            revision: "1111111".into(),
            deployed_at: "2026-11-01T00:00:00Z".into(),
            deploy_started_at: String::new(),
            source: source("web-old"),
            op_id: "o0".into(),
        },
        HistoryEntry {
            id: 1,
            revision: "2222222".into(),
            deployed_at: "2026-11-02T00:00:00Z".into(),
            deploy_started_at: String::new(),
            source: source("web"),
            op_id: "o1".into(),
        },
    ];
    node.set_status("argocd/web", &status).await;
    let done = waiter.await.expect("waiter");
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(
        done.stdout.contains("Synced") && done.stdout.contains("Healthy"),
        "{}",
        done.stdout
    );
    let busy = flotilla(&addr, &["app", "wait", "web", "--timeout", "1s"], &env).await;
    assert_eq!(
        busy.code, 1,
        "a requested operation is still to come: {}",
        busy.stderr
    );
    assert!(
        busy.stderr
            .contains("sync status Synced, health Healthy, operation"),
        "{}",
        busy.stderr
    );
    let health_only = flotilla(
        &addr,
        &["app", "wait", "web", "--health", "--timeout", "5s"],
        &env,
    )
    .await;
    assert_eq!(health_only.code, 0, "{}", health_only.stderr);
    let listed = flotilla(&addr, &["app", "list"], &env).await.ok();
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("argocd/web"))
        .expect("row");
    assert!(row.contains("Synced") && row.contains("Healthy"), "{row}");

    tracing::info!("history and rollback");
    let history = flotilla(&addr, &["app", "history", "web", "-o", "json"], &env)
        .await
        .ok()
        .json();
    assert_eq!(history.as_array().map(Vec::len), Some(2));
    let table = flotilla(&addr, &["app", "history", "web"], &env).await.ok();
    assert!(table.stdout.contains("2222222"), "{}", table.stdout);
    let rb = flotilla(&addr, &["app", "rollback", "web", "0", "-o", "json"], &env)
        .await
        .ok()
        .json();
    let got = client
        .grpc()
        .get_app(pb::GetAppRequest {
            app: "argocd/web".into(),
            consistent: true,
        })
        .await
        .expect("get")
        .into_inner();
    let pending: Value = serde_json::from_str(&got.pending_json).expect("pending");
    assert_eq!(pending["opId"], rb["opId"]);
    assert_eq!(pending["request"]["revision"], "1111111");
    assert_eq!(pending["request"]["source"]["path"], "web-old");
    let no_entry = flotilla(&addr, &["app", "rollback", "web", "9"], &env).await;
    assert_eq!(no_entry.code, 2);
    assert!(
        no_entry
            .stderr
            .contains("no history entry 9 (entries: 0, 1)"),
        "{}",
        no_entry.stderr
    );

    tracing::info!("delete an app of origin api from the store");
    flotilla(&addr, &["app", "delete", "team-b/api"], &env)
        .await
        .ok();
    eventually("the app to be gone", 10, || async {
        node.store
            .local()
            .app("team-b/api")
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_larger_than_grpcs_default_limit_is_answered() {
    let node = Node::start(None, Arc::new(ClusterRegistry::new())).await;
    // 60 apps of about 100 KiB each: a 6 MB answer, above gRPC's default 4 MiB.
    let filler = "x".repeat(100 * 1024);
    for batch in 0..6 {
        let cmds = (0..10)
            .map(|i| {
                let name = format!("big-{batch}-{i}");
                Command::PutApp {
                    app: format!("argocd/{name}"),
                    spec: flotilla_raft::Json::from(json!({
                        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                        "metadata": {"name": name, "namespace": "argocd",
                            "annotations": {"flotilla.dev/origin": "api", "filler": filler}},
                        "spec": {"project": "default",
                            "source": {"repoURL": "https://git.example.com/a.git", "path": "."},
                            "destination": {"server": "https://kubernetes.default.svc", "namespace": "d"}},
                    })),
                    at: 1,
                }
            })
            .collect();
        node.store.propose_many(cmds).await.expect("put apps");
    }
    let listed = node
        .client()
        .grpc()
        .list_apps(pb::ListAppsRequest::default())
        .await
        .expect("a list of 6 MB")
        .into_inner();
    assert_eq!(listed.apps.len(), 60);
    let cli = flotilla(&node.addr, &["app", "list", "-o", "json"], &[])
        .await
        .ok();
    assert!(
        cli.stdout.contains("big-5-9"),
        "{}",
        &cli.stdout[..200.min(cli.stdout.len())]
    );
    node.stop().await;
}
