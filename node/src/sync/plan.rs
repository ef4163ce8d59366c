//! Sync planning: which resources to apply, run as hooks or prune, in which phase and wave,
//! in which order. Pure: takes the desired and live objects and the comparison, returns steps.
//!
//! Order follows Argo CD: phases `PreSync`, `Sync`, `PostSync` (and `SyncFail` only when
//! the sync fails); inside a phase, waves in ascending order (`argocd.argoproj.io/sync-wave`,
//! default 0; Helm hooks use `helm.sh/hook-weight`); inside a wave, by kind (namespaces,
//! then policies, accounts, config, storage, CRDs, RBAC, services, workloads, ingresses),
//! then by namespace and name. Each wave applies its resources and then prunes the ones it
//! owns; prunes marked `PruneLast` run after the last Sync wave. The executor waits for every
//! resource of a step to be healthy (hooks: to complete) before it starts the next step.

use super::options::{
    annotation, OptionsError, SyncOptions, HELM_HOOK, HELM_HOOK_DELETE_POLICY, HELM_HOOK_WEIGHT,
    HOOK, HOOK_DELETE_POLICY, SYNC_WAVE,
};
use crate::diff::ResourceKey;
use serde_json::Value;
use std::collections::BTreeSet;

/// A sync phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Hooks before anything is applied.
    PreSync,
    /// The resources themselves, and hooks that run with them.
    Sync,
    /// Hooks after every Sync wave is healthy.
    PostSync,
    /// Hooks run when the sync fails.
    SyncFail,
}

impl Phase {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PreSync" => Self::PreSync,
            "Sync" => Self::Sync,
            "PostSync" => Self::PostSync,
            "SyncFail" => Self::SyncFail,
            _ => return None,
        })
    }
}

/// When a hook resource is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeletePolicy {
    /// After the hook succeeds.
    HookSucceeded,
    /// After the hook fails.
    HookFailed,
    /// Before a new run of the hook is created (the default).
    BeforeHookCreation,
}

/// How a resource takes part in a sync as a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The phases it runs in.
    pub phases: BTreeSet<Phase>,
    /// When it is deleted.
    pub delete_policies: BTreeSet<DeletePolicy>,
}

/// What a resource is to the sync: a hook, skipped, or a plain resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Applied in the Sync phase.
    Resource,
    /// Run as a hook.
    Hook(Hook),
    /// `argocd.argoproj.io/hook: Skip`: never applied.
    Skip,
}

fn bad(obj: &Value, annotation: &'static str, value: &str, reason: &str) -> OptionsError {
    OptionsError::BadAnnotation {
        resource: ResourceKey::of(obj).to_string(),
        annotation,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The role of a desired object, from Argo CD's hook annotations or Helm's.
pub fn role_of(obj: &Value) -> Result<Role, OptionsError> {
    let mut phases = BTreeSet::new();
    let mut policies = BTreeSet::new();
    if let Some(v) = annotation(obj, HOOK) {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if p == "Skip" {
                return Ok(Role::Skip);
            }
            let phase = Phase::parse(p).ok_or_else(|| {
                bad(
                    obj,
                    HOOK,
                    v,
                    "expected PreSync, Sync, PostSync, SyncFail or Skip",
                )
            })?;
            phases.insert(phase);
        }
        if let Some(dp) = annotation(obj, HOOK_DELETE_POLICY) {
            for p in dp.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                policies.insert(match p {
                    "HookSucceeded" => DeletePolicy::HookSucceeded,
                    "HookFailed" => DeletePolicy::HookFailed,
                    "BeforeHookCreation" => DeletePolicy::BeforeHookCreation,
                    _ => {
                        return Err(bad(
                            obj,
                            HOOK_DELETE_POLICY,
                            dp,
                            "expected HookSucceeded, HookFailed or BeforeHookCreation",
                        ))
                    }
                });
            }
        }
    } else if let Some(v) = annotation(obj, HELM_HOOK) {
        for p in v.split(',').map(str::trim) {
            match p {
                "pre-install" | "pre-upgrade" => {
                    phases.insert(Phase::PreSync);
                }
                "post-install" | "post-upgrade" => {
                    phases.insert(Phase::PostSync);
                }
                // Other Helm hooks (tests, deletes, rollbacks) have no place in a sync.
                _ => {}
            }
        }
        if phases.is_empty() {
            return Ok(Role::Skip);
        }
        if let Some(dp) = annotation(obj, HELM_HOOK_DELETE_POLICY) {
            for p in dp.split(',').map(str::trim) {
                match p {
                    "hook-succeeded" => policies.insert(DeletePolicy::HookSucceeded),
                    "hook-failed" => policies.insert(DeletePolicy::HookFailed),
                    "before-hook-creation" => policies.insert(DeletePolicy::BeforeHookCreation),
                    _ => false,
                };
            }
        }
    } else {
        return Ok(Role::Resource);
    }
    if phases.is_empty() {
        return Err(bad(obj, HOOK, "", "names no phase"));
    }
    if policies.is_empty() {
        policies.insert(DeletePolicy::BeforeHookCreation);
    }
    Ok(Role::Hook(Hook {
        phases,
        delete_policies: policies,
    }))
}

/// The sync wave of an object.
pub fn wave_of(obj: &Value) -> Result<i64, OptionsError> {
    let (key, value) = match annotation(obj, SYNC_WAVE) {
        Some(v) => (SYNC_WAVE, v),
        None => match annotation(obj, HELM_HOOK_WEIGHT) {
            Some(v) if annotation(obj, HELM_HOOK).is_some() => (HELM_HOOK_WEIGHT, v),
            _ => return Ok(0),
        },
    };
    value
        .trim()
        .parse()
        .map_err(|_| bad(obj, key, value, "not an integer"))
}

