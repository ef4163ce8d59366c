//! Argo CD Secrets: every node loads cluster and repository credentials from them; the
//! leader registers the clusters and repositories in the store by reference only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use flotilla_raft::{ClusterRef, Command, RepoRef};

use super::{propose_all, Ctx, IngestError};
use crate::clusters::{limit::Limits, ClusterRegistry};
use crate::model::{parse_secret, ArgoSecret, ClusterSecret, Credentials, SECRET_TYPE_LABEL};
use crate::source::SourceCache;

/// The registrations the Secrets ask for: references, never credentials.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SecretRefs {
    /// Namespace of the Secrets (their `secret_ref`s start with `namespace/`).
    pub namespace: String,
    /// One per cluster Secret, by cluster name.
    pub clusters: BTreeMap<String, ClusterRef>,
    /// One per repository Secret, by URL.
    pub repos: BTreeMap<String, RepoRef>,
}

/// What this node knows from the Secrets of its namespace.
struct SecretState {
    namespace: String,
    /// Credentials configured before the Secrets (kept under the Secrets' ones).
    base: Credentials,
    /// Valid Argo CD Secrets by Secret name.
    secrets: BTreeMap<String, ArgoSecret>,
    /// Clusters registered from Secrets, by Secret name.
    registered: BTreeMap<String, ClusterSecret>,
}

impl SecretState {
    /// Parse a Secret; a malformed one is logged with its name and left out.
    fn parse(&self, secret: &Secret) -> Option<ArgoSecret> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let text = match serde_json::to_string(secret) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(secret = %name, error = %e, "cannot encode Secret; skipped");
                return None;
            }
        };
        match parse_secret(&text) {
            Ok(parsed) => parsed,
            Err(e) => {
                metrics::counter!("flotilla_ingest_invalid_total", "kind" => "Secret").increment(1);
                tracing::error!(namespace = %self.namespace, secret = %name, error = %e,
                    "malformed Argo CD Secret; skipped");
                None
            }
        }
    }

    /// Push the current Secrets to the credentials, the cluster registry and the refs.
    async fn publish(
        &mut self,
        clusters: &ClusterRegistry,
        sources: &SourceCache,
        refs: &watch::Sender<Option<SecretRefs>>,
    ) {
        let mut creds = self.base.clone();
        let mut wanted: BTreeMap<String, ClusterSecret> = BTreeMap::new();
        let mut out = SecretRefs {
            namespace: self.namespace.clone(),
            ..Default::default()
        };
        for (secret_name, s) in &self.secrets {
            let secret_ref = Some(format!("{}/{secret_name}", self.namespace));
            match s {
                ArgoSecret::Cluster(c) => {
                    creds.clusters.push(c.clone());
                    wanted.insert(secret_name.clone(), c.clone());
                    out.clusters.insert(
                        c.name.clone(),
                        ClusterRef {
                            name: c.name.clone(),
                            server: c.server.trim_end_matches('/').to_string(),
                            secret_ref,
                        },
                    );
                }
                ArgoSecret::Repo(r) if r.is_template => creds.templates.push(r.clone()),
                ArgoSecret::Repo(r) => {
                    creds.repositories.push(r.clone());
                    out.repos.insert(
                        r.url.clone(),
                        RepoRef {
                            url: r.url.clone(),
                            secret_ref,
                        },
                    );
                }
            }
        }
        sources.set_credentials(creds);
        // Clusters whose Secret went or changed leave first, so a renamed cluster does not
        // linger under its old name.
        let gone: Vec<(String, ClusterSecret)> = self
            .registered
            .iter()
            .filter(|(k, v)| wanted.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (secret_name, c) in gone {
            self.registered.remove(&secret_name);
            if clusters.remove(&c.name) {
                tracing::info!(cluster = %c.name, secret = %secret_name, "cluster removed");
            }
        }
        for (secret_name, c) in wanted {
            if self.registered.contains_key(&secret_name) {
                continue;
            }
            match clusters.add_secret(&c, Limits::default()).await {
                Ok(_) => {
                    tracing::info!(cluster = %c.name, server = %c.server, secret = %secret_name,
                        "cluster registered");
                    self.registered.insert(secret_name, c);
                }
                Err(e) => {
                    tracing::error!(secret = %secret_name, error = %e,
                        "cannot register the cluster of Secret; skipped");
                }
            }
        }
        refs.send_replace(Some(out));
    }
}

