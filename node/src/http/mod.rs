//! The node's plain HTTP server: `/metrics`, `/healthz`, `/readyz` and `POST /api/webhook`.
//!
//! - `/metrics`: Prometheus text ([`crate::metrics::render`]).
//! - `/healthz`: 200 `ok` while the process serves.
//! - `/readyz`: 200 when this node is a member of the Raft group, follows an applied shard
//!   map and holds a valid shard lease; 503 with a one-line reason otherwise.
//! - `/api/webhook` (Argo CD's path): push webhooks from GitHub, GitLab, Bitbucket Cloud and
//!   Server, and Gogs/Gitea ([`crate::repos::webhook`]). Any node accepts them. The refs of
//!   the stored applications that follow the pushed branch are recorded at once (200) with
//!   the payload's commit when the request was authenticated by the configured secret and
//!   the push continues the recorded commit (none yet, or the push's `before`). Otherwise
//!   the payload's commit id is not trusted — without a secret anyone could point apps at
//!   any commit, and a redelivered old push would move a ref back — and the node fetches
//!   the repository and records what the ref resolves to, in the background (202).
//!   Bad signatures get 401, malformed payloads 400, bodies over [`MAX_WEBHOOK_BODY`] 413.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use flotilla_raft::{ShardNode, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics::names;
use crate::repos::{self, TrackedRef, WebhookError};
use crate::source::{normalize_url, redact_url, SourceCache};

/// Largest webhook body accepted (GitHub caps payloads at 25 MB, but push payloads with the
/// commit lists flotilla needs stay far below this).
pub const MAX_WEBHOOK_BODY: usize = 1 << 20;
/// Repositories waiting to be resolved for unauthenticated or commit-less webhooks.
const RESOLVE_QUEUE: usize = 64;
/// Webhook-triggered resolutions running at once.
const PARALLEL_RESOLVES: usize = 4;

/// What the HTTP server needs.
pub struct HttpDeps {
    /// This node's store member.
    pub store: Store,
    /// This node's shard follower.
    pub shards: Arc<ShardNode>,
    /// The process's Prometheus handle ([`crate::metrics::install`]).
    pub metrics: PrometheusHandle,
    /// The shared webhook secret; `None` accepts unsigned webhooks.
    pub webhook_secret: Option<String>,
    /// The node's Git mirrors, for resolving refs a webhook names without a trusted commit.
    pub sources: Arc<SourceCache>,
}

