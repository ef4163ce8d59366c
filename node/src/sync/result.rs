//! The record of a sync operation ([`OperationResult`]) and the automated-sync decision
//! ([`should_auto_sync`]), both pure.

use crate::diff::ResourceKey;
use serde::{Deserialize, Serialize};

/// The phase of an operation, with Argo CD's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationPhase {
    /// Under way.
    Running,
    /// Every step done and healthy.
    Succeeded,
    /// A resource failed to sync or to become healthy.
    Failed,
    /// The operation could not run (bad plan, cluster unreachable).
    Error,
}

/// What happened to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultCode {
    /// Applied (or, for hooks, run).
    Synced,
    /// The write or the wait for health failed.
    SyncFailed,
    /// Deleted because no longer desired.
    Pruned,
    /// Not desired, but pruning is off for it.
    PruneSkipped,
}

/// The outcome of a hook run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookPhase {
    /// Still running.
    Running,
    /// Completed.
    Succeeded,
    /// Failed.
    Failed,
}

/// One resource's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceResult {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped).
    pub namespace: String,
    /// Name (for `generateName` hooks, the generated one).
    pub name: String,
    /// What happened.
    pub status: ResultCode,
    /// The sync phase it ran in (`PreSync`, `Sync`, `PostSync`, `SyncFail`).
    pub sync_phase: String,
    /// For hooks, how the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_phase: Option<HookPhase>,
    /// Why, in a sentence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl ResourceResult {
    /// A result for a resource key.
    pub fn new(
        key: &ResourceKey,
        status: ResultCode,
        phase: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            group: key.group.clone(),
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            status,
            sync_phase: phase.to_string(),
            hook_phase: None,
            message: message.into(),
        }
    }

    /// The resource's key.
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            group: self.group.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// The record of one sync operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationResult {
    /// Where the operation is.
    pub phase: OperationPhase,
    /// A summary for people.
    pub message: String,
    /// Per-resource results, in the order they happened.
    pub resources: Vec<ResourceResult>,
    /// When the operation started (RFC 3339).
    pub started_at: String,
    /// When it finished (RFC 3339), once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The revision synced.
    pub revision: String,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// Whether nothing was persisted (`dryRun=All`).
    pub dry_run: bool,
}

impl OperationResult {
    /// Whether the operation succeeded.
    pub fn succeeded(&self) -> bool {
        self.phase == OperationPhase::Succeeded
    }
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// What the automated-sync decision needs to know about an application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoSyncInput<'a> {
    /// `syncPolicy.automated` is set.
    pub automated: bool,
    /// `syncPolicy.automated.selfHeal`.
    pub self_heal: bool,
    /// `syncPolicy.automated.allowEmpty`.
    pub allow_empty: bool,
    /// The comparison found the app out of sync.
    pub out_of_sync: bool,
    /// The revision the app would sync to now.
    pub revision: &'a str,
    /// How many desired resources the render produced (hooks excluded).
    pub desired_count: usize,
    /// The last automated operation: its revision and phase.
    pub last: Option<(&'a str, OperationPhase)>,
    /// An operation is under way.
    pub running: bool,
}

/// The automated-sync decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoSyncDecision {
    /// Start a sync.
    Sync,
    /// Do nothing, and why.
    Skip(String),
}

