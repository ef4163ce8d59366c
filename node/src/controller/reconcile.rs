//! One reconcile of one application: read it, check its project, render, compare, assess
//! health, run a requested or automated sync, and write its status when it changed.

use super::document::{
    build_status, condition, diff_options, json_err, millis_rfc3339, now_millis, op_request,
    op_result, operation_state, selection, sync_settings, with_override, StatusSettings,
};
use super::project::{self, DEFAULT_PROJECT};
use super::{ControllerError, Inner};
use crate::clusters::Cluster;
use crate::diff::{DiffOptions, Drift, ResourceKey};
use crate::health;
use crate::live::{self, Comparison, GroupKinds};
use crate::model::Application;
use crate::source::{normalize_url, Freshness};
use crate::status::{self, sync_code, AppStatus, Condition, OperationRequest};
use crate::sync::executor::{sync_compared, Gate, SyncContext, SyncRequest, WriteGate};
use crate::sync::result::{
    now_rfc3339, should_auto_sync, AutoSyncDecision, AutoSyncInput, OperationPhase, OperationResult,
};
use flotilla_raft::{ApplyError, Command, Json, OperationRecord, StoreError};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Message of an operation whose node stopped before finishing it.
pub const INTERRUPTED: &str =
    "operation interrupted: its node stopped or lost ownership before it finished";

/// Argo CD's resources finalizer (and its `/foreground` and `/background` variants).
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// Labels of the reconcile histogram, or `None` when the app is gone.
pub(super) type Outcome = Option<(String, String)>;

/// Map fencing refusals to "not ours".
fn fenced(key: &str, e: StoreError) -> ControllerError {
    match e {
        StoreError::Rejected(
            ApplyError::Fenced { .. }
            | ApplyError::NoShardMap { .. }
            | ApplyError::NoSuchApp { .. },
        ) => ControllerError::NotOurs(key.to_string()),
        other => ControllerError::Store(other),
    }
}