/// Watch the Argo CD Secrets of `namespace` until `cancel` fires.
pub(crate) async fn watch_secrets(
    client: kube::Client,
    namespace: String,
    clusters: Arc<ClusterRegistry>,
    sources: Arc<SourceCache>,
    refs: watch::Sender<Option<SecretRefs>>,
    cancel: CancellationToken,
) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(SECRET_TYPE_LABEL);
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut state = SecretState {
        namespace: namespace.clone(),
        base: sources.credentials().as_ref().clone(),
        secrets: BTreeMap::new(),
        registered: BTreeMap::new(),
    };
    let mut listing: Option<BTreeMap<String, ArgoSecret>> = None;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        let changed = match event {
            Err(e) => {
                tracing::warn!(namespace = %namespace, error = %e, "watching Secrets");
                false
            }
            Ok(Event::Init) => {
                listing = Some(BTreeMap::new());
                false
            }
            Ok(Event::InitApply(s)) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                if let (Some(l), Some(parsed)) = (listing.as_mut(), state.parse(&s)) {
                    l.insert(name, parsed);
                }
                false
            }
            Ok(Event::InitDone) => {
                state.secrets = listing.take().unwrap_or_default();
                true
            }
            Ok(Event::Apply(s)) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                match state.parse(&s) {
                    Some(parsed) => state.secrets.insert(name, parsed),
                    None => state.secrets.remove(&name),
                };
                true
            }
            Ok(Event::Delete(s)) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                state.secrets.remove(&name).is_some()
            }
        };
        if changed {
            state.publish(&clusters, &sources, &refs).await;
        }
    }
}

/// Leader: keep the store's cluster and repository registrations equal to the Secrets.
pub(crate) async fn mirror_refs(ctx: Ctx, cancel: CancellationToken) {
    let mut rx = ctx.refs.clone();
    loop {
        let current = rx.borrow_and_update().clone();
        let mut retry = false;
        if let Some(refs) = current {
            if let Err(e) = sync_refs(&ctx, &refs).await {
                tracing::warn!(error = %e, "registering clusters and repositories; retrying");
                retry = true;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = rx.changed() => {
                if changed.is_err() {
                    // The Secret watcher stopped: nothing more will come.
                    cancel.cancelled().await;
                    return;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)), if retry => {}
        }
    }
}

/// The commands that make the store's registrations of `refs.namespace` equal to `refs`.
pub(crate) fn refs_commands(
    refs: &SecretRefs,
    stored_clusters: &[ClusterRef],
    stored_repos: &[RepoRef],
) -> Vec<Command> {
    let prefix = format!("{}/", refs.namespace);
    let ours = |r: &Option<String>| r.as_deref().is_some_and(|r| r.starts_with(&prefix));
    let mut commands = Vec::new();
    for c in stored_clusters {
        if ours(&c.secret_ref) && !refs.clusters.contains_key(&c.name) {
            commands.push(Command::RemoveCluster {
                name: c.name.clone(),
            });
        }
    }
    for c in refs.clusters.values() {
        if !stored_clusters.contains(c) {
            commands.push(Command::PutCluster(c.clone()));
        }
    }
    for r in stored_repos {
        if ours(&r.secret_ref) && !refs.repos.contains_key(&r.url) {
            commands.push(Command::RemoveRepo { url: r.url.clone() });
        }
    }
    for r in refs.repos.values() {
        if !stored_repos.contains(r) {
            commands.push(Command::PutRepo(r.clone()));
        }
    }
    commands
}

async fn sync_refs(ctx: &Ctx, refs: &SecretRefs) -> Result<(), IngestError> {
    let reader = ctx.store.local();
    let commands = refs_commands(refs, &reader.clusters()?, &reader.repos()?);
    propose_all(&ctx.store, commands).await
}
