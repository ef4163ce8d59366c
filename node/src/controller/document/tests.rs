//! Tests of the reconcile documents: status, history, operation state, request pieces.

use super::*;
use crate::diff::ResourceDiff;
use flotilla_raft::apply::FinishedOperation;
use flotilla_raft::Json;
use serde_json::json;

fn app(history_limit: Option<i64>) -> Application {
    let mut doc = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "a", "namespace": "argocd"},
        "spec": {"project": "default",
            "source": {"repoURL": "https://git.example.com/r.git", "path": "p", "targetRevision": "main"},
            "destination": {"server": "https://k", "namespace": "web"}}
    });
    if let Some(l) = history_limit {
        doc["spec"]["revisionHistoryLimit"] = json!(l);
    }
    status::parse_stored_app("argocd/a", &doc).expect("valid app")
}

fn settings(custom: &Customizations) -> StatusSettings<'_> {
    StatusSettings {
        custom,
        history_limit: 10,
    }
}

fn key(kind: &str, name: &str) -> ResourceKey {
    ResourceKey {
        group: if kind == "Deployment" {
            "apps".into()
        } else {
            String::new()
        },
        kind: kind.into(),
        namespace: "web".into(),
        name: name.into(),
    }
}

fn object(kind: &str, name: &str, status: Value) -> Value {
    let api = if kind == "Deployment" {
        "apps/v1"
    } else {
        "v1"
    };
    json!({"apiVersion": api, "kind": kind,
        "metadata": {"name": name, "namespace": "web", "generation": 1}, "status": status})
}

fn comparison() -> Comparison {
    let cm = object("ConfigMap", "cfg", Value::Null);
    let web = object(
        "Deployment",
        "web",
        json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1}),
    );
    let old = object("ConfigMap", "old", Value::Null);
    let mut cmp = Comparison {
        desired: vec![
            cm.clone(),
            web.clone(),
            object("ConfigMap", "missing", Value::Null),
        ],
        ..Default::default()
    };
    cmp.live.insert(key("ConfigMap", "cfg"), cm);
    cmp.live.insert(key("Deployment", "web"), web);
    cmp.live.insert(key("ConfigMap", "old"), old.clone());
    cmp.extra.push(old);
    let d = |k: ResourceKey, drift| ResourceDiff {
        key: k,
        drift,
        unified: String::new(),
    };
    cmp.diffs = vec![
        d(key("ConfigMap", "cfg"), Drift::None),
        d(key("Deployment", "web"), Drift::None),
        d(key("ConfigMap", "missing"), Drift::Missing),
        d(key("ConfigMap", "old"), Drift::Extra),
    ];
    cmp
}

fn finished_op(op_id: &str, phase: &str, dry_run: bool) -> OperationRecord {
    let result = json!({"phase": phase, "message": "done", "resources": [],
        "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z",
        "revision": format!("rev-{op_id}"), "attempts": 2, "dryRun": dry_run});
    OperationRecord {
        app: "argocd/a".into(),
        op_id: op_id.into(),
        node: 1,
        epoch: 1,
        request: Json::from(json!({"initiatedBy": "automated"})),
        started_at: 1_767_225_600_000,
        finished: Some(FinishedOperation {
            result: Json::from(result),
            at: 1_767_225_605_000,
        }),
    }
}

#[test]
fn status_summarizes_resources_sync_and_health() {
    let custom = Customizations::none();
    let cmp = comparison();
    let st = build_status(
        &settings(&custom),
        &app(None),
        3,
        None,
        Some((&cmp, "abc")),
        Vec::new(),
        None,
    );
    assert_eq!(st.sync.status, sync_code::OUT_OF_SYNC);
    assert_eq!(st.sync.revision, "abc");
    assert_eq!(st.observed_generation, 3);
    // The missing ConfigMap is the worst health; the extra one does not count.
    assert_eq!(st.health.status, "Missing");
    let names: Vec<(&str, &str, bool)> = st
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.status.as_str(), r.requires_pruning))
        .collect();
    assert_eq!(
        names,
        [
            ("cfg", "Synced", false),
            ("web", "Synced", false),
            ("missing", "OutOfSync", false),
            ("old", "OutOfSync", true),
        ]
    );
    let web = &st.resources[1];
    assert_eq!((web.group.as_str(), web.version.as_str()), ("apps", "v1"));
    assert_eq!(
        web.health.as_ref().map(|h| h.status.as_str()),
        Some("Healthy")
    );
    assert!(
        st.resources[0].health.is_none(),
        "ConfigMaps have no health"
    );
    assert!(st.operation_state.is_none() && st.history.is_empty());
}

