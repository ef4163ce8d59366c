//! Application calls: list, get, sync, refresh, history, rollback, delete.

use flotilla_proto::v1 as pb;
use flotilla_raft::{Command, Json};
use serde_json::Value;
use tonic::Status;

use super::server::{key_of, read_status, store_status, stored_json, Service};
use super::{now_millis, ORIGIN_ANNOTATION};
use crate::status::{AppStatus, HistoryEntry, OperationRequest};

/// Argo CD's finalizer that makes deleting an `Application` delete its resources first.
pub const CASCADE_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// Parse `k=v,k==v,k!=v,k,!k`.
fn parse_selector(sel: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for part in sel.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("invalid label selector term {part:?}: expected k=v, k!=v, k or !k");
        let req = if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some(k) = part.strip_prefix('!') {
            Requirement::Absent(k.trim().into())
        } else {
            Requirement::Exists(part.into())
        };
        let key = match &req {
            Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _)
            | Requirement::Exists(k)
            | Requirement::Absent(k) => k,
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(bad());
        }
        out.push(req);
    }
    Ok(out)
}

fn matches(reqs: &[Requirement], labels: Option<&serde_json::Map<String, Value>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::Absent(k) => get(k).is_none(),
    })
}

/// `GROUP:KIND:NAME` or `GROUP:KIND:NAMESPACE/NAME` → `group/kind/namespace/name`.
fn resource_selection(s: &str) -> Result<String, Status> {
    let parts: Vec<&str> = s.split(':').collect();
    let [group, kind, rest] = parts[..] else {
        return Err(Status::invalid_argument(format!(
            "invalid resource {s:?}: expected GROUP:KIND:NAME or GROUP:KIND:NAMESPACE/NAME \
             (empty group for the core group, e.g. :ConfigMap:web)"
        )));
    };
    let (ns, name) = rest.split_once('/').unwrap_or(("", rest));
    if kind.is_empty() || name.is_empty() {
        return Err(Status::invalid_argument(format!(
            "invalid resource {s:?}: kind and name are required"
        )));
    }
    Ok(format!("{group}/{kind}/{ns}/{name}"))
}

fn origin(spec: &Value) -> Option<&str> {
    spec.pointer("/metadata/annotations")
        .and_then(|a| a.get(ORIGIN_ANNOTATION))
        .and_then(Value::as_str)
}

impl Service {
    fn entry(
        r: &flotilla_raft::StateReader,
        rec: flotilla_raft::AppRecord,
    ) -> Result<pb::AppEntry, Status> {
        let status = r.status(&rec.app).map_err(read_status)?;
        Ok(pb::AppEntry {
            key: rec.app,
            app_json: rec.spec.as_str().to_string(),
            generation: rec.generation,
            status_json: status
                .map(|s| s.status.as_str().to_string())
                .unwrap_or_default(),
        })
    }

    pub(super) async fn do_list_apps(
        &self,
        req: pb::ListAppsRequest,
    ) -> Result<pb::ListAppsResponse, Status> {
        let selector = parse_selector(&req.selector).map_err(Status::invalid_argument)?;
        let r = self.reader(req.consistent).await?;
        let mut apps = Vec::new();
        for rec in r.apps().map_err(read_status)? {
            let spec = stored_json(&rec.app, &rec.spec)?;
            let ns = rec.app.split_once('/').map(|(ns, _)| ns).unwrap_or("");
            if !req.namespace.is_empty() && ns != req.namespace {
                continue;
            }
            let project = spec.pointer("/spec/project").and_then(Value::as_str);
            if !req.project.is_empty() && project != Some(req.project.as_str()) {
                continue;
            }
            let labels = spec.pointer("/metadata/labels").and_then(Value::as_object);
            if !matches(&selector, labels) {
                continue;
            }
            apps.push(Self::entry(r, rec)?);
        }
        Ok(pb::ListAppsResponse { apps })
    }

