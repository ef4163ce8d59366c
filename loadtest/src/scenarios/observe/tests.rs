//! The observer's bookkeeping and percentile math, and the observer against real simulated
//! clusters (HTTPS API servers in this process, real kube watches).

use super::*;
use flotilla_loadtest::cluster::setup;
use flotilla_loadtest::simcluster::{SimConfig, SimFleet};
use kube::api::{Patch, PatchParams};

fn data(generation: &str) -> Data {
    [("app", "app-1"), ("generation", generation)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let s: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&s, 50.0), Some(50.0));
    assert_eq!(percentile(&s, 99.0), Some(99.0));
    assert_eq!(percentile(&s, 100.0), Some(100.0));
    assert_eq!(percentile(&s, 0.0), Some(1.0));
    assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
    assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    assert_eq!(percentile(&[], 50.0), None);
    // 3 samples: p50 is the 2nd, p99 the 3rd.
    assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
    assert_eq!(percentile(&[1.0, 2.0, 3.0], 99.0), Some(3.0));
}

#[test]
fn latencies_sort_and_summarize() {
    let l = Latencies::new(vec![30.0, 10.0, f64::NAN, 20.04]);
    assert_eq!(l.len(), 3);
    assert_eq!(l.percentile(50.0), Some(20.04));
    assert_eq!(l.max(), Some(30.0));
    let mean = l.mean().expect("mean");
    assert!((mean - 60.04 / 3.0).abs() < 1e-9, "{mean}");
    assert_eq!(l.samples_json(), json!([10.0, 20.0, 30.0]));
    assert_eq!(Latencies::new(vec![]).max(), None);
    assert_eq!(Latencies::new(vec![]).mean(), None);
}

#[test]
fn app_index_accepts_only_the_first_configmap_in_its_namespace() {
    assert_eq!(app_index("app-12", "app-12-cm-0"), Some(12));
    assert_eq!(app_index("app-12", "app-12-cm-1"), None);
    assert_eq!(app_index("app-3", "app-12-cm-0"), None);
    assert_eq!(app_index("default", "kube-root-ca.crt"), None);
    assert_eq!(app_index("app-x", "app-x-cm-0"), None);
}

#[test]
fn generations_record_the_first_time_each_was_reached() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut a = AppSeen::default();
    a.record(at(0), Some(data("0")));
    a.record(at(10), Some(data("2")));
    // A relist showing an older generation again changes nothing.
    a.record(at(20), Some(data("1")));
    a.record(at(30), Some(data("3")));
    assert_eq!(a.generation_seen(0), Some(at(0)));
    // Generation 1 was skipped: the object showed 2 (which includes 1) first.
    assert_eq!(a.generation_seen(1), Some(at(10)));
    assert_eq!(a.generation_seen(2), Some(at(10)));
    assert_eq!(a.generation_seen(3), Some(at(30)));
    assert_eq!(a.generation_seen(4), None);
}

#[test]
fn restored_needs_a_difference_after_since_then_equality() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let good = data("0");
    let mut a = AppSeen::default();
    a.record(at(0), Some(good.clone()));
    // Equal before any difference: not a restore.
    assert_eq!(a.restored_seen(at(0), &good), None);
    a.record(at(10), Some(data("drift-1")));
    assert_eq!(a.restored_seen(at(5), &good), None);
    // A repeated state (relist) is not a new change.
    a.record(at(15), Some(data("drift-1")));
    a.record(at(20), Some(good.clone()));
    assert_eq!(a.restored_seen(at(5), &good), Some(at(20)));
    // A difference before `since` does not count.
    assert_eq!(a.restored_seen(at(12), &good), None);
    // Deleted, then recreated.
    a.record(at(30), None);
    a.record(at(40), Some(good.clone()));
    assert_eq!(a.restored_seen(at(25), &good), Some(at(40)));
    // Only the last HISTORY changes are kept.
    for k in 0..HISTORY as u64 * 2 {
        a.record(at(100 + k), Some(data(&k.to_string())));
    }
    assert_eq!(a.recent.len(), HISTORY);
}

fn configmap(i: usize, generation: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("app-{i}-cm-0"),
            "namespace": format!("app-{i}"),
            "labels": {PART_OF: format!("app-{i}")},
        },
        "data": {"app": format!("app-{i}"), "index": "0", "generation": generation},
    })
}

#[tokio::test]
async fn observer_sees_changes_in_every_cluster_through_its_watches() {
    let fleet = SimFleet::start(2, 0, SimConfig::default())
        .await
        .expect("clusters");
    let mut clients = Vec::new();
    for c in fleet.clusters() {
        clients.push(client_for(c).await.expect("client"));
    }
    // Apps 0..4, app i in cluster i % 2; app 3's object does not exist yet.
    for i in 0..4 {
        let c = &clients[i % 2];
        setup::apply(c, &setup::namespace(&format!("app-{i}")))
            .await
            .expect("namespace");
        if i != 3 {
            setup::apply(c, &configmap(i, "0"))
                .await
                .expect("configmap");
        }
    }
    let observer = Observer::start(fleet.clusters(), 4)
        .await
        .expect("observer");
    observer
        .ready(Duration::from_secs(20))
        .await
        .expect("watches listed");
    for i in 0..3 {
        let d = observer.latest(i).expect("listed");
        assert_eq!(d.get("generation").map(String::as_str), Some("0"));
    }
    assert!(observer.latest(3).is_none());
    assert!(observer.latest(99).is_none());

    // A change made after `before` is seen after it, through the watch.
    let before = Instant::now();
    setup::apply(&clients[1], &configmap(1, "1"))
        .await
        .expect("apply");
    setup::apply(&clients[1], &configmap(3, "2"))
        .await
        .expect("apply");
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = observer
        .wait_generation(1, 1, deadline)
        .await
        .expect("seen");
    assert!(seen >= before);
    assert!(observer.wait_generation(3, 2, deadline).await.is_some());
    // Never reached: waits until the deadline, then says so.
    let short = Instant::now() + Duration::from_millis(300);
    assert_eq!(observer.wait_generation(0, 1, short).await, None);
    assert!(Instant::now() >= short);

    // Drift and heal of app 2 in cluster 0.
    let expected = (*observer.latest(2).expect("app 2")).clone();
    let since = Instant::now();
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(clients[0].clone(), "app-2");
    api.patch(
        "app-2-cm-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"generation": "drift"}})),
    )
    .await
    .expect("drift");
    // Not restored while drifted.
    let short = Instant::now() + Duration::from_millis(300);
    assert_eq!(
        observer.wait_restored(2, since, &expected, short).await,
        None
    );
    assert_eq!(
        observer
            .latest(2)
            .and_then(|d| d.get("generation").cloned()),
        Some("drift".to_string())
    );
    let healed_at = Instant::now();
    setup::apply(&clients[0], &configmap(2, "0"))
        .await
        .expect("heal");
    let restored = observer
        .wait_restored(
            2,
            since,
            &expected,
            Instant::now() + Duration::from_secs(20),
        )
        .await
        .expect("restored");
    assert!(restored >= healed_at);
    let stats = observer.stats();
    assert!(stats.events >= 6, "{stats:?}");
    drop(observer);
    fleet.shutdown().await;
}
