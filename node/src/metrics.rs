//! Prometheus metrics: the process-wide recorder ([`install`]), the text served on
//! `/metrics` ([`render`]) and the [`Collector`] of store, shard and cluster figures.
//!
//! Any module records with the `metrics` macros (`counter!`, `gauge!`, `histogram!`) under
//! the names in [`names`]; [`install`] describes them all. Names follow Argo CD where the
//! meaning is the same (`argocd_app_info`, `argocd_app_sync_total`, …).
//!
//! Info series (`argocd_app_info`, `argocd_cluster_info`,
//! `argocd_cluster_connection_status`) carry labels that change (an app's sync status, its
//! owner) and must disappear when the app does. The Prometheus recorder cannot remove a
//! series, so these are not recorded through it: each [`Collector`] run renders them into a
//! text block, replaced as a whole, that [`render`] appends to the recorder's output. A
//! series of an app this node no longer owns, or that was deleted, is gone from the next
//! scrape after the next collection.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use flotilla_raft::{ReadError, ShardNode, Store};
use metrics::{describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clusters::{ClusterRegistry, ConnectionStatus};
use crate::status::{parse_stored_app, AppStatus};

/// Metric names.
pub mod names {
    /// Gauge 1 per application owned by this node, with Argo CD's labels.
    pub const APP_INFO: &str = "argocd_app_info";
    /// Counter of finished sync operations `{namespace,name,project,dest_server,phase}`.
    pub const APP_SYNC_TOTAL: &str = "argocd_app_sync_total";
    /// Histogram of reconciliation durations in seconds `{namespace,dest_server}`.
    pub const APP_RECONCILE: &str = "argocd_app_reconcile";
    /// Counter of Kubernetes API requests made for applications.
    pub const APP_K8S_REQUEST_TOTAL: &str = "argocd_app_k8s_request_total";
    /// Gauge 1 per destination cluster `{name,server}`.
    pub const CLUSTER_INFO: &str = "argocd_cluster_info";
    /// Counter of Git requests `{repo,request_type}` (`request_type` is `fetch`).
    pub const GIT_REQUEST_TOTAL: &str = "argocd_git_request_total";
    /// Histogram of Git request durations in seconds `{repo,request_type}`.
    pub const GIT_REQUEST_DURATION: &str = "argocd_git_request_duration_seconds";
    /// Gauge 1 when the cluster answers, 0 otherwise `{name,server}`.
    pub const CLUSTER_CONNECTION_STATUS: &str = "argocd_cluster_connection_status";
    /// The Raft term this node is in.
    pub const RAFT_TERM: &str = "flotilla_raft_term";
    /// 1 on the Raft leader.
    pub const RAFT_IS_LEADER: &str = "flotilla_raft_is_leader";
    /// The highest log index known committed.
    pub const RAFT_COMMIT_INDEX: &str = "flotilla_raft_commit_index";
    /// The highest log index applied here.
    pub const RAFT_APPLIED_INDEX: &str = "flotilla_raft_applied_index";
    /// Committed entries not applied yet.
    pub const RAFT_APPLY_LAG: &str = "flotilla_raft_apply_lag";
    /// Voters and learners in the membership.
    pub const RAFT_MEMBERS: &str = "flotilla_raft_members";
    /// Shards this node owns in the map it follows.
    pub const SHARD_OWNED: &str = "flotilla_shard_owned";
    /// The epoch of the shard map this node follows.
    pub const SHARD_EPOCH: &str = "flotilla_shard_epoch";
    /// 1 while this node holds a valid shard lease.
    pub const SHARD_LEASE_VALID: &str = "flotilla_shard_lease_valid";
    /// Applications in the shards this node owns.
    pub const APPS_OWNED: &str = "flotilla_apps_owned";
    /// Applications waiting in the reconcile queue.
    pub const WORKQUEUE_DEPTH: &str = "flotilla_workqueue_depth";
    /// Applications added to the reconcile queue.
    pub const WORKQUEUE_ADDS_TOTAL: &str = "flotilla_workqueue_adds_total";
    /// Reconciliations running now.
    pub const WORKQUEUE_RUNNING: &str = "flotilla_workqueue_running";
    /// Webhook requests received `{provider,result}`.
    pub const WEBHOOK_REQUESTS_TOTAL: &str = "flotilla_webhook_requests_total";
    /// Repository polls run by this node `{result}` (`ok`, `error`).
    pub const REPO_POLLS_TOTAL: &str = "flotilla_repo_polls_total";
    /// Revisions this node recorded `{via}` (`webhook`, `poll`).
    pub const REVISIONS_RECORDED_TOTAL: &str = "flotilla_revisions_recorded_total";
}

/// How often the [`Collector`] runs unless told otherwise.
pub const DEFAULT_COLLECT_INTERVAL: Duration = Duration::from_secs(10);

/// Buckets of `argocd_app_reconcile`, Argo CD's.
pub const RECONCILE_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];

