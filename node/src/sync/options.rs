//! Sync options and resource annotations, as Argo CD defines them.

use serde_json::Value;
use std::time::Duration;

/// Annotation naming a resource's hook phases.
pub const HOOK: &str = "argocd.argoproj.io/hook";
/// Annotation naming when a hook is deleted.
pub const HOOK_DELETE_POLICY: &str = "argocd.argoproj.io/hook-delete-policy";
/// Annotation giving a resource's sync wave.
pub const SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";
/// Annotation with per-resource sync options.
pub const SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
/// Annotation with per-resource compare options.
pub const COMPARE_OPTIONS: &str = "argocd.argoproj.io/compare-options";
/// Helm's hook annotation, mapped onto Argo CD's phases.
pub const HELM_HOOK: &str = "helm.sh/hook";
/// Helm's hook weight, used as the wave of a Helm hook.
pub const HELM_HOOK_WEIGHT: &str = "helm.sh/hook-weight";
/// Helm's hook delete policy.
pub const HELM_HOOK_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";

/// Errors in sync options and annotations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// An annotation has a value we cannot read.
    #[error("{resource}: annotation {annotation}={value:?} is invalid: {reason}")]
    BadAnnotation {
        /// Which resource.
        resource: String,
        /// Which annotation.
        annotation: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A retry duration is not a duration.
    #[error("retry.backoff.{field}: {value:?} is not a duration (use forms like 5s, 2m, 1h)")]
    BadDuration {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: String,
    },
}

/// Options of one sync: the Application's `syncPolicy.syncOptions` and a resource's own
/// `argocd.argoproj.io/sync-options`, merged (the resource's win).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// `Prune=false` keeps the resource even when no longer desired.
    pub prune: bool,
    /// `PruneLast=true` prunes after every other wave.
    pub prune_last: bool,
    /// `Replace=true` replaces (or creates) instead of applying.
    pub replace: bool,
    /// `ServerSideApply=false` uses a client-side merge instead of server-side apply.
    pub server_side_apply: bool,
    /// `CreateNamespace=true` creates the destination namespace.
    pub create_namespace: bool,
    /// `ApplyOutOfSyncOnly=true` skips resources already in sync.
    pub apply_out_of_sync_only: bool,
    /// `FailOnSharedResource=true` fails when another app already tracks a resource.
    pub fail_on_shared_resource: bool,
    /// `RespectIgnoreDifferences=true` keeps ignored fields at their live values.
    pub respect_ignore_differences: bool,
    /// `Validate=false` turns off schema validation.
    pub validate: bool,
    /// `PrunePropagationPolicy=foreground|background|orphan`.
    pub prune_propagation: Propagation,
    /// `SkipDryRunOnMissingResource=true`.
    pub skip_dry_run_on_missing_resource: bool,
    /// `Force=true` deletes and recreates a resource that cannot be updated.
    pub force: bool,
}

/// Deletion propagation for prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Delete dependents first.
    Foreground,
    /// Delete the owner, then dependents in the background.
    Background,
    /// Leave dependents.
    Orphan,
}

impl Propagation {
    /// The value of `DeleteOptions.propagationPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Foreground => "Foreground",
            Self::Background => "Background",
            Self::Orphan => "Orphan",
        }
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            prune: true,
            prune_last: false,
            replace: false,
            server_side_apply: true,
            create_namespace: false,
            apply_out_of_sync_only: false,
            fail_on_shared_resource: false,
            respect_ignore_differences: false,
            validate: true,
            prune_propagation: Propagation::Foreground,
            skip_dry_run_on_missing_resource: false,
            force: false,
        }
    }
}

