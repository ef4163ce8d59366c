//! End to end: real `flotilla node` processes, a real Git server and simulated clusters.
//!
//! - Applications in the management cluster sync to two destination clusters and show their
//!   status back on the resources; a commit arrives through the webhook; a live change is
//!   healed; a malformed manifest in one app leaves the others untouched.
//! - kill -9 of the leader and of a follower under load: every app keeps reconciling, no
//!   acknowledged status is lost, no sync of an app runs twice at once; a full restart keeps
//!   all state.
//! - A fourth node joins and takes its share of shards; SIGTERM makes it leave.

#[path = "e2e/harness.rs"]
mod harness;

use std::time::Duration;

use flotilla_loadtest::git::webhook::{build, send, PushEvent, WebhookProvider};
use harness::*;
use serde_json::Value;

/// Push `commit` of the fixture repository to node `id`'s webhook endpoint as GitHub would.
async fn push(w: &World, id: u64, before: &str, after: &str, modified: Vec<String>) -> u16 {
    let ev = PushEvent::new(&w.git.url_for("apps.git"), "main", before, after, modified);
    let req = build(WebhookProvider::GitHub, &ev, Some(WEBHOOK_SECRET));
    let url = format!(
        "http://{}/api/webhook",
        w.nodes.node(id).expect("node").http
    );
    send(&url, &req).await.expect("webhook sent")
}

fn generation(cm: &Option<Value>) -> Option<String> {
    cm.as_ref()
        .and_then(|c| c["data"]["generation"].as_str())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_sync_to_two_clusters_and_follow_webhooks_drift_and_bad_manifests() {
    let mut w = World::start(6, 3, &["--resync-seconds", "60"]).await;
    w.wait_for(
        "every app Synced and Healthy on its Application",
        120,
        || w.all_synced(),
    )
    .await;
    for i in 0..w.apps {
        assert_eq!(
            generation(&w.configmap(i).await).as_deref(),
            Some("0"),
            "app-{i} deployed to its cluster"
        );
    }
    // Both destinations got their half.
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(w.dest_client.clone(), "app-1");
    assert!(api.get_opt("app-1-cm-0").await.expect("get").is_some());

    // Metrics with Argo CD's names: every app is reported by exactly one node (its owner).
    let metrics_ok = || async {
        let mut app_info = 0;
        let (mut k8s_requests, mut clusters, mut raft) = (false, false, true);
        for n in w.nodes.nodes().to_vec() {
            let Some((200, body)) = http_get(&n.http, "/metrics").await else {
                return false;
            };
            app_info += body
                .lines()
                .filter(|l| {
                    l.starts_with("argocd_app_info{") && l.contains("sync_status=\"Synced\"")
                })
                .count();
            k8s_requests |= body.lines().any(|l| {
                l.starts_with("argocd_app_k8s_request_total{") && l.contains("verb=\"Patch\"")
            });
            clusters |= body.contains("argocd_cluster_connection_status{");
            raft &= body.contains("flotilla_raft_term");
        }
        app_info == w.apps && k8s_requests && clusters && raft
    };
    w.wait_for(
        "each app reported once by its owner in argocd_app_info, cluster and request metrics",
        30,
        metrics_ok,
    )
    .await;

    // A commit reaches the cluster through the webhook (polling is set to an hour).
    let c = w
        .fixture
        .commit_change(&[1], "change app-1")
        .expect("commit");
    let code = push(&w, 2, &c.parent, &c.id, c.modified.clone()).await;
    assert!(code == 200 || code == 202, "webhook answered {code}");
    w.wait_for("app-1 updated after the webhook", 60, || async {
        generation(&w.configmap(1).await).as_deref() == Some("1")
    })
    .await;
    w.wait_for("app-1's Application shows the new revision", 30, || async {
        w.statuses()
            .await
            .iter()
            .any(|(n, s, _, r)| n == "app-1" && s == "Synced" && r == &c.id)
    })
    .await;

    // A live change behind flotilla's back is healed.
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(w.client.clone(), "app-0");
    let patch = serde_json::json!({"data": {"generation": "tampered"}});
    cms.patch(
        "app-0-cm-0",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("tamper");
    w.wait_for("the tampered ConfigMap healed", 60, || async {
        generation(&w.configmap(0).await).as_deref() == Some("0")
    })
    .await;

    // Argo CD's ways of asking on the resource: the `operation` field and the refresh
    // annotation are taken into the store and cleared from the Application.
    let apps_api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        w.client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "argoproj.io",
            "v1alpha1",
            "Application",
        )),
    );
    let ask = serde_json::json!({
        "metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}},
        "operation": {"initiatedBy": {"username": "e2e"}, "sync": {"prune": true}}
    });
    apps_api
        .patch(
            "app-4",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&ask),
        )
        .await
        .expect("ask for a sync on the resource");
    w.wait_for(
        "the sync asked on app-4's resource ran and was cleared",
        60,
        || async {
            let Ok(doc) = w.cli(1, &["app", "get", "app-4"]) else {
                return false;
            };
            let ran = doc["status"]["operationState"]["opId"]
                .as_str()
                .is_some_and(|id| id.starts_with("resource-"))
                && doc["status"]["operationState"]["phase"] == "Succeeded";
            let cleared = setup_apps(&w).await.iter().any(|a| {
                a["metadata"]["name"] == "app-4"
                    && a.get("operation").is_none_or(Value::is_null)
                    && a["metadata"]["annotations"]
                        .get("argocd.argoproj.io/refresh")
                        .is_none()
            });
            ran && cleared
        },
    )
    .await;

    // A malformed manifest in app-2 and a good change to app-3, in one commit.
    let bad = b"apiVersion: v1\nkind: ConfigMap\nmetadata: [this is not a mapping\n".as_slice();
    let good = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-3-cm-0\n  namespace: app-3\ndata:\n  generation: \"7\"\n".as_slice();
    let c = w
        .fixture
        .commit_files(
            &[
                ("apps/app-2/cm-0.yaml", Some(bad)),
                ("apps/app-3/cm-0.yaml", Some(good)),
            ],
            "break app-2, change app-3",
        )
        .expect("commit");
    push(&w, 3, &c.parent, &c.id, c.modified.clone()).await;
    w.wait_for("app-3 updated despite app-2's bad manifest", 60, || async {
        generation(&w.configmap(3).await).as_deref() == Some("7")
    })
    .await;
    w.wait_for(
        "app-2 shows a condition naming the bad file",
        60,
        || async {
            setup_apps(&w).await.iter().any(|a| {
                a["metadata"]["name"] == "app-2"
                    && a["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter().any(|c| {
                            c["message"]
                                .as_str()
                                .is_some_and(|m| m.contains("cm-0.yaml"))
                        })
                    })
            })
        },
    )
    .await;
    // Nothing of app-2 was lost, and the others stay Synced.
    assert_eq!(generation(&w.configmap(2).await).as_deref(), Some("0"));
    let s = w.statuses().await;
    for (n, sync, health, _) in &s {
        if n != "app-2" {
            assert_eq!(
                (sync.as_str(), health.as_str()),
                ("Synced", "Healthy"),
                "{n}"
            );
        }
    }
    w.nodes
        .stop_all(rustix::process::Signal::INT, Duration::from_secs(20))
        .await;
}