/// Buckets of `argocd_git_request_duration_seconds`, Argo CD's.
pub const GIT_REQUEST_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0, 20.0];

/// Errors of the metrics module.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The recorder could not be installed (another recorder is installed in the process).
    #[error("installing the Prometheus recorder: {0}")]
    Install(String),
    /// Reading the store failed.
    #[error("reading the store for metrics: {0}")]
    Read(#[from] ReadError),
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static INSTALLING: Mutex<()> = Mutex::new(());
/// The info series of the last collection (see the module docs).
static INFO: RwLock<String> = RwLock::new(String::new());

/// Install the Prometheus recorder for the process and describe every metric. Calling it
/// again returns the same handle.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let _guard = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::APP_RECONCILE.to_string()),
            RECONCILE_BUCKETS,
        )
        .map_err(|e| MetricsError::Install(e.to_string()))?
        .set_buckets_for_metric(
            Matcher::Full(names::GIT_REQUEST_DURATION.to_string()),
            GIT_REQUEST_BUCKETS,
        )
        .map_err(|e| MetricsError::Install(e.to_string()))?
        .install_recorder()
        .map_err(|e| MetricsError::Install(e.to_string()))?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    use names::*;
    describe_gauge!(
        APP_INFO,
        "Information about an application owned by this node."
    );
    describe_counter!(APP_SYNC_TOTAL, "Number of application syncs.");
    describe_histogram!(
        APP_RECONCILE,
        Unit::Seconds,
        "Application reconciliation performance in seconds."
    );
    describe_counter!(
        APP_K8S_REQUEST_TOTAL,
        "Number of Kubernetes requests executed during application reconciliation."
    );
    describe_gauge!(CLUSTER_INFO, "Information about a destination cluster.");
    describe_counter!(GIT_REQUEST_TOTAL, "Number of Git requests performed.");
    describe_histogram!(
        GIT_REQUEST_DURATION,
        Unit::Seconds,
        "Git request duration in seconds."
    );
    describe_gauge!(
        CLUSTER_CONNECTION_STATUS,
        "Whether the destination cluster answers (1) or not (0)."
    );
    describe_gauge!(RAFT_TERM, "The Raft term this node is in.");
    describe_gauge!(RAFT_IS_LEADER, "1 if this node is the Raft leader.");
    describe_gauge!(
        RAFT_COMMIT_INDEX,
        "The highest Raft log index known committed."
    );
    describe_gauge!(
        RAFT_APPLIED_INDEX,
        "The highest Raft log index applied on this node."
    );
    describe_gauge!(
        RAFT_APPLY_LAG,
        "Committed Raft entries not applied yet on this node."
    );
    describe_gauge!(RAFT_MEMBERS, "Voters and learners in the Raft membership.");
    describe_gauge!(
        SHARD_OWNED,
        "Shards this node owns in the shard map it follows."
    );
    describe_gauge!(SHARD_EPOCH, "Epoch of the shard map this node follows.");
    describe_gauge!(
        SHARD_LEASE_VALID,
        "1 while this node holds a valid shard lease."
    );
    describe_gauge!(APPS_OWNED, "Applications in the shards this node owns.");
    describe_gauge!(
        WORKQUEUE_DEPTH,
        "Applications waiting in the reconcile queue."
    );
    describe_counter!(
        WORKQUEUE_ADDS_TOTAL,
        "Applications added to the reconcile queue."
    );
    describe_gauge!(WORKQUEUE_RUNNING, "Reconciliations running now.");
    describe_counter!(
        WEBHOOK_REQUESTS_TOTAL,
        "Webhook requests received, by provider and result."
    );
    describe_counter!(REPO_POLLS_TOTAL, "Repository polls run by this node.");
    describe_counter!(
        REVISIONS_RECORDED_TOTAL,
        "Revisions this node recorded, by webhook or poll."
    );
}

