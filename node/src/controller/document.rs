//! The documents of one reconcile: the status built from a comparison and the stored
//! operation, and the pieces of an operation request (selection, overrides, options).

use super::ControllerError;
use crate::diff::{DiffOptions, Drift, IgnoreRule, ResourceKey};
use crate::health::{self, lua::Customizations, HealthStatus};
use crate::live::Comparison;
use crate::model::Application;
use crate::status::{
    self, sync_code, AppStatus, Condition, HistoryEntry, OperationRequest, OperationState,
    ResourceStatus,
};
use crate::sync::options::{parse_duration, Retry, SyncOptions};
use crate::sync::result::{now_rfc3339, OperationResult};
use flotilla_raft::OperationRecord;
use serde_json::Value;
use std::collections::BTreeSet;

pub(super) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

pub(super) fn millis_rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub(super) fn json_err(
    app: &str,
    what: &'static str,
) -> impl FnOnce(serde_json::Error) -> ControllerError {
    let app = app.to_string();
    move |source| ControllerError::Json { app, what, source }
}

pub(super) fn condition(kind: &str, message: impl Into<String>) -> Condition {
    Condition {
        kind: kind.into(),
        message: message.into(),
    }
}

/// The result of an operation record, if finished and readable.
pub(super) fn op_result(op: &OperationRecord) -> Option<OperationResult> {
    let f = op.finished.as_ref()?;
    serde_json::from_str(f.result.as_str()).ok()
}

pub(super) fn op_request(op: &OperationRecord) -> OperationRequest {
    serde_json::from_str(op.request.as_str()).unwrap_or_default()
}

/// `status.operationState` from the stored operation.
pub(super) fn operation_state(op: &OperationRecord) -> OperationState {
    let result = op_result(op);
    let request = op_request(op);
    match result {
        Some(r) => OperationState {
            op_id: op.op_id.clone(),
            phase: format!("{:?}", r.phase),
            message: r.message,
            revision: r.revision,
            started_at: millis_rfc3339(op.started_at),
            finished_at: op.finished.as_ref().map(|f| millis_rfc3339(f.at)),
            retry_count: r.attempts.saturating_sub(1),
        },
        None => OperationState {
            op_id: op.op_id.clone(),
            phase: if op.finished.is_some() {
                "Error".into()
            } else {
                "Running".into()
            },
            message: String::new(),
            revision: request.revision.unwrap_or_default(),
            started_at: millis_rfc3339(op.started_at),
            finished_at: op.finished.as_ref().map(|f| millis_rfc3339(f.at)),
            retry_count: 0,
        },
    }
}

/// The app's diff options: its own `ignoreDifferences`, then the system-level ones.
pub(super) fn diff_options(
    app: &Application,
    system: &[IgnoreRule],
) -> Result<DiffOptions, String> {
    let mut opts = DiffOptions::default();
    for r in &app.spec.ignore_differences {
        let rule = IgnoreRule::from(r);
        rule.validate().map_err(|e| e.to_string())?;
        opts.ignore.push(rule);
    }
    opts.ignore.extend(system.iter().cloned());
    Ok(opts)
}

/// The app's sync options (plus `extra`) and retry policy.
pub(super) fn sync_settings(
    app: &Application,
    extra: &[String],
) -> Result<(SyncOptions, Option<Retry>), String> {
    let policy = app.spec.sync_policy.as_ref();
    let mut entries = policy.map(|p| p.sync_options.clone()).unwrap_or_default();
    entries.extend(extra.iter().cloned());
    let (options, _unknown) = SyncOptions::default().with(entries.iter().map(String::as_str));
    let retry = match policy.and_then(|p| p.retry.as_ref()) {
        None => None,
        Some(r) => {
            let mut out = Retry::default();
            if let Some(l) = r.limit {
                out.limit = l;
            }
            if let Some(b) = &r.backoff {
                if let Some(d) = &b.duration {
                    out.duration =
                        parse_duration("retry.backoff.duration", d).map_err(|e| e.to_string())?;
                }
                if let Some(f) = b.factor {
                    out.factor = f as f64;
                }
                if let Some(m) = &b.max_duration {
                    out.max_duration = parse_duration("retry.backoff.maxDuration", m)
                        .map_err(|e| e.to_string())?;
                }
            }
            Some(out)
        }
    };
    Ok((options, retry))
}

/// Parse `group/kind/namespace/name` selections (`kind/namespace/name` for the core group).
pub(super) fn selection(resources: &[String]) -> Option<BTreeSet<ResourceKey>> {
    if resources.is_empty() {
        return None;
    }
    let keys = resources
        .iter()
        .filter_map(|r| {
            let parts: Vec<&str> = r.split('/').collect();
            let (group, kind, namespace, name) = match parts.as_slice() {
                [g, k, ns, n] => (*g, *k, *ns, *n),
                [k, ns, n] => ("", *k, *ns, *n),
                _ => return None,
            };
            Some(ResourceKey {
                group: group.into(),
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
            })
        })
        .collect();
    Some(keys)
}