/// Errors of the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Serving failed.
    #[error("HTTP server on {addr}: {source}")]
    Serve {
        /// The listening address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

struct Shared {
    deps: HttpDeps,
    resolve: mpsc::Sender<Vec<TrackedRef>>,
    tracked: Arc<repos::TrackedCache>,
}

/// Serve on `listener` until `cancel` fires, then finish open requests and return.
pub async fn serve(
    listener: tokio::net::TcpListener,
    deps: HttpDeps,
    cancel: CancellationToken,
) -> Result<(), HttpError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (tx, rx) = mpsc::channel(RESOLVE_QUEUE);
    // Stops with the node, or when this server stops for any other reason.
    let worker_cancel = cancel.child_token();
    let worker = tokio::spawn(resolver(
        deps.store.clone(),
        deps.sources.clone(),
        rx,
        worker_cancel.clone(),
    ));
    let tracked = repos::TrackedCache::start(&deps.store, worker_cancel.clone());
    let shared = Arc::new(Shared {
        deps,
        resolve: tx,
        tracked,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/webhook", post(webhook))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
        .with_state(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .await
        .map_err(|source| HttpError::Serve { addr, source });
    worker_cancel.cancel();
    if let Err(e) = worker.await {
        tracing::warn!("webhook resolver ended abnormally: {e}");
    }
    result
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&s.deps.metrics),
    )
        .into_response()
}

/// Why this node is not ready, if it is not.
pub fn not_ready_reason(store: &Store, shards: &ShardNode) -> Option<String> {
    let m = store.metrics();
    let id = store.id();
    if !m.voters.contains(&id) && !m.learners.contains(&id) {
        return Some(format!("node {id} is not a member of the Raft group"));
    }
    let own = shards.ownership().borrow().clone();
    if own.epoch == 0 {
        return Some("no shard map applied yet".into());
    }
    if !own.lease_valid {
        return Some(format!(
            "no valid shard lease (following shard map epoch {})",
            own.epoch
        ));
    }
    None
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match not_ready_reason(&s.deps.store, &s.deps.shards) {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn webhook(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let provider = repos::webhook::detect(&headers)
        .map(|(p, _)| p.as_str())
        .unwrap_or("unknown");
    let response = handle_webhook(&s, &headers, &body).await;
    metrics::counter!(
        names::WEBHOOK_REQUESTS_TOTAL,
        "provider" => provider,
        "result" => response.status().as_str().to_string()
    )
    .increment(1);
    response
}

async fn handle_webhook(s: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let secret = s.deps.webhook_secret.as_deref();
    let ev = match repos::parse_push(headers, body, secret) {
        Ok(ev) => ev,
        Err(e @ WebhookError::Ignored { .. }) => {
            return answer(
                StatusCode::OK,
                serde_json::json!({"ignored": e.to_string()}),
            )
        }
        Err(e @ WebhookError::Unauthorized { .. }) => {
            tracing::warn!(error = %e, "webhook refused");
            return answer(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": e.to_string()}),
            );
        }
        Err(e) => {
            tracing::info!(error = %e, "bad webhook");
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": e.to_string()}),
            );
        }
    };
    let tracked = s.tracked.get().await;
    let refs = repos::refs_for_push(&tracked, &ev);
    let repo = ev
        .repo_urls
        .first()
        .map(|u| redact_url(u))
        .unwrap_or_default();
    tracing::info!(provider = %ev.provider, %repo, git_ref = %ev.git_ref, matched = refs.len(), "push webhook");
    if refs.is_empty() {
        return answer(
            StatusCode::OK,
            serde_json::json!({"provider": ev.provider.as_str(), "matched": 0}),
        );
    }
    // The payload's commit is taken as is only from an authenticated sender, and only when
    // it continues what the store has (no recorded commit yet, or the push's `before`), so
    // a redelivered old push or a missed one cannot move a ref backwards; everything else
    // is resolved by fetching.
    let mut direct = Vec::new();
    let mut fetch = Vec::new();
    for r in refs {
        let continues = match (&ev.sha, secret) {
            (Some(sha), Some(_)) => match s.deps.store.local().revision(&r.url, &r.git_ref) {
                Ok(None) => true,
                Ok(Some(cur)) => cur.sha == *sha || ev.before.as_deref() == Some(cur.sha.as_str()),
                Err(_) => false,
            },
            _ => false,
        };
        if continues {
            direct.push(r);
        } else {
            fetch.push(r);
        }
    }
    let matched = direct.len() + fetch.len();
    let mut recorded = 0;
    if let (Some(sha), false) = (&ev.sha, direct.is_empty()) {
        match repos::record(&s.deps.store, &direct, sha).await {
            Ok(n) => {
                recorded = n;
                metrics::counter!(names::REVISIONS_RECORDED_TOTAL, "via" => "webhook")
                    .increment(n as u64);
            }
            Err(e) => {
                return answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"error": e.to_string()}),
                )
            }
        }
    }
    let mut by_repo: BTreeMap<String, Vec<TrackedRef>> = BTreeMap::new();
    for r in fetch {
        by_repo.entry(normalize_url(&r.url)).or_default().push(r);
    }
    let mut queued = 0;
    for (_, refs) in by_repo {
        if s.resolve.try_send(refs).is_ok() {
            queued += 1;
        } else {
            tracing::warn!(%repo, "webhook resolution queue full; the next poll catches up");
        }
    }
    let status = if queued > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    answer(
        status,
        serde_json::json!({
            "provider": ev.provider.as_str(),
            "matched": matched,
            "recorded": recorded,
            "resolving": queued,
        }),
    )
}

/// Resolves the repositories webhooks asked for, a few at a time.
async fn resolver(
    store: Store,
    sources: Arc<SourceCache>,
    mut rx: mpsc::Receiver<Vec<TrackedRef>>,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(PARALLEL_RESOLVES));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let refs = tokio::select! {
            _ = cancel.cancelled() => break,
            r = rx.recv() => match r { Some(r) => r, None => break },
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (store, sources) = (store.clone(), sources.clone());
        tasks.spawn(async move {
            let _permit = permit;
            match repos::refresh(&store, &sources, &refs).await {
                Ok(n) => metrics::counter!(names::REVISIONS_RECORDED_TOTAL, "via" => "webhook")
                    .increment(n as u64),
                Err(e) => tracing::warn!(error = %e, "resolving a pushed repository"),
            }
        });
    }
    tasks.shutdown().await;
}
