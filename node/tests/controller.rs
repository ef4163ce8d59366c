//! The controller against a real single-member store, its shard node, a simulated
//! destination cluster over HTTPS and local Git repositories: automated and manual apps,
//! self-heal, new revisions, bad manifests, AppProject enforcement, deletion with the
//! resources finalizer, lease loss, interrupted operations, and status writes only on change.
mod support;

#[path = "controller/env.rs"]
mod env;

use env::{cm, wait_for, Env};
use flotilla_node::controller::ControllerSettings;
use flotilla_node::health::lua::Customizations;
use flotilla_node::status::{self, sync_code, OperationRequest};
use flotilla_raft::{Command, Json};
use flotilla_shard::{Assignment, ShardMap};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(40);

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: nginx:1\n---\n"
    )
}

/// Settings under which ConfigMaps saying `slow` never become healthy: their sync waits
/// until it is cancelled.
fn slow_settings() -> ControllerSettings {
    let mut custom = Customizations::none();
    custom.insert(
        "",
        "ConfigMap",
        r#"hs = {}
if obj.data ~= nil and obj.data.x == "slow" then
  hs.status = "Progressing"
  hs.message = "waiting"
else
  hs.status = "Healthy"
end
return hs"#,
    );
    ControllerSettings {
        customizations: Arc::new(custom),
        sync_step_timeout: Duration::from_secs(3600),
        ..env::settings()
    }
}