/// The app with a request's revision or source override applied.
pub(super) fn with_override(
    app: &Application,
    req: &OperationRequest,
) -> Result<Application, String> {
    let mut out = app.clone();
    if let Some(src) = &req.source {
        let parsed = serde_json::from_value(src.clone())
            .map_err(|e| format!("operation source override: {e}"))?;
        out.spec.source = Some(parsed);
        out.spec.sources.clear();
    }
    if let Some(rev) = &req.revision {
        if let Some(s) = out.spec.source.as_mut() {
            s.target_revision = Some(rev.clone());
        } else if let Some(first) = out.spec.sources.first_mut() {
            first.target_revision = Some(rev.clone());
        }
    }
    Ok(out)
}

/// Build the status from a comparison (or keep the previous resources when there is none).
/// The inputs of [`build_status`] that do not change between apps.
pub(super) struct StatusSettings<'a> {
    /// Custom health checks.
    pub custom: &'a Customizations,
    /// Deployed revisions kept when the app does not say.
    pub history_limit: usize,
}

pub(super) fn build_status(
    settings: &StatusSettings<'_>,
    app: &Application,
    generation: u64,
    prev: Option<&AppStatus>,
    compared: Option<(&Comparison, &str)>,
    conditions: Vec<Condition>,
    op: Option<&OperationRecord>,
) -> AppStatus {
    let mut st = AppStatus {
        observed_generation: generation,
        reconciled_at: Some(now_rfc3339()),
        conditions,
        history: prev.map(|p| p.history.clone()).unwrap_or_default(),
        ..Default::default()
    };
    match compared {
        Some((cmp, revision)) => {
            let mut healths = Vec::new();
            for d in &cmp.diffs {
                let live = cmp.live.get(&d.key);
                let version = live
                    .or_else(|| cmp.desired.iter().find(|o| ResourceKey::of(o) == d.key))
                    .and_then(|o| o.get("apiVersion"))
                    .and_then(Value::as_str)
                    .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
                    .unwrap_or_default();
                let h = match (live, d.drift) {
                    (_, Drift::Extra) => None,
                    (Some(l), _) => health::assess(l, settings.custom),
                    (None, _) => Some(health::Health::new(HealthStatus::Missing, "")),
                };
                if let Some(h) = &h {
                    healths.push(h.clone());
                }
                st.resources.push(ResourceStatus {
                    group: d.key.group.clone(),
                    version,
                    kind: d.key.kind.clone(),
                    namespace: d.key.namespace.clone(),
                    name: d.key.name.clone(),
                    status: if d.in_sync() {
                        sync_code::SYNCED.into()
                    } else {
                        sync_code::OUT_OF_SYNC.into()
                    },
                    health: h.map(|h| status::HealthStatus {
                        status: h.status.as_str().into(),
                        message: h.message,
                    }),
                    requires_pruning: d.drift == Drift::Extra,
                });
            }
            let worst = health::aggregate(&healths);
            let message = healths
                .iter()
                .find(|h| h.status == worst && !h.message.is_empty())
                .map(|h| h.message.clone())
                .unwrap_or_default();
            st.health = status::HealthStatus {
                status: worst.as_str().into(),
                message: if worst == HealthStatus::Healthy {
                    String::new()
                } else {
                    message
                },
            };
            st.sync = status::SyncStatus {
                status: if cmp.in_sync() {
                    sync_code::SYNCED.into()
                } else {
                    sync_code::OUT_OF_SYNC.into()
                },
                revision: revision.to_string(),
            };
        }
        None => {
            if let Some(p) = prev {
                st.health = p.health.clone();
                st.resources = p.resources.clone();
                st.sync.revision = p.sync.revision.clone();
            }
        }
    }
    if let Some(op) = op {
        st.operation_state = Some(operation_state(op));
        // A successful, persisted operation is a deployment: record it once.
        if let Some(r) = op_result(op).filter(|r| r.succeeded() && !r.dry_run) {
            if !st.history.iter().any(|h| h.op_id == op.op_id) {
                let req = op_request(op);
                let source = req.source.clone().unwrap_or_else(|| {
                    if app.is_multi_source() {
                        serde_json::to_value(&app.spec.sources).unwrap_or_default()
                    } else {
                        serde_json::to_value(&app.spec.source).unwrap_or_default()
                    }
                });
                st.history.push(HistoryEntry {
                    id: st.history.last().map(|h| h.id + 1).unwrap_or(0),
                    revision: r.revision.clone(),
                    deployed_at: r.finished_at.clone().unwrap_or_default(),
                    deploy_started_at: r.started_at.clone(),
                    source,
                    op_id: op.op_id.clone(),
                });
            }
        }
    }
    let limit = app
        .spec
        .revision_history_limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(settings.history_limit);
    if st.history.len() > limit {
        let cut = st.history.len() - limit;
        st.history.drain(..cut);
    }
    st
}

#[cfg(test)]
mod tests;
