//! Running a [`SyncPlan`] against a destination cluster: step by step, each step's writes
//! first, then a wait until its resources are healthy (hooks: complete) before the next
//! step; the whole operation retried with backoff; SyncFail hooks when it finally fails.
//! [`sync_app`] is the whole one-shot: compare, plan, execute.

use super::apply::{self, Mode};
use super::options::{Retry, SyncOptions};
use super::plan::{plan, Action, DeletePolicy, Hook, Phase, PlanInput, SyncPlan, Task};
use super::result::{
    now_rfc3339, HookPhase, OperationPhase, OperationResult, ResourceResult, ResultCode,
};
use crate::clusters::{Cluster, ClusterError};
use crate::diff::{DiffOptions, IgnoreRule, ResourceKey};
use crate::health::{assess, lua::Customizations, HealthStatus};
use crate::live::{compare_app, get_live, prepare_desired, Comparison, LiveError, Tracking};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Errors that stop a sync before it starts.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// Live state could not be read.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// The plan could not be made (bad annotations).
    #[error(transparent)]
    Plan(#[from] super::options::OptionsError),
}

/// Everything a sync needs besides the plan.
#[derive(Debug, Clone)]
pub struct SyncContext<'a> {
    /// The destination cluster.
    pub cluster: &'a Cluster,
    /// The application's name (the tracking mark).
    pub app: &'a str,
    /// The destination namespace (default for namespaced objects).
    pub namespace: &'a str,
    /// How managed objects are marked.
    pub tracking: Tracking,
    /// Custom health checks.
    pub customizations: &'a Customizations,
    /// `dryRun=All` on every write.
    pub dry_run: bool,
    /// `CreateNamespace=true`.
    pub create_namespace: bool,
    /// `syncPolicy.managedNamespaceMetadata` (`labels`, `annotations`) for the namespace
    /// `CreateNamespace=true` applies.
    pub namespace_metadata: Option<&'a Value>,
    /// The revision being synced, for the record.
    pub revision: &'a str,
    /// How long one step may take to become healthy.
    pub step_timeout: Duration,
    /// How often health is polled while waiting.
    pub poll_interval: Duration,
    /// Retry policy of the whole operation.
    pub retry: Option<Retry>,
    /// The app's `ignoreDifferences` rules, kept on apply under `RespectIgnoreDifferences`.
    pub ignore: &'a [IgnoreRule],
    /// Cancelled when the node shuts down: retry backoffs and health/hook waits stop and
    /// the operation fails with [`CANCELLED`]. `None` never cancels.
    pub cancel: Option<&'a CancellationToken>,
    /// Whether this node may write to the cluster now (its shard lease is valid and the
    /// app's shard is its own). While only the lease is missing, writes wait for up to
    /// [`GATE_WAIT`], then the operation fails with [`LEASE_LAPSED`]; once the app's shard
    /// belongs to another node, the operation fails at once with [`CANCELLED`]. `None`
    /// always may.
    pub gate: Option<WriteGate<'a>>,
}

/// What a [`WriteGate`] says about writing to the app's cluster now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// This node holds a valid lease on the app's shard: write.
    Open,
    /// The shard is still this node's, but its lease has lapsed: wait for the renewal.
    Lapsed,
    /// The shard belongs to another node now: stop at once, so the new owner is the only
    /// one acting on the app.
    Moved,
}

/// Asks whether this node may write to the app's cluster now.
#[derive(Clone, Copy)]
pub struct WriteGate<'a>(pub &'a (dyn Fn() -> Gate + Send + Sync));

impl std::fmt::Debug for WriteGate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteGate")
    }
}

/// How long a write waits for a closed [`WriteGate`] to open again (a shard lease that
/// lapsed under load is usually renewed within a second).
pub const GATE_WAIT: Duration = Duration::from_secs(5);

/// How the messages of operations stopped by the node itself begin: they say nothing about
/// the revision, so an automated sync tries again.
pub const CUT_SHORT_PREFIX: &str = "sync cancelled:";

/// Message of an operation stopped by [`SyncContext::cancel`].
pub const CANCELLED: &str =
    "sync cancelled: this node stopped acting on the app (shutdown, or its shard moved)";

