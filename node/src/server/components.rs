//! The controller components of a node, started on top of its store member and shard
//! follower, and stopped together.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use flotilla_raft::{ShardNode, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clusters::ClusterRegistry;
use crate::config::NodeConfig;
use crate::controller::{Controller, ControllerDeps, ControllerSettings};
use crate::ingest::{AppsRepo, Ingest, IngestSettings};
use crate::metrics::Collector;
use crate::render::{RenderSettings, Renderer};
use crate::repos::RepoPoller;
use crate::source::{SourceCache, SourceConfig};

/// How often the metrics collector samples the store, the shards and the clusters.
const COLLECT_EVERY: Duration = Duration::from_secs(5);
/// Throttle of status writes back onto Application resources, per app.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Status writes to the management cluster in flight at once.
const STATUS_CONCURRENCY: usize = 32;
/// The shortest period at which every Application's status is read again.
const STATUS_RESYNC_MIN: Duration = Duration::from_secs(300);

/// The running components.
pub(super) struct Parts {
    controller: Controller,
    ingest: Ingest,
    poller: RepoPoller,
    collector: Collector,
    servers: Vec<JoinHandle<()>>,
}

impl Parts {
    /// Wait until every component stopped (after the cancellation token fired).
    pub(super) async fn stopped(self) {
        self.controller.stopped().await;
        self.ingest.stopped().await;
        self.poller.stopped().await;
        self.collector.stopped().await;
        for s in self.servers {
            let _ = s.await;
        }
    }
}

/// The management cluster's client: from `--kubeconfig`, else in-cluster when running in a
/// pod, else none. It has the connection pool of the destination clusters' clients
/// ([`crate::clusters::http`]): the leader's status writes and events open many connections
/// to it in a burst, and its watches of `Application`s read large lists.
async fn management(cfg: &NodeConfig) -> anyhow::Result<Option<kube::Client>> {
    let config = if let Some(path) = &cfg.controller.kubeconfig {
        flotilla_loadtest::cluster::kube_config(path).await?
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        kube::Config::incluster().context("in-cluster Kubernetes configuration")?
    } else {
        tracing::warn!("no management cluster (--kubeconfig, or in-cluster): Applications come only from --apps-dir and the API");
        return Ok(None);
    };
    let server = config.cluster_url.to_string();
    let client = crate::clusters::http::client(config, &server)
        .with_context(|| format!("the management cluster's client ({server})"))?;
    Ok(Some(client))
}

pub(super) async fn start(
    cfg: &NodeConfig,
    store: &Store,
    shards: &Arc<ShardNode>,
    api_listener: tokio::net::TcpListener,
    http_listener: tokio::net::TcpListener,
    cancel: &CancellationToken,
) -> anyhow::Result<Parts> {
    let metrics = crate::metrics::install()?;
    let clusters = Arc::new(ClusterRegistry::new());
    let mut source_cfg = SourceConfig::new(cfg.data_dir.join("repos"));
    source_cfg.allow_local = cfg.controller.allow_local_repos;
    let sources = Arc::new(SourceCache::new(source_cfg)?);
    let mut render = RenderSettings::discover();
    let work = cfg.data_dir.join("render");
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    render.work_dir = Some(work);
    let renderer = Arc::new(Renderer::new(sources.clone(), render)?);
    let management = management(cfg).await?;
    if cfg.controller.kubeconfig.is_none() && management.is_some() {
        // Like Argo CD, the cluster flotilla runs in is a destination without a Secret:
        // `https://kubernetes.default.svc`, named `in-cluster`.
        match clusters.add_in_cluster(crate::clusters::limit::Limits::default()) {
            Ok(c) => tracing::info!(server = %c.server(), "in-cluster destination registered"),
            Err(e) => tracing::warn!(error = %e, "registering the in-cluster destination"),
        }
    }

    let ingest = Ingest::start(
        store.clone(),
        management.clone(),
        clusters.clone(),
        sources.clone(),
        IngestSettings {
            namespaces: cfg.controller.namespaces.clone(),
            secrets_namespace: cfg.controller.secrets_namespace.clone(),
            status_interval: STATUS_INTERVAL,
            status_concurrency: STATUS_CONCURRENCY,
            status_resync: cfg.controller.resync.max(STATUS_RESYNC_MIN),
            apps_dir: cfg.controller.apps_dir.clone(),
            apps_repo: cfg
                .controller
                .apps_repo
                .clone()
                .map(|(url, revision, path)| AppsRepo {
                    url,
                    revision,
                    path,
                }),
            poll: cfg.controller.repo_poll,
        },
        cancel.clone(),
    );
    let controller = Controller::start(
        ControllerDeps {
            store: store.clone(),
            shards: shards.clone(),
            clusters: clusters.clone(),
            renderer: renderer.clone(),
        },
        ControllerSettings {
            resync: cfg.controller.resync,
            resync_jitter: cfg.controller.resync / 10,
            workers: cfg.controller.workers,
            watch_all_kinds: cfg.controller.watch_all_kinds,
            control_namespace: Some(cfg.controller.secrets_namespace.clone()),
            ..ControllerSettings::default()
        },
        cancel.clone(),
    );
    let poller = RepoPoller::start(
        store.clone(),
        shards.clone(),
        sources.clone(),
        cfg.controller.repo_poll,
        cancel.clone(),
    );
    let collector = Collector::start(
        store.clone(),
        shards.clone(),
        clusters.clone(),
        COLLECT_EVERY,
        cancel.clone(),
    );

    let token = match &cfg.api_token {
        Some(s) => Some(s.read()?.expose().to_owned()),
        None => {
            tracing::warn!("no API token configured (--api-token-file or FLOTILLA_API_TOKEN): the flotilla.v1 API accepts every caller");
            None
        }
    };
    let webhook_secret = match &cfg.webhook_secret {
        Some(s) => Some(s.read()?.expose().to_owned()),
        None => None,
    };
    let tls = match &cfg.api_tls {
        Some(files) => Some(api_tls(files)?),
        None => None,
    };
    let api = tokio::spawn({
        let deps = crate::api::server::ApiDeps {
            store: store.clone(),
            renderer,
            clusters,
            management,
            token,
            tls,
        };
        let cancel = cancel.clone();
        async move {
            if let Err(e) = crate::api::server::serve(api_listener, deps, cancel.clone()).await {
                tracing::error!(error = %e, "the API server stopped");
                cancel.cancel();
            }
        }
    });
    let http = tokio::spawn({
        let deps = crate::http::HttpDeps {
            store: store.clone(),
            shards: shards.clone(),
            metrics,
            webhook_secret,
            sources,
        };
        let cancel = cancel.clone();
        async move {
            if let Err(e) = crate::http::serve(http_listener, deps, cancel.clone()).await {
                tracing::error!(error = %e, "the HTTP server stopped");
                cancel.cancel();
            }
        }
    });
    Ok(Parts {
        controller,
        ingest,
        poller,
        collector,
        servers: vec![api, http],
    })
}

/// Read the API's certificate, key and CA; a missing or unreadable file names itself.
fn api_tls(files: &crate::config::ApiTlsFiles) -> anyhow::Result<crate::api::server::ApiTls> {
    let read = |what: &str, p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("reading the API TLS {what} {}", p.display()))
    };
    let forward = match &files.ca {
        Some(ca) => crate::api::client::ClientTls::from_ca_file(ca)?,
        None => crate::api::client::ClientTls::default(),
    };
    Ok(crate::api::server::ApiTls {
        cert_pem: read("certificate", &files.cert)?,
        key_pem: read("key", &files.key)?,
        forward,
    })
}