/// Argo CD's automated-sync rules: sync when automated and out of sync; never twice for the
/// same revision after an attempt, unless self-heal is on and the last attempt succeeded (a
/// live change is then healed); a failed attempt at a revision is not retried automatically
/// (the retry policy has done that); refuse a sync that would leave the app with no resources
/// unless `allowEmpty`.
pub fn should_auto_sync(i: &AutoSyncInput<'_>) -> AutoSyncDecision {
    let skip = |m: &str| AutoSyncDecision::Skip(m.to_string());
    if !i.automated {
        return skip("automated sync is off");
    }
    if i.running {
        return skip("an operation is already running");
    }
    if !i.out_of_sync {
        return skip("in sync");
    }
    if i.desired_count == 0 && !i.allow_empty {
        return skip(
            "the sync would leave the application with no resources and allowEmpty is off",
        );
    }
    if let Some((rev, phase)) = i.last {
        if rev == i.revision {
            match phase {
                OperationPhase::Failed | OperationPhase::Error => {
                    return AutoSyncDecision::Skip(format!(
                        "the last automated sync to {rev} failed; not retrying the same revision"
                    ))
                }
                OperationPhase::Running => return skip("an operation is already running"),
                OperationPhase::Succeeded if !i.self_heal => {
                    return AutoSyncDecision::Skip(format!(
                        "already synced to {rev}; selfHeal is off, so live changes are left alone"
                    ))
                }
                OperationPhase::Succeeded => {}
            }
        }
    }
    AutoSyncDecision::Sync
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> AutoSyncInput<'static> {
        AutoSyncInput {
            automated: true,
            out_of_sync: true,
            revision: "abc",
            desired_count: 3,
            ..Default::default()
        }
    }

    #[test]
    fn syncs_when_automated_and_out_of_sync() {
        assert_eq!(should_auto_sync(&base()), AutoSyncDecision::Sync);
        let off = AutoSyncInput {
            automated: false,
            ..base()
        };
        assert!(matches!(should_auto_sync(&off), AutoSyncDecision::Skip(_)));
        let synced = AutoSyncInput {
            out_of_sync: false,
            ..base()
        };
        assert_eq!(
            should_auto_sync(&synced),
            AutoSyncDecision::Skip("in sync".into())
        );
        let running = AutoSyncInput {
            running: true,
            ..base()
        };
        assert!(matches!(
            should_auto_sync(&running),
            AutoSyncDecision::Skip(_)
        ));
    }

    #[test]
    fn same_revision_needs_self_heal_and_never_repeats_a_failure() {
        let done = AutoSyncInput {
            last: Some(("abc", OperationPhase::Succeeded)),
            ..base()
        };
        assert!(
            matches!(should_auto_sync(&done), AutoSyncDecision::Skip(m) if m.contains("selfHeal"))
        );
        let heal = AutoSyncInput {
            self_heal: true,
            ..done.clone()
        };
        assert_eq!(should_auto_sync(&heal), AutoSyncDecision::Sync);
        let failed = AutoSyncInput {
            self_heal: true,
            last: Some(("abc", OperationPhase::Failed)),
            ..base()
        };
        assert!(
            matches!(should_auto_sync(&failed), AutoSyncDecision::Skip(m) if m.contains("failed"))
        );
        let new_rev = AutoSyncInput {
            last: Some(("old", OperationPhase::Failed)),
            ..base()
        };
        assert_eq!(should_auto_sync(&new_rev), AutoSyncDecision::Sync);
    }

    #[test]
    fn allow_empty_guards_an_empty_render() {
        let empty = AutoSyncInput {
            desired_count: 0,
            ..base()
        };
        assert!(
            matches!(should_auto_sync(&empty), AutoSyncDecision::Skip(m) if m.contains("allowEmpty"))
        );
        let allowed = AutoSyncInput {
            allow_empty: true,
            ..empty
        };
        assert_eq!(should_auto_sync(&allowed), AutoSyncDecision::Sync);
    }

    #[test]
    fn operation_result_round_trips_as_json() {
        let key = ResourceKey {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: "ns".into(),
            name: "web".into(),
        };
        let r = OperationResult {
            phase: OperationPhase::Succeeded,
            message: "ok".into(),
            resources: vec![ResourceResult::new(&key, ResultCode::Synced, "Sync", "")],
            started_at: now_rfc3339(),
            finished_at: Some(now_rfc3339()),
            revision: "abc".into(),
            attempts: 1,
            dry_run: false,
        };
        let text = serde_json::to_string(&r).expect("serialize");
        assert!(text.contains("\"startedAt\""));
        assert_eq!(
            serde_json::from_str::<OperationResult>(&text).expect("parse"),
            r
        );
        assert_eq!(r.resources[0].key(), key);
    }
}