/// Message of an operation stopped because [`SyncContext::gate`] stayed closed.
pub const LEASE_LAPSED: &str =
    "sync cancelled: this node's shard lease lapsed and was not renewed in time";

impl SyncContext<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(CancellationToken::is_cancelled)
    }

    /// `Err` with [`CANCELLED`] once the context is cancelled or the gate says the shard
    /// moved, checked before every write, so a node that lost an app stops writing to its
    /// cluster at the next request; and while the lease has lapsed, a wait for it to be
    /// renewed (`Err` with [`LEASE_LAPSED`] when it is not).
    async fn check(&self) -> Result<(), String> {
        if self.cancelled() {
            return Err(CANCELLED.to_string());
        }
        let Some(gate) = self.gate else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + GATE_WAIT;
        loop {
            match (gate.0)() {
                Gate::Open => return Ok(()),
                Gate::Moved => return Err(CANCELLED.to_string()),
                Gate::Lapsed if tokio::time::Instant::now() >= deadline => {
                    return Err(LEASE_LAPSED.to_string());
                }
                Gate::Lapsed => self.pause(Duration::from_millis(50)).await?,
            }
        }
    }

    /// Sleep `d`; `Err` with [`CANCELLED`] as soon as the context is cancelled.
    async fn pause(&self, d: Duration) -> Result<(), String> {
        match self.cancel {
            Some(c) => tokio::select! {
                _ = c.cancelled() => Err(CANCELLED.to_string()),
                _ = tokio::time::sleep(d) => Ok(()),
            },
            None => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::PreSync => "PreSync",
        Phase::Sync => "Sync",
        Phase::PostSync => "PostSync",
        Phase::SyncFail => "SyncFail",
    }
}

fn mode_of(o: &SyncOptions) -> Mode {
    if o.replace {
        Mode::Replace
    } else if o.server_side_apply {
        Mode::ServerSide
    } else {
        Mode::ClientSide
    }
}

/// Something the step waits for.
struct Pending {
    result: usize,
    obj: Value,
    hook: Option<Hook>,
}

/// Execute a plan, retrying the whole operation by `ctx.retry`.
pub async fn execute(sync_plan: &SyncPlan, ctx: &SyncContext<'_>) -> OperationResult {
    let mut op = OperationResult {
        phase: OperationPhase::Running,
        message: String::new(),
        resources: Vec::new(),
        started_at: now_rfc3339(),
        finished_at: None,
        revision: ctx.revision.to_string(),
        attempts: 0,
        dry_run: ctx.dry_run,
    };
    loop {
        op.attempts += 1;
        op.resources.clear();
        match run_once(sync_plan, ctx, &mut op.resources).await {
            Ok(()) => {
                op.phase = OperationPhase::Succeeded;
                op.message = "successfully synced (all tasks run)".into();
                break;
            }
            Err(message) if ctx.cancelled() || message == LEASE_LAPSED => {
                op.phase = OperationPhase::Failed;
                op.message = if message == CANCELLED || message == LEASE_LAPSED {
                    message
                } else {
                    format!("{CANCELLED} (last error: {message})")
                };
                break;
            }
            Err(message) => {
                let delay = ctx.retry.and_then(|r| r.delay(op.attempts));
                match delay {
                    Some(d) => {
                        tracing::info!(app = ctx.app, attempt = op.attempts, %message, ?d, "sync failed; retrying");
                        if ctx.pause(d).await.is_err() {
                            op.phase = OperationPhase::Failed;
                            op.message =
                                format!("{CANCELLED} (while waiting to retry after: {message})");
                            break;
                        }
                    }
                    None => {
                        op.phase = OperationPhase::Failed;
                        op.message = if op.attempts > 1 {
                            format!("{message} (after {} attempts)", op.attempts)
                        } else {
                            message
                        };
                        if !sync_plan.on_fail.is_empty() {
                            let mut pending = Vec::new();
                            let crds = crd_kinds(sync_plan);
                            for t in &sync_plan.on_fail {
                                run_task(t, ctx, &crds, &mut op.resources, &mut pending).await;
                            }
                            if let Err(m) = wait_step(ctx, &mut op.resources, pending).await {
                                op.message = format!("{}; SyncFail hooks: {m}", op.message);
                            }
                        }
                        break;
                    }
                }
            }
        }
    }
    op.finished_at = Some(now_rfc3339());
    op
}

