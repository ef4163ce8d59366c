//! simcluster: a simulated Kubernetes API server, faithful enough for `kubectl` and kube-rs.
//!
//! Start with [`SimCluster::start`] (one cluster) or [`SimFleet::start`] (many, one port
//! each). A cluster keeps its objects in memory ([`store`]), serves discovery, OpenAPI v3,
//! the API verbs with patches and server-side apply ([`ops`], [`patch`], [`apply`]), watches
//! ([`watch`]), server-side `Table` output for `kubectl get` ([`table`]), simulated
//! controllers ([`controllers`]) and fault injection ([`faults`]). Request bodies are JSON,
//! or Kubernetes protobuf for the kinds kubectl's `create` generators send ([`protobuf`]).
//! `docs/simcluster.md` says what is simulated and what is not.

pub mod apply;
mod children;
pub mod cli;
pub mod controllers;
pub mod discovery;
pub mod faults;
pub mod fleet;
mod gc;
pub mod kinds;
pub mod meta;
pub mod openapi;
pub mod ops;
pub mod patch;
pub mod protobuf;
pub mod selectors;
mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;
pub mod watch;

pub use controllers::ControllerConfig;
pub use faults::FaultConfig;
pub use fleet::SimFleet;
pub use tls::Certs;

use faults::Faults;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;

/// Errors starting a simulated cluster.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The port could not be bound.
    #[error("simcluster {name}: binding 127.0.0.1:{port}: {source}")]
    Bind {
        /// Cluster name.
        name: String,
        /// Requested port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// Certificates or TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A kubeconfig could not be rendered.
    #[error("rendering a kubeconfig: {0}")]
    Kubeconfig(#[from] serde_yaml::Error),
}

/// Configuration of one simulated cluster.
#[derive(Clone)]
pub struct SimConfig {
    /// Name used for the kubeconfig cluster, context and user.
    pub name: String,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Serve HTTPS (the default) or plain HTTP.
    pub tls: bool,
    /// Bearer token clients must send; `None` generates one. An empty string disables auth.
    pub token: Option<String>,
    /// Certificates to serve with (shared by a fleet); `None` generates a fresh CA.
    pub certs: Option<Arc<Certs>>,
    /// The simulated controllers.
    pub controllers: ControllerConfig,
    /// Interval between watch bookmarks (when the client allows them).
    pub bookmark_interval: Duration,
    /// Faults injected from the start.
    pub faults: FaultConfig,
    /// Past events kept for watches resuming from a resourceVersion (older ones get 410).
    pub watch_history: usize,
}

/// What `Debug` shows of a bearer token: whether there is one, never its value.
pub(crate) fn redacted(token: &Option<String>) -> &'static str {
    match token {
        Some(t) if !t.is_empty() => "Some(<redacted>)",
        Some(_) => "Some(\"\")",
        None => "None",
    }
}

impl std::fmt::Debug for SimConfig {
    // The token is a credential: logs and panics must not show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("token", &format_args!("{}", redacted(&self.token)))
            .field("certs", &self.certs)
            .field("controllers", &self.controllers)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("faults", &self.faults)
            .field("watch_history", &self.watch_history)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            name: "simcluster".into(),
            port: 0,
            tls: true,
            token: None,
            certs: None,
            controllers: ControllerConfig::default(),
            bookmark_interval: Duration::from_secs(30),
            faults: FaultConfig::default(),
            watch_history: store::HISTORY,
        }
    }
}

/// Shared state of one running cluster.
pub(crate) struct Cluster {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) token: Option<String>,
    pub(crate) store: Mutex<Store>,
    pub(crate) faults: Faults,
    pub(crate) controllers: ControllerConfig,
    pub(crate) bookmark_interval: Duration,
    pub(crate) drop_watches: tokio_watch::Sender<u64>,
    pub(crate) watches_started: std::sync::atomic::AtomicU64,
    pub(crate) shutdown: tokio_watch::Sender<bool>,
}

impl std::fmt::Debug for Cluster {
    // The token is a credential and the store can be large: show what identifies the cluster.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("token", &format_args!("{}", redacted(&self.token)))
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Locks the store (a poisoned lock is recovered: the store stays consistent per write).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends every open watch.
    pub(crate) fn cut_watches(&self) {
        self.drop_watches.send_modify(|n| *n += 1);
    }
}

/// A running simulated cluster. Dropping it stops it without waiting;
/// [`SimCluster::shutdown`] also waits for the accept loop to end.
#[derive(Debug)]
pub struct SimCluster {
    cluster: Arc<Cluster>,
    addr: SocketAddr,
    tls: bool,
    certs: Option<Arc<Certs>>,
    task: Option<JoinHandle<()>>,
}

fn seed(store: &mut Store) {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "uid": meta::new_uid(), "creationTimestamp": meta::now_rfc3339(),
                         "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        store.put(
            ("/namespaces".into(), String::new(), ns.into()),
            obj,
            store::EventType::Added,
        );
    }
    store.drain_touched();
}