#[test]
fn a_failed_comparison_keeps_the_previous_picture() {
    let custom = Customizations::none();
    let cmp = comparison();
    let before = build_status(
        &settings(&custom),
        &app(None),
        1,
        None,
        Some((&cmp, "abc")),
        Vec::new(),
        None,
    );
    let cond = vec![condition("ComparisonError", "render failed")];
    let after = build_status(
        &settings(&custom),
        &app(None),
        1,
        Some(&before),
        None,
        cond,
        None,
    );
    assert_eq!(after.sync.status, sync_code::UNKNOWN);
    assert_eq!(after.sync.revision, "abc");
    assert_eq!(after.health, before.health);
    assert_eq!(after.resources, before.resources);
    assert_eq!(after.conditions[0].kind, "ComparisonError");
    // Built again from the same inputs, it is not a change.
    let again = build_status(
        &settings(&custom),
        &app(None),
        1,
        Some(&before),
        None,
        vec![condition("ComparisonError", "render failed")],
        None,
    );
    assert!(!after.differs_from(&again));
}

#[test]
fn successful_operations_enter_the_history_once_within_the_limit() {
    let custom = Customizations::none();
    let cmp = comparison();
    let mut prev: Option<AppStatus> = None;
    for i in 0..4 {
        let op = finished_op(&format!("op-{i}"), "Succeeded", false);
        for _ in 0..2 {
            let st = build_status(
                &settings(&custom),
                &app(Some(3)),
                1,
                prev.as_ref(),
                Some((&cmp, "abc")),
                Vec::new(),
                Some(&op),
            );
            prev = Some(st);
        }
    }
    let st = prev.expect("status");
    let ids: Vec<(u64, &str)> = st
        .history
        .iter()
        .map(|h| (h.id, h.op_id.as_str()))
        .collect();
    assert_eq!(ids, [(1, "op-1"), (2, "op-2"), (3, "op-3")]);
    assert_eq!(st.history[2].revision, "rev-op-3");
    assert_eq!(st.history[2].source["path"], "p");
    let state = st.operation_state.clone().expect("operation state");
    assert_eq!(state.phase, "Succeeded");
    assert_eq!(state.retry_count, 1);
    assert_eq!(state.started_at, "2026-01-01T00:00:00Z");
    // Failed and dry-run operations are not deployments.
    for op in [
        finished_op("bad", "Failed", false),
        finished_op("dry", "Succeeded", true),
    ] {
        let next = build_status(
            &settings(&custom),
            &app(Some(3)),
            1,
            Some(&st),
            Some((&cmp, "abc")),
            Vec::new(),
            Some(&op),
        );
        assert_eq!(next.history, st.history);
    }
    let mut running = finished_op("run", "Succeeded", false);
    running.finished = None;
    assert_eq!(operation_state(&running).phase, "Running");
}

#[test]
fn request_pieces_parse() {
    let sel = selection(&["apps/Deployment/web/api".into(), "ConfigMap/web/cfg".into()])
        .expect("a selection");
    assert!(sel.contains(&key("Deployment", "api")));
    assert!(sel.contains(&key("ConfigMap", "cfg")));
    assert!(selection(&[]).is_none());
    let a = app(None);
    let pinned = with_override(
        &a,
        &OperationRequest {
            revision: Some("v1.2.3".into()),
            ..Default::default()
        },
    )
    .expect("override");
    assert_eq!(
        pinned
            .spec
            .source
            .as_ref()
            .and_then(|s| s.target_revision.as_deref()),
        Some("v1.2.3")
    );
    let moved = with_override(
        &a,
        &OperationRequest {
            source: Some(json!({"repoURL": "https://git.example.com/other.git", "path": "q"})),
            ..Default::default()
        },
    )
    .expect("override");
    assert_eq!(
        moved.spec.source.as_ref().map(|s| s.repo_url.as_str()),
        Some("https://git.example.com/other.git")
    );
    assert!(with_override(
        &a,
        &OperationRequest {
            source: Some(json!(["not a source"])),
            ..Default::default()
        }
    )
    .is_err());
}

#[test]
fn sync_settings_and_diff_options_come_from_the_app() {
    let mut a = app(None);
    a.spec.sync_policy = serde_json::from_value(json!({
        "syncOptions": ["CreateNamespace=true"],
        "retry": {"limit": 2, "backoff": {"duration": "1s", "factor": 3, "maxDuration": "1m"}}
    }))
    .expect("policy");
    let (opts, retry) = sync_settings(&a, &["Replace=true".into()]).expect("settings");
    assert!(opts.create_namespace);
    let retry = retry.expect("retry");
    assert_eq!(retry.limit, 2);
    assert_eq!(retry.duration, std::time::Duration::from_secs(1));
    assert_eq!(retry.max_duration, std::time::Duration::from_secs(60));
    a.spec.sync_policy =
        serde_json::from_value(json!({"retry": {"backoff": {"duration": "soon"}}}))
            .expect("policy");
    assert!(sync_settings(&a, &[]).is_err());
    let system = vec![IgnoreRule {
        kind: "Secret".into(),
        json_pointers: vec!["/data".into()],
        ..Default::default()
    }];
    let opts = diff_options(&app(None), &system).expect("diff options");
    assert_eq!(opts.ignore.len(), 1);
}