    pub(super) async fn do_get_app(
        &self,
        req: pb::GetAppRequest,
    ) -> Result<pb::GetAppResponse, Status> {
        let key = key_of(&req.app)?;
        let r = self.reader(req.consistent).await?;
        let rec = Self::app_record(r, &key)?;
        let json = |v: Option<Value>| v.map(|v| v.to_string()).unwrap_or_default();
        let operation = match r.operation(&key).map_err(read_status)? {
            None => None,
            Some(o) => Some(serde_json::json!({
                "opId": o.op_id,
                "node": o.node,
                "epoch": o.epoch,
                "request": stored_json("operation request", &o.request)?,
                "startedAt": o.started_at,
                "finishedAt": o.finished.as_ref().map(|f| f.at),
                "result": match &o.finished {
                    Some(f) => stored_json("operation result", &f.result)?,
                    None => Value::Null,
                },
            })),
        };
        let pending = match r.pending(&key).map_err(read_status)? {
            None => None,
            Some(p) => Some(serde_json::json!({
                "opId": p.op_id,
                "request": stored_json("operation request", &p.request)?,
                "requestedAt": p.requested_at,
            })),
        };
        Ok(pb::GetAppResponse {
            app: Some(Self::entry(r, rec)?),
            operation_json: json(operation),
            pending_json: json(pending),
        })
    }

    async fn request_operation(
        &self,
        key: String,
        request: OperationRequest,
    ) -> Result<String, Status> {
        let op_id = self.op_id();
        let request = serde_json::to_value(&request)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))?;
        self.deps
            .store
            .propose(Command::RequestOperation {
                app: key,
                op_id: op_id.clone(),
                request: Json::from(request),
                at: now_millis(),
            })
            .await
            .map_err(store_status)?;
        Ok(op_id)
    }

    pub(super) async fn do_sync_app(
        &self,
        req: pb::SyncAppRequest,
    ) -> Result<pb::SyncAppResponse, Status> {
        let key = key_of(&req.app)?;
        let resources = req
            .resources
            .iter()
            .map(|s| resource_selection(s))
            .collect::<Result<Vec<_>, _>>()?;
        let request = OperationRequest {
            initiated_by: "api".into(),
            revision: Some(req.revision).filter(|r| !r.is_empty()),
            prune: req.prune,
            dry_run: req.dry_run,
            resources,
            ..Default::default()
        };
        let op_id = self.request_operation(key, request).await?;
        Ok(pb::SyncAppResponse { op_id })
    }

    pub(super) async fn do_refresh_app(
        &self,
        req: pb::RefreshAppRequest,
    ) -> Result<pb::RefreshAppResponse, Status> {
        let key = key_of(&req.app)?;
        self.deps
            .store
            .propose(Command::RequestRefresh {
                app: key,
                hard: req.hard,
                at: now_millis(),
            })
            .await
            .map_err(store_status)?;
        Ok(pb::RefreshAppResponse {})
    }

    fn status_of(r: &flotilla_raft::StateReader, key: &str) -> Result<AppStatus, Status> {
        match r.status(key).map_err(read_status)? {
            None => Ok(AppStatus::default()),
            Some(s) => serde_json::from_str(s.status.as_str()).map_err(|e| {
                Status::internal(format!("stored status of {key} is not a status: {e}"))
            }),
        }
    }

    pub(super) async fn do_history(
        &self,
        req: pb::HistoryRequest,
    ) -> Result<pb::HistoryResponse, Status> {
        let key = key_of(&req.app)?;
        let r = self.reader(req.consistent).await?;
        Self::app_record(r, &key)?;
        let history = Self::status_of(r, &key)?.history;
        let history_json = serde_json::to_string(&history)
            .map_err(|e| Status::internal(format!("encoding the history: {e}")))?;
        Ok(pb::HistoryResponse { history_json })
    }

    pub(super) async fn do_rollback(
        &self,
        req: pb::RollbackRequest,
    ) -> Result<pb::RollbackResponse, Status> {
        let key = key_of(&req.app)?;
        // Decided on what the leader has: a lagging replica could miss the app or its history.
        let r = self.reader(true).await?;
        let rec = Self::app_record(r, &key)?;
        let spec = stored_json(&key, &rec.spec)?;
        if spec
            .pointer("/spec/syncPolicy/automated")
            .is_some_and(|a| !a.is_null())
        {
            return Err(Status::failed_precondition(format!(
                "rollback of {key} refused: automated sync is enabled and would undo it; \
                 disable spec.syncPolicy.automated first"
            )));
        }
        let history = Self::status_of(r, &key)?.history;
        let Some(entry) = history.iter().find(|h| h.id == req.id) else {
            let ids: Vec<String> = history
                .iter()
                .map(|h: &HistoryEntry| h.id.to_string())
                .collect();
            return Err(Status::not_found(format!(
                "application {key} has no history entry {} (entries: {})",
                req.id,
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            )));
        };
        let request = OperationRequest {
            initiated_by: "api".into(),
            revision: Some(entry.revision.clone()),
            source: Some(entry.source.clone()).filter(|s| !s.is_null()),
            prune: req.prune,
            dry_run: req.dry_run,
            ..Default::default()
        };
        let op_id = self.request_operation(key, request).await?;
        Ok(pb::RollbackResponse { op_id })
    }

    pub(super) async fn do_delete_app(
        &self,
        req: pb::DeleteAppRequest,
    ) -> Result<pb::DeleteAppResponse, Status> {
        let key = key_of(&req.app)?;
        let rec = Self::app_record(self.reader(true).await?, &key)?;
        let spec = stored_json(&key, &rec.spec)?;
        if origin(&spec) == Some("kubernetes") {
            let Some(client) = &self.deps.management else {
                return Err(Status::failed_precondition(format!(
                    "application {key} comes from the management cluster, but this node has no \
                     management cluster client; delete the Application resource there"
                )));
            };
            let message = delete_resource(client, &key, req.cascade).await?;
            return Ok(pb::DeleteAppResponse { message });
        }
        self.deps
            .store
            .propose(Command::DeleteApp { app: key.clone() })
            .await
            .map_err(store_status)?;
        Ok(pb::DeleteAppResponse {
            message: format!("application {key} deleted from the store"),
        })
    }
}

