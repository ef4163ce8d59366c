//! Destination clusters: where applications are deployed.
//!
//! [`ClusterRegistry`] holds one [`Cluster`] per destination, built from Argo CD cluster
//! Secrets ([`ClusterRegistry::add_secret`]), kubeconfig files
//! ([`ClusterRegistry::add_kubeconfig`]) or the in-cluster service account
//! ([`ClusterRegistry::add_in_cluster`]). Each cluster has its own `kube::Client`, its own
//! request limits ([`limit::Limiter`]), discovery cached per cluster ([`discovery`]) and a
//! connection status the live-state watches keep up to date. Destinations are resolved by
//! `server` URL or by `name` as Argo CD does: `https://kubernetes.default.svc` (or the name
//! `in-cluster`) is the cluster flotilla runs in.

pub mod discovery;
pub mod http;
pub mod limit;
pub mod requests;

use crate::model::{ApplicationDestination, ClusterSecret};
use discovery::{Kind, KindIndex};
use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use limit::{Limiter, Limits, Permit};
use serde_json::json;
use std::sync::{Arc, RwLock};
use tokio::sync::{watch, Mutex};

/// The server URL Argo CD uses for the cluster it runs in.
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";
/// The name Argo CD gives the cluster it runs in.
pub const IN_CLUSTER_NAME: &str = "in-cluster";

/// Errors about destination clusters.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A kubeconfig or cluster Secret could not be turned into a client configuration.
    #[error("cluster {cluster}: bad configuration: {reason}")]
    Config {
        /// Cluster name or server.
        cluster: String,
        /// What was wrong.
        reason: String,
    },
    /// The client could not be built.
    #[error("cluster {cluster}: cannot build a client: {source}")]
    Client {
        /// Cluster name or server.
        cluster: String,
        /// Cause.
        source: kube::Error,
    },
    /// An application's destination names no known cluster.
    #[error("destination {destination} is not a known cluster (known: {known})")]
    UnknownDestination {
        /// The destination as written.
        destination: String,
        /// The clusters known.
        known: String,
    },
    /// Discovery failed.
    #[error("cluster {cluster}: API discovery failed: {source}")]
    Discovery {
        /// Cluster name.
        cluster: String,
        /// Cause.
        source: kube::Error,
    },
    /// The cluster does not serve this kind.
    #[error("cluster {cluster}: the server does not serve {api_version} {kind}")]
    UnknownKind {
        /// Cluster name.
        cluster: String,
        /// The apiVersion.
        api_version: String,
        /// The kind.
        kind: String,
    },
}

/// Whether flotilla can talk to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// Not tried yet.
    Unknown,
    /// The last request or watch succeeded.
    Connected,
    /// The last attempt failed, with why.
    Failed(String),
}

/// One destination cluster and its client.
pub struct Cluster {
    name: String,
    server: String,
    client: kube::Client,
    limiter: Limiter,
    kinds: Mutex<Option<Arc<KindIndex>>>,
    status: watch::Sender<ConnectionStatus>,
}