/// The `/metrics` text: the recorder's metrics and the latest info series.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    let info = INFO.read().unwrap_or_else(|p| p.into_inner());
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&info);
    out
}

/// Periodically sets the store, shard and cluster gauges and renders the info series.
pub struct Collector {
    task: JoinHandle<()>,
}

impl Collector {
    /// Collect now and then every `every` ([`DEFAULT_COLLECT_INTERVAL`]) until `cancel`
    /// fires.
    pub fn start(
        store: Store,
        shards: Arc<ShardNode>,
        clusters: Arc<ClusterRegistry>,
        every: Duration,
        cancel: CancellationToken,
    ) -> Self {
        let every = every.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                if let Err(e) = collect(&store, &shards, &clusters) {
                    tracing::warn!(error = %e, "collecting metrics");
                }
                if let Some(h) = HANDLE.get() {
                    h.run_upkeep();
                }
            }
            // The node stops serving its apps: their series must not outlive it.
            INFO.write().unwrap_or_else(|p| p.into_inner()).clear();
        });
        Collector { task }
    }

    /// Wait until the collector has stopped.
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::warn!("metrics collector ended abnormally: {e}");
        }
    }
}

/// Collect once: set the gauges and replace the info block.
pub fn collect(
    store: &Store,
    shards: &ShardNode,
    clusters: &ClusterRegistry,
) -> Result<(), MetricsError> {
    let m = store.metrics();
    gauge!(names::RAFT_TERM).set(m.term as f64);
    gauge!(names::RAFT_IS_LEADER).set(if m.is_leader { 1.0 } else { 0.0 });
    gauge!(names::RAFT_COMMIT_INDEX).set(m.commit_index.unwrap_or(0) as f64);
    gauge!(names::RAFT_APPLIED_INDEX).set(m.applied_index.unwrap_or(0) as f64);
    gauge!(names::RAFT_APPLY_LAG).set(m.apply_lag as f64);
    gauge!(names::RAFT_MEMBERS).set((m.voters.len() + m.learners.len()) as f64);

    let own = shards.ownership().borrow().clone();
    gauge!(names::SHARD_OWNED).set(own.owned.len() as f64);
    gauge!(names::SHARD_EPOCH).set(own.epoch as f64);
    gauge!(names::SHARD_LEASE_VALID).set(if own.lease_valid { 1.0 } else { 0.0 });

    let reader = store.local();
    let mut apps = Vec::new();
    if let Some(map) = reader.shard_map()?.filter(|m| m.shard_count() > 0) {
        let ours = |app: &str| {
            own.owned
                .contains(&flotilla_shard::shard_of(app, map.shard_count()))
        };
        for rec in reader.apps_where(ours)? {
            apps.push(app_labels(store, &rec)?);
        }
    }
    gauge!(names::APPS_OWNED).set(apps.len() as f64);

    let mut text = String::new();
    write_family(
        &mut text,
        names::APP_INFO,
        "Information about an application owned by this node.",
        apps.iter().map(|l| (l.as_slice(), 1.0)),
    );
    let cl: Vec<_> = clusters.all();
    let cluster_labels: Vec<(Vec<(&str, String)>, f64)> = cl
        .iter()
        .map(|c| {
            let up = matches!(c.status(), ConnectionStatus::Connected);
            (
                vec![
                    ("name", c.name().to_string()),
                    ("server", c.server().to_string()),
                ],
                if up { 1.0 } else { 0.0 },
            )
        })
        .collect();
    write_family(
        &mut text,
        names::CLUSTER_INFO,
        "Information about a destination cluster.",
        cluster_labels.iter().map(|(l, _)| (l.as_slice(), 1.0)),
    );
    write_family(
        &mut text,
        names::CLUSTER_CONNECTION_STATUS,
        "Whether the destination cluster answers (1) or not (0).",
        cluster_labels.iter().map(|(l, v)| (l.as_slice(), *v)),
    );
    // Kept until the next collection: without the room doubling left (one line per app).
    text.shrink_to_fit();
    *INFO.write().unwrap_or_else(|p| p.into_inner()) = text;
    Ok(())
}