/// Delete an `Application` resource; with `cascade`, make sure the cascade finalizer is on
/// it first (so its resources are deleted before it goes), without, make sure it is not.
async fn delete_resource(
    client: &kube::Client,
    key: &str,
    cascade: bool,
) -> Result<String, Status> {
    use kube::api::{
        Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    };
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "applications");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let kube_status = |e: kube::Error| match &e {
        kube::Error::Api(s) if s.code == 404 => Status::not_found(format!(
            "Application {key} not found in the management cluster"
        )),
        _ => Status::unavailable(format!("management cluster, Application {key}: {e}")),
    };
    let obj = api.get(name).await.map_err(kube_status)?;
    let mut finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
    let has = finalizers.iter().any(|f| f == CASCADE_FINALIZER);
    if cascade != has {
        if cascade {
            finalizers.push(CASCADE_FINALIZER.to_string());
        } else {
            finalizers.retain(|f| f != CASCADE_FINALIZER);
        }
        let patch = serde_json::json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": obj.metadata.resource_version,
        }});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_status)?;
    }
    api.delete(name, &DeleteParams::default())
        .await
        .map_err(kube_status)?;
    Ok(if cascade {
        format!(
            "Application {key} deleted in the management cluster; its resources are deleted first"
        )
    } else {
        format!("Application {key} deleted in the management cluster; its resources are kept")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_labels() {
        let labels = json!({"team": "a", "tier": "web"});
        let l = labels.as_object();
        let m = |s: &str| matches(&parse_selector(s).expect("parses"), l);
        assert!(m(""));
        assert!(m("team=a"));
        assert!(m("team==a,tier"));
        assert!(!m("team!=a"));
        assert!(m("!owner"));
        assert!(!m("owner"));
        assert!(!m("team=b"));
        assert!(parse_selector("=x").is_err());
    }

    #[test]
    fn resources_are_group_kind_namespace_name() {
        assert_eq!(
            resource_selection("apps:Deployment:web").expect("ok"),
            "apps/Deployment//web"
        );
        assert_eq!(
            resource_selection(":ConfigMap:ns/c").expect("ok"),
            "/ConfigMap/ns/c"
        );
        let e = resource_selection("Deployment/web").expect_err("bad");
        assert!(e.message().contains("GROUP:KIND:NAME"));
    }
}