async fn setup_apps(w: &World) -> Vec<Value> {
    flotilla_node::dev::setup::list_applications(&w.client, NS)
        .await
        .unwrap_or_default()
}

/// Every app's status in an export, by app key.
fn statuses_of(export: &Value) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    if let Some(list) = export["statuses"].as_array() {
        for s in list {
            if let Some(app) = s["app"].as_str() {
                out.insert(app.to_owned(), s.clone());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_of_leader_and_follower_loses_nothing_and_full_restart_keeps_state() {
    let mut w = World::start(8, 3, &["--resync-seconds", "60", "--log-format", "json"]).await;
    w.wait_for("every app Synced and Healthy", 120, || w.all_synced())
        .await;
    let mut killed_at = Vec::new();
    let mut round = 0u64;
    for victim_is_leader in [true, false] {
        let leader = loop {
            if let Some(l) = w.leader(1).or_else(|| w.leader(2)).or_else(|| w.leader(3)) {
                break l;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let victim = if victim_is_leader {
            leader
        } else {
            (1..=3).find(|&n| n != leader).expect("a follower")
        };
        let survivor = (1..=3).find(|&n| n != victim).expect("a survivor");
        let before = statuses_of(&w.export(survivor).await.expect("export before"));
        assert_eq!(before.len(), w.apps, "every app has an acknowledged status");

        // Load: a commit changing every app, announced to a surviving node; then the kill.
        round += 1;
        let all: Vec<usize> = (0..w.apps).collect();
        let c = w
            .fixture
            .commit_change(&all, "change every app")
            .expect("commit");
        push(&w, survivor, &c.parent, &c.id, c.modified.clone()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        killed_at.push((victim, now_ms()));
        w.nodes.kill(victim).await.expect("kill -9");

        let want = round.to_string();
        w.wait_for(
            &format!("every app reconciled after kill -9 of node {victim}"),
            90,
            || async {
                for i in 0..w.apps {
                    if generation(&w.configmap(i).await).as_deref() != Some(want.as_str()) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        // Acknowledged statuses are all still there, none older than before.
        let after = statuses_of(&w.export(survivor).await.expect("export after"));
        for (app, s) in &before {
            let a = after
                .get(app)
                .unwrap_or_else(|| panic!("{app} lost its status"));
            let reconciled = |v: &Value| v["status"]["reconciledAt"].as_str().map(str::to_owned);
            let history = |v: &Value| v["status"]["history"].as_array().map_or(0, Vec::len);
            assert!(reconciled(s).is_some(), "{app}: no reconciledAt in {s}");
            // RFC 3339 in UTC with a fixed format: text order is time order.
            assert!(
                reconciled(a) >= reconciled(s),
                "{app}: status went back in time: {s} then {a}"
            );
            assert!(
                history(a) >= history(s),
                "{app}: sync history lost entries: {s} then {a}"
            );
        }
        w.nodes.start(victim).expect("restart");
        w.wait_for("restarted node is a member again", 60, || async {
            w.members(survivor).contains(&victim)
        })
        .await;
    }
    let overlaps = overlapping_syncs(&sync_intervals(&w), &killed_at);
    if !overlaps.is_empty() {
        w.dump_logs();
    }
    assert!(
        overlaps.is_empty(),
        "syncs ran twice at once: {overlaps:?}; kills at {killed_at:?}"
    );

    // Full restart: everything stops, everything comes back with the same state.
    let before = w.export(1).await.expect("export");
    w.nodes
        .stop_all(rustix::process::Signal::KILL, Duration::from_secs(10))
        .await;
    w.nodes.start_all().expect("restart all");
    w.wait_for("a leader after the full restart", 60, || async {
        w.leader(1).is_some()
    })
    .await;
    let after = w.export(1).await.expect("export after restart");
    for table in ["apps", "projects", "clusters", "repos"] {
        assert_eq!(
            before[table], after[table],
            "{table} kept across the restart"
        );
    }
    assert_eq!(statuses_of(&before).len(), statuses_of(&after).len());
    // And it keeps reconciling.
    round += 1;
    let c = w
        .fixture
        .commit_change(&[0, 1], "after restart")
        .expect("commit");
    push(&w, 1, &c.parent, &c.id, c.modified.clone()).await;
    let want = round.to_string();
    w.wait_for("apps updated after the full restart", 90, || async {
        generation(&w.configmap(0).await).as_deref() == Some(want.as_str())
            && generation(&w.configmap(1).await).as_deref() == Some(want.as_str())
    })
    .await;
    w.nodes
        .stop_all(rustix::process::Signal::INT, Duration::from_secs(20))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_joins_takes_its_share_and_leaves_on_sigterm() {
    let mut w = World::start(8, 3, &["--resync-seconds", "60"]).await;
    w.wait_for("every app Synced and Healthy", 120, || w.all_synced())
        .await;
    let four = flotilla_node::dev::launcher::NodeAddrs::free(4).expect("ports");
    w.nodes.add(four);
    w.nodes.start(4).expect("start node 4");
    w.wait_for("node 4 is a member", 60, || async {
        w.members(1).contains(&4)
    })
    .await;
    w.wait_for("node 4 owns a share of the shards", 60, || async {
        let Ok(v) = w.cli(1, &["shard", "list"]) else {
            return false;
        };
        v["nodes"].as_array().is_some_and(|nodes| {
            nodes.iter().any(|n| {
                n["node"].as_u64() == Some(4) && n["shards"].as_u64().is_some_and(|s| s >= 900)
            })
        })
    })
    .await;
    let (code, _) = http_get(&w.nodes.node(4).expect("node 4").http, "/readyz")
        .await
        .expect("readyz");
    assert_eq!(code, 200, "node 4 is ready");

    // SIGTERM: it hands its shards back and leaves the group, then exits cleanly.
    w.nodes
        .signal(4, rustix::process::Signal::TERM)
        .expect("SIGTERM");
    let code = w.nodes.wait(4, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "node 4 exits 0 after leaving");
    w.wait_for("node 4 is no longer a member", 30, || async {
        !w.members(1).contains(&4)
    })
    .await;
    // The apps stay reconciled by the remaining nodes.
    let c = w
        .fixture
        .commit_change(&[5], "after node 4 left")
        .expect("commit");
    push(&w, 2, &c.parent, &c.id, c.modified.clone()).await;
    w.wait_for("app-5 updated after node 4 left", 60, || async {
        generation(&w.configmap(5).await).as_deref() == Some("1")
    })
    .await;
    w.nodes
        .stop_all(rustix::process::Signal::INT, Duration::from_secs(20))
        .await;
}
