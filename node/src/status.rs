//! The documents flotilla keeps in the store for each application: the stored application
//! (what ingestion puts) and its status (what the owning node computes).
//!
//! Both are shaped like Argo CD's `Application` so that the status can be written back onto
//! the `Application` resource unchanged and read by tools that know Argo CD's fields
//! (`status.sync.status`, `status.health.status`, `status.operationState`, …).
//!
//! Store conventions:
//! - the key of an application is `namespace/name` ([`app_key`]);
//! - [`flotilla_raft::Command::PutApp`]'s `spec` is the whole `Application` object without
//!   its `status` and without volatile metadata ([`stored_app`]): `apiVersion`, `kind`,
//!   `metadata` (`name`, `namespace`, `labels`, `annotations`, `finalizers`,
//!   `deletionTimestamp`) and `spec`;
//! - [`flotilla_raft::Command::SetStatus`]'s `status` is an [`AppStatus`];
//! - [`flotilla_raft::Command::OperationStarted`]'s `request` is an [`OperationRequest`] and
//!   [`flotilla_raft::Command::OperationFinished`]'s `result` is the
//!   [`crate::sync::result::OperationResult`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Application, ModelError};

/// The store key of an application.
pub fn app_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The document stored for an application: the object without status and volatile metadata
/// (`resourceVersion`, `uid`, `managedFields`, `generation`, timestamps other than
/// `deletionTimestamp`), so that the store's generation only moves when the app changed.
pub fn stored_app(object: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in ["apiVersion", "kind", "spec"] {
        if let Some(v) = object.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let mut meta = serde_json::Map::new();
    if let Some(m) = object.get("metadata").and_then(Value::as_object) {
        for k in [
            "name",
            "namespace",
            "uid",
            "labels",
            "annotations",
            "finalizers",
            "deletionTimestamp",
        ] {
            if let Some(v) = m.get(k) {
                if k == "annotations" {
                    // kubectl's last-applied copy changes with every apply, and a refresh
                    // request is taken and cleared: neither is input.
                    let mut a = v.clone();
                    if let Some(map) = a.as_object_mut() {
                        map.remove("kubectl.kubernetes.io/last-applied-configuration");
                        map.remove("argocd.argoproj.io/refresh");
                        if map.is_empty() {
                            continue;
                        }
                    }
                    meta.insert(k.into(), a);
                } else {
                    meta.insert(k.into(), v.clone());
                }
            }
        }
    }
    out.insert("metadata".into(), Value::Object(meta));
    Value::Object(out)
}

/// Parse a stored application document back into an [`Application`].
pub fn parse_stored_app(key: &str, doc: &Value) -> Result<Application, ModelError> {
    let text = doc.to_string();
    Application::from_yaml(&format!("stored application {key}"), &text)
}

/// Sync status codes, as Argo CD names them.
pub mod sync_code {
    /// Live state matches the desired state.
    pub const SYNCED: &str = "Synced";
    /// Live state differs from the desired state.
    pub const OUT_OF_SYNC: &str = "OutOfSync";
    /// The comparison could not be made.
    pub const UNKNOWN: &str = "Unknown";
}

/// The status of an application, shaped like Argo CD's `Application.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// Sync status: `Synced`, `OutOfSync` or `Unknown`, with the compared revision.
    pub sync: SyncStatus,
    /// Aggregated health of the app's resources.
    pub health: HealthStatus,
    /// One entry per managed resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
    /// Errors and warnings about the app (bad manifest, project violation, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last operation's state, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    /// Deployed revisions, newest last (at most 10, like Argo CD's default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// When the app was last reconciled (RFC 3339). Not compared when deciding whether the
    /// status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<String>,
    /// The store generation of the app this status was computed from.
    #[serde(default)]
    pub observed_generation: u64,
    /// The source type (`Directory`, `Kustomize`, `Helm`, `Jsonnet`, `Plugin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
}

