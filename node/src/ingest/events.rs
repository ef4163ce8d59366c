//! Leader: Kubernetes Events on `Application` resources, as Argo CD records them, so
//! `kubectl describe application` and event-based alerting show what happened.
//!
//! The store's change stream is turned into events: an operation started
//! (`OperationStarted`), an operation finished (`OperationCompleted`, a `Warning` when it did
//! not succeed), and a change of sync or health status (`ResourceUpdated`). Only apps that
//! came from an `Application` resource get events, attached to it by name and uid.
//!
//! Events are best effort. They go through a bounded queue to a few concurrent writers;
//! when the queue is full (the management cluster is slow or down), an event is dropped
//! and counted in `flotilla_events_dropped_total`, and reconciliation never waits on them.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::PostParams;
use kube::Api;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use flotilla_raft::{ChangeEvent, Command, Store};

use super::{origin, origin_of, stored_value, Ctx};
use crate::intern::intern;
use crate::status::{AppStatus, OperationRequest};
use crate::sync::result::OperationResult;

/// Events waiting to be written; more are dropped.
const QUEUE: usize = 4096;
/// Events written at once.
const WRITERS: usize = 8;
/// The component named as the events' source.
pub const COMPONENT: &str = "flotilla";

/// One event to record on an Application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEvent {
    /// `namespace/name` of the app.
    pub app: String,
    /// `Normal` or `Warning`.
    pub kind: &'static str,
    /// Argo CD's reason: `OperationStarted`, `OperationCompleted`, `ResourceUpdated`.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// Sync and health status last seen per app, to tell what changed. The leader holds one
/// entry per app; the few distinct status words are shared ([`intern`]).
#[derive(Debug, Default)]
pub struct Transitions {
    seen: HashMap<Box<str>, (Arc<str>, Arc<str>)>,
}

impl Transitions {
    /// Seed with the statuses in the store (no events for them).
    pub fn from_store(store: &Store) -> Self {
        let mut t = Self::default();
        let reader = store.local();
        if let Ok(apps) = reader.apps() {
            for r in apps {
                if let Ok(Some(s)) = reader.status(&r.app) {
                    if let Some(st) = parse_status(&s.status.to_value().unwrap_or(Value::Null)) {
                        t.seen.insert(
                            r.app.into(),
                            (intern(&st.sync.status), intern(&st.health.status)),
                        );
                    }
                }
            }
        }
        t
    }

