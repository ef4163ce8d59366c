//! Ingestion: the management cluster (and app-of-apps directories) mirrored into the store.
//!
//! Where to start: [`Ingest::start`] spawns everything. On every node, [`secrets`] watches the
//! Argo CD Secrets (`argocd.argoproj.io/secret-type`) of the control-plane namespace and loads
//! them into the node's [`ClusterRegistry`] and [`SourceCache`]; credentials stay on the node.
//! On the Raft leader only ([`leader`] follows leadership), [`apps`] mirrors `Application` and
//! `AppProject` resources into the store, [`secrets`] registers clusters and repositories by
//! reference, [`writeback`] writes each app's status back onto its `Application` and releases
//! the resources finalizer once the controller has deleted the app, and [`directory`] ingests
//! Application manifests from a directory or a Git path.
//!
//! Each ingestion source owns the store apps whose annotation [`ORIGIN_ANNOTATION`] names it
//! ([`origin`]) and never changes or deletes apps of another origin.

mod apps;
mod directory;
mod events;
mod leader;
pub mod requests;
mod secrets;
#[cfg(test)]
mod tests;
mod writeback;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_raft::{Command, Json, Store};
use kube::discovery::ApiResource;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clusters::ClusterRegistry;
use crate::source::SourceCache;

pub use writeback::{operation_state, status_document};

/// The annotation on stored apps that says where they came from.
pub const ORIGIN_ANNOTATION: &str = "flotilla.dev/origin";

/// The values of [`ORIGIN_ANNOTATION`].
pub mod origin {
    /// An `Application` resource of the management cluster.
    pub const KUBERNETES: &str = "kubernetes";
    /// An apps directory or Git path (app of apps).
    pub const DIRECTORY: &str = "directory";
    /// Created through flotilla's API.
    pub const API: &str = "api";
}

/// Argo CD's finalizer that asks for the app's resources to be pruned before it goes
/// (`/foreground` and `/background` variants included).
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// The field manager of flotilla's writes to the management cluster.
pub const FIELD_MANAGER: &str = "flotilla";

/// Errors of ingestion; each is logged where it happens and the others keep going.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A proposal to the store failed.
    #[error("store: {0}")]
    Store(#[from] flotilla_raft::StoreError),
    /// Reading the local replica failed.
    #[error("store read: {0}")]
    Read(#[from] flotilla_raft::ReadError),
    /// A request to the management cluster failed.
    #[error("management cluster: {what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The client's error.
        source: kube::Error,
    },
    /// The apps repository could not be read.
    #[error("apps repository: {0}")]
    Source(#[from] crate::source::SourceError),
    /// The apps directory could not be read.
    #[error("apps directory {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON document could not be encoded or decoded.
    #[error("{what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The cause.
        source: serde_json::Error,
    },
}

/// A Git path of Application manifests (app of apps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppsRepo {
    /// Repository URL.
    pub url: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Directory inside the repository (`.` or empty for the root).
    pub path: String,
}

/// Settings of [`Ingest`].
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Namespaces whose `Application`s and `AppProject`s are ingested.
    pub namespaces: Vec<String>,
    /// Namespace of the cluster, repository and repo-creds Secrets.
    pub secrets_namespace: String,
    /// Status write-back throttle: at most one write per app per interval.
    pub status_interval: Duration,
    /// Status writes in flight at once (different apps).
    pub status_concurrency: usize,
    /// How often every app's status is read from its resource again and corrected if
    /// someone else changed it (between times the status the last write left is trusted).
    pub status_resync: Duration,
    /// A directory of Application manifests.
    pub apps_dir: Option<PathBuf>,
    /// A Git path of Application manifests.
    pub apps_repo: Option<AppsRepo>,
    /// How often the apps directory and repository are read again.
    pub poll: Duration,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            namespaces: vec!["argocd".into()],
            secrets_namespace: "argocd".into(),
            status_interval: Duration::from_secs(1),
            status_concurrency: 32,
            status_resync: Duration::from_secs(300),
            apps_dir: None,
            apps_repo: None,
            poll: Duration::from_secs(180),
        }
    }
}

impl IngestSettings {
    /// The namespace of Application manifests that name none.
    pub fn default_namespace(&self) -> &str {
        self.namespaces
            .first()
            .map(String::as_str)
            .unwrap_or(&self.secrets_namespace)
    }
}

/// What the ingestion tasks share.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub store: Store,
    pub management: Option<kube::Client>,
    pub sources: Arc<SourceCache>,
    pub settings: Arc<IngestSettings>,
    /// The registrations the Secrets ask for; `None` until the first full list.
    pub refs: watch::Receiver<Option<secrets::SecretRefs>>,
}

