//! `flotilla node`: one controller node. Start with [`run`].
//!
//! A node is a member of the replicated store ([`flotilla_raft::Store`]) and a shard follower
//! ([`flotilla_raft::ShardNode`]); on top of them it runs the components of the controller:
//! ingestion from the management cluster, the reconciliation of the apps of the shards it
//! owns, repository polling, the `flotilla.v1` API and the HTTP endpoints (metrics, probes,
//! webhooks). [`membership`] brings the node into the group and keeps the voters.
//!
//! Signals: SIGTERM leaves the group gracefully (shards handed away, leadership
//! transferred, the node removed from the membership, bounded by the grace period) and
//! exits; it rejoins when started again. SIGINT stops at once without leaving: the node keeps
//! its membership, as after a crash, and resumes from its data directory.

mod components;
pub mod membership;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use flotilla_raft::{ShardConfig, ShardNode, Store, StoreConfig};
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;

/// The name every member's peer certificate must carry as a subject alternative name.
pub const PEER_TLS_NAME: &str = "flotilla-peer";

/// Milliseconds since the Unix epoch, for commands that carry a time.
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How the node was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// Leave the group, then exit (SIGTERM).
    Leave,
    /// Exit at once, keeping the membership (SIGINT).
    Stop,
}

/// Environment variable that makes a node stop (as on SIGINT) when its parent process
/// exits: set by `flotilla dev` and the test launcher, so no node outlives them.
pub use flotilla_loadtest::cluster::launcher::EXIT_WITH_PARENT_ENV;

/// Wait for SIGTERM or SIGINT (or, with [`EXIT_WITH_PARENT_ENV`] set, the parent's exit).
pub async fn stop_signal() -> std::io::Result<StopKind> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let watch_parent = std::env::var_os(EXIT_WITH_PARENT_ENV).is_some();
    let parent = rustix::process::getppid();
    let orphaned = async move {
        if !watch_parent {
            return std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if rustix::process::getppid() != parent {
                tracing::warn!("parent process exited; stopping");
                return;
            }
        }
    };
    Ok(tokio::select! {
        _ = term.recv() => StopKind::Leave,
        _ = int.recv() => StopKind::Stop,
        _ = orphaned => StopKind::Stop,
    })
}

/// Raise the open-file limit to the hard limit: a node holds connections to every peer, every
/// destination cluster and every client.
pub fn raise_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!(error = %e, "raising the open-file limit");
        }
    }
}

/// Threads of the runtime that runs Raft, the peer server and the shard follower.
const REPLICATION_THREADS: usize = 2;

/// The replication runtime; dropping it (also on an early error return, inside the main
/// runtime) stops its threads without blocking.
struct Replication(Option<tokio::runtime::Runtime>);

impl Replication {
    fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(rt) => rt.spawn(f),
            None => tokio::spawn(f),
        }
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Run a node until `stop` resolves; returns once everything stopped.
pub async fn run(
    cfg: NodeConfig,
    stop: impl std::future::Future<Output = StopKind>,
) -> anyhow::Result<()> {
    raise_open_files();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("create data directory {}", cfg.data_dir.display()))?;
    let mut store_cfg = StoreConfig::new(cfg.node_id, cfg.data_dir.join("raft"), cfg.peer_listen);
    store_cfg.advertise = Some(cfg.advertise.clone());
    store_cfg.cache_bytes = cfg.store_cache_bytes;
    store_cfg.tls = cfg.tls.as_ref().map(|t| flotilla_raft::TlsPaths {
        ca: t.ca.clone(),
        cert: t.cert.clone(),
        key: t.key.clone(),
        domain: PEER_TLS_NAME.to_string(),
    });
    flotilla_raft::shards::tune_store(&mut store_cfg);
    // Raft, the peer server and shard leases run on their own threads, so that heavy work of
    // the controller, ingestion or the API (listing or parsing thousands of apps) cannot hold
    // up heartbeats and lease renewals and cause needless elections or lease losses.
    let replication = Replication(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(REPLICATION_THREADS)
            .thread_name("flotilla-raft")
            .enable_all()
            .build()
            .context("start the replication runtime")?,
    ));
    let store = replication
        .spawn(Store::start(store_cfg))
        .await
        .context("start the replicated store")?
        .context("start the replicated store")?;
    tracing::info!(node = cfg.node_id, peer = %cfg.advertise, "store member started");

    let cancel = CancellationToken::new();
    let mut stop = std::pin::pin!(stop);
    tokio::select! {
        r = membership::enter(&store, &cfg, &cancel) => r.context("enter the group")?,
        kind = &mut stop => {
            tracing::info!(?kind, "stopped before joining the group");
            store.shutdown().await;
            return Ok(());
        }
    }
    let shard_cfg = ShardConfig {
        shard_count: cfg.shard_count,
        ..ShardConfig::default()
    };
    let shards = Arc::new(
        replication
            .spawn(ShardNode::start(store.clone(), shard_cfg))
            .await
            .context("start shard ownership")?
            .context("start shard ownership")?,
    );
    let voters = tokio::spawn(membership::keep_voters(
        store.clone(),
        usize::from(cfg.voters),
        cancel.clone(),
    ));
    let api_listener = tokio::net::TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("listen for the API on {}", cfg.api_listen))?;
    let http_listener = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("listen for HTTP on {}", cfg.http_listen))?;
    let api_addr = advertised(&cfg, api_listener.local_addr()?);
    let http_addr = advertised(&cfg, http_listener.local_addr()?);
    publish_info_retrying(&store, &cfg, &api_addr, &http_addr, &cancel).await;
    let parts = components::start(&cfg, &store, &shards, api_listener, http_listener, &cancel)
        .await
        .context("start the controller")?;
    tracing::info!(api = %api_addr, http = %http_addr, "node serving");

    let kind = stop.await;
    tracing::info!(?kind, "stopping");
    let deadline = tokio::time::Instant::now() + cfg.grace_period;
    if kind == StopKind::Leave {
        let alone = store.metrics().addresses.len() <= 1;
        if alone {
            tracing::info!("only member of the group: nothing to hand over");
        } else {
            let budget = cfg.grace_period.saturating_sub(Duration::from_secs(2));
            match shards.leave(budget).await {
                Ok(()) => tracing::info!("left the group"),
                Err(e) => tracing::warn!(error = %e, "leaving the group did not finish"),
            }
        }
    }
    cancel.cancel();
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if tokio::time::timeout(left.max(Duration::from_secs(2)), parts.stopped())
        .await
        .is_err()
    {
        tracing::warn!("components did not stop within the grace period");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), voters).await;
    shards.shutdown().await;
    store.shutdown().await;
    drop(replication);
    tracing::info!("stopped");
    Ok(())
}

/// The address others reach a listener at: the advertised host with the bound port.
fn advertised(cfg: &NodeConfig, bound: std::net::SocketAddr) -> String {
    let host = cfg
        .advertise
        .rsplit_once(':')
        .map_or(cfg.advertise.as_str(), |(h, _)| h);
    format!("{host}:{}", bound.port())
}

async fn publish_info_retrying(
    store: &Store,
    cfg: &NodeConfig,
    api: &str,
    http: &str,
    cancel: &CancellationToken,
) {
    loop {
        match membership::publish_info(store, cfg, api, http).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "publishing node information; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
