//! Leader: application status written back onto the `Application` resources, and the
//! resources finalizer released once the controller has deleted an app.
//!
//! The store's change stream marks apps dirty (`SetStatus`, `OperationStarted`,
//! `OperationFinished`, `PutApp`; everything after a `Reset`, a lag or a leadership gain).
//! A dirty app is written at most once per `status_interval`; changes in between coalesce.
//! Each write reads the resource first and patches only what differs, so an unchanged
//! status costs one GET and no write.

use std::collections::{BTreeSet, HashMap};

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use flotilla_raft::{ChangeEvent, Command, OperationRecord, StatusRecord, Store};

use super::{
    application_resource, origin, origin_of, stored_value, Ctx, IngestError, FIELD_MANAGER,
    RESOURCES_FINALIZER,
};
use crate::status::app_key;

/// Write statuses until `cancel` fires.
pub(crate) async fn run(ctx: Ctx, client: kube::Client, cancel: CancellationToken) {
    let mut rx = ctx.store.subscribe();
    let interval = ctx.settings.status_interval;
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    let mut last: HashMap<String, Instant> = HashMap::new();
    mark_all(&ctx.store, &mut dirty);
    loop {
        let now = Instant::now();
        last.retain(|_, t| *t + interval > now);
        let due: Vec<String> = dirty
            .iter()
            .filter(|a| !last.contains_key(*a))
            .cloned()
            .collect();
        for app in due {
            if cancel.is_cancelled() {
                return;
            }
            dirty.remove(&app);
            match write_status(&ctx.store, &client, &app).await {
                Ok(true) => {
                    last.insert(app, Instant::now());
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(app = %app, error = %e, "writing status back; will retry");
                    last.insert(app.clone(), Instant::now());
                    dirty.insert(app);
                }
            }
        }
        let next_due = dirty
            .iter()
            .filter_map(|a| last.get(a).map(|t| *t + interval))
            .min();
        tokio::select! {
            _ = cancel.cancelled() => return,
            event = rx.recv() => match event {
                Ok(event) => handle(&ctx.store, &client, &event, &mut dirty).await,
                Err(RecvError::Lagged(_)) => mark_all(&ctx.store, &mut dirty),
                Err(RecvError::Closed) => return,
            },
            _ = sleep_until(next_due), if next_due.is_some() => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Mark every app of the `kubernetes` origin dirty.
fn mark_all(store: &Store, dirty: &mut BTreeSet<String>) {
    match store.local().apps() {
        Ok(apps) => {
            for r in apps {
                if origin_of(&stored_value(&r.spec)) == Some(origin::KUBERNETES) {
                    dirty.insert(r.app);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading apps for status write-back"),
    }
}

async fn handle(
    store: &Store,
    client: &kube::Client,
    event: &ChangeEvent,
    dirty: &mut BTreeSet<String>,
) {
    match event {
        ChangeEvent::Reset { .. } => mark_all(store, dirty),
        ChangeEvent::Applied {
            command, result, ..
        } => {
            if result.is_err() {
                return;
            }
            match command {
                Command::SetStatus { app, .. }
                | Command::OperationStarted { app, .. }
                | Command::OperationFinished { app, .. }
                | Command::PutApp { app, .. } => {
                    dirty.insert(app.clone());
                }
                Command::DeleteApp { app } => {
                    dirty.remove(app);
                    if let Some((ns, name)) = app.split_once('/') {
                        release_finalizer(client, ns, name, store).await;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Write one app's status onto its resource; `Ok(true)` when a patch was sent.
async fn write_status(
    store: &Store,
    client: &kube::Client,
    key: &str,
) -> Result<bool, IngestError> {
    let reader = store.local();
    let Some(record) = reader.app(key)? else {
        return Ok(false);
    };
    if origin_of(&stored_value(&record.spec)) != Some(origin::KUBERNETES) {
        return Ok(false);
    }
    let status = reader.status(key)?;
    let operation = reader.operation(key)?;
    let Some(desired) = status_document(status.as_ref(), operation.as_ref()) else {
        return Ok(false);
    };
    let Some((ns, name)) = key.split_once('/') else {
        return Ok(false);
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &application_resource());
    let kube_err = |what: &str| {
        let what = format!("{what} Application {key}");
        move |source| IngestError::Kube { what, source }
    };
    let Some(obj) = api.get_opt(name).await.map_err(kube_err("read"))? else {
        return Ok(false);
    };
    let live = obj.data.get("status").cloned().unwrap_or(Value::Null);
    let Some(patch) = merge_diff(&live, &desired) else {
        return Ok(false);
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(json!({ "status": patch })))
        .await
        .map_err(kube_err("write the status of"))?;
    metrics::counter!("flotilla_ingest_status_writes_total").increment(1);
    tracing::debug!(app = %key, "status written back");
    Ok(true)
}

/// The `status` of an Application resource: the stored [`crate::status::AppStatus`] with
/// `operationState` taken from the operation record when there is one. `None` when the
/// store has neither.
pub fn status_document(
    status: Option<&StatusRecord>,
    operation: Option<&OperationRecord>,
) -> Option<Value> {
    let stored = status
        .and_then(|s| s.status.to_value().ok())
        .filter(Value::is_object);
    if stored.is_none() && operation.is_none() {
        return None;
    }
    let mut doc = stored.unwrap_or_else(|| json!({}));
    if let Some(op) = operation {
        doc["operationState"] = operation_state(op);
    }
    Some(strip_nulls(doc))
}

fn rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Argo CD's `status.operationState` for an operation record.
pub fn operation_state(op: &OperationRecord) -> Value {
    let request = op.request.to_value().unwrap_or(Value::Null);
    let initiated_by = request
        .get("initiatedBy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let initiated = if initiated_by == "automated" {
        json!({ "automated": true })
    } else {
        json!({ "username": initiated_by })
    };
    let mut sync = serde_json::Map::new();
    for (from, to) in [
        ("revision", "revision"),
        ("prune", "prune"),
        ("dryRun", "dryRun"),
        ("syncOptions", "syncOptions"),
        ("source", "source"),
    ] {
        if let Some(v) = request.get(from) {
            sync.insert(to.into(), v.clone());
        }
    }
    let mut state = json!({
        "operation": { "sync": sync, "initiatedBy": initiated },
        "phase": "Running",
        "startedAt": rfc3339(op.started_at),
    });
    if let Some(finished) = &op.finished {
        let result = finished.result.to_value().unwrap_or(Value::Null);
        let text = |k: &str| result.get(k).and_then(Value::as_str).map(str::to_string);
        state["phase"] = json!(text("phase").unwrap_or_else(|| "Error".into()));
        state["message"] = json!(text("message").unwrap_or_default());
        state["finishedAt"] = json!(text("finishedAt").unwrap_or_else(|| rfc3339(finished.at)));
        state["syncResult"] = json!({
            "revision": text("revision").unwrap_or_default(),
            "resources": result.get("resources").cloned().unwrap_or_else(|| json!([])),
        });
        if let Some(attempts) = result.get("attempts").and_then(Value::as_u64) {
            state["retryCount"] = json!(attempts.saturating_sub(1));
        }
    }
    state
}

/// The value without `null` object members, at every level (a merge patch reads them as
/// deletions, so they could never be written).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`; `None` when they are equal.
/// `new` must not hold `null` object members.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = serde_json::Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(d) = merge_diff(ov, nv) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ if old == new => None,
        _ => Some(new.clone()),
    }
}

/// Remove the resources finalizer from an Application being deleted whose app is gone from
/// the store (the controller deletes it once it has pruned the app's resources).
pub(crate) async fn release_finalizer(client: &kube::Client, ns: &str, name: &str, store: &Store) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &application_resource());
    let key = app_key(ns, name);
    // A conflict means the object changed under us: read it again (a few times at most).
    for _ in 0..3 {
        let obj = match api.get_opt(name).await {
            Ok(Some(o)) => o,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(app = %key, error = %e, "reading an Application being deleted");
                return;
            }
        };
        if obj.metadata.deletion_timestamp.is_none() {
            return;
        }
        match store.local().app(&key) {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => {
                tracing::warn!(app = %key, error = %e, "reading the store");
                return;
            }
        }
        let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
        let keep: Vec<&String> = finalizers
            .iter()
            .filter(|f| !f.starts_with(RESOURCES_FINALIZER))
            .collect();
        if keep.len() == finalizers.len() {
            return;
        }
        let patch = json!({ "metadata": {
            "finalizers": keep,
            "resourceVersion": obj.metadata.resource_version,
        }});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.patch(name, &params, &Patch::Merge(patch)).await {
            Ok(_) => {
                tracing::info!(app = %key, "resources pruned: finalizer removed");
                return;
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => continue,
            Err(kube::Error::Api(s)) if s.is_not_found() => return,
            Err(e) => {
                tracing::warn!(app = %key, error = %e, "removing the resources finalizer");
                return;
            }
        }
    }
}