/// The running ingestion of one node.
pub struct Ingest {
    tasks: Vec<JoinHandle<()>>,
}

impl Ingest {
    /// Start ingestion. Without a management cluster only the apps directory and repository
    /// are ingested. Stops when `cancel` fires.
    pub fn start(
        store: Store,
        management: Option<kube::Client>,
        clusters: Arc<ClusterRegistry>,
        sources: Arc<SourceCache>,
        settings: IngestSettings,
        cancel: CancellationToken,
    ) -> Ingest {
        let (refs_tx, refs_rx) = watch::channel(None);
        let mut tasks = Vec::new();
        if let Some(client) = &management {
            tasks.push(tokio::spawn(secrets::watch_secrets(
                client.clone(),
                settings.secrets_namespace.clone(),
                clusters,
                sources.clone(),
                refs_tx,
                cancel.clone(),
            )));
        }
        let has_work =
            management.is_some() || settings.apps_dir.is_some() || settings.apps_repo.is_some();
        let ctx = Ctx {
            store,
            management,
            sources,
            settings: Arc::new(settings),
            refs: refs_rx,
        };
        if has_work {
            tasks.push(tokio::spawn(leader::supervise(ctx, cancel)));
        }
        Ingest { tasks }
    }

    /// Wait until every task has stopped (after the cancellation token fired).
    pub async fn stopped(self) {
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "ingestion task ended abnormally");
            }
        }
    }
}

/// The API resource of Argo CD's `Application`.
pub(crate) fn application_resource() -> ApiResource {
    ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "argoproj.io",
        "v1alpha1",
        "Application",
    ))
}

/// The API resource of Argo CD's `AppProject`.
pub(crate) fn project_resource() -> ApiResource {
    ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "argoproj.io",
        "v1alpha1",
        "AppProject",
    ))
}

/// The origin annotation of a stored app document.
pub fn origin_of(spec: &Value) -> Option<&str> {
    spec.pointer("/metadata/annotations")
        .and_then(|a| a.get(ORIGIN_ANNOTATION))
        .and_then(Value::as_str)
}

/// Set the origin annotation on a stored app document.
pub(crate) fn with_origin(mut doc: Value, origin: &str) -> Value {
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if !annotations.is_object() {
            *annotations = Value::Object(Default::default());
        }
        if let Some(a) = annotations.as_object_mut() {
            a.insert(ORIGIN_ANNOTATION.into(), Value::String(origin.into()));
        }
    }
    doc
}

/// The value with object keys sorted at every level, so equal documents have equal text.
pub(crate) fn canonical(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// A stored record's document, or `Null` when it does not parse (treated as different).
pub(crate) fn stored_value(spec: &Json) -> Value {
    spec.to_value().unwrap_or(Value::Null)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Commands per proposal when many are sent at once (a full reconcile).
const PROPOSAL_CHUNK: usize = 256;

/// Propose commands in chunks; a command the state machine rejects is logged and skipped.
pub(crate) async fn propose_all(store: &Store, commands: Vec<Command>) -> Result<(), IngestError> {
    let mut commands = commands;
    while !commands.is_empty() {
        let rest = commands.split_off(commands.len().min(PROPOSAL_CHUNK));
        let kinds: Vec<String> = commands.iter().map(describe).collect();
        let proposed = store.propose_many(commands).await?;
        for (what, result) in kinds.iter().zip(proposed.results) {
            match result {
                Ok(_) => {
                    metrics::counter!("flotilla_ingest_proposals_total").increment(1);
                    tracing::debug!(command = %what, "ingested");
                }
                Err(e) => {
                    tracing::warn!(command = %what, error = %e, "store refused an ingested change")
                }
            }
        }
        commands = rest;
    }
    Ok(())
}

/// A short description of a command for logs (never its payload).
fn describe(c: &Command) -> String {
    match c {
        Command::PutApp { app, .. } | Command::DeleteApp { app } => format!("{} {app}", c.kind()),
        Command::PutProject { name, .. }
        | Command::DeleteProject { name }
        | Command::RemoveCluster { name } => format!("{} {name}", c.kind()),
        Command::PutCluster(r) => format!("{} {}", c.kind(), r.name),
        Command::PutRepo(r) => format!("{} {}", c.kind(), crate::source::redact_url(&r.url)),
        Command::RemoveRepo { url } => format!("{} {}", c.kind(), crate::source::redact_url(url)),
        other => other.kind().to_string(),
    }
}
