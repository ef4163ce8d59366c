//! Sync, prune, self-heal and ignoreDifferences.
use crate::env::{cm, deployment, docs, get, patch_live, start, statuses, Env, Sync};
use flotilla_node::diff::{Drift, IgnoreRule};
use flotilla_node::sync::result::{OperationPhase, ResultCode};
use serde_json::json;
use serde_json::Value;

#[tokio::test]
async fn sync_applies_waits_for_health_and_prunes() {
    let env = start().await;
    tracing::info!("first sync: a ConfigMap and a Deployment");
    let desired = docs(&(cm("settings", "1") + &deployment("web", 2)));
    let s = Sync::new("shop");
    assert!(!s.compare(&env, &desired).await.in_sync());
    let op = s.run(&env, &desired).await;
    assert_eq!(op.phase, OperationPhase::Succeeded, "{op:#?}");
    assert_eq!(
        statuses(&op),
        ["ConfigMap/settings=Synced", "Deployment/web=Synced"]
    );
    let live = get(&env, "apps/v1", "Deployment", "default", "web")
        .await
        .expect("deployment exists");
    assert_eq!(
        live["metadata"]["labels"]["app.kubernetes.io/instance"],
        "shop"
    );
    // The executor waited for the simulated controller to make the Deployment available.
    assert_eq!(live["status"]["availableReplicas"], 2, "{live:#}");
    assert!(s.compare(&env, &desired).await.in_sync());

    tracing::info!("the ConfigMap leaves Git: without prune it is only reported");
    let fewer = docs(&deployment("web", 2));
    let mut no_prune = Sync::new("shop");
    no_prune.request.prune = false;
    let op = no_prune.run(&env, &fewer).await;
    assert!(
        statuses(&op).contains(&"ConfigMap/settings=PruneSkipped".to_string()),
        "{op:#?}"
    );
    assert!(get(&env, "v1", "ConfigMap", "default", "settings")
        .await
        .is_some());
    let cmp = s.compare(&env, &fewer).await;
    assert_eq!(cmp.extra.len(), 1);
    assert!(cmp.diffs.iter().any(|d| d.drift == Drift::Extra));

    tracing::info!("with prune it is deleted");
    let op = s.run(&env, &fewer).await;
    assert!(
        statuses(&op).contains(&"ConfigMap/settings=Pruned".to_string()),
        "{op:#?}"
    );
    assert!(get(&env, "v1", "ConfigMap", "default", "settings")
        .await
        .is_none());
    assert!(s.compare(&env, &fewer).await.in_sync());
}