impl SimCluster {
    /// Binds 127.0.0.1:`port` and starts serving.
    pub async fn start(config: SimConfig) -> Result<SimCluster, SimError> {
        let listener = TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| SimError::Bind {
                name: config.name.clone(),
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            name: config.name.clone(),
            port: config.port,
            source,
        })?;
        let certs = match (config.tls, config.certs) {
            (false, _) => None,
            (true, Some(c)) => Some(c),
            (true, None) => Some(Certs::generate()?),
        };
        let token = match config.token {
            Some(t) if t.is_empty() => None,
            Some(t) => Some(t),
            None => Some(meta::random_hex(32)),
        };
        let mut store = Store::with_history(config.watch_history);
        seed(&mut store);
        let faults = Faults::default();
        faults.set(config.faults);
        let cluster = Arc::new(Cluster {
            name: config.name,
            address: addr.to_string(),
            token,
            store: Mutex::new(store),
            faults,
            controllers: config.controllers,
            bookmark_interval: config.bookmark_interval,
            drop_watches: tokio_watch::channel(0).0,
            watches_started: std::sync::atomic::AtomicU64::new(0),
            shutdown: tokio_watch::channel(false).0,
        });
        let acceptor = certs
            .as_ref()
            .map(|c| tokio_rustls::TlsAcceptor::from(c.server_config.clone()));
        let task = tokio::spawn(server::serve(
            listener,
            cluster.clone(),
            acceptor,
            cluster.shutdown.subscribe(),
        ));
        tracing::debug!(cluster = %cluster.name, %addr, "simcluster started");
        Ok(SimCluster {
            cluster,
            addr,
            tls: certs.is_some(),
            certs,
            task: Some(task),
        })
    }

    /// Cluster name.
    pub fn name(&self) -> &str {
        &self.cluster.name
    }

    /// Socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// PEM of the CA that signed the serving certificate (None for plain HTTP).
    pub fn ca_pem(&self) -> Option<&str> {
        self.certs.as_ref().map(|c| c.ca_pem.as_str())
    }

    /// Bearer token clients must send (None when auth is off).
    pub fn token(&self) -> Option<&str> {
        self.cluster.token.as_deref()
    }

    /// A kubeconfig with one cluster, user and context named after the cluster.
    pub fn kubeconfig(&self) -> Result<String, SimError> {
        kubeconfig_for(&[self], Some(self.name()))
    }

    /// The kubeconfig entries (cluster, user, context) of this cluster.
    fn kubeconfig_entries(&self) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
        let name = self.name();
        let mut cluster = json!({"server": self.url()});
        if let Some(ca) = self.ca_pem() {
            cluster["certificate-authority-data"] = json!(tls::base64(ca.as_bytes()));
        }
        let user = match self.token() {
            Some(t) => json!({"token": t}),
            None => json!({}),
        };
        (
            json!({"name": name, "cluster": cluster}),
            json!({"name": name, "user": user}),
            json!({"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}),
        )
    }

    /// Faults injected so far (500s, 429s, refused requests).
    pub fn fault_counts(&self) -> faults::FaultCounts {
        self.cluster.faults.counts()
    }

    /// Current fault configuration.
    pub fn faults(&self) -> FaultConfig {
        self.cluster.faults.get()
    }

    /// Replaces the fault configuration (going offline also ends open watches).
    pub fn set_faults(&self, faults: FaultConfig) {
        let offline = faults.offline;
        self.cluster.faults.set(faults);
        if offline {
            self.cluster.cut_watches();
        }
    }

    /// Takes the cluster offline (connections closed without answers) or back online.
    pub fn set_offline(&self, offline: bool) {
        self.cluster.faults.update(|f| f.offline = offline);
        if offline {
            self.cluster.cut_watches();
        }
    }

    /// Ends every open watch now (clients re-watch from their last resourceVersion).
    pub fn drop_watches(&self) {
        self.cluster.cut_watches();
    }

    /// Forgets the event history, so every watch resuming from an old version gets 410.
    pub fn expire_watch_history(&self) {
        self.cluster.lock().compact_all();
    }

    /// How many watch requests the cluster has accepted (re-watches included).
    pub fn watches_started(&self) -> u64 {
        self.cluster
            .watches_started
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cluster's current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.cluster.lock().rv()
    }

    /// Stops serving and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.cluster.shutdown.send_replace(true);
        self.cluster.cut_watches();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        self.cluster.shutdown.send_replace(true);
        self.cluster.cut_watches();
    }
}

/// A kubeconfig with a context per cluster; `current` names the current context.
pub fn kubeconfig_for(clusters: &[&SimCluster], current: Option<&str>) -> Result<String, SimError> {
    let (mut cs, mut us, mut xs) = (vec![], vec![], vec![]);
    for c in clusters {
        let (cl, us_, cx) = c.kubeconfig_entries();
        cs.push(cl);
        us.push(us_);
        xs.push(cx);
    }
    let current = current
        .or(clusters.first().map(|c| c.name()))
        .unwrap_or_default();
    let doc = json!({"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": cs, "users": us,
        "contexts": xs, "current-context": current});
    Ok(serde_yaml::to_string(&doc)?)
}