impl Inner {
    fn status_settings(&self) -> StatusSettings<'_> {
        StatusSettings {
            custom: &self.settings.customizations,
            history_limit: self.settings.history_limit,
        }
    }

    /// Propose a fenced command built from this node's id and the epoch `may_act` gives now.
    async fn propose_fenced(
        &self,
        key: &str,
        make: impl FnOnce(u64, flotilla_shard::Epoch) -> Command,
    ) -> Result<flotilla_raft::Applied, ControllerError> {
        let epoch = self.may_act_soon(key).await?;
        let cmd = make(self.deps.store.id(), epoch);
        self.deps
            .store
            .propose(cmd)
            .await
            .map_err(|e| fenced(key, e))
    }

    async fn write_status(
        &self,
        key: &str,
        prev: Option<&AppStatus>,
        status: AppStatus,
    ) -> Result<(), ControllerError> {
        if prev.is_some_and(|p| !p.differs_from(&status)) {
            return Ok(());
        }
        let doc = serde_json::to_value(&status).map_err(json_err(key, "status"))?;
        self.propose_fenced(key, |node, epoch| Command::SetStatus {
            app: key.to_string(),
            node,
            epoch,
            status: Json::from(doc),
            at: now_millis(),
        })
        .await?;
        self.status_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn finish_op(
        &self,
        key: &str,
        op_id: &str,
        result: &OperationResult,
    ) -> Result<(), ControllerError> {
        let doc = serde_json::to_value(result).map_err(json_err(key, "operation result"))?;
        match self
            .propose_fenced(key, |node, epoch| Command::OperationFinished {
                app: key.to_string(),
                node,
                epoch,
                op_id: op_id.to_string(),
                result: Json::from(doc),
                at: now_millis(),
            })
            .await
        {
            Err(ControllerError::Store(StoreError::Rejected(ApplyError::NoSuchOperation {
                ..
            }))) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn start_op(
        &self,
        key: &str,
        op_id: &str,
        request: &OperationRequest,
    ) -> Result<bool, ControllerError> {
        let doc = serde_json::to_value(request).map_err(json_err(key, "operation request"))?;
        match self
            .propose_fenced(key, |node, epoch| Command::OperationStarted {
                app: key.to_string(),
                node,
                epoch,
                op_id: op_id.to_string(),
                request: Json::from(doc),
                at: now_millis(),
            })
            .await
        {
            Ok(flotilla_raft::Applied::Unchanged) => Ok(false),
            Ok(_) => Ok(true),
            Err(ControllerError::Store(StoreError::Rejected(
                ApplyError::OperationInProgress { running, .. },
            ))) => {
                tracing::warn!(app = %key, %running, "an operation is still running");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Start and at once fail a requested operation that cannot run.
    async fn fail_request(
        &self,
        key: &str,
        op_id: &str,
        request: &OperationRequest,
        message: &str,
    ) -> Result<(), ControllerError> {
        if self.start_op(key, op_id, request).await? {
            let now = now_rfc3339();
            let result = OperationResult {
                phase: OperationPhase::Error,
                message: message.to_string(),
                resources: Vec::new(),
                started_at: now.clone(),
                finished_at: Some(now),
                revision: request.revision.clone().unwrap_or_default(),
                attempts: 1,
                dry_run: request.dry_run,
            };
            self.finish_op(key, op_id, &result).await?;
        }
        Ok(())
    }
}

/// Everything a reconcile learned before deciding on an operation.
struct Compared {
    cluster: Arc<Cluster>,
    /// The kinds whose live objects the app needs: those it deploys and those its status
    /// lists.
    kinds: GroupKinds,
    desired: Vec<Value>,
    revision: String,
    cmp: Comparison,
    diff: DiffOptions,
    /// Held until the reconcile ends: bounds the apps worked on at once per cluster.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Reconcile one application.
pub(super) async fn reconcile(inner: &Arc<Inner>, key: &str) -> Result<Outcome, ControllerError> {
    inner.may_act_soon(key).await?;
    let reader = inner.deps.store.local();
    let Some(rec) = reader.app(key)? else {
        inner.drop_app(key);
        return Ok(None);
    };
    let hard = inner.with_state(key, |s| std::mem::take(&mut s.hard));
    let prev: Option<AppStatus> = reader
        .status(key)?
        .and_then(|s| serde_json::from_str(s.status.as_str()).ok());
    let mut op = reader.operation(key)?;
    // An operation left unfinished by a node that stopped: close it before anything else.
    if let Some(o) = op.as_ref().filter(|o| o.finished.is_none()) {
        let req = op_request(o);
        let result = OperationResult {
            phase: OperationPhase::Error,
            message: INTERRUPTED.into(),
            resources: Vec::new(),
            started_at: millis_rfc3339(o.started_at),
            finished_at: Some(now_rfc3339()),
            revision: req.revision.unwrap_or_default(),
            attempts: 1,
            dry_run: req.dry_run,
        };
        inner.finish_op(key, &o.op_id, &result).await?;
        op = reader.operation(key)?;
    }
    let doc = rec.spec.to_value().map_err(json_err(key, "application"))?;
    let app = match status::parse_stored_app(key, &doc) {
        Ok(a) => a,
        Err(e) => {
            let mut st = prev.clone().unwrap_or_default();
            st.sync.status = sync_code::UNKNOWN.into();
            st.conditions = vec![condition("InvalidSpecError", e.to_string())];
            st.observed_generation = rec.generation;
            st.reconciled_at = Some(now_rfc3339());
            st.operation_state = op.as_ref().map(operation_state);
            inner.write_status(key, prev.as_ref(), st).await?;
            return Ok(Some((String::new(), String::new())));
        }
    };
    let labels = (
        app.metadata.namespace.clone().unwrap_or_default(),
        app.spec.destination.server.clone().unwrap_or_default(),
    );
    if doc
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return delete_app(inner, key, &app, prev.as_ref(), rec.generation, op.as_ref())
            .await
            .map(|gone| (!gone).then_some(labels));
    }
    let pending = reader.pending(key)?;
    let pending_req = pending.as_ref().map(|p| {
        (
            p.op_id.clone(),
            serde_json::from_str::<OperationRequest>(p.request.as_str()).unwrap_or_default(),
        )
    });
    let render_app = match &pending_req {
        Some((_, req)) => with_override(&app, req),
        None => Ok(app.clone()),
    };
    let compared = match render_app {
        Ok(render_app) => compare(inner, key, &render_app, prev.as_ref(), hard).await,
        Err(e) => Err(condition("InvalidSpecError", e)),
    };
    let mut compared = match compared {
        Ok(c) => c,
        Err(cond) => {
            if let Some((op_id, req)) = &pending_req {
                inner.fail_request(key, op_id, req, &cond.message).await?;
                op = reader.operation(key)?;
            }
            let st = build_status(
                &inner.status_settings(),
                &app,
                rec.generation,
                prev.as_ref(),
                None,
                vec![cond],
                op.as_ref(),
            );
            inner.write_status(key, prev.as_ref(), st).await?;
            return Ok(Some(labels));
        }
    };
    // Decide on an operation.
    let automated = app
        .spec
        .sync_policy
        .as_ref()
        .and_then(|p| p.automated.as_ref());
    // Whether an automated sync now would heal live drift (same revision synced before).
    let mut heal = false;
    let to_run = if let Some((op_id, req)) = pending_req {
        Some((op_id, req))
    } else if let Some(a) = automated {
        let prune = a.prune;
        let needs = compared.cmp.diffs.iter().any(|d| match d.drift {
            Drift::None => false,
            Drift::Extra => prune,
            Drift::Missing | Drift::Changed => true,
        });
        let last = op.as_ref().and_then(|o| {
            let r = op_result(o)?;
            let req = op_request(o);
            // An operation cut short (its node died, lost the app's shard or its lease, or
            // shut down) says nothing about the revision: it is not a failure to respect.
            let cut_short = r.message == INTERRUPTED
                || r.message
                    .starts_with(crate::sync::executor::CUT_SHORT_PREFIX);
            (req.initiated_by == "automated" && !cut_short).then_some((r.revision, r.phase))
        });
        heal = last
            .as_ref()
            .is_some_and(|(r, p)| *r == compared.revision && *p == OperationPhase::Succeeded);
        let desired_count = compared
            .cmp
            .diffs
            .iter()
            .filter(|d| d.drift != Drift::Extra)
            .count();
        let decision = should_auto_sync(&AutoSyncInput {
            automated: true,
            self_heal: a.self_heal,
            allow_empty: a.allow_empty,
            out_of_sync: needs,
            revision: &compared.revision,
            desired_count,
            last: last.as_ref().map(|(r, p)| (r.as_str(), *p)),
            running: false,
        });
        if !needs {
            // In sync again: the next heal or retry starts from the first wait.
            inner.with_state(key, |s| s.backoff = None);
        }
        let backoff_until = inner.with_state(key, |s| s.backoff.map(|b| b.0));
        match decision {
            AutoSyncDecision::Sync
                if backoff_until.is_none_or(|t| t <= tokio::time::Instant::now()) =>
            {
                let short: String = compared.revision.chars().take(7).collect();
                let op_id = format!(
                    "{}-{}-{}-{}",
                    rec.generation,
                    short,
                    now_millis(),
                    inner.next_seq()
                );
                Some((
                    op_id,
                    OperationRequest {
                        initiated_by: "automated".into(),
                        prune,
                        ..Default::default()
                    },
                ))
            }
            AutoSyncDecision::Sync => {
                // Backing off: come back when the wait is over.
                if let Some(t) = backoff_until {
                    let wait = t.saturating_duration_since(tokio::time::Instant::now());
                    inner.enqueue(key, wait);
                }
                None
            }
            AutoSyncDecision::Skip(why) => {
                tracing::trace!(app = %key, %why, "no automated sync");
                None
            }
        }
    } else {
        None
    };
    let mut cmp = std::mem::take(&mut compared.cmp);
    if let Some((op_id, req)) = to_run {
        let automated_op = req.initiated_by == "automated";
        let parts = Parts {
            cluster: &compared.cluster,
            revision: &compared.revision,
            diff: &compared.diff,
            cmp: &cmp,
        };
        let result = run_operation(inner, key, &app, &op_id, &req, &parts).await?;
        if let Some(result) = &result {
            if automated_op {
                let s = &inner.settings;
                inner.with_state(key, |st| {
                    // Failures, and heals in a row, wait longer each time (capped).
                    st.backoff = if result.succeeded() && !heal {
                        None
                    } else {
                        let next = st
                            .backoff
                            .map(|(_, d)| (d * 2).min(s.self_heal_backoff_max))
                            .unwrap_or(s.self_heal_backoff);
                        Some((tokio::time::Instant::now() + next, next))
                    };
                });
            }
        }
        op = reader.operation(key)?;
        let touched: BTreeSet<ResourceKey> = result
            .iter()
            .flat_map(|r| r.resources.iter().map(|r| r.key()))
            .collect();
        match compare_after_sync(inner, &app, &compared, &touched).await {
            Ok(c) => cmp = c,
            Err(e) => tracing::debug!(app = %key, error = %e, "comparison after sync"),
        }
    }
    let st = build_status(
        &inner.status_settings(),
        &app,
        rec.generation,
        prev.as_ref(),
        Some((&cmp, &compared.revision)),
        Vec::new(),
        op.as_ref(),
    );
    inner.write_status(key, prev.as_ref(), st).await?;
    Ok(Some(labels))
}

struct Parts<'a> {
    cluster: &'a Arc<Cluster>,
    revision: &'a str,
    diff: &'a DiffOptions,
    /// The comparison the sync starts from.
    cmp: &'a Comparison,
}

/// The comparison after a sync. The objects the sync wrote or pruned are read again from
/// the cluster (the watch cache may not have seen the writes yet); the app's other managed
/// objects come from the cache when it is ready. Without a ready cache everything is
/// listed.
async fn compare_after_sync(
    inner: &Arc<Inner>,
    app: &Application,
    compared: &Compared,
    touched: &BTreeSet<ResourceKey>,
) -> Result<Comparison, live::LiveError> {
    let ns = app.spec.destination.namespace.clone().unwrap_or_default();
    let cluster = &compared.cluster;
    if !inner.cache_ready(cluster, &compared.kinds).await {
        return live::compare_app(
            cluster,
            &app.metadata.name,
            &compared.desired,
            &ns,
            inner.settings.tracking,
            &compared.diff,
            inner.listed_kinds(&compared.kinds),
        )
        .await;
    }
    let mut managed = Vec::new();
    for obj in inner.live.app_objects(cluster.name(), &app.metadata.name) {
        let key = ResourceKey::of(&obj);
        if !touched.contains(&key) {
            managed.push(obj);
        } else if let Some(fresh) = live::get_live(cluster, &obj).await? {
            // Touched and not desired (pruned, maybe still being deleted): as it is now.
            managed.push(fresh);
        }
    }
    live::compare_with(
        cluster,
        &app.metadata.name,
        &compared.desired,
        managed,
        &ns,
        inner.settings.tracking,
        &compared.diff,
    )
    .await
}

/// Run one operation: start it (fenced), sync, finish it (fenced). `None` when it could not
/// start (another one is running).
async fn run_operation(
    inner: &Arc<Inner>,
    key: &str,
    app: &Application,
    op_id: &str,
    req: &OperationRequest,
    parts: &Parts<'_>,
) -> Result<Option<OperationResult>, ControllerError> {
    let (options, retry) = match sync_settings(app, &req.sync_options) {
        Ok(s) => s,
        Err(e) => {
            inner.fail_request(key, op_id, req, &e).await?;
            return Ok(None);
        }
    };
    // Registered before the operation is recorded, so a shard lost meanwhile cancels it.
    let token = inner.cancel.child_token();
    inner.with_state(key, |s| s.cancel = Some(token.clone()));
    let started = inner.start_op(key, op_id, req).await;
    if !matches!(started, Ok(true)) {
        inner.with_state(key, |s| s.cancel = None);
        return started.map(|_| None);
    }
    let may_write = || match inner.may_act(key) {
        Ok(_) => Gate::Open,
        Err(_) if inner.owns(key) => Gate::Lapsed,
        Err(_) => Gate::Moved,
    };
    let ns = app.spec.destination.namespace.clone().unwrap_or_default();
    let ctx = SyncContext {
        cluster: parts.cluster,
        app: &app.metadata.name,
        namespace: &ns,
        tracking: inner.settings.tracking,
        customizations: &inner.settings.customizations,
        dry_run: req.dry_run,
        create_namespace: options.create_namespace,
        namespace_metadata: app
            .spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.managed_namespace_metadata.as_ref()),
        revision: parts.revision,
        step_timeout: inner.settings.sync_step_timeout,
        poll_interval: inner.settings.sync_poll_interval,
        retry,
        ignore: &parts.diff.ignore,
        cancel: Some(&token),
        gate: Some(WriteGate(&may_write)),
    };
    let request = SyncRequest {
        prune: req.prune,
        selection: selection(&req.resources),
        options,
    };
    let started = now_rfc3339();
    tracing::info!(app = %key, op_id = %op_id, revision = %parts.revision, "sync started");
    let result = match sync_compared(&ctx, parts.cmp, &request).await {
        Ok(r) => r,
        Err(e) => OperationResult {
            phase: OperationPhase::Error,
            message: e.to_string(),
            resources: Vec::new(),
            started_at: started,
            finished_at: Some(now_rfc3339()),
            revision: parts.revision.to_string(),
            attempts: 1,
            dry_run: req.dry_run,
        },
    };
    inner.with_state(key, |s| s.cancel = None);
    tracing::info!(app = %key, op_id = %op_id, phase = ?result.phase, "sync finished");
    inner
        .syncs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("argocd_app_sync_total",
        "namespace" => app.metadata.namespace.clone().unwrap_or_default(),
        "name" => app.metadata.name.clone(),
        "project" => app.spec.project.clone(),
        "dest_server" => app.spec.destination.server.clone().unwrap_or_default(),
        "phase" => format!("{:?}", result.phase))
    .increment(1);
    // Lost ownership while syncing: leave the record for the new owner to close.
    inner.finish_op(key, op_id, &result).await?;
    Ok(Some(result))
}

/// Project checks, destination, render, and the comparison with live state. A failure is the
/// condition to show on the app.
async fn compare(
    inner: &Arc<Inner>,
    key: &str,
    app: &Application,
    prev: Option<&AppStatus>,
    force_fetch: bool,
) -> Result<Compared, Condition> {
    let reader = inner.deps.store.local();
    let project_name = if app.spec.project.is_empty() {
        DEFAULT_PROJECT
    } else {
        app.spec.project.as_str()
    };
    let proj = match reader.project(project_name) {
        Ok(Some(p)) => {
            let doc = p.spec.to_value().map_err(|e| {
                condition("InvalidSpecError", format!("project {project_name}: {e}"))
            })?;
            project::parse_project(project_name, &doc)
                .map_err(|e| condition("InvalidSpecError", e.to_string()))?
        }
        Ok(None) if project_name == DEFAULT_PROJECT => project::permissive(),
        Ok(None) => {
            return Err(condition(
                "InvalidSpecError",
                format!("application references project {project_name} which does not exist"),
            ))
        }
        Err(e) => return Err(condition("ComparisonError", e.to_string())),
    };
    let cluster = inner
        .deps
        .clusters
        .resolve(&app.spec.destination)
        .map_err(|e| condition("InvalidSpecError", e.to_string()))?;
    project::check_app(project_name, &proj, app, cluster.server(), cluster.name())
        .map_err(|m| condition("InvalidSpecError", m))?;
    if let Some(control) = &inner.settings.control_namespace {
        let ns = app.metadata.namespace.as_deref().unwrap_or(control);
        project::check_app_namespace(project_name, &proj, ns, control)
            .map_err(|m| condition("InvalidSpecError", m))?;
    }
    let freshness = freshness(inner, app, force_fetch).await;
    let rendered = inner
        .deps
        .renderer
        .render(app, freshness)
        .await
        .map_err(|e| condition("ComparisonError", e.to_string()))?;
    let desired: Vec<Value> = rendered.objects();
    let revision = rendered.revision();
    // Every kind must be permitted by the project before anything is compared or applied.
    for obj in &desired {
        let (group, kind) = health::group_kind(obj);
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let namespaced = match cluster.kind(api_version, &kind).await {
            Ok(k) => k.namespaced,
            Err(_) => desired
                .iter()
                .filter_map(live::crd_kind)
                .find(|(g, k, _)| *g == group && *k == kind)
                .is_none_or(|(_, _, n)| n),
        };
        project::check_resource(project_name, &proj, &group, &kind, namespaced)
            .map_err(|m| condition("InvalidSpecError", m))?;
    }
    let diff =
        diff_options(app, &inner.settings.ignore).map_err(|m| condition("InvalidSpecError", m))?;
    let kinds: GroupKinds = desired
        .iter()
        .map(health::group_kind)
        .chain(
            prev.into_iter()
                .flat_map(|p| &p.resources)
                .map(|r| (r.group.clone(), r.kind.clone())),
        )
        .collect();
    inner.ensure_watch(&cluster, &kinds).await;
    let permit = inner
        .cluster_permit(cluster.name())
        .acquire_owned()
        .await
        .ok();
    let ns = app.spec.destination.namespace.clone().unwrap_or_default();
    let cmp = if inner.cache_ready(&cluster, &kinds).await {
        let managed = inner.live.app_objects(cluster.name(), &app.metadata.name);
        live::compare_with(
            &cluster,
            &app.metadata.name,
            &desired,
            managed,
            &ns,
            inner.settings.tracking,
            &diff,
        )
        .await
    } else {
        live::compare_app(
            &cluster,
            &app.metadata.name,
            &desired,
            &ns,
            inner.settings.tracking,
            &diff,
            inner.listed_kinds(&kinds),
        )
        .await
    }
    .map_err(|e| condition("ComparisonError", e.to_string()))?;
    tracing::trace!(app = %key, in_sync = cmp.in_sync(), "compared");
    Ok(Compared {
        cluster,
        kinds,
        desired,
        revision,
        cmp,
        diff,
        _permit: permit,
    })
}

/// Fetch when asked, when a recorded revision differs from the mirror's, or when nothing
/// records the repository's revisions and it was not fetched within the resync period.
async fn freshness(inner: &Inner, app: &Application, force: bool) -> Freshness {
    if force {
        return Freshness::Fetch;
    }
    let reader = inner.deps.store.local();
    for s in app.sources() {
        if s.chart.is_some() {
            continue;
        }
        let rev = s.revision();
        let norm = normalize_url(&s.repo_url);
        let recorded = reader
            .revision(&s.repo_url, rev)
            .ok()
            .flatten()
            .or_else(|| reader.revision(&norm, rev).ok().flatten());
        match recorded {
            Some(r) => {
                let cached = inner
                    .deps
                    .renderer
                    .sources()
                    .resolve(&s.repo_url, rev, Freshness::Cached)
                    .await;
                if cached.map(|c| c.commit != r.sha).unwrap_or(true) {
                    return Freshness::Fetch;
                }
            }
            None => {
                let now = tokio::time::Instant::now();
                let mut last = inner.last_fetch.lock().unwrap_or_else(|p| p.into_inner());
                let due = last
                    .get(&norm)
                    .is_none_or(|t| now.duration_since(*t) >= inner.settings.resync);
                if due {
                    last.insert(norm, now);
                    return Freshness::Fetch;
                }
            }
        }
    }
    Freshness::Cached
}

/// Delete the app's resources (with the resources finalizer), then the app. Returns whether
/// the app is gone.
async fn delete_app(
    inner: &Arc<Inner>,
    key: &str,
    app: &Application,
    prev: Option<&AppStatus>,
    generation: u64,
    op: Option<&OperationRecord>,
) -> Result<bool, ControllerError> {
    let finalizer =
        app.metadata.finalizers.iter().find(|f| {
            *f == RESOURCES_FINALIZER || f.starts_with(&format!("{RESOURCES_FINALIZER}/"))
        });
    let Some(finalizer) = finalizer else {
        // Not ours to clean up: the app goes once its other finalizers are done.
        return Ok(false);
    };
    let propagation = if finalizer.ends_with("/background") {
        "Background"
    } else {
        "Foreground"
    };
    let fail = |message: String| {
        build_status(
            &inner.status_settings(),
            app,
            generation,
            prev,
            None,
            vec![condition("DeletionError", message)],
            op,
        )
    };
    let cluster = match inner.deps.clusters.resolve(&app.spec.destination) {
        Ok(c) => c,
        Err(e) => {
            inner.write_status(key, prev, fail(e.to_string())).await?;
            return Ok(false);
        }
    };
    let managed =
        match live::list_managed(&cluster, &app.metadata.name, inner.settings.tracking, None).await
        {
            Ok(m) => m,
            Err(e) => {
                inner.write_status(key, prev, fail(e.to_string())).await?;
                return Ok(false);
            }
        };
    for obj in &managed {
        inner.may_act(key)?;
        if let Err(e) = crate::sync::apply::delete(&cluster, obj, propagation, false).await {
            let msg = format!("deleting {}: {e}", ResourceKey::of(obj));
            inner.write_status(key, prev, fail(msg)).await?;
            return Ok(false);
        }
    }
    let left = live::list_managed(&cluster, &app.metadata.name, inner.settings.tracking, None)
        .await
        .map(|m| m.len())
        .unwrap_or(usize::MAX);
    if left > 0 {
        // Foreground deletion takes a while: look again soon.
        inner.enqueue(key, Duration::from_secs(1));
        return Ok(false);
    }
    inner.may_act(key)?;
    inner
        .deps
        .store
        .propose(Command::DeleteApp {
            app: key.to_string(),
        })
        .await
        .map_err(|e| fenced(key, e))?;
    inner.drop_app(key);
    Ok(true)
}
