use super::*;
use serde_json::json;

fn obj(kind: &str, name: &str, ann: Value) -> Value {
    let api = match kind {
        "Deployment" => "apps/v1",
        "Job" => "batch/v1",
        _ => "v1",
    };
    json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "app", "annotations": ann}})
}

fn names(plan: &SyncPlan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| {
            let tasks: Vec<String> = s
                .tasks
                .iter()
                .map(|t| {
                    let verb = match t.action {
                        Action::Apply(_) => "apply",
                        Action::RunHook(..) => "hook",
                        Action::Prune(_) => "prune",
                    };
                    format!("{verb} {}", t.key.name)
                })
                .collect();
            format!(
                "{:?}/{}{}: {}",
                s.phase,
                s.wave,
                if s.prune_last { "/last" } else { "" },
                tasks.join(", ")
            )
        })
        .collect()
}

#[test]
fn phases_waves_and_kind_order() {
    let desired = vec![
        obj("Deployment", "web", json!({})),
        obj("Service", "web", json!({})),
        obj(
            "ConfigMap",
            "settings",
            json!({"argocd.argoproj.io/sync-wave": "-1"}),
        ),
        obj(
            "Job",
            "migrate",
            json!({"argocd.argoproj.io/hook": "PreSync"}),
        ),
        obj(
            "Job",
            "smoke",
            json!({"argocd.argoproj.io/hook": "PostSync", "argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}),
        ),
        obj(
            "Job",
            "cleanup",
            json!({"argocd.argoproj.io/hook": "SyncFail"}),
        ),
        obj(
            "ConfigMap",
            "skipped",
            json!({"argocd.argoproj.io/hook": "Skip"}),
        ),
        obj("Namespace", "app", json!({})),
    ];
    let extra = vec![
        obj("ConfigMap", "old", json!({})),
        obj(
            "Deployment",
            "gone",
            json!({"argocd.argoproj.io/sync-options": "PruneLast=true"}),
        ),
        obj(
            "Secret",
            "keep",
            json!({"argocd.argoproj.io/sync-options": "Prune=false"}),
        ),
    ];
    let in_sync = BTreeSet::new();
    let p = plan(&PlanInput {
        desired: &desired,
        extra: &extra,
        in_sync: in_sync.clone(),
        prune: true,
        ..Default::default()
    })
    .expect("plan");
    assert_eq!(
        names(&p),
        vec![
            "PreSync/0: hook migrate",
            "Sync/-1: apply settings",
            "Sync/0: apply app, apply web, apply web, prune old",
            "Sync/0/last: prune gone",
            "PostSync/0: hook smoke",
        ]
    );
    // The Service is applied before the Deployment.
    let sync0 = &p.steps[2].tasks;
    assert_eq!(
        (sync0[1].key.kind.as_str(), sync0[2].key.kind.as_str()),
        ("Service", "Deployment")
    );
    assert_eq!(p.on_fail.len(), 1);
    assert!(p.skipped.iter().any(|k| k.name == "keep"));
    match &p.steps[4].tasks[0].action {
        Action::RunHook(_, hook) => {
            assert!(hook.delete_policies.contains(&DeletePolicy::HookSucceeded))
        }
        other => panic!("expected a hook, got {other:?}"),
    }
}

#[test]
fn no_prune_without_permission() {
    let extra = vec![obj("ConfigMap", "old", json!({}))];
    let in_sync = BTreeSet::new();
    let p = plan(&PlanInput {
        extra: &extra,
        in_sync: in_sync.clone(),
        prune: false,
        ..Default::default()
    })
    .expect("plan");
    assert!(p.steps.is_empty());
    assert_eq!(p.skipped.len(), 1);
}

#[test]
fn selective_sync_and_out_of_sync_only() {
    let desired = vec![
        obj("ConfigMap", "a", json!({})),
        obj("ConfigMap", "b", json!({})),
        obj("Job", "hook", json!({"argocd.argoproj.io/hook": "PreSync"})),
    ];
    let a = ResourceKey::of(&desired[0]);
    let selection: BTreeSet<_> = [a.clone()].into();
    let in_sync = BTreeSet::new();
    let p = plan(&PlanInput {
        desired: &desired,
        in_sync: in_sync.clone(),
        selection: Some(selection),
        ..Default::default()
    })
    .expect("plan");
    assert_eq!(
        names(&p),
        vec!["Sync/0: apply a"],
        "selective sync runs no hooks"
    );

    let in_sync: BTreeSet<_> = [a].into();
    let (opts, _) = SyncOptions::default().with(["ApplyOutOfSyncOnly=true"]);
    let p = plan(&PlanInput {
        desired: &desired,
        in_sync: in_sync.clone(),
        app_options: opts,
        ..Default::default()
    })
    .expect("plan");
    assert_eq!(names(&p), vec!["PreSync/0: hook hook", "Sync/0: apply b"]);
}

#[test]
fn helm_hooks_map_to_phases() {
    let desired = vec![
        obj(
            "Job",
            "pre",
            json!({"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-weight": "-5", "helm.sh/hook-delete-policy": "hook-succeeded"}),
        ),
        obj("Job", "post", json!({"helm.sh/hook": "post-install"})),
        obj("Pod", "test", json!({"helm.sh/hook": "test"})),
    ];
    let in_sync = BTreeSet::new();
    let p = plan(&PlanInput {
        desired: &desired,
        in_sync: in_sync.clone(),
        ..Default::default()
    })
    .expect("plan");
    assert_eq!(
        names(&p),
        vec!["PreSync/-5: hook pre", "PostSync/0: hook post"]
    );
}

#[test]
fn bad_annotations_are_located_errors() {
    let desired = vec![obj(
        "ConfigMap",
        "c",
        json!({"argocd.argoproj.io/sync-wave": "soon"}),
    )];
    let in_sync = BTreeSet::new();
    let err = plan(&PlanInput {
        desired: &desired,
        in_sync: in_sync.clone(),
        ..Default::default()
    })
    .expect_err("bad wave");
    let msg = err.to_string();
    assert!(
        msg.contains("ConfigMap app/c") && msg.contains("sync-wave") && msg.contains("soon"),
        "{msg}"
    );
    let desired = vec![obj(
        "Job",
        "j",
        json!({"argocd.argoproj.io/hook": "PreSink"}),
    )];
    assert!(plan(&PlanInput {
        desired: &desired,
        in_sync: in_sync.clone(),
        ..Default::default()
    })
    .is_err());
}
