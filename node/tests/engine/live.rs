//! The live-state cache: shared watches, the index by app, changes, 410 relists, offline.
use crate::env::{cm, docs, patch_live, start, Sync};
use flotilla_loadtest::simcluster::FaultConfig;
use flotilla_node::clusters::ConnectionStatus;
use flotilla_node::live::{cache::LiveCache, compare_with, Tracking};
use std::time::Duration;
use tokio::time::{timeout, Instant};

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn cache_follows_managed_objects_and_survives_410_and_outages() {
    let env = start().await;
    assert!(Sync::new("a")
        .run(&env, &docs(&(cm("a1", "1") + &cm("a2", "1"))))
        .await
        .succeeded());
    assert!(Sync::new("b")
        .run(&env, &docs(&cm("b1", "1")))
        .await
        .succeeded());
    let (cache, mut changes) = LiveCache::new(Tracking::Label);
    let n = cache.watch_cluster(&env.cluster).await.expect("watch");
    assert!(n > 5, "one watch per kind: {n}");
    let name = env.cluster.name().to_string();
    until("the initial lists", || {
        cache.app_objects(&name, "a").len() == 2 && cache.app_objects(&name, "b").len() == 1
    })
    .await;
    assert!(cache.is_ready(&name, "", "ConfigMap"));
    assert!(cache.app_objects(&name, "nobody").is_empty());
    // Unmanaged objects (the seeded namespaces) are not cached.
    assert!(cache.app_objects(&name, "").is_empty());
    while changes.try_recv().is_some() {}
    let desired = docs(&(cm("a1", "1") + &cm("a2", "1")));
    let cmp = compare_with(
        &env.cluster,
        "a",
        &desired,
        cache.app_objects(&name, "a"),
        "default",
        Tracking::Label,
        &Default::default(),
    )
    .await
    .expect("compare from the cache");
    assert!(cmp.in_sync() && cmp.extra.is_empty(), "{:?}", cmp.diffs);

    tracing::info!("a live change is seen and announced");
    patch_live(
        &env,
        "v1",
        "ConfigMap",
        "default",
        "a1",
        serde_json::json!({"data": {"x": "live"}}),
    )
    .await;
    let change = timeout(Duration::from_secs(20), changes.recv())
        .await
        .expect("a change")
        .expect("open");
    assert_eq!((change.app.as_str(), change.key.name.as_str()), ("a", "a1"));
    until("the new value", || {
        cache
            .app_objects(&name, "a")
            .iter()
            .any(|o| o["data"]["x"] == "live")
    })
    .await;

    tracing::info!("a tracking label moved from app b to app a: both are announced");
    while changes.try_recv().is_some() {}
    patch_live(
        &env,
        "v1",
        "ConfigMap",
        "default",
        "b1",
        serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/instance": "a"}}}),
    )
    .await;
    let mut apps = std::collections::BTreeSet::new();
    while apps.len() < 2 {
        let change = timeout(Duration::from_secs(20), changes.recv())
            .await
            .expect("changes for both apps")
            .expect("open");
        if change.key.name == "b1" {
            apps.insert(change.app);
        }
    }
    assert_eq!(apps, ["a".to_string(), "b".to_string()].into());
    until("b1 moved to a", || cache.app_objects(&name, "b").is_empty()).await;

    tracing::info!("watches cut and resumed with a forced 410: the watcher lists again");
    env.sim.set_faults(FaultConfig {
        force_watch_410: true,
        ..Default::default()
    });
    env.sim.expire_watch_history();
    env.sim.drop_watches();
    assert!(Sync::new("a")
        .run(&env, &docs(&(cm("a1", "1") + &cm("a3", "1"))))
        .await
        .succeeded());
    until("the relisted state", || {
        let names: Vec<String> = cache
            .app_objects(&name, "a")
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        names.len() == 2 && names.contains(&"a3".to_string())
    })
    .await;
    env.sim.set_faults(FaultConfig::default());

    tracing::info!("offline: the status says so; back online: it recovers");
    env.sim.set_offline(true);
    until("a failed status", || {
        matches!(env.cluster.status(), ConnectionStatus::Failed(_))
    })
    .await;
    env.sim.set_offline(false);
    assert!(Sync::new("b")
        .run(&env, &docs(&(cm("b1", "1") + &cm("b2", "1"))))
        .await
        .succeeded());
    until("recovery", || cache.app_objects(&name, "b").len() == 2).await;
    assert_eq!(env.cluster.status(), ConnectionStatus::Connected);
    timeout(Duration::from_secs(10), cache.shutdown())
        .await
        .expect("watches stop");
}

#[tokio::test]
async fn listing_managed_objects_can_be_limited_to_some_kinds() {
    let env = start().await;
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: only-s\n  namespace: default\nstringData:\n  k: v\n---\n";
    assert!(Sync::new("only")
        .run(&env, &docs(&(cm("only-c", "1") + secret)))
        .await
        .succeeded());
    let kinds = |objs: &[serde_json::Value]| {
        let mut k: Vec<String> = objs
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        k.sort();
        k
    };
    let all = flotilla_node::live::list_managed(&env.cluster, "only", Tracking::Label, None)
        .await
        .expect("list every kind");
    assert_eq!(kinds(&all), ["ConfigMap", "Secret"]);
    let only: std::collections::BTreeSet<(String, String)> =
        [(String::new(), "ConfigMap".to_string())].into();
    let some =
        flotilla_node::live::list_managed(&env.cluster, "only", Tracking::Label, Some(&only))
            .await
            .expect("list one kind");
    assert_eq!(kinds(&some), ["ConfigMap"]);
}