impl AppStatus {
    /// Whether two statuses differ in anything but `reconciledAt`.
    pub fn differs_from(&self, other: &AppStatus) -> bool {
        let mut a = self.clone();
        a.reconciled_at = None;
        let mut b = other.clone();
        b.reconciled_at = None;
        a != b
    }

    /// Synced and Healthy.
    pub fn is_synced_and_healthy(&self) -> bool {
        self.sync.status == sync_code::SYNCED && self.health.status == "Healthy"
    }
}

/// `status.sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// See [`sync_code`].
    pub status: String,
    /// The revision compared against (comma-joined for multi-source apps).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
}

impl Default for SyncStatus {
    fn default() -> Self {
        Self {
            status: sync_code::UNKNOWN.into(),
            revision: String::new(),
        }
    }
}

/// `status.health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    pub status: String,
    /// Why, when not healthy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Default for HealthStatus {
    fn default() -> Self {
        Self {
            status: "Unknown".into(),
            message: String::new(),
        }
    }
}

/// One entry of `status.resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// API group (empty for the core group).
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `Synced` or `OutOfSync`.
    pub status: String,
    /// The resource's health, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// Whether the object must be pruned (live but no longer desired).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_pruning: bool,
}

/// One entry of `status.conditions`, as Argo CD's condition types
/// (`ComparisonError`, `InvalidSpecError`, `SyncError`, `SharedResourceWarning`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type.
    #[serde(rename = "type")]
    pub kind: String,
    /// What is wrong and where.
    pub message: String,
}

/// `status.operationState`: the last or running operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationState {
    /// The operation's id.
    pub op_id: String,
    /// `Running`, `Succeeded`, `Failed`, `Error` or `Terminating`.
    pub phase: String,
    /// A summary.
    #[serde(default)]
    pub message: String,
    /// The revision being synced.
    #[serde(default)]
    pub revision: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Retries so far.
    #[serde(default)]
    pub retry_count: u32,
}

/// One entry of `status.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Increasing id, starting at 0.
    pub id: u64,
    /// The deployed revision.
    pub revision: String,
    /// When the deploy finished (RFC 3339).
    pub deployed_at: String,
    /// When it started (RFC 3339).
    #[serde(default)]
    pub deploy_started_at: String,
    /// The app's `spec.source` (or `spec.sources`) at the time, for rollback.
    #[serde(default)]
    pub source: Value,
    /// The operation that deployed it.
    #[serde(default)]
    pub op_id: String,
}

/// What a sync operation does: the `request` of `OperationStarted` and `RequestOperation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationRequest {
    /// Who asked: `automated`, `api:<token name>`, `cli`, …
    pub initiated_by: String,
    /// Sync to this revision instead of the app's target (rollback pins a history entry's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The source to sync instead of the app's (rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Delete tracked objects that are no longer desired.
    #[serde(default)]
    pub prune: bool,
    /// Send every write with `dryRun=All`.
    #[serde(default)]
    pub dry_run: bool,
    /// Only these resources (`group/kind/namespace/name`); all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Extra sync options (`Replace=true`, …) on top of the app's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_options: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_app_keeps_inputs_and_drops_volatile_metadata() {
        let obj = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "a", "namespace": "argocd", "resourceVersion": "7",
                "uid": "u", "generation": 3, "managedFields": [],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
            "spec": {"project": "default"},
            "status": {"sync": {"status": "Synced"}}
        });
        let s = stored_app(&obj);
        assert_eq!(
            s,
            json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "a", "namespace": "argocd", "uid": "u",
                    "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
                "spec": {"project": "default"}
            })
        );
    }

    #[test]
    fn reconciled_at_alone_is_not_a_change() {
        let a = AppStatus {
            reconciled_at: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let mut b = a.clone();
        b.reconciled_at = Some("2026-01-01T00:03:00Z".into());
        assert!(!a.differs_from(&b));
        b.sync.status = sync_code::SYNCED.into();
        assert!(a.differs_from(&b));
        let text = serde_json::to_value(&b).unwrap();
        assert_eq!(text["sync"]["status"], "Synced");
        assert_eq!(text["health"]["status"], "Unknown");
    }
}
