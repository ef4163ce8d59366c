//! The kube client (the version flotilla uses) against a real HTTPS simcluster.
#![cfg(feature = "simcluster")]

mod simcluster_support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use kube::runtime::watcher;
use serde_json::json;
use simcluster_support::{api_err, client, eventually, start};

fn cm(name: &str, labels: serde_json::Value, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": data}))
    .unwrap()
}

#[tokio::test]
async fn discovery_legacy_and_aggregated_agree() {
    let sim = start().await;
    let c = client(&sim).await;
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    for d in [
        Discovery::new(c.clone()).run().await.unwrap(),
        Discovery::new(c.clone()).run_aggregated().await.unwrap(),
    ] {
        assert!(d.has_group("apps") && d.has_group("apiextensions.k8s.io") && d.has_group(""));
        let apps = d.get("apps").unwrap();
        let (ar, caps) = apps.recommended_kind("Deployment").unwrap();
        assert_eq!(ar.plural, "deployments");
        assert!(
            caps.subresources
                .iter()
                .any(|(s, _)| s.plural == "deployments/status" || s.plural == "status"),
            "{caps:?}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn crud_selectors_paging_and_optimistic_concurrency() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    for i in 0..5 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        api.create(
            &PostParams::default(),
            &cm(
                &format!("c{i}"),
                json!({"tier": tier}),
                json!({"i": i.to_string()}),
            ),
        )
        .await
        .unwrap();
    }
    let dup = api_err(
        api.create(&PostParams::default(), &cm("c0", json!({}), json!({})))
            .await,
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    let even = api
        .list(&ListParams::default().labels("tier=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 3);
    let set = api
        .list(&ListParams::default().labels("tier in (odd),tier notin (even)"))
        .await
        .unwrap();
    assert_eq!(set.items.len(), 2);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=c3"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let page1 = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page1.items.len(), 2);
    let token = page1.metadata.continue_.clone().expect("continue token");
    let page2 = api
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(page2.items.len(), 3);
    assert!(page2.metadata.resource_version.is_some());

    let mut current = api.get("c1").await.unwrap();
    let stale = current.clone();
    current.data = Some([("i".to_string(), "changed".to_string())].into());
    let updated = api
        .replace("c1", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        stale.metadata.resource_version
    );
    let conflict = api_err(api.replace("c1", &PostParams::default(), &stale).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));

    // A write that changes nothing bumps nothing.
    let same = api
        .replace("c1", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );

    let missing = api_err(api.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    api.delete("c1", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(api.get("c1").await).code, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = api
        .create(&pp, &cm("dry", json!({}), json!({"a": "1"})))
        .await
        .unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    assert_eq!(api_err(api.get("dry").await).code, 404);
    api.create(
        &PostParams::default(),
        &cm("real", json!({}), json!({"a": "1"})),
    )
    .await
    .unwrap();
    let patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let p = api
        .patch("real", &patch, &Patch::Merge(json!({"data": {"a": "2"}})))
        .await
        .unwrap();
    assert_eq!(p.data.unwrap()["a"], "2");
    assert_eq!(api.get("real").await.unwrap().data.unwrap()["a"], "1");
    api.delete(
        "real",
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(api.get("real").await.is_ok());
    sim.shutdown().await;
}

fn deployment(replicas: i32, image: &str) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}})
}

#[tokio::test]
async fn server_side_apply_conflicts_force_and_status() {
    let sim = start().await;
    let api: Api<Deployment> = Api::namespaced(client(&sim).await, "default");
    let a = api
        .patch(
            "web",
            &PatchParams::apply("team-a"),
            &Patch::Apply(deployment(2, "nginx:1")),
        )
        .await
        .unwrap();
    assert_eq!(a.metadata.generation, Some(1));
    let mf = a.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("team-a"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    let err = api_err(
        api.patch(
            "web",
            &PatchParams::apply("team-b"),
            &Patch::Apply(deployment(5, "nginx:1")),
        )
        .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"team-a\": .spec.replicas"
    );

    let forced = api
        .patch(
            "web",
            &PatchParams::apply("team-b").force(),
            &Patch::Apply(deployment(5, "nginx:1")),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.as_ref().unwrap().replicas, Some(5));
    assert_eq!(forced.metadata.generation, Some(2));

    // Re-applying the same configuration is a no-op: same resourceVersion.
    let again = api
        .patch(
            "web",
            &PatchParams::apply("team-b").force(),
            &Patch::Apply(deployment(5, "nginx:1")),
        )
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        forced.metadata.resource_version
    );

    // The simulated controller reports the rollout done.
    let ready = eventually(10, "deployment available", || {
        let api = api.clone();
        async move {
            let d = api.get("web").await.ok()?;
            let s = d.status?;
            (s.available_replicas == Some(5) && s.observed_generation == Some(2)).then_some(s)
        }
    })
    .await;
    assert!(ready
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Available" && c.status == "True"));
    sim.shutdown().await;
}

#[tokio::test]
async fn watcher_sees_changes_in_both_list_modes() {
    let sim = start().await;
    let c = client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    api.create(&PostParams::default(), &cm("before", json!({}), json!({})))
        .await
        .unwrap();
    for cfg in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut stream = watcher(api.clone(), cfg).boxed();
        let mut seen_init_done = false;
        let name = format!("w{}", sim.resource_version());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let ev = tokio::time::timeout_at(deadline, stream.try_next())
                .await
                .expect("watch event in time")
                .unwrap()
                .unwrap();
            match ev {
                watcher::Event::InitDone => {
                    seen_init_done = true;
                    api.create(&PostParams::default(), &cm(&name, json!({}), json!({})))
                        .await
                        .unwrap();
                }
                watcher::Event::Apply(o) if o.metadata.name.as_deref() == Some(name.as_str()) => {
                    break
                }
                _ => {}
            }
        }
        assert!(seen_init_done);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn finalizers_and_owner_reference_gc() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    let owner = api
        .create(&PostParams::default(), &cm("owner", json!({}), json!({})))
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    for (name, fin) in [("dep1", json!([])), ("dep2", json!(["example.com/hold"]))] {
        let d: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "finalizers": fin,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}})).unwrap();
        api.create(&PostParams::default(), &d).await.unwrap();
    }
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(10, "dep1 collected", || {
        let api = api.clone();
        async move { api.get("dep1").await.is_err().then_some(()) }
    })
    .await;
    let held = api.get("dep2").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "finalizer keeps dep2 while deleting"
    );
    api.patch(
        "dep2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_err(api.get("dep2").await).code, 404);

    // Foreground: the owner stays (with deletionTimestamp) until dependents are gone.
    let owner = api
        .create(&PostParams::default(), &cm("fg", json!({}), json!({})))
        .await
        .unwrap();
    let d: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "fg-dep",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "fg", "uid": owner.metadata.uid.unwrap()}]}})).unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    api.delete("fg", &DeleteParams::foreground()).await.unwrap();
    eventually(10, "foreground deletion done", || {
        let api = api.clone();
        async move { (api.get("fg").await.is_err() && api.get("fg-dep").await.is_err()).then_some(()) }
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn label_selector_watch_sees_objects_enter_and_leave() {
    use kube::api::{WatchEvent, WatchParams};
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    let made = api
        .create(
            &PostParams::default(),
            &cm("m", json!({"tier": "b"}), json!({})),
        )
        .await
        .unwrap();
    let rv = made.metadata.resource_version.unwrap();
    let mut w = api
        .watch(&WatchParams::default().labels("tier=a").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    for tier in ["a", "b"] {
        api.patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": tier}}})),
        )
        .await
        .unwrap();
    }
    let mut kinds = vec![];
    while kinds.len() < 2 {
        match w.try_next().await.unwrap().expect("event") {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            _ => {}
        }
    }
    assert_eq!(kinds, ["ADDED", "DELETED"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn scale_subresource_reads_and_sets_replicas() {
    let sim = start().await;
    let api: Api<Deployment> = Api::namespaced(client(&sim).await, "default");
    api.patch(
        "web",
        &PatchParams::apply("t"),
        &Patch::Apply(deployment(2, "nginx")),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get_scale("web").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );
    let s = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await
        .unwrap();
    assert_eq!(s.spec.unwrap().replicas, Some(6));
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        Some(6)
    );
    sim.shutdown().await;
}