    /// The events one applied command gives.
    pub fn events_for(&mut self, command: &Command) -> Vec<AppEvent> {
        match command {
            Command::OperationStarted { app, request, .. } => {
                let req: OperationRequest = request
                    .to_value()
                    .ok()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                let who = req.initiated_by.as_str();
                let revision = req.revision.as_deref();
                let message = match (who, revision) {
                    ("automated", Some(r)) => format!("Initiated automated sync to '{r}'"),
                    ("automated", None) => "Initiated automated sync".to_string(),
                    (w, Some(r)) => format!("{w} initiated sync to {r}"),
                    (w, None) if !w.is_empty() => format!("{w} initiated sync"),
                    _ => "Initiated sync".to_string(),
                };
                vec![AppEvent {
                    app: app.clone(),
                    kind: "Normal",
                    reason: "OperationStarted",
                    message,
                }]
            }
            Command::OperationFinished { app, result, .. } => {
                let Some(r) = result
                    .to_value()
                    .ok()
                    .and_then(|v| serde_json::from_value::<OperationResult>(v).ok())
                else {
                    return Vec::new();
                };
                let (kind, message) = if r.succeeded() {
                    (
                        "Normal",
                        format!("Sync operation to {} succeeded", r.revision),
                    )
                } else {
                    (
                        "Warning",
                        format!("Sync operation to {} failed: {}", r.revision, r.message),
                    )
                };
                vec![AppEvent {
                    app: app.clone(),
                    kind,
                    reason: "OperationCompleted",
                    message,
                }]
            }
            Command::SetStatus { app, status, .. } => {
                let Some(st) = parse_status(&status.to_value().unwrap_or(Value::Null)) else {
                    return Vec::new();
                };
                let now = (intern(&st.sync.status), intern(&st.health.status));
                let before = self.seen.insert(app.as_str().into(), now.clone());
                let (old_sync, old_health) = before.unwrap_or_else(|| (intern(""), intern("")));
                let mut out = Vec::new();
                for (what, old, new) in
                    [("sync", &old_sync, &now.0), ("health", &old_health, &now.1)]
                {
                    if old != new && !new.is_empty() {
                        let old: &str = if old.is_empty() { "Unknown" } else { old };
                        out.push(AppEvent {
                            app: app.clone(),
                            kind: "Normal",
                            reason: "ResourceUpdated",
                            message: format!("Updated {what} status: {old} -> {new}"),
                        });
                    }
                }
                out
            }
            Command::DeleteApp { app } => {
                self.seen.remove(app.as_str());
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

fn parse_status(v: &Value) -> Option<AppStatus> {
    serde_json::from_value(v.clone()).ok()
}

/// Record events until `cancel` fires.
pub(crate) async fn run(ctx: Ctx, client: kube::Client, cancel: CancellationToken) {
    let mut rx = ctx.store.subscribe();
    let mut transitions = Transitions::from_store(&ctx.store);
    let (tx, queue) = mpsc::channel::<AppEvent>(QUEUE);
    let writer = tokio::spawn(write_events(
        ctx.store.clone(),
        client,
        queue,
        cancel.clone(),
    ));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            event = rx.recv() => match event {
                Ok(event) => {
                    let ChangeEvent::Applied { command, result, .. } = event.as_ref() else {
                        // A reset: statuses may have changed unseen; start from the store.
                        transitions = Transitions::from_store(&ctx.store);
                        continue;
                    };
                    if result.is_err() {
                        continue;
                    }
                    for e in transitions.events_for(command) {
                        if tx.try_send(e).is_err() {
                            metrics::counter!("flotilla_events_dropped_total").increment(1);
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("flotilla_events_dropped_total").increment(n);
                    transitions = Transitions::from_store(&ctx.store);
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
    drop(tx);
    let _ = writer.await;
}

async fn write_events(
    store: Store,
    client: kube::Client,
    queue: mpsc::Receiver<AppEvent>,
    cancel: CancellationToken,
) {
    use futures::StreamExt as _;
    let node = store.id();
    let store = Arc::new(store);
    tokio_stream::wrappers::ReceiverStream::new(queue)
        .take_until(cancel.cancelled())
        .for_each_concurrent(WRITERS, |e| {
            let (store, client) = (store.clone(), client.clone());
            async move {
                let Some(event) = build_event(&store, &e, node) else {
                    return;
                };
                let Some(ns) = event.metadata.namespace.clone() else {
                    return;
                };
                let api: Api<Event> = Api::namespaced(client, &ns);
                match api.create(&PostParams::default(), &event).await {
                    Ok(_) => metrics::counter!("flotilla_events_total", "reason" => e.reason)
                        .increment(1),
                    Err(err) => {
                        metrics::counter!("flotilla_events_dropped_total").increment(1);
                        tracing::debug!(app = %e.app, error = %err, "recording an event");
                    }
                }
            }
        })
        .await;
}

/// The core/v1 Event for `e`, attached to the app's `Application` (by uid when known);
/// `None` when the app did not come from an `Application` resource.
fn build_event(store: &Store, e: &AppEvent, node: u64) -> Option<Event> {
    let record = store.local().app(&e.app).ok()??;
    let spec = stored_value(&record.spec);
    if origin_of(&spec) != Some(origin::KUBERNETES) {
        return None;
    }
    let (ns, name) = e.app.split_once('/')?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let nanos = now.as_nanosecond();
    Some(Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{nanos:x}")),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("argoproj.io/v1alpha1".into()),
            kind: Some("Application".into()),
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            uid: spec["metadata"]["uid"].as_str().map(str::to_owned),
            ..Default::default()
        },
        reason: Some(e.reason.to_string()),
        message: Some(e.message.clone()),
        type_: Some(e.kind.to_string()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(format!("{COMPONENT}-node-{node}")),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        action: Some(e.reason.to_string()),
        count: Some(1),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::Json;
    use serde_json::json;

    fn set_status(app: &str, sync: &str, health: &str) -> Command {
        Command::SetStatus {
            app: app.into(),
            node: 1,
            epoch: 1,
            status: Json::from(json!({"sync": {"status": sync}, "health": {"status": health}})),
            at: 0,
        }
    }

    #[test]
    fn status_changes_become_resource_updated_events() {
        let mut t = Transitions::default();
        let first = t.events_for(&set_status("argocd/a", "OutOfSync", "Missing"));
        assert_eq!(
            first.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            [
                "Updated sync status: Unknown -> OutOfSync",
                "Updated health status: Unknown -> Missing"
            ]
        );
        assert!(t
            .events_for(&set_status("argocd/a", "OutOfSync", "Missing"))
            .is_empty());
        let next = t.events_for(&set_status("argocd/a", "Synced", "Missing"));
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].message, "Updated sync status: OutOfSync -> Synced");
        assert_eq!(next[0].reason, "ResourceUpdated");
    }

    #[test]
    fn operations_become_started_and_completed_events() {
        let mut t = Transitions::default();
        let started = t.events_for(&Command::OperationStarted {
            app: "argocd/a".into(),
            node: 1,
            epoch: 1,
            op_id: "1".into(),
            request: Json::from(json!({"initiatedBy": "automated", "revision": "abc"})),
            at: 0,
        });
        assert_eq!(started[0].reason, "OperationStarted");
        assert_eq!(started[0].message, "Initiated automated sync to 'abc'");
        let failed = t.events_for(&Command::OperationFinished {
            app: "argocd/a".into(),
            node: 1,
            epoch: 1,
            op_id: "1".into(),
            result: Json::from(json!({
                "phase": "Failed", "message": "one or more objects failed to apply",
                "resources": [], "startedAt": "", "revision": "abc",
                "attempts": 1, "dryRun": false
            })),
            at: 0,
        });
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].kind, "Warning");
        assert_eq!(
            failed[0].message,
            "Sync operation to abc failed: one or more objects failed to apply"
        );
    }
}
