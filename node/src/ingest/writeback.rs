//! Leader: application status written back onto the `Application` resources, and the
//! resources finalizer released once the controller has deleted an app.
//!
//! The store's change stream marks apps dirty (`SetStatus`, `OperationStarted`,
//! `OperationFinished`, `PutApp`; everything after a `Reset`, a lag or a leadership gain).
//! A dirty app is written at most once per `status_interval`; changes in between coalesce.
//! Up to `status_concurrency` apps are written at once, never one app twice at once.
//!
//! A write sets the whole `status` in one JSON patch (`add /status`), which replaces it
//! whatever it held, so no precondition and no earlier copy of it is needed. Of the status
//! each write (or read) left, only a digest is remembered per app: a write whose status
//! has the same digest is skipped, and an app with nothing remembered is read first and
//! written only if its status differs. What is remembered is forgotten after an error, a lag
//! of the change stream and every `status_resync`, so a status changed behind flotilla's
//! back is read and corrected then.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hasher};

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use flotilla_raft::{ChangeEvent, Command, OperationRecord, StatusRecord, Store};

use super::{
    application_resource, origin, origin_of, stored_value, Ctx, IngestError, FIELD_MANAGER,
    RESOURCES_FINALIZER,
};
use crate::status::app_key;

#[cfg(test)]
mod tests;

/// A digest of a resource's status as the last write (or read) left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known(u64);

impl Known {
    fn of(status: &Value) -> Known {
        let mut hasher = DefaultHasher::new();
        // Writing JSON into a hasher cannot fail.
        let _ = serde_json::to_writer(HashWriter(&mut hasher), status);
        Known(hasher.finish())
    }
}

/// Feeds serialized bytes to a hasher.
struct HashWriter<'a>(&'a mut DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What one write did.
#[derive(Debug)]
enum Wrote {
    /// A patch was sent.
    Patched(Known),
    /// The resource already had the status (or the store has none to write).
    Unchanged(Option<Known>),
    /// The resource or the app is gone.
    Gone,
}

/// The apps waiting for a write, and the writes in flight.
#[derive(Default)]
struct Pending {
    /// Apps that need a write and are not being written.
    dirty: HashSet<String>,
    /// Dirty apps that may be written now (entries are checked again when taken).
    ready: VecDeque<String>,
    /// Dirty apps written too recently, by when they may be written again.
    later: BinaryHeap<Reverse<(Instant, String)>>,
    /// When each app was last written.
    last: HashMap<String, Instant>,
    /// Apps being written.
    in_flight: HashSet<String>,
    /// Each app's status as the last write or read left it.
    known: HashMap<String, Known>,
}

impl Pending {
    /// Mark one app as needing a write.
    fn mark(&mut self, app: &str, interval: std::time::Duration) {
        if self.dirty.insert(app.to_string()) && !self.in_flight.contains(app) {
            self.schedule(app.to_string(), interval);
        }
    }

    fn schedule(&mut self, app: String, interval: std::time::Duration) {
        match self.last.get(&app).map(|t| *t + interval) {
            Some(at) if at > Instant::now() => self.later.push(Reverse((at, app))),
            _ => self.ready.push_back(app),
        }
    }

    /// Mark every app of the `kubernetes` origin, forgetting every known status (so each
    /// is read again before it is written).
    fn mark_all(&mut self, store: &Store, interval: std::time::Duration) {
        self.known.clear();
        match store.local().apps() {
            Ok(apps) => {
                for r in apps {
                    if origin_of(&stored_value(&r.spec)) == Some(origin::KUBERNETES) {
                        self.mark(&r.app, interval);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading apps for status write-back"),
        }
    }

    fn forget(&mut self, app: &str) {
        self.dirty.remove(app);
        self.known.remove(app);
        self.last.remove(app);
    }

    /// The next app to write now, taken out of the dirty set.
    fn take_due(&mut self, interval: std::time::Duration) -> Option<String> {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.later.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, app))) = self.later.pop() {
                self.ready.push_back(app);
            }
        }
        while let Some(app) = self.ready.pop_front() {
            if !self.dirty.contains(&app) || self.in_flight.contains(&app) {
                continue;
            }
            if self.last.get(&app).is_some_and(|t| *t + interval > now) {
                self.schedule(app, interval);
                continue;
            }
            self.dirty.remove(&app);
            return Some(app);
        }
        None
    }

    /// When the earliest throttled app may be written.
    fn next_due(&self) -> Option<Instant> {
        self.later.peek().map(|Reverse((at, _))| *at)
    }

    /// Record the end of one app's write; an app marked again meanwhile is scheduled.
    fn done(
        &mut self,
        app: String,
        outcome: Result<Wrote, IngestError>,
        interval: std::time::Duration,
    ) {
        self.in_flight.remove(&app);
        match outcome {
            Ok(Wrote::Patched(known)) => {
                self.known.insert(app.clone(), known);
                self.last.insert(app.clone(), Instant::now());
            }
            Ok(Wrote::Unchanged(Some(known))) => {
                self.known.insert(app.clone(), known);
            }
            Ok(Wrote::Unchanged(None)) => {}
            Ok(Wrote::Gone) => {
                self.known.remove(&app);
            }
            Err(e) => {
                tracing::warn!(app = %app, error = %e, "writing status back; will retry");
                self.known.remove(&app);
                self.last.insert(app.clone(), Instant::now());
                self.dirty.insert(app.clone());
            }
        }
        if self.dirty.contains(&app) {
            self.schedule(app, interval);
        }
    }
}