/// Kinds in the order they are created (and, reversed, deleted).
const KIND_ORDER: [&str; 35] = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

/// The creation rank of a kind; unknown kinds (custom resources) come last.
pub fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// What a task does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Apply the desired object.
    Apply(Value),
    /// Create the hook object (deleting an earlier run first under BeforeHookCreation).
    RunHook(Value, Hook),
    /// Delete the live object.
    Prune(Value),
}

/// One unit of sync work.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Which resource.
    pub key: ResourceKey,
    /// The phase it runs in.
    pub phase: Phase,
    /// The wave it runs in.
    pub wave: i64,
    /// What to do.
    pub action: Action,
    /// The options in force for this resource.
    pub options: SyncOptions,
}

/// Tasks that run together; the next step starts when all of these are done and healthy.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The phase.
    pub phase: Phase,
    /// The wave.
    pub wave: i64,
    /// Whether this is the step of `PruneLast` prunes.
    pub prune_last: bool,
    /// The tasks, in order.
    pub tasks: Vec<Task>,
}

/// A whole sync, step by step, plus the SyncFail hooks to run if it fails.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncPlan {
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Hooks to run when the sync fails.
    pub on_fail: Vec<Task>,
    /// Resources skipped because they were in sync (`ApplyOutOfSyncOnly`) or not selected.
    pub skipped: Vec<ResourceKey>,
    /// Unknown sync options found in annotations, for the operation's messages.
    pub warnings: Vec<String>,
}

/// The inputs of a sync plan.
#[derive(Debug, Clone, Default)]
pub struct PlanInput<'a> {
    /// The rendered desired objects, hooks included.
    pub desired: &'a [Value],
    /// The live objects tracked by the application that are no longer desired.
    pub extra: &'a [Value],
    /// Resources already in sync (used by `ApplyOutOfSyncOnly`).
    pub in_sync: BTreeSet<ResourceKey>,
    /// Only these resources, when set (selective sync: no hooks run).
    pub selection: Option<BTreeSet<ResourceKey>>,
    /// Whether to prune (`syncPolicy.automated.prune`, or requested by the user).
    pub prune: bool,
    /// The Application's sync options.
    pub app_options: SyncOptions,
}

/// Plan a sync.
pub fn plan(input: &PlanInput<'_>) -> Result<SyncPlan, OptionsError> {
    let mut out = SyncPlan::default();
    let mut tasks = Vec::new();
    let selected = |k: &ResourceKey| input.selection.as_ref().is_none_or(|s| s.contains(k));
    for obj in input.desired {
        let key = ResourceKey::of(obj);
        let (options, unknown) = input.app_options.for_resource(obj);
        out.warnings.extend(
            unknown
                .into_iter()
                .map(|u| format!("{key}: unknown sync option {u:?}")),
        );
        let wave = wave_of(obj)?;
        match role_of(obj)? {
            Role::Skip => {}
            Role::Hook(hook) => {
                if input.selection.is_some() {
                    continue;
                }
                for &phase in &hook.phases {
                    let task = Task {
                        key: key.clone(),
                        phase,
                        wave,
                        action: Action::RunHook(obj.clone(), hook.clone()),
                        options,
                    };
                    if phase == Phase::SyncFail {
                        out.on_fail.push(task);
                    } else {
                        tasks.push(task);
                    }
                }
            }
            Role::Resource => {
                if !selected(&key)
                    || (options.apply_out_of_sync_only && input.in_sync.contains(&key))
                {
                    out.skipped.push(key);
                    continue;
                }
                tasks.push(Task {
                    key,
                    phase: Phase::Sync,
                    wave,
                    action: Action::Apply(obj.clone()),
                    options,
                });
            }
        }
    }
    let mut prune_last = Vec::new();
    for obj in input.extra {
        let key = ResourceKey::of(obj);
        let (options, _) = input.app_options.for_resource(obj);
        if !input.prune || !options.prune || !selected(&key) {
            out.skipped.push(key);
            continue;
        }
        let task = Task {
            key,
            phase: Phase::Sync,
            wave: wave_of(obj)?,
            action: Action::Prune(obj.clone()),
            options,
        };
        if options.prune_last {
            prune_last.push(task);
        } else {
            tasks.push(task);
        }
    }
    tasks.sort_by_key(order);
    for task in tasks {
        match out.steps.last_mut() {
            Some(step)
                if step.phase == task.phase && step.wave == task.wave && !step.prune_last =>
            {
                step.tasks.push(task)
            }
            _ => out.steps.push(Step {
                phase: task.phase,
                wave: task.wave,
                prune_last: false,
                tasks: vec![task],
            }),
        }
    }
    if !prune_last.is_empty() {
        prune_last.sort_by_key(order);
        let wave = prune_last.iter().map(|t| t.wave).max().unwrap_or(0);
        // After the last Sync step, before PostSync.
        let at = out
            .steps
            .iter()
            .position(|s| s.phase > Phase::Sync)
            .unwrap_or(out.steps.len());
        out.steps.insert(
            at,
            Step {
                phase: Phase::Sync,
                wave,
                prune_last: true,
                tasks: prune_last,
            },
        );
    }
    out.on_fail.sort_by_key(order);
    Ok(out)
}

/// Sort key: phase, wave, applies before prunes, kind order (reversed for prunes), name.
fn order(t: &Task) -> (Phase, i64, bool, usize, String, String) {
    let prune = matches!(t.action, Action::Prune(_));
    let rank = kind_rank(&t.key.kind);
    let rank = if prune { usize::MAX - rank } else { rank };
    (
        t.phase,
        t.wave,
        prune,
        rank,
        t.key.namespace.clone(),
        t.key.name.clone(),
    )
}

#[cfg(test)]
mod tests;