impl std::fmt::Debug for Cluster {
    // The client's configuration holds credentials: show only what identifies the cluster.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("limits", &self.limiter.limits())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    fn new(
        name: String,
        server: String,
        config: kube::Config,
        limits: Limits,
    ) -> Result<Self, ClusterError> {
        let client = http::client(config, &server).map_err(|e| match e {
            http::BuildError::Kube(source) => ClusterError::Client {
                cluster: name.clone(),
                source,
            },
            http::BuildError::Unsupported(reason) => config_error(&name, reason),
        })?;
        Ok(Self {
            name,
            server,
            client,
            limiter: Limiter::new(limits),
            kinds: Mutex::new(None),
            status: watch::channel(ConnectionStatus::Unknown).0,
        })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The kube client (callers take a [`Cluster::permit`] per request).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Wait until this cluster's rate limit and concurrency cap allow one more request.
    pub async fn permit(&self) -> Permit {
        self.limiter.acquire().await
    }

    /// The connection status now.
    pub fn status(&self) -> ConnectionStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of the connection status.
    pub fn watch_status(&self) -> watch::Receiver<ConnectionStatus> {
        self.status.subscribe()
    }

    /// Record the outcome of talking to the cluster.
    pub fn set_status(&self, status: ConnectionStatus) {
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                tracing::info!(cluster = %self.name, ?status, "cluster connection status");
                *s = status;
                true
            }
        });
    }

    /// The kinds the cluster serves, discovered on first use and cached.
    pub async fn kinds(&self) -> Result<Arc<KindIndex>, ClusterError> {
        let mut cached = self.kinds.lock().await;
        if let Some(k) = cached.as_ref() {
            return Ok(k.clone());
        }
        let fresh = self.discover().await?.shared();
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    async fn discover(&self) -> Result<KindIndex, ClusterError> {
        let _permit = self.permit().await;
        match KindIndex::discover(self.client.clone()).await {
            Ok(k) => {
                self.set_status(ConnectionStatus::Connected);
                Ok(k)
            }
            Err(source) => {
                self.set_status(ConnectionStatus::Failed(source.to_string()));
                Err(ClusterError::Discovery {
                    cluster: self.name.clone(),
                    source,
                })
            }
        }
    }

    /// Forget cached discovery (the next lookup runs it again).
    pub async fn invalidate_kinds(&self) {
        *self.kinds.lock().await = None;
    }

    /// The kind of `apiVersion`/`kind`, refreshing discovery once if it is not known.
    pub async fn kind(&self, api_version: &str, kind: &str) -> Result<Kind, ClusterError> {
        if let Some(k) = self.kinds().await?.get(api_version, kind) {
            return Ok(k.clone());
        }
        self.invalidate_kinds().await;
        self.kinds()
            .await?
            .get(api_version, kind)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownKind {
                cluster: self.name.clone(),
                api_version: api_version.into(),
                kind: kind.into(),
            })
    }

    /// The dynamic API of a kind, in `namespace` for namespaced kinds.
    pub fn api(&self, kind: &Kind, namespace: &str) -> Api<DynamicObject> {
        if kind.namespaced && !namespace.is_empty() {
            Api::namespaced_with(self.client.clone(), namespace, &kind.resource)
        } else {
            Api::all_with(self.client.clone(), &kind.resource)
        }
    }
}

/// All destination clusters known to this node.
#[derive(Debug, Default)]
pub struct ClusterRegistry {
    clusters: RwLock<Vec<Arc<Cluster>>>,
}

fn config_error(cluster: &str, reason: impl ToString) -> ClusterError {
    ClusterError::Config {
        cluster: cluster.to_string(),
        reason: reason.to_string(),
    }
}

async fn config_from_kubeconfig(
    cluster: &str,
    kubeconfig: Kubeconfig,
    context: Option<&str>,
) -> Result<kube::Config, ClusterError> {
    let opts = KubeConfigOptions {
        context: context.map(str::to_string),
        cluster: None,
        user: None,
    };
    kube::Config::from_custom_kubeconfig(kubeconfig, &opts)
        .await
        .map_err(|e| config_error(cluster, e))
}