type Labels = Vec<(&'static str, String)>;

/// `argocd_app_info`'s labels for one stored app, as Argo CD sets them.
fn app_labels(store: &Store, rec: &flotilla_raft::AppRecord) -> Result<Labels, MetricsError> {
    let reader = store.local();
    let (namespace, name) = rec.app.split_once('/').unwrap_or(("", rec.app.as_str()));
    let doc = rec.spec.to_value().unwrap_or_default();
    let parsed = parse_stored_app(&rec.app, &doc).ok();
    let status: AppStatus = reader
        .status(&rec.app)?
        .and_then(|s| s.status.to_value().ok())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let running = reader
        .operation(&rec.app)?
        .is_some_and(|o| o.finished.is_none());
    let operation = if doc
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "delete"
    } else if running || reader.pending(&rec.app)?.is_some() {
        "sync"
    } else {
        ""
    };
    let (project, dest_server, dest_namespace, repo, autosync) = match &parsed {
        Some(a) => (
            a.spec.project.clone(),
            a.spec
                .destination
                .server
                .clone()
                .or_else(|| a.spec.destination.name.clone())
                .unwrap_or_default(),
            a.spec.destination.namespace.clone().unwrap_or_default(),
            a.sources()
                .first()
                .map(|s| s.repo_url.clone())
                .unwrap_or_default(),
            a.spec
                .sync_policy
                .as_ref()
                .is_some_and(|p| p.automated.is_some()),
        ),
        None => Default::default(),
    };
    let health = if status.health.status.is_empty() {
        "Unknown".to_string()
    } else {
        status.health.status.clone()
    };
    Ok(vec![
        ("autosync_enabled", autosync.to_string()),
        ("dest_namespace", dest_namespace),
        ("dest_server", dest_server),
        ("health_status", health),
        ("name", name.to_string()),
        ("namespace", namespace.to_string()),
        ("operation", operation.to_string()),
        ("project", project),
        ("repo", repo),
        ("sync_status", status.sync.status.clone()),
    ])
}

/// Write one gauge family in the Prometheus text format (nothing if it has no series).
fn write_family<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (&'a [(&'static str, String)], f64)>,
) {
    let mut series = series.peekable();
    if series.peek().is_none() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, value) in series {
        out.push_str(name);
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        let _ = writeln!(out, "}} {value}");
    }
    out.push('\n');
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_escape_labels_and_skip_empty() {
        let mut out = String::new();
        write_family(&mut out, "x_info", "help", std::iter::empty());
        assert!(out.is_empty());
        let labels = vec![("name", "a\"b\\c\nd".to_string())];
        write_family(
            &mut out,
            "x_info",
            "help",
            std::iter::once((labels.as_slice(), 1.0)),
        );
        assert!(out.contains("# TYPE x_info gauge"), "{out}");
        assert!(out.contains(r#"x_info{name="a\"b\\c\nd"} 1"#), "{out}");
    }
}