async fn run_once(
    sync_plan: &SyncPlan,
    ctx: &SyncContext<'_>,
    results: &mut Vec<ResourceResult>,
) -> Result<(), String> {
    ctx.check().await?;
    if ctx.create_namespace && !ctx.namespace.is_empty() {
        let ns = apply::namespace_object(ctx.namespace, ctx.namespace_metadata)?;
        apply::write(ctx.cluster, &ns, Mode::ServerSide, ctx.dry_run, true)
            .await
            .map_err(|e| format!("creating namespace {}: {e}", ctx.namespace))?;
    }
    let crds = crd_kinds(sync_plan);
    if !ctx.dry_run {
        preflight(sync_plan, ctx, &crds, results).await?;
    }
    for step in &sync_plan.steps {
        let mut pending = Vec::new();
        for task in &step.tasks {
            ctx.check().await?;
            run_task(task, ctx, &crds, results, &mut pending).await;
        }
        ctx.check().await?;
        wait_step(ctx, results, pending).await?;
        let failed: Vec<String> = results
            .iter()
            .filter(|r| r.status == ResultCode::SyncFailed)
            .map(|r| format!("{}: {}", r.key(), r.message))
            .collect();
        if !failed.is_empty() {
            return Err(format!(
                "{} phase, wave {}: {}",
                phase_name(step.phase),
                step.wave,
                failed.join("; ")
            ));
        }
    }
    Ok(())
}

/// The (group, kind) pairs that CustomResourceDefinitions in the plan define.
pub fn crd_kinds(sync_plan: &SyncPlan) -> BTreeSet<(String, String)> {
    sync_plan
        .steps
        .iter()
        .flat_map(|s| &s.tasks)
        .filter_map(|t| match &t.action {
            Action::Apply(obj) => crate::live::crd_kind(obj).map(|(g, k, _)| (g, k)),
            _ => None,
        })
        .collect()
}

/// A dry run meets a kind the cluster does not serve yet: skip the resource when its CRD is
/// part of the same sync or `SkipDryRunOnMissingResource=true`, as Argo CD does; fail it
/// otherwise, naming the kind.
fn missing_kind_in_dry_run(
    task: &Task,
    crds: &BTreeSet<(String, String)>,
    api_version: &str,
    kind: &str,
) -> (ResultCode, String) {
    let in_sync = crds.contains(&(task.key.group.clone(), task.key.kind.clone()));
    if in_sync || task.options.skip_dry_run_on_missing_resource {
        let why = if in_sync {
            "its CustomResourceDefinition is part of this sync"
        } else {
            "SkipDryRunOnMissingResource=true"
        };
        (
            ResultCode::Synced,
            format!("dry run skipped: the cluster does not serve {api_version} {kind} yet ({why})"),
        )
    } else {
        (
            ResultCode::SyncFailed,
            format!(
                "dry run failed: the cluster does not serve {api_version} {kind}; install its \
                 CustomResourceDefinition first or set SkipDryRunOnMissingResource=true"
            ),
        )
    }
}

/// Namespaces that Namespace objects in the plan create.
fn namespaces_in(sync_plan: &SyncPlan) -> BTreeSet<String> {
    sync_plan
        .steps
        .iter()
        .flat_map(|s| &s.tasks)
        .filter(|t| t.key.group.is_empty() && t.key.kind == "Namespace")
        .map(|t| t.key.name.clone())
        .collect()
}

