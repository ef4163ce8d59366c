//! The ways Argo CD users ask for a sync or a refresh on the `Application` resource itself:
//! the `operation` field (what `argocd app sync` and the UI write, and what scripts patch)
//! and the `argocd.argoproj.io/refresh` annotation (`normal` or `hard`). The leader turns
//! them into `RequestOperation` / `RequestRefresh` commands and then clears them from the
//! resource, as Argo CD's controller does once it takes them.

use flotilla_raft::{Command, Json};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};

use super::{application_resource, now_ms, FIELD_MANAGER};
use crate::status::OperationRequest;

/// The refresh annotation.
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// The commands an Application's `operation` field and refresh annotation ask for, and the
/// merge patch that clears them (`None` when it asks for nothing).
pub(crate) fn requests_of(key: &str, v: &Value) -> (Vec<Command>, Option<Value>) {
    let mut commands = Vec::new();
    let mut patch = serde_json::Map::new();
    if let Some(mode) = v
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REFRESH_ANNOTATION))
        .and_then(Value::as_str)
    {
        commands.push(Command::RequestRefresh {
            app: key.to_string(),
            hard: mode == "hard",
            at: now_ms(),
        });
        patch.insert(
            "metadata".into(),
            json!({"annotations": {REFRESH_ANNOTATION: null}}),
        );
    }
    if let Some(op) = v.get("operation").filter(|o| !o.is_null()) {
        let sync = op.get("sync").cloned().unwrap_or(Value::Null);
        let who = op
            .pointer("/initiatedBy/username")
            .and_then(Value::as_str)
            .map_or_else(
                || "Application.operation".to_string(),
                |u| format!("user:{u}"),
            );
        let resources = sync
            .get("resources")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|r| {
                        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
                        format!(
                            "{}/{}/{}/{}",
                            s("group"),
                            s("kind"),
                            s("namespace"),
                            s("name")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = OperationRequest {
            initiated_by: who,
            revision: sync
                .get("revision")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            source: None,
            prune: sync.get("prune").and_then(Value::as_bool).unwrap_or(false),
            dry_run: sync.get("dryRun").and_then(Value::as_bool).unwrap_or(false),
            resources,
            sync_options: sync
                .get("syncOptions")
                .and_then(Value::as_array)
                .map(|o| {
                    o.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        };
        if let Ok(doc) = serde_json::to_value(&request) {
            commands.push(Command::RequestOperation {
                app: key.to_string(),
                op_id: format!("resource-{}", now_ms()),
                request: Json::from(doc),
                at: now_ms(),
            });
        }
        patch.insert("operation".into(), Value::Null);
    }
    let patch = (!patch.is_empty()).then_some(Value::Object(patch));
    (commands, patch)
}

/// Clear what [`requests_of`] took from the resource.
pub(crate) async fn clear(client: &kube::Client, ns: &str, name: &str, patch: &Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &application_resource());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    if let Err(e) = api.patch(name, &params, &Patch::Merge(patch)).await {
        tracing::warn!(app = %format!("{ns}/{name}"), error = %e, "clearing a taken sync or refresh request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_field_and_refresh_annotation_become_requests() {
        let v = json!({
            "metadata": {"name": "a", "namespace": "argocd",
                "annotations": {REFRESH_ANNOTATION: "hard", "other": "x"}},
            "operation": {"initiatedBy": {"username": "alice"},
                "sync": {"revision": "abc", "prune": true, "syncOptions": ["Replace=true"],
                    "resources": [{"group": "apps", "kind": "Deployment", "name": "web"}]}}
        });
        let (commands, patch) = requests_of("argocd/a", &v);
        assert_eq!(commands.len(), 2);
        assert!(matches!(
            &commands[0],
            Command::RequestRefresh { hard: true, .. }
        ));
        let Command::RequestOperation { request, .. } = &commands[1] else {
            panic!("{commands:?}");
        };
        let r: OperationRequest =
            serde_json::from_value(request.to_value().expect("json")).expect("request");
        assert_eq!(r.initiated_by, "user:alice");
        assert_eq!(r.revision.as_deref(), Some("abc"));
        assert!(r.prune);
        assert_eq!(r.resources, vec!["apps/Deployment//web".to_string()]);
        assert_eq!(r.sync_options, vec!["Replace=true".to_string()]);
        assert_eq!(
            patch,
            Some(
                json!({"metadata": {"annotations": {REFRESH_ANNOTATION: null}}, "operation": null})
            )
        );
        let plain = json!({"metadata": {"name": "a", "annotations": {"other": "x"}}});
        assert_eq!(requests_of("argocd/a", &plain), (vec![], None));
    }
}