/// Write statuses until `cancel` fires.
pub(crate) async fn run(ctx: Ctx, client: kube::Client, cancel: CancellationToken) {
    let mut rx = ctx.store.subscribe();
    let interval = ctx.settings.status_interval;
    let limit = ctx.settings.status_concurrency.max(1);
    let resync = ctx.settings.status_resync.max(interval);
    let mut audit = tokio::time::interval_at(Instant::now() + resync, resync);
    audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Pending::default();
    let mut writes: JoinSet<(String, Result<Wrote, IngestError>)> = JoinSet::new();
    pending.mark_all(&ctx.store, interval);
    loop {
        while writes.len() < limit {
            let Some(app) = pending.take_due(interval) else {
                break;
            };
            pending.in_flight.insert(app.clone());
            let known = pending.known.get(&app).copied();
            let (store, client) = (ctx.store.clone(), client.clone());
            writes.spawn(async move {
                let outcome = write_status(&store, &client, &app, known).await;
                (app, outcome)
            });
        }
        let next_due = pending.next_due().filter(|_| writes.len() < limit);
        tokio::select! {
            _ = cancel.cancelled() => {
                writes.shutdown().await;
                return;
            }
            Some(done) = writes.join_next(), if !writes.is_empty() => match done {
                Ok((app, outcome)) => pending.done(app, outcome, interval),
                Err(e) => {
                    // A write that panicked: everything is read and written again.
                    tracing::error!(error = %e, "a status write ended abnormally");
                    pending.in_flight.clear();
                    pending.mark_all(&ctx.store, interval);
                }
            },
            event = rx.recv() => match event {
                Ok(event) => handle(&ctx.store, &client, &event, &mut pending, interval).await,
                Err(RecvError::Lagged(_)) => pending.mark_all(&ctx.store, interval),
                Err(RecvError::Closed) => return,
            },
            _ = audit.tick() => pending.mark_all(&ctx.store, interval),
            _ = sleep_until(next_due), if next_due.is_some() => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

async fn handle(
    store: &Store,
    client: &kube::Client,
    event: &ChangeEvent,
    pending: &mut Pending,
    interval: std::time::Duration,
) {
    match event {
        ChangeEvent::Reset { .. } => pending.mark_all(store, interval),
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
                | Command::PutApp { app, .. } => pending.mark(app, interval),
                Command::DeleteApp { app } => {
                    pending.forget(app);
                    if let Some((ns, name)) = app.split_once('/') {
                        release_finalizer(client, ns, name, store).await;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Write one app's status onto its resource unless `known` says it is there already (read
/// first when `None`).
async fn write_status(
    store: &Store,
    client: &kube::Client,
    key: &str,
    known: Option<Known>,
) -> Result<Wrote, IngestError> {
    let reader = store.local();
    let Some(record) = reader.app(key)? else {
        return Ok(Wrote::Gone);
    };
    if origin_of(&stored_value(&record.spec)) != Some(origin::KUBERNETES) {
        return Ok(Wrote::Gone);
    }
    let status = reader.status(key)?;
    let operation = reader.operation(key)?;
    let Some(desired) = status_document(status.as_ref(), operation.as_ref()) else {
        return Ok(Wrote::Unchanged(known));
    };
    let Some((ns, name)) = key.split_once('/') else {
        return Ok(Wrote::Gone);
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &application_resource());
    let kube_err = |what: &str| {
        let what = format!("{what} Application {key}");
        move |source| IngestError::Kube { what, source }
    };
    let digest = Known::of(&desired);
    match known {
        Some(k) if k == digest => return Ok(Wrote::Unchanged(known)),
        Some(_) => {}
        None => match api.get_opt(name).await.map_err(kube_err("read"))? {
            Some(obj) if obj.data.get("status") == Some(&desired) => {
                return Ok(Wrote::Unchanged(Some(digest)))
            }
            Some(_) => {}
            None => return Ok(Wrote::Gone),
        },
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let ops = json!([{ "op": "add", "path": "/status", "value": desired }]);
    let patch =
        Patch::Json::<()>(
            serde_json::from_value(ops).map_err(|source| IngestError::Json {
                what: format!("the status patch of Application {key}"),
                source,
            })?,
        );
    match api.patch(name, &params, &patch).await {
        Ok(_) => {
            metrics::counter!("flotilla_ingest_status_writes_total").increment(1);
            tracing::debug!(app = %key, "status written back");
            Ok(Wrote::Patched(digest))
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Wrote::Gone),
        Err(e) => Err(kube_err("write the status of")(e)),
    }
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
