//! Hooks, waves and health driven by the simulated controllers; Lua checks.
use crate::env::{cm, deployment, docs, get, start, statuses, Sync};
use flotilla_node::health::{assess, lua::Customizations, HealthStatus};
use flotilla_node::sync::result::{HookPhase, OperationPhase};
use std::time::Duration;

fn job(name: &str, hook: &str, extra_annotations: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations:\n    argocd.argoproj.io/hook: {hook}\n{extra_annotations}spec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n---\n"
    )
}

fn wave(doc: String, w: i32) -> String {
    doc.replacen(
        "metadata:\n",
        &format!("metadata:\n  annotations:\n    argocd.argoproj.io/sync-wave: \"{w}\"\n"),
        1,
    )
}

#[tokio::test]
async fn presync_waves_and_postsync_run_in_order() {
    let env = start().await;
    let yaml = job(
        "migrate",
        "PreSync",
        "    argocd.argoproj.io/hook-delete-policy: HookSucceeded\n",
    ) + &wave(cm("config", "1"), 0)
        + &wave(deployment("web", 1), 1)
        + &job("smoke", "PostSync", "");
    let s = Sync::new("hooks");
    let op = s.run(&env, &docs(&yaml)).await;
    assert_eq!(op.phase, OperationPhase::Succeeded, "{op:#?}");
    let order: Vec<(String, String)> = op
        .resources
        .iter()
        .map(|r| (r.sync_phase.clone(), r.name.clone()))
        .collect();
    assert_eq!(
        order,
        [
            ("PreSync", "migrate"),
            ("Sync", "config"),
            ("Sync", "web"),
            ("PostSync", "smoke")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(op.resources[0].hook_phase, Some(HookPhase::Succeeded));
    assert_eq!(op.resources[3].hook_phase, Some(HookPhase::Succeeded));
    // HookSucceeded deleted the PreSync job; the PostSync job (default policy) stays.
    assert!(get(&env, "batch/v1", "Job", "default", "migrate")
        .await
        .is_none());
    let smoke = get(&env, "batch/v1", "Job", "default", "smoke")
        .await
        .expect("smoke job");
    let first_uid = smoke["metadata"]["uid"].clone();
    // The Deployment of wave 1 was healthy before PostSync ran.
    let web = get(&env, "apps/v1", "Deployment", "default", "web")
        .await
        .expect("web");
    assert_eq!(
        assess(&web, &Customizations::none()).map(|h| h.status),
        Some(HealthStatus::Healthy)
    );

    tracing::info!("a second sync recreates the PostSync hook (BeforeHookCreation by default)");
    let op = s.run(&env, &docs(&yaml)).await;
    assert!(op.succeeded(), "{op:#?}");
    let smoke = get(&env, "batch/v1", "Job", "default", "smoke")
        .await
        .expect("smoke job");
    assert_ne!(smoke["metadata"]["uid"], first_uid);
    // Hooks are not extras: nothing was pruned.
    assert!(!statuses(&op).iter().any(|s| s.contains("Pruned")));
}

#[tokio::test]
async fn failing_hook_fails_the_sync_and_runs_syncfail_hooks() {
    let env = start().await;
    let yaml = job("bad", "PreSync", "    simcluster.flotilla.dev/fail: \"true\"\n    argocd.argoproj.io/hook-delete-policy: HookFailed\n")
        + &cm("never", "1")
        + "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: cleanup-\n  annotations:\n    argocd.argoproj.io/hook: SyncFail\ndata: {x: \"1\"}\n";
    let op = Sync::new("fails").run(&env, &docs(&yaml)).await;
    assert_eq!(op.phase, OperationPhase::Failed, "{op:#?}");
    assert!(op.message.contains("PreSync"), "{}", op.message);
    assert_eq!(op.resources[0].hook_phase, Some(HookPhase::Failed));
    assert!(
        op.resources[0].message.contains("hook failed"),
        "{}",
        op.resources[0].message
    );
    // The Sync phase never ran; the SyncFail hook did, under a generated name.
    assert!(get(&env, "v1", "ConfigMap", "default", "never")
        .await
        .is_none());
    let fail_hook = op
        .resources
        .iter()
        .find(|r| r.sync_phase == "SyncFail")
        .expect("SyncFail hook ran");
    assert!(fail_hook.name.starts_with("cleanup-") && fail_hook.name.len() > "cleanup-".len());
    assert!(
        get(&env, "batch/v1", "Job", "default", "bad")
            .await
            .is_none(),
        "HookFailed deleted it"
    );
}

#[tokio::test]
async fn health_follows_the_simulated_controllers() {
    let env = start().await;
    let mut s = Sync::new("health");
    s.step_timeout = Duration::from_secs(20);
    let degraded = job(
        "crash",
        "Sync",
        "    simcluster.flotilla.dev/fail: \"true\"\n",
    )
    .replace("    argocd.argoproj.io/hook: Sync\n", "    x: y\n");
    let op = s.run(&env, &docs(&degraded)).await;
    assert_eq!(op.phase, OperationPhase::Failed);
    assert!(op.resources[0].message.contains("Degraded"), "{op:#?}");

    tracing::info!("a Deployment goes from Progressing to Healthy as the controller reports");
    let desired = flotilla_node::live::prepare_desired(
        &env.cluster,
        &docs(&deployment("slow", 3))[0],
        "health2",
        "default",
        Default::default(),
    )
    .await
    .expect("prepare");
    let written = flotilla_node::sync::apply::write(
        &env.cluster,
        &desired,
        flotilla_node::sync::apply::Mode::ServerSide,
        false,
        true,
    )
    .await
    .expect("apply");
    let none = Customizations::none();
    assert_eq!(
        assess(&written, &none).map(|h| h.status),
        Some(HealthStatus::Progressing)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let live = get(&env, "apps/v1", "Deployment", "default", "slow")
            .await
            .expect("live");
        match assess(&live, &none).map(|h| h.status) {
            Some(HealthStatus::Healthy) => break,
            Some(HealthStatus::Progressing) => {}
            other => panic!("unexpected health {other:?}: {live:#}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never Healthy: {live:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn lua_checks_that_error_or_loop_are_unknown_without_hanging() {
    let env = start().await;
    assert!(Sync::new("lua")
        .run(&env, &docs(&cm("probe", "1")))
        .await
        .succeeded());
    let live = get(&env, "v1", "ConfigMap", "default", "probe")
        .await
        .expect("live");
    let mut custom = Customizations::none();
    custom.insert(
        "",
        "ConfigMap",
        "hs = {}\nhs.status = obj.data.x == '1' and 'Healthy' or 'Degraded'\nreturn hs",
    );
    assert_eq!(
        assess(&live, &custom).map(|h| h.status),
        Some(HealthStatus::Healthy)
    );
    custom.insert("", "ConfigMap", "error('broken check')");
    let h = assess(&live, &custom).expect("health");
    assert_eq!(h.status, HealthStatus::Unknown);
    assert!(h.message.contains("broken check"), "{}", h.message);
    custom.insert("", "ConfigMap", "while true do end");
    let h = tokio::time::timeout(Duration::from_secs(30), async { assess(&live, &custom) })
        .await
        .expect("a looping script is stopped by its time limit")
        .expect("health");
    assert_eq!(h.status, HealthStatus::Unknown);
}