#[tokio::test]
async fn prune_false_and_prune_last() {
    let env = start().await;
    let keep = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  annotations:\n    argocd.argoproj.io/sync-options: Prune=false\ndata: {x: \"1\"}\n---\n";
    let last = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: last\n  annotations:\n    argocd.argoproj.io/sync-options: PruneLast=true\ndata: {x: \"1\"}\n---\n";
    let s = Sync::new("p");
    let op = s
        .run(
            &env,
            &docs(&(keep.to_string() + last + &cm("early", "1") + &cm("stay", "1"))),
        )
        .await;
    assert!(op.succeeded(), "{op:#?}");
    let op = s.run(&env, &docs(&cm("stay", "2"))).await;
    assert!(op.succeeded(), "{op:#?}");
    let st = statuses(&op);
    assert!(
        st.contains(&"ConfigMap/keep=PruneSkipped".to_string()),
        "{st:?}"
    );
    let pos = |n: &str| {
        st.iter()
            .position(|s| s == n)
            .unwrap_or_else(|| panic!("{n} in {st:?}"))
    };
    // PruneLast runs after every other task of the sync.
    assert!(pos("ConfigMap/early=Pruned") < pos("ConfigMap/last=Pruned"));
    assert!(pos("ConfigMap/stay=Synced") < pos("ConfigMap/last=Pruned"));
    assert!(get(&env, "v1", "ConfigMap", "default", "keep")
        .await
        .is_some());
    assert!(get(&env, "v1", "ConfigMap", "default", "last")
        .await
        .is_none());
}

#[tokio::test]
async fn self_heal_of_a_live_change() {
    let env = start().await;
    let desired = docs(&deployment("api", 1));
    let s = Sync::new("heal");
    assert!(s.run(&env, &desired).await.succeeded());
    tracing::info!("someone scales the Deployment by hand");
    patch_live(
        &env,
        "apps/v1",
        "Deployment",
        "default",
        "api",
        json!({"spec": {"replicas": 5}}),
    )
    .await;
    let cmp = s.compare(&env, &desired).await;
    let d = cmp
        .diffs
        .iter()
        .find(|d| d.key.name == "api")
        .expect("diff");
    assert_eq!(d.drift, Drift::Changed);
    assert!(
        d.unified.contains("replicas: 5") && d.unified.contains("replicas: 1"),
        "{}",
        d.unified
    );
    let op = s.run(&env, &desired).await;
    assert!(op.succeeded(), "{op:#?}");
    let live = get(&env, "apps/v1", "Deployment", "default", "api")
        .await
        .expect("live");
    assert_eq!(live["spec"]["replicas"], 1);
    assert!(s.compare(&env, &desired).await.in_sync());
}

#[tokio::test]
async fn ignore_differences_by_pointer_jq_and_manager() {
    let env = start().await;
    let desired = docs(&(deployment("a", 1) + &cm("b", "1")));
    let mut s = Sync::new("ign");
    assert!(s.run(&env, &desired).await.succeeded());
    edit_live_a_and_b(&env, 3, "changed").await;
    assert!(!s.compare(&env, &desired).await.in_sync());

    s.diff.ignore = replicas_and_x_rules();
    assert!(s.compare(&env, &desired).await.in_sync());

    s.diff.ignore = vec![IgnoreRule {
        managed_fields_managers: vec!["kubectl-edit".into()],
        ..rule("*")
    }];
    s.diff.ignore[0].group = "*".into();
    assert!(
        s.compare(&env, &desired).await.in_sync(),
        "fields owned by kubectl-edit are ignored"
    );

    tracing::info!("RespectIgnoreDifferences keeps the ignored live value on sync");
    let mut respect = Sync::new("ign").options(&["RespectIgnoreDifferences=true"]);
    respect.diff.ignore = replicas_and_x_rules();
    assert!(respect.run(&env, &desired).await.succeeded());
    let (a, b) = live_a_and_b(&env).await;
    assert_eq!(a["spec"]["replicas"], 3);
    assert_eq!(b["data"]["x"], "changed");

    s.diff.ignore.clear();
    let cmp = s.compare(&env, &desired).await;
    assert_eq!(
        cmp.diffs
            .iter()
            .filter(|d| d.drift == Drift::Changed)
            .count(),
        2
    );
    let op = s.run(&env, &desired).await;
    assert!(
        op.resources.iter().all(|r| r.status == ResultCode::Synced),
        "{op:#?}"
    );
    tracing::info!("RespectIgnoreDifferences leaves fields of managedFieldsManagers alone");
    edit_live_a_and_b(&env, 4, "edited").await;
    let mut managers = Sync::new("ign").options(&["RespectIgnoreDifferences=true"]);
    let mut any = rule("*");
    any.group = "*".into();
    managers.diff.ignore = vec![IgnoreRule {
        managed_fields_managers: vec!["kubectl-edit".into()],
        ..any
    }];
    assert!(managers.compare(&env, &desired).await.in_sync());
    let op = managers.run(&env, &desired).await;
    assert!(op.succeeded(), "{op:#?}");
    let (a, b) = live_a_and_b(&env).await;
    assert_eq!(a["spec"]["replicas"], 4, "not taken over");
    assert_eq!(b["data"]["x"], "edited", "not taken over");
    tracing::info!("without the option the sync takes the fields back");
    let op = s.run(&env, &desired).await;
    assert!(op.succeeded(), "{op:#?}");
    let live = get(&env, "v1", "ConfigMap", "default", "b")
        .await
        .expect("live");
    assert_ne!(live["data"]["x"], "edited");
}

/// An ignore rule for every object of `kind` ("Deployment" in group `apps`, others in core).
fn rule(kind: &str) -> IgnoreRule {
    IgnoreRule {
        group: if kind == "Deployment" {
            "apps".into()
        } else {
            String::new()
        },
        kind: kind.into(),
        ..Default::default()
    }
}

/// Ignore Deployment `/spec/replicas` (by JSON pointer) and ConfigMap `.data.x` (by jq).
fn replicas_and_x_rules() -> Vec<IgnoreRule> {
    vec![
        IgnoreRule {
            json_pointers: vec!["/spec/replicas".into()],
            ..rule("Deployment")
        },
        IgnoreRule {
            jq_path_expressions: vec![".data.x".into()],
            ..rule("ConfigMap")
        },
    ]
}

/// Edits live Deployment `a`'s replicas and ConfigMap `b`'s `x` by hand.
async fn edit_live_a_and_b(env: &Env, replicas: u32, x: &str) {
    patch_live(
        env,
        "apps/v1",
        "Deployment",
        "default",
        "a",
        json!({"spec": {"replicas": replicas}}),
    )
    .await;
    patch_live(
        env,
        "v1",
        "ConfigMap",
        "default",
        "b",
        json!({"data": {"x": x}}),
    )
    .await;
}

/// Live Deployment `a` and ConfigMap `b`.
async fn live_a_and_b(env: &Env) -> (Value, Value) {
    let a = get(env, "apps/v1", "Deployment", "default", "a")
        .await
        .expect("live");
    let b = get(env, "v1", "ConfigMap", "default", "b")
        .await
        .expect("live");
    (a, b)
}