/// Wait until the controller has had nothing ready or running for half a second.
async fn wait_idle(controller: &flotilla_node::controller::Controller) {
    wait_for("the controller is idle", LIMIT, || async move {
        for _ in 0..5 {
            let st = controller.stats();
            if st.queue_depth > 0 || st.running > 0 {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    })
    .await;
}

async fn request_operation(env: &Env, name: &str, op_id: &str, req: OperationRequest) {
    env.store
        .propose(Command::RequestOperation {
            app: status::app_key("argocd", name),
            op_id: op_id.into(),
            request: Json::from(serde_json::to_value(req).expect("request")),
            at: 0,
        })
        .await
        .expect("request operation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_sync_heal_follow_revisions_and_fail_alone() {
    let env = env::start().await;
    env.repo
        .write("auto/cm.yaml", &cm("auto-a", "1"))
        .write("auto/web.yaml", &deployment("web"))
        .write("manual/cm.yaml", &cm("manual-a", "1"))
        .write(
            "broken/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [not, a map\n",
        );
    env.repo.commit("apps");
    let cancel = CancellationToken::new();
    let controller = env.controller(env::settings(), &cancel);
    let automated = json!({"automated": {"prune": true, "selfHeal": true}});
    env.put_app(&env.app("auto", "auto", automated.clone()))
        .await;
    env.put_app(&env.app("manual", "manual", json!({}))).await;
    env.put_app(&env.app("broken", "broken", automated)).await;

    // The automated app is synced and becomes Synced and Healthy.
    env.wait_status("auto", "Synced and Healthy", |s| s.is_synced_and_healthy())
        .await;
    env.wait_configmap("auto-a", Some("1")).await;
    let st = env.status("auto").expect("status");
    assert_eq!(st.resources.len(), 2, "{st:#?}");
    assert_eq!(st.history.len(), 1, "one deployment recorded: {st:#?}");
    let op = st.operation_state.expect("operation state");
    assert_eq!(op.phase, "Succeeded");
    assert!(st.observed_generation >= 1);

    // A malformed manifest is a condition on that app only.
    env.wait_status("broken", "a ComparisonError", |s| {
        s.conditions.iter().any(|c| c.kind == "ComparisonError")
            && s.sync.status == sync_code::UNKNOWN
    })
    .await;

    // The manual app stays OutOfSync and untouched.
    env.wait_status("manual", "OutOfSync", |s| {
        s.sync.status == sync_code::OUT_OF_SYNC && s.operation_state.is_none()
    })
    .await;
    assert!(env.configmap("manual-a").await.is_none());

    // Nothing changes: two more resyncs of every app write no status for `auto`.
    let key = status::app_key("argocd", "auto");
    let mut rx = env.store.subscribe();
    let before = controller.stats().reconciles_total;
    let c = &controller;
    wait_for("two more resyncs of every app", LIMIT, || async move {
        c.stats().reconciles_total >= before + 8
    })
    .await;
    assert_eq!(Env::count_status_writes(&mut rx, &key), 0);
    let stats = controller.stats();
    assert!(stats.syncs_total >= 1, "{stats:?}");

    // A live change to a managed object is healed.
    env.edit_configmap("auto-a", "drift").await;
    env.wait_configmap("auto-a", Some("1")).await;

    // A requested operation syncs the manual app.
    request_operation(
        &env,
        "manual",
        "op-1",
        OperationRequest {
            initiated_by: "test".into(),
            ..Default::default()
        },
    )
    .await;
    env.wait_configmap("manual-a", Some("1")).await;
    env.wait_status("manual", "Synced after op-1", |s| {
        s.sync.status == sync_code::SYNCED
            && s.operation_state
                .as_ref()
                .is_some_and(|o| o.op_id == "op-1" && o.phase == "Succeeded")
            && s.history.len() == 1
    })
    .await;
    assert!(env
        .store
        .local()
        .pending(&status::app_key("argocd", "manual"))
        .expect("read")
        .is_none());

    // A recorded new revision is fetched, rendered and synced.
    env.repo.write("auto/cm.yaml", &cm("auto-a", "2"));
    let sha = env.repo.commit("v2");
    env.store
        .propose(Command::RecordRevision {
            repo: env.repo.url(),
            git_ref: "main".into(),
            sha: sha.clone(),
            at: 0,
        })
        .await
        .expect("record revision");
    env.wait_configmap("auto-a", Some("2")).await;
    env.wait_status("auto", "synced to the new revision", |s| {
        s.sync.revision == sha && s.is_synced_and_healthy() && s.history.len() >= 2
    })
    .await;

    cancel.cancel();
    tokio::time::timeout(LIMIT, controller.stopped())
        .await
        .expect("controller stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_block_apply_and_the_finalizer_deletes_resources() {
    let env = env::start().await;
    env.repo
        .write("plain/cm.yaml", &cm("plain-a", "1"))
        .write(
            "cluster/all.yaml",
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-x\n---\n{}",
                cm("cluster-a", "1")
            ),
        )
        .write("doomed/cm.yaml", &cm("doomed-a", "1"))
        .write("guest/cm.yaml", &cm("guest-a", "1"));
    env.repo.commit("apps");
    for (name, spec) in [
        (
            "guests",
            json!({"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                   "sourceNamespaces": ["team-*"]}),
        ),
        (
            "elsewhere",
            json!({"sourceRepos": ["*"], "destinations": [{"server": "https://elsewhere.example.com", "namespace": "*"}]}),
        ),
        (
            "namespaced-only",
            json!({"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]}),
        ),
    ] {
        env.store
            .propose(Command::PutProject {
                name: name.into(),
                spec: Json::from(spec),
            })
            .await
            .expect("put project");
    }
    let cancel = CancellationToken::new();
    let settings = ControllerSettings {
        control_namespace: Some("argocd".into()),
        ..env::settings()
    };
    let controller = env.controller(settings, &cancel);
    let automated = json!({"automated": {"prune": true}});

    // Applications outside the control-plane namespace need their project's
    // sourceNamespaces.
    let mut outsider = env.app("outsider", "guest", automated.clone());
    outsider["metadata"]["namespace"] = json!("team-a");
    outsider["spec"]["project"] = json!("namespaced-only");
    env.put_app(&outsider).await;
    let mut guest = env.app("guest", "guest", automated.clone());
    guest["metadata"]["namespace"] = json!("team-a");
    guest["spec"]["project"] = json!("guests");
    env.put_app(&guest).await;
    env.wait_status("team-a/outsider", "a source namespace violation", |s| {
        s.conditions.iter().any(|c| {
            c.kind == "InvalidSpecError"
                && c.message
                    == "application namespace team-a is not permitted in project 'namespaced-only'"
        })
    })
    .await;
    env.wait_status("team-a/guest", "synced from an allowed namespace", |s| {
        s.sync.status == "Synced" && s.conditions.is_empty()
    })
    .await;

    let mut wrong_dest = env.app("wrong-dest", "plain", automated.clone());
    wrong_dest["spec"]["project"] = json!("elsewhere");
    env.put_app(&wrong_dest).await;
    let mut cluster_kind = env.app("cluster-kind", "cluster", automated.clone());
    cluster_kind["spec"]["project"] = json!("namespaced-only");
    env.put_app(&cluster_kind).await;
    let mut missing = env.app("no-project", "plain", automated.clone());
    missing["spec"]["project"] = json!("nope");
    env.put_app(&missing).await;

    env.wait_status("wrong-dest", "a destination violation", |s| {
        s.conditions
            .iter()
            .any(|c| c.kind == "InvalidSpecError" && c.message.contains("destination"))
    })
    .await;
    env.wait_status("cluster-kind", "a cluster-scoped kind violation", |s| {
        s.conditions.iter().any(|c| {
            c.kind == "InvalidSpecError" && c.message.contains("Namespace (cluster-scoped)")
        })
    })
    .await;
    env.wait_status("no-project", "a missing project", |s| {
        s.conditions
            .iter()
            .any(|c| c.message.contains("project nope which does not exist"))
    })
    .await;
    let mut nowhere = env.app("nowhere", "plain", json!({}));
    nowhere["spec"]["destination"]["server"] = json!("https://nowhere.example.com");
    env.put_app(&nowhere).await;
    env.wait_status("nowhere", "an unknown destination", |s| {
        s.conditions
            .iter()
            .any(|c| c.message.contains("is not a known cluster"))
    })
    .await;
    // A requested sync of an app its project forbids fails at once, applying nothing.
    request_operation(
        &env,
        "wrong-dest",
        "forbidden-1",
        OperationRequest {
            initiated_by: "test".into(),
            ..Default::default()
        },
    )
    .await;
    env.wait_status("wrong-dest", "the refused operation", |s| {
        s.operation_state
            .as_ref()
            .is_some_and(|o| o.op_id == "forbidden-1" && o.phase == "Error")
    })
    .await;
    assert!(env.configmap("plain-a").await.is_none());
    assert!(env.configmap("cluster-a").await.is_none());
    assert_eq!(
        controller.stats().syncs_total,
        1,
        "only the guest of an allowed namespace synced"
    );

    // Allowing the kind lets the app sync.
    env.store
        .propose(Command::PutProject {
            name: "namespaced-only".into(),
            spec: Json::from(json!({"sourceRepos": ["*"],
                "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}]})),
        })
        .await
        .expect("put project");
    env.wait_configmap("cluster-a", Some("1")).await;

    // Deletion with the resources finalizer removes the app's objects, then the app.
    let mut doomed = env.app("doomed", "doomed", automated);
    doomed["metadata"]["finalizers"] = json!(["resources-finalizer.argocd.argoproj.io"]);
    env.put_app(&doomed).await;
    env.wait_configmap("doomed-a", Some("1")).await;
    doomed["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    env.put_app(&doomed).await;
    env.wait_configmap("doomed-a", None).await;
    let store = &env.store;
    wait_for("the app leaves the store", LIMIT, || async move {
        store
            .local()
            .app(&status::app_key("argocd", "doomed"))
            .expect("read")
            .is_none()
    })
    .await;
    // Other apps' objects stay.
    assert!(env.configmap("cluster-a").await.is_some());

    cancel.cancel();
    tokio::time::timeout(LIMIT, controller.stopped())
        .await
        .expect("controller stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_loss_stops_acting_and_interrupted_operations_are_closed() {
    let env = env::start().await;
    env.repo
        .write("lease/cm.yaml", &cm("lease-a", "1"))
        .write("slow/cm.yaml", &cm("slow-a", "slow"));
    env.repo.commit("apps");
    env.put_app(&env.app("slow", "slow", json!({}))).await;
    let key = status::app_key("argocd", "lease");
    env.put_app(&env.app(
        "lease",
        "lease",
        json!({"automated": {"prune": true, "selfHeal": true}}),
    ))
    .await;
    // An operation left running by a node that stopped.
    let count = env
        .store
        .local()
        .shard_map()
        .expect("read")
        .expect("shard map")
        .shard_count();
    let epoch = env
        .shards
        .may_act(flotilla_shard::shard_of(&key, count))
        .expect("owned");
    env.store
        .propose(Command::OperationStarted {
            app: key.clone(),
            node: env.store.id(),
            epoch,
            op_id: "stale".into(),
            request: Json::from(json!({"initiatedBy": "automated"})),
            at: 0,
        })
        .await
        .expect("operation started");

    let settings = slow_settings();
    let cancel = CancellationToken::new();
    let controller = env.controller(settings, &cancel);
    env.wait_configmap("lease-a", Some("1")).await;
    env.wait_status("lease", "Synced by a new operation", |s| {
        s.sync.status == sync_code::SYNCED
            && s.operation_state
                .as_ref()
                .is_some_and(|o| o.op_id != "stale" && o.phase == "Succeeded")
    })
    .await;
    let op = env
        .store
        .local()
        .operation(&key)
        .expect("read")
        .expect("op");
    assert_ne!(op.op_id, "stale");

    // A sync that waits for health forever.
    request_operation(
        &env,
        "slow",
        "slow-1",
        OperationRequest {
            initiated_by: "test".into(),
            ..Default::default()
        },
    )
    .await;
    let slow = status::app_key("argocd", "slow");
    env.wait_configmap("slow-a", Some("slow")).await;
    let store = &env.store;
    let slow_key = &slow;
    wait_for("the slow operation runs", LIMIT, || async move {
        store
            .local()
            .operation(slow_key)
            .expect("read")
            .is_some_and(|o| o.op_id == "slow-1" && o.finished.is_none())
    })
    .await;

    // Without a lease nothing is written: a lapse that lasts stops the running syncs, and
    // drift waits in the queue.
    env.isolation.set(true);
    let shards = &env.shards;
    wait_for("the lease lapses", LIMIT, || async move {
        !shards.ownership().borrow().lease_valid
    })
    .await;
    let c = &controller;
    wait_for("the slow sync is cancelled", LIMIT, || async move {
        c.stats().running == 0
    })
    .await;
    env.delete_configmap("lease-a").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        env.configmap("lease-a").await.is_none(),
        "healed without a lease"
    );

    // With the lease back, the app is healed.
    env.isolation.set(false);
    env.wait_configmap("lease-a", Some("1")).await;
    // The operation cut short is closed by the owner, and not run again (it was manual).
    wait_for("the cut-short operation is closed", LIMIT, || async move {
        store
            .local()
            .operation(slow_key)
            .expect("read")
            .is_some_and(|o| {
                o.op_id == "slow-1"
                    && o.finished
                        .as_ref()
                        .is_some_and(|f| f.result.as_str().contains("interrupted"))
            })
    })
    .await;

    cancel.cancel();
    tokio::time::timeout(LIMIT, controller.stopped())
        .await
        .expect("controller stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_given_away_stops_its_sync_until_it_comes_back() {
    let env = env::start().await;
    env.repo.write("slow/cm.yaml", &cm("moved-a", "slow"));
    env.repo.commit("app");
    env.put_app(&env.app("moved", "slow", json!({}))).await;
    let cancel = CancellationToken::new();
    let controller = env.controller(slow_settings(), &cancel);
    request_operation(
        &env,
        "moved",
        "moved-1",
        OperationRequest {
            initiated_by: "test".into(),
            ..Default::default()
        },
    )
    .await;
    let key = status::app_key("argocd", "moved");
    let store = &env.store;
    let k = &key;
    wait_for("the operation runs", LIMIT, || async move {
        store
            .local()
            .operation(k)
            .expect("read")
            .is_some_and(|o| o.op_id == "moved-1" && o.finished.is_none())
    })
    .await;
    env.wait_configmap("moved-a", Some("slow")).await;

    // A map that gives every shard to node 2 (not a member: the leader takes them back later).
    let map = store.local().shard_map().expect("read").expect("map");
    let epoch = map.epoch + 1;
    let moved = ShardMap {
        epoch,
        shards: map
            .shards
            .iter()
            .map(|_| Assignment {
                owner: Some(2),
                since: epoch,
            })
            .collect(),
    };
    store
        .propose(Command::SetShardMap(moved))
        .await
        .expect("set shard map");
    let c = &controller;
    wait_for(
        "the sync of the lost shard is cancelled",
        LIMIT,
        || async move { c.stats().running == 0 },
    )
    .await;
    // Given back by the leader, the shard's unfinished operation is closed by its owner.
    wait_for(
        "the operation is closed as interrupted",
        LIMIT,
        || async move {
            store.local().operation(k).expect("read").is_some_and(|o| {
                o.finished
                    .as_ref()
                    .is_some_and(|f| f.result.as_str().contains("interrupted"))
            })
        },
    )
    .await;
    assert!(env
        .shards
        .may_act(flotilla_shard::shard_of(&key, map.shard_count()))
        .is_ok());

    cancel.cancel();
    tokio::time::timeout(LIMIT, controller.stopped())
        .await
        .expect("controller stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_commits_refresh_only_the_apps_whose_listed_paths_changed() {
    let env = env::start().await;
    env.repo
        .write("one/cm.yaml", &cm("one-a", "1"))
        .write("two/cm.yaml", &cm("two-a", "1"))
        .write("three/cm.yaml", &cm("three-a", "1"))
        .write("shared/values.yaml", "x: 1\n");
    let first = env.repo.commit("apps");
    let (store, url) = (&env.store, env.repo.url());
    let record = |sha: String| {
        let url = url.clone();
        async move {
            store
                .propose(Command::RecordRevision {
                    repo: url,
                    git_ref: "main".into(),
                    sha,
                    at: 0,
                })
                .await
                .expect("record revision");
        }
    };
    let cancel = CancellationToken::new();
    // No periodic resync during the test: only new commits refresh. Nothing is recorded
    // before the second commit, so that one is compared from the revision each status shows.
    let settings = ControllerSettings {
        resync: Duration::from_secs(3600),
        ..env::settings()
    };
    let controller = env.controller(settings, &cancel);
    let automated = json!({"automated": {"prune": true}});
    let annotated = |name: &str, paths: &str| {
        let mut doc = env.app(name, name, automated.clone());
        doc["metadata"]["annotations"] =
            json!({"argocd.argoproj.io/manifest-generate-paths": paths});
        doc
    };
    env.put_app(&annotated("one", ".")).await;
    env.put_app(&annotated("two", ".;/shared")).await;
    // Without the annotation every commit refreshes the app.
    env.put_app(&env.app("three", "three", automated.clone()))
        .await;
    for name in ["one", "two", "three"] {
        env.wait_status(name, "synced at the first commit", |s| {
            s.sync.revision == first && s.is_synced_and_healthy()
        })
        .await;
    }
    let revision = |name: &str| {
        env.status(name)
            .map(|s| s.sync.revision)
            .unwrap_or_default()
    };
    // Let the echoes of the first syncs (live changes of the objects they wrote) settle:
    // any reconcile after the next record would render the recorded commit.
    wait_idle(&controller).await;

    // A change under one/ refreshes `one` and `three`, not `two`.
    env.repo.write("one/cm.yaml", &cm("one-a", "2"));
    let second = env.repo.commit("one changes");
    record(second.clone()).await;
    env.wait_configmap("one-a", Some("2")).await;
    for name in ["one", "three"] {
        env.wait_status(name, "at the second commit", |s| s.sync.revision == second)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        revision("two"),
        first,
        "two lists neither one/ nor the root"
    );

    // The same commit recorded again (two nodes saw one push) refreshes nothing.
    record(second.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(revision("two"), first, "a repeated record refreshed two");
    wait_idle(&controller).await;

    // A change under shared/ concerns `two` (an absolute path) and `three`, not `one`.
    env.repo.write("shared/values.yaml", "x: 2\n");
    let third = env.repo.commit("shared changes");
    record(third.clone()).await;
    for name in ["two", "three"] {
        env.wait_status(name, "at the third commit", |s| s.sync.revision == third)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(revision("one"), second, "one lists only its own directory");

    cancel.cancel();
    tokio::time::timeout(LIMIT, controller.stopped())
        .await
        .expect("controller stops");
}

/// Create an object carrying `app`'s tracking label behind the controller's back.
async fn create_labeled(env: &Env, api_version: &str, kind: &str, name: &str, app: &str) {
    use kube::api::PostParams;
    let k = env.cluster.kind(api_version, kind).await.expect("kind");
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": "default",
            "labels": {flotilla_node::live::INSTANCE_LABEL: app}},
    }))
    .expect("object");
    env.cluster
        .api(&k, "default")
        .create(&PostParams::default(), &obj)
        .await
        .expect("create labeled object");
}

fn extra_listed(st: &flotilla_node::status::AppStatus, kind: &str, name: &str) -> bool {
    st.sync.status == sync_code::OUT_OF_SYNC
        && st
            .resources
            .iter()
            .any(|r| r.kind == kind && r.name == name && r.requires_pruning)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_kinds_in_use_are_watched_unless_every_kind_is_asked_for() {
    let env = env::start().await;
    env.repo.write("kinds/cm.yaml", &cm("kinds-a", "1"));
    env.repo.commit("apps");
    let cancel = CancellationToken::new();
    let controller = env.controller(env::settings(), &cancel);
    env.put_app(&env.app("kinds", "kinds", json!({}))).await;
    env.wait_status("kinds", "OutOfSync", |s| {
        s.sync.status == sync_code::OUT_OF_SYNC
    })
    .await;
    // One watch for the one kind the app deploys, not one per kind the cluster serves.
    let served = env
        .cluster
        .kinds()
        .await
        .expect("discovery")
        .watchable()
        .count();
    let watches = env.sim.watches_started();
    assert!(served > 10, "the cluster serves {served} kinds");
    assert!(
        (1..served / 2).contains(&(watches as usize)),
        "{watches} watches for one kind in use, of {served} served"
    );

    // An object of a kind in use carrying the app's label is found as one to prune.
    create_labeled(&env, "v1", "ConfigMap", "stray-cm", "kinds").await;
    env.wait_status("kinds", "the stray ConfigMap listed for pruning", |s| {
        extra_listed(s, "ConfigMap", "stray-cm")
    })
    .await;
    cancel.cancel();
    tokio::time::timeout(LIMIT, controller.stopped())
        .await
        .expect("controller stops");

    // Watching every kind finds a labeled object of a kind no app deploys.
    create_labeled(&env, "v1", "Secret", "stray-secret", "kinds").await;
    let cancel = CancellationToken::new();
    let controller = env.controller(
        ControllerSettings {
            watch_all_kinds: true,
            ..env::settings()
        },
        &cancel,
    );
    env.wait_status("kinds", "the stray Secret listed for pruning", |s| {
        extra_listed(s, "Secret", "stray-secret")
    })
    .await;
    assert!(
        env.sim.watches_started() as usize >= watches as usize + served - 1,
        "every served kind is watched"
    );
    cancel.cancel();
    tokio::time::timeout(LIMIT, controller.stopped())
        .await
        .expect("controller stops");
}