/// Argo CD's dry run before a real sync: every resource to apply is written with
/// `dryRun=All` first, so a resource the server refuses fails the operation before anything
/// changes. Custom resources whose kind is not served yet are judged as in a dry-run
/// operation; objects in a namespace that the sync itself creates are not dry-run.
async fn preflight(
    sync_plan: &SyncPlan,
    ctx: &SyncContext<'_>,
    crds: &BTreeSet<(String, String)>,
    results: &mut Vec<ResourceResult>,
) -> Result<(), String> {
    let created = namespaces_in(sync_plan);
    let mut failed = Vec::new();
    for task in sync_plan.steps.iter().flat_map(|s| &s.tasks) {
        let Action::Apply(obj) = &task.action else {
            continue;
        };
        if created.contains(&task.key.namespace) {
            continue;
        }
        ctx.check().await?;
        let outcome = match prepare(ctx, obj).await {
            Err(LiveError::Cluster(ClusterError::UnknownKind {
                api_version, kind, ..
            })) => match missing_kind_in_dry_run(task, crds, &api_version, &kind) {
                (ResultCode::SyncFailed, msg) => Err(msg),
                _ => Ok(()),
            },
            Err(e) => Err(e.to_string()),
            Ok(prepared) => apply::write(
                ctx.cluster,
                &prepared,
                mode_of(&task.options),
                true,
                task.options.validate,
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("dry run failed: {e}")),
        };
        if let Err(msg) = outcome {
            failed.push(format!("{}: {msg}", task.key));
            results.push(ResourceResult::new(
                &task.key,
                ResultCode::SyncFailed,
                phase_name(task.phase),
                msg,
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("dry run before the sync: {}", failed.join("; ")))
    }
}

async fn run_task(
    task: &Task,
    ctx: &SyncContext<'_>,
    crds: &BTreeSet<(String, String)>,
    results: &mut Vec<ResourceResult>,
    pending: &mut Vec<Pending>,
) {
    let phase = phase_name(task.phase);
    match &task.action {
        Action::Apply(obj) => {
            let obj = match prepare(ctx, obj).await {
                Ok(o) => o,
                Err(LiveError::Cluster(ClusterError::UnknownKind {
                    api_version, kind, ..
                })) if ctx.dry_run => {
                    let (code, msg) = missing_kind_in_dry_run(task, crds, &api_version, &kind);
                    results.push(ResourceResult::new(&task.key, code, phase, msg));
                    return;
                }
                Err(e) => {
                    results.push(ResourceResult::new(
                        &task.key,
                        ResultCode::SyncFailed,
                        phase,
                        e.to_string(),
                    ));
                    return;
                }
            };
            let mut obj = obj;
            if task.options.respect_ignore_differences && !ctx.ignore.is_empty() {
                let kept = match get_live(ctx.cluster, &obj).await {
                    Ok(Some(live)) => apply::respect_ignored(&mut obj, &live, ctx.ignore)
                        .map_err(|e| e.to_string()),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = kept {
                    results.push(ResourceResult::new(
                        &task.key,
                        ResultCode::SyncFailed,
                        phase,
                        e,
                    ));
                    return;
                }
            }
            if task.options.fail_on_shared_resource {
                match get_live(ctx.cluster, &obj).await {
                    Ok(Some(live)) => {
                        if let Some(other) = ctx.tracking.owner(&live).filter(|o| o != ctx.app) {
                            results.push(ResourceResult::new(
                                &task.key,
                                ResultCode::SyncFailed,
                                phase,
                                format!("shared resource: already managed by application {other:?} (FailOnSharedResource=true)"),
                            ));
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        results.push(ResourceResult::new(
                            &task.key,
                            ResultCode::SyncFailed,
                            phase,
                            e.to_string(),
                        ));
                        return;
                    }
                }
            }
            let written = apply::write(
                ctx.cluster,
                &obj,
                mode_of(&task.options),
                ctx.dry_run,
                task.options.validate,
            )
            .await;
            match written {
                Ok(written) => {
                    let verb = match mode_of(&task.options) {
                        Mode::ServerSide => "server-side applied",
                        Mode::Replace => "replaced",
                        Mode::ClientSide => "applied",
                    };
                    let msg = if ctx.dry_run {
                        format!("{verb} (dry run)")
                    } else {
                        verb.to_string()
                    };
                    results.push(ResourceResult::new(
                        &task.key,
                        ResultCode::Synced,
                        phase,
                        msg,
                    ));
                    pending.push(Pending {
                        result: results.len() - 1,
                        obj: written,
                        hook: None,
                    });
                }
                Err(e) => results.push(ResourceResult::new(
                    &task.key,
                    ResultCode::SyncFailed,
                    phase,
                    e.to_string(),
                )),
            }
        }
        Action::RunHook(obj, hook) => run_hook(task, obj, hook, ctx, results, pending).await,
        Action::Prune(obj) => {
            let r = apply::delete(
                ctx.cluster,
                obj,
                task.options.prune_propagation.as_str(),
                ctx.dry_run,
            )
            .await;
            let dry = if ctx.dry_run { " (dry run)" } else { "" };
            results.push(match r {
                Ok(_) => ResourceResult::new(
                    &task.key,
                    ResultCode::Pruned,
                    phase,
                    format!("pruned{dry}"),
                ),
                Err(e) => {
                    ResourceResult::new(&task.key, ResultCode::SyncFailed, phase, e.to_string())
                }
            });
        }
    }
}

/// Default the namespace (namespaced kinds need discovery to tell) and set the tracking mark.
async fn prepare(ctx: &SyncContext<'_>, obj: &Value) -> Result<Value, LiveError> {
    prepare_desired(ctx.cluster, obj, ctx.app, ctx.namespace, ctx.tracking).await
}

fn before_hook_creation(hook: &Hook) -> bool {
    hook.delete_policies.is_empty()
        || hook
            .delete_policies
            .contains(&DeletePolicy::BeforeHookCreation)
}

async fn run_hook(
    task: &Task,
    obj: &Value,
    hook: &Hook,
    ctx: &SyncContext<'_>,
    results: &mut Vec<ResourceResult>,
    pending: &mut Vec<Pending>,
) {
    let phase = phase_name(task.phase);
    let obj = match prepare(ctx, obj).await {
        Ok(o) => o,
        Err(e) => {
            results.push(ResourceResult::new(
                &task.key,
                ResultCode::SyncFailed,
                phase,
                e.to_string(),
            ));
            return;
        }
    };
    let named = !task.key.name.is_empty();
    if named && before_hook_creation(hook) {
        if let Err(e) = delete_and_wait(ctx, &obj).await {
            results.push(ResourceResult::new(
                &task.key,
                ResultCode::SyncFailed,
                phase,
                e,
            ));
            return;
        }
    }
    match apply::create(ctx.cluster, &obj, ctx.dry_run).await {
        Ok(created) => {
            let key = ResourceKey::of(&created);
            let mut r = ResourceResult::new(&key, ResultCode::Synced, phase, "hook created");
            if ctx.dry_run {
                r.hook_phase = Some(HookPhase::Succeeded);
                r.message = "hook created (dry run)".into();
                results.push(r);
                return;
            }
            r.hook_phase = Some(HookPhase::Running);
            results.push(r);
            pending.push(Pending {
                result: results.len() - 1,
                obj: created,
                hook: Some(hook.clone()),
            });
        }
        Err(e) => {
            let mut r =
                ResourceResult::new(&task.key, ResultCode::SyncFailed, phase, e.to_string());
            r.hook_phase = Some(HookPhase::Failed);
            results.push(r);
        }
    }
}

async fn delete_and_wait(ctx: &SyncContext<'_>, obj: &Value) -> Result<(), String> {
    let existed = apply::delete(ctx.cluster, obj, "Background", ctx.dry_run)
        .await
        .map_err(|e| format!("deleting the previous hook run: {e}"))?;
    if !existed || ctx.dry_run {
        return Ok(());
    }
    let deadline = Instant::now() + ctx.step_timeout;
    loop {
        match get_live(ctx.cluster, obj).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) if Instant::now() < deadline => ctx.pause(ctx.poll_interval).await?,
            Ok(Some(_)) => return Err("the previous hook run was not deleted in time".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Wait until every pending resource is healthy (or has no health) and every hook has
/// completed; a Degraded resource or failed hook fails its result. Hooks are deleted per
/// their policies once done.
async fn wait_step(
    ctx: &SyncContext<'_>,
    results: &mut [ResourceResult],
    mut pending: Vec<Pending>,
) -> Result<(), String> {
    if ctx.dry_run {
        return Ok(());
    }
    let deadline = Instant::now() + ctx.step_timeout;
    loop {
        let mut still = Vec::new();
        for p in pending {
            let live = match get_live(ctx.cluster, &p.obj).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "reading a resource while waiting for health");
                    still.push(p);
                    continue;
                }
            };
            let r = &mut results[p.result];
            let health = match &live {
                Some(l) => assess(l, ctx.customizations),
                None if p.hook.is_some() => None,
                None => {
                    still.push(p);
                    continue;
                }
            };
            let status = health.as_ref().map(|h| h.status);
            match (&p.hook, status) {
                (_, None)
                | (_, Some(HealthStatus::Healthy))
                | (None, Some(HealthStatus::Suspended)) => {
                    if let Some(hook) = &p.hook {
                        r.hook_phase = Some(HookPhase::Succeeded);
                        r.message = "hook completed".into();
                        if hook.delete_policies.contains(&DeletePolicy::HookSucceeded)
                            && live.is_some()
                        {
                            let _ = apply::delete(ctx.cluster, &p.obj, "Background", false).await;
                        }
                    }
                }
                (_, Some(HealthStatus::Degraded)) => {
                    let msg = health.map(|h| h.message).unwrap_or_default();
                    r.status = ResultCode::SyncFailed;
                    if let Some(hook) = &p.hook {
                        r.hook_phase = Some(HookPhase::Failed);
                        r.message = format!("hook failed: {msg}");
                        if hook.delete_policies.contains(&DeletePolicy::HookFailed) {
                            let _ = apply::delete(ctx.cluster, &p.obj, "Background", false).await;
                        }
                    } else {
                        r.message = format!("resource is Degraded: {msg}");
                    }
                }
                _ => still.push(p),
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = still
                .iter()
                .map(|p| {
                    let r = &mut results[p.result];
                    r.status = ResultCode::SyncFailed;
                    r.message = format!("not healthy within {:?}", ctx.step_timeout);
                    r.key().to_string()
                })
                .collect();
            return Err(format!(
                "timed out after {:?} waiting for {} to become healthy",
                ctx.step_timeout,
                names.join(", ")
            ));
        }
        pending = still;
        if let Err(e) = ctx.pause(ctx.poll_interval).await {
            for p in &pending {
                let r = &mut results[p.result];
                r.status = ResultCode::SyncFailed;
                r.message = CANCELLED.to_string();
            }
            return Err(e);
        }
    }
}

/// What to sync, for [`sync_app`].
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// Prune tracked objects no longer desired.
    pub prune: bool,
    /// Only these resources (selective sync).
    pub selection: Option<BTreeSet<ResourceKey>>,
    /// The Application's sync options.
    pub options: SyncOptions,
}

/// Compare, plan and execute one sync of an app's desired objects. Also returns the
/// comparison it planned from. Extras that were not pruned are reported as `PruneSkipped`.
pub async fn sync_app(
    ctx: &SyncContext<'_>,
    desired: &[Value],
    request: &SyncRequest,
    diff: &DiffOptions,
) -> Result<(OperationResult, Comparison), ExecuteError> {
    let cmp = compare_app(
        ctx.cluster,
        ctx.app,
        desired,
        ctx.namespace,
        ctx.tracking,
        diff,
        None,
    )
    .await?;
    let op = sync_compared(ctx, &cmp, request).await?;
    Ok((op, cmp))
}

/// [`sync_app`] from a comparison already made (a controller's, from its watch cache):
/// plan and execute without reading the cluster again first.
pub async fn sync_compared(
    ctx: &SyncContext<'_>,
    cmp: &Comparison,
    request: &SyncRequest,
) -> Result<OperationResult, ExecuteError> {
    let sync_plan = plan(&PlanInput {
        desired: &cmp.desired,
        extra: &cmp.extra,
        in_sync: cmp.in_sync_keys(),
        selection: request.selection.clone(),
        prune: request.prune,
        app_options: request.options,
    })?;
    let mut op = execute(&sync_plan, ctx).await;
    let pruned: BTreeSet<ResourceKey> = op.resources.iter().map(ResourceResult::key).collect();
    for extra in &cmp.extra {
        let key = ResourceKey::of(extra);
        if !pruned.contains(&key) {
            op.resources.push(ResourceResult::new(
                &key,
                ResultCode::PruneSkipped,
                "Sync",
                "ignored (requires pruning)",
            ));
        }
    }
    for w in sync_plan.warnings {
        op.message = format!("{}; {w}", op.message);
    }
    Ok(op)
}