impl ClusterRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&self, cluster: Cluster) -> Arc<Cluster> {
        let cluster = Arc::new(cluster);
        let mut all = self.clusters.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|c| c.server != cluster.server && c.name != cluster.name);
        all.push(cluster.clone());
        cluster
    }

    /// Add (or replace) the cluster an Argo CD cluster Secret describes.
    pub async fn add_secret(
        &self,
        secret: &ClusterSecret,
        limits: Limits,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let name = if secret.name.is_empty() {
            secret.server.clone()
        } else {
            secret.name.clone()
        };
        if secret.server.is_empty() {
            return Err(config_error(
                &name,
                format!("Secret {} has no server", secret.secret_name),
            ));
        }
        let tls = &secret.config.tls_client_config;
        let mut cluster = json!({"server": secret.server});
        if let Some(ca) = &tls.ca_data {
            cluster["certificate-authority-data"] = json!(ca);
        }
        if tls.insecure {
            cluster["insecure-skip-tls-verify"] = json!(true);
        }
        if let Some(sn) = &tls.server_name {
            cluster["tls-server-name"] = json!(sn);
        }
        let mut user = json!({});
        if let Some(t) = &secret.config.bearer_token {
            user["token"] = json!(t.expose());
        }
        if let (Some(u), Some(p)) = (&secret.config.username, &secret.config.password) {
            user["username"] = json!(u);
            user["password"] = json!(p.expose());
        }
        if let Some(c) = &tls.cert_data {
            user["client-certificate-data"] = json!(c);
        }
        if let Some(k) = &tls.key_data {
            user["client-key-data"] = json!(k.expose());
        }
        let doc = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x"});
        let kubeconfig: Kubeconfig =
            serde_json::from_value(doc).map_err(|e| config_error(&name, e))?;
        let config = config_from_kubeconfig(&name, kubeconfig, None).await?;
        let server = secret.server.trim_end_matches('/').to_string();
        Ok(self.insert(Cluster::new(name, server, config, limits)?))
    }

    /// Add the cluster of a kubeconfig's context (the current one when `context` is None).
    /// The cluster is named after the context.
    pub async fn add_kubeconfig(
        &self,
        yaml: &str,
        context: Option<&str>,
        limits: Limits,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|e| config_error("kubeconfig", e))?;
        let name = context
            .map(str::to_string)
            .or_else(|| kubeconfig.current_context.clone())
            .ok_or_else(|| config_error("kubeconfig", "no context given and no current-context"))?;
        let config = config_from_kubeconfig(&name, kubeconfig, Some(&name)).await?;
        let server = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        Ok(self.insert(Cluster::new(name, server, config, limits)?))
    }

    /// Add the cluster flotilla runs in, from its service account.
    pub fn add_in_cluster(&self, limits: Limits) -> Result<Arc<Cluster>, ClusterError> {
        let config = kube::Config::incluster().map_err(|e| config_error(IN_CLUSTER_NAME, e))?;
        Ok(self.insert(Cluster::new(
            IN_CLUSTER_NAME.into(),
            IN_CLUSTER_SERVER.into(),
            config,
            limits,
        )?))
    }

    /// Remove the cluster named `name`; returns whether one was known.
    pub fn remove(&self, name: &str) -> bool {
        let mut all = self.clusters.write().unwrap_or_else(|p| p.into_inner());
        let before = all.len();
        all.retain(|c| c.name != name);
        all.len() != before
    }

    /// Every cluster.
    pub fn all(&self) -> Vec<Arc<Cluster>> {
        self.clusters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The cluster an application's destination names: by `server` if set, else by `name`.
    pub fn resolve(&self, dest: &ApplicationDestination) -> Result<Arc<Cluster>, ClusterError> {
        let all = self.all();
        let server = dest.server.as_deref().filter(|s| !s.is_empty());
        let name = dest.name.as_deref().filter(|s| !s.is_empty());
        let norm = |s: &str| s.trim_end_matches('/').to_string();
        let found = match (server, name) {
            (Some(s), _) => all.iter().find(|c| norm(&c.server) == norm(s)),
            (None, Some(n)) => all
                .iter()
                .find(|c| c.name == n || (n == IN_CLUSTER_NAME && c.server == IN_CLUSTER_SERVER)),
            (None, None) => None,
        };
        found
            .cloned()
            .ok_or_else(|| ClusterError::UnknownDestination {
                destination: server.or(name).unwrap_or("(empty)").to_string(),
                known: all
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.server))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The single cluster, when exactly one is known (used by one-shot commands).
    pub fn only(&self) -> Option<Arc<Cluster>> {
        let all = self.all();
        (all.len() == 1).then(|| all[0].clone())
    }
}