impl SyncOptions {
    /// These options with `Key=value` entries laid over them; unknown keys are returned so
    /// the caller can report them.
    pub fn with<'a>(mut self, entries: impl IntoIterator<Item = &'a str>) -> (Self, Vec<String>) {
        let mut unknown = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (key, value) = entry.split_once('=').unwrap_or((entry, "true"));
            let on = value.eq_ignore_ascii_case("true");
            match key {
                "Prune" => self.prune = on,
                "PruneLast" => self.prune_last = on,
                "Replace" => self.replace = on,
                "ServerSideApply" => self.server_side_apply = on,
                "CreateNamespace" => self.create_namespace = on,
                "ApplyOutOfSyncOnly" => self.apply_out_of_sync_only = on,
                "FailOnSharedResource" => self.fail_on_shared_resource = on,
                "RespectIgnoreDifferences" => self.respect_ignore_differences = on,
                "Validate" => self.validate = on,
                "SkipDryRunOnMissingResource" => self.skip_dry_run_on_missing_resource = on,
                "Force" => self.force = on,
                "PrunePropagationPolicy" => match value.to_ascii_lowercase().as_str() {
                    "foreground" => self.prune_propagation = Propagation::Foreground,
                    "background" => self.prune_propagation = Propagation::Background,
                    "orphan" => self.prune_propagation = Propagation::Orphan,
                    _ => unknown.push(entry.to_string()),
                },
                // Accepted for compatibility; they change nothing here.
                "Delete" | "ClientSideApplyMigration" => {}
                _ => unknown.push(entry.to_string()),
            }
        }
        (self, unknown)
    }

    /// These options with a resource's `argocd.argoproj.io/sync-options` annotation applied.
    pub fn for_resource(self, obj: &Value) -> (Self, Vec<String>) {
        let ann = annotation(obj, SYNC_OPTIONS).unwrap_or_default();
        self.with(ann.split(','))
    }
}

/// An annotation of an object.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Parse a Go-style duration as Argo CD writes them: `5s`, `2m`, `1h`, `1h30m`, `500ms`.
pub fn parse_duration(field: &'static str, s: &str) -> Result<Duration, OptionsError> {
    let bad = || OptionsError::BadDuration {
        field,
        value: s.to_string(),
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    // A bare number is seconds, as Argo CD accepts.
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(digits);
        let num: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => num / 1e9,
            "us" | "µs" => num / 1e6,
            "ms" => num / 1e3,
            "s" => num,
            "m" => num * 60.0,
            "h" => num * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(secs);
        rest = tail;
    }
    Ok(total)
}

/// A retry policy (`syncPolicy.retry`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// How many retries; negative means without limit.
    pub limit: i64,
    /// The first wait.
    pub duration: Duration,
    /// The growth of each wait over the one before.
    pub factor: f64,
    /// The longest wait.
    pub max_duration: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        // Argo CD's defaults.
        Self {
            limit: 5,
            duration: Duration::from_secs(5),
            factor: 2.0,
            max_duration: Duration::from_secs(180),
        }
    }
}

impl Retry {
    /// How long to wait before retry number `attempt` (1-based), or `None` when the limit is
    /// reached.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        if self.limit >= 0 && i64::from(attempt) > self.limit {
            return None;
        }
        let exp = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.duration.as_secs_f64() * self.factor.max(1.0).powi(exp);
        Some(Duration::from_secs_f64(
            secs.min(self.max_duration.as_secs_f64()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_from_app_and_resource() {
        let (app, unknown) =
            SyncOptions::default().with(["CreateNamespace=true", "PruneLast=true", "Bogus=1"]);
        assert!(app.create_namespace && app.prune_last && app.prune);
        assert_eq!(unknown, vec!["Bogus=1".to_string()]);
        let obj = json!({"metadata": {"annotations": {SYNC_OPTIONS: "Prune=false,ServerSideApply=false,PrunePropagationPolicy=orphan"}}});
        let (res, unknown) = app.for_resource(&obj);
        assert!(unknown.is_empty());
        assert!(!res.prune && !res.server_side_apply && res.create_namespace);
        assert_eq!(res.prune_propagation, Propagation::Orphan);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("d", "5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("d", "3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("d", "1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("d", "250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("d", "10"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("d", "5 parsecs").is_err());
        assert!(parse_duration("d", "").is_err());
        assert!(parse_duration("d", "s").is_err());
    }

    #[test]
    fn retry_backoff_grows_and_caps() {
        let r = Retry {
            limit: 4,
            duration: Duration::from_secs(5),
            factor: 2.0,
            max_duration: Duration::from_secs(30),
        };
        let delays: Vec<_> = (1..=5).map(|a| r.delay(a).map(|d| d.as_secs())).collect();
        assert_eq!(delays, vec![Some(5), Some(10), Some(20), Some(30), None]);
        let unlimited = Retry { limit: -1, ..r };
        assert_eq!(unlimited.delay(100), Some(Duration::from_secs(30)));
    }
}
