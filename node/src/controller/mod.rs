//! The controller: reconciles, on each node, the applications of the shards the node owns.
//!
//! Start with [`Controller::start`]. It runs one event loop and [`ControllerSettings::workers`]
//! workers over a [`queue::WorkQueue`] keyed by application. The event loop turns triggers
//! into queue entries: application and project changes, recorded revisions, requested
//! refreshes and operations (all from the store's change stream), drift of managed objects
//! (from a [`LiveCache`] with one watch per destination cluster and kind), ownership changes
//! (from the [`ShardNode`]), and a periodic resync with jitter. A worker reconciles one app
//! ([`reconcile`]): project checks ([`project`]), render, compare with live state, health,
//! status (written only when it changed), and sync operations (requested, automated, or
//! self-heal), every write fenced by [`ShardNode::may_act`].

mod document;
pub mod paths;
pub mod project;
pub mod queue;
mod reconcile;

use crate::clusters::{Cluster, ClusterRegistry};
use crate::diff::IgnoreRule;
use crate::health::lua::Customizations;
use crate::intern::intern;
use crate::live::cache::{ChangeReceiver, LiveCache};
use crate::live::{GroupKinds, Tracking};
use crate::render::Renderer;
use flotilla_raft::{ChangeEvent, Command, ShardEvent, ShardNode, Store};
use flotilla_shard::{shard_of, ShardId};
use queue::{Added, WorkQueue};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the controller needs from the node.
#[derive(Clone)]
pub struct ControllerDeps {
    /// The replicated store.
    pub store: Store,
    /// Shard ownership of this node.
    pub shards: Arc<ShardNode>,
    /// Destination clusters.
    pub clusters: Arc<ClusterRegistry>,
    /// The renderer (with its Git source cache).
    pub renderer: Arc<Renderer>,
}

/// How the controller works.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// How often every app is reconciled without a trigger (Argo CD's
    /// `timeout.reconciliation`, 180 s).
    pub resync: Duration,
    /// Up to this much is added at random to each app's resync, to spread the load.
    pub resync_jitter: Duration,
    /// Apps reconciled at once on this node.
    pub workers: usize,
    /// Apps reconciled at once per destination cluster.
    pub per_cluster: usize,
    /// Triggers within this window are coalesced into one reconcile.
    pub debounce: Duration,
    /// How managed objects are marked.
    pub tracking: Tracking,
    /// Watch every kind each cluster serves; otherwise only the kinds this node's apps
    /// deploy there or list in their status (what they deploy now and what they deployed).
    pub watch_all_kinds: bool,
    /// The first wait before an automated sync is tried again after a failure.
    pub self_heal_backoff: Duration,
    /// The longest such wait.
    pub self_heal_backoff_max: Duration,
    /// How long one sync step may take to become healthy.
    pub sync_step_timeout: Duration,
    /// How often health is polled while a sync waits.
    pub sync_poll_interval: Duration,
    /// How soon an app whose reconcile failed for a transient reason is tried again.
    pub error_retry: Duration,
    /// Most apps queued at once.
    pub queue_capacity: usize,
    /// Deployed revisions kept in the status when the app does not say.
    pub history_limit: usize,
    /// Custom health checks.
    pub customizations: Arc<Customizations>,
    /// System-level `ignoreDifferences` rules, applied with each app's own.
    pub ignore: Vec<IgnoreRule>,
    /// The control-plane namespace: when set, apps in other namespaces must be allowed by
    /// their project's `sourceNamespaces` (Argo CD's apps in any namespace). `None` does not
    /// check.
    pub control_namespace: Option<String>,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(180),
            resync_jitter: Duration::from_secs(18),
            workers: 16,
            per_cluster: 8,
            debounce: Duration::from_millis(250),
            tracking: Tracking::Label,
            watch_all_kinds: false,
            self_heal_backoff: Duration::from_secs(2),
            self_heal_backoff_max: Duration::from_secs(180),
            sync_step_timeout: Duration::from_secs(300),
            sync_poll_interval: Duration::from_millis(500),
            error_retry: Duration::from_secs(10),
            queue_capacity: 100_000,
            history_limit: 10,
            customizations: Arc::new(Customizations::none()),
            ignore: Vec::new(),
            control_namespace: None,
        }
    }
}

/// Counters of a running controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControllerStats {
    /// Apps queued and ready now.
    pub queue_depth: usize,
    /// Apps queued in all (ready, debounced, or waiting for their resync).
    pub queued: usize,
    /// Apps being reconciled.
    pub running: usize,
    /// Reconciles done.
    pub reconciles_total: u64,
    /// Sync operations run.
    pub syncs_total: u64,
    /// Status writes proposed.
    pub status_writes_total: u64,
    /// Reconciles dropped because this node may not act on the app's shard.
    pub not_owned_total: u64,
}

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// This node may not act on the app (not its shard, no lease, or fenced by the store).
    #[error("application {0} is not ours to act on")]
    NotOurs(String),
    /// A store read failed.
    #[error(transparent)]
    Read(#[from] flotilla_raft::ReadError),
    /// A proposal failed.
    #[error(transparent)]
    Store(#[from] flotilla_raft::StoreError),
    /// A document could not be encoded or decoded.
    #[error("application {app}: {what}: {source}")]
    Json {
        /// The app.
        app: String,
        /// Which document.
        what: &'static str,
        /// Cause.
        source: serde_json::Error,
    },
}

/// Per-app state kept between reconciles.
#[derive(Default)]
struct AppState {
    /// A hard refresh was asked for.
    hard: bool,
    /// Cancels the running sync.
    cancel: Option<CancellationToken>,
    /// Automated syncs wait until then after a failure, and the current wait.
    backoff: Option<(tokio::time::Instant, Duration)>,
}

/// An app a new commit may concern, with the paths its manifests come from.
type Candidate = (String, Arc<Vec<paths::RefreshPath>>);

/// What the controller remembers about an app's spec, for routing triggers.
#[derive(Debug, Clone, Default)]
struct Indexed {
    /// The app's name, shared with the [`Index`]'s `by_name`.
    name: Arc<str>,
    /// Projects, URLs and refs are shared with every other app naming them ([`intern`]).
    project: Arc<str>,
    /// (normalized repository URL, ref) of each Git source.
    sources: Box<[(Arc<str>, Arc<str>)]>,
    /// (repository URL as written, ref) of each Git source: how revisions are recorded.
    written: Box<[(Arc<str>, Arc<str>)]>,
    /// The paths its manifests are generated from, when it says
    /// ([`paths::MANIFEST_GENERATE_PATHS`]): new commits that change none of them skip it.
    refresh: Option<Arc<Vec<paths::RefreshPath>>>,
}

/// The indexed apps, by key and by name (live objects carry the app's name only). Each key
/// and name is allocated once, whichever map holds it.
#[derive(Default)]
struct Index {
    apps: HashMap<Arc<str>, Indexed>,
    /// Keys by name, sorted (nearly always one: a `Vec` is far smaller than a `BTreeSet`).
    by_name: HashMap<Arc<str>, Vec<Arc<str>>>,
}

impl Index {
    fn insert(&mut self, key: &str, mut entry: Indexed) {
        let key: Arc<str> = match self.apps.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        if let Some((n, _)) = self.by_name.get_key_value(&*entry.name) {
            entry.name = n.clone();
        }
        let name = entry.name.clone();
        if let Some(old) = self.apps.insert(key.clone(), entry) {
            if old.name != name {
                self.forget_name(&old.name, &key);
            }
        }
        let keys = self.by_name.entry(name).or_default();
        if let Err(i) = keys.binary_search_by(|k| (**k).cmp(&*key)) {
            keys.insert(i, key);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.apps.remove(key) {
            self.forget_name(&old.name, key);
        }
    }

    fn forget_name(&mut self, name: &str, key: &str) {
        if let Some(keys) = self.by_name.get_mut(name) {
            if let Ok(i) = keys.binary_search_by(|k| (**k).cmp(key)) {
                keys.remove(i);
            }
            if keys.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    fn clear(&mut self) {
        self.apps.clear();
        self.by_name.clear();
    }
}

pub(crate) struct Inner {
    deps: ControllerDeps,
    settings: ControllerSettings,
    queue: WorkQueue,
    live: LiveCache,
    watched: Mutex<HashSet<String>>,
    permits: Mutex<HashMap<String, Arc<Semaphore>>>,
    apps: Mutex<HashMap<String, AppState>>,
    index: Mutex<Index>,
    last_fetch: Mutex<HashMap<String, tokio::time::Instant>>,
    /// The last commit seen recorded for each (repository URL as written, ref).
    revisions: Mutex<HashMap<(String, String), String>>,
    shard_count: AtomicU32,
    reconciles: AtomicU64,
    syncs: AtomicU64,
    status_writes: AtomicU64,
    not_owned: AtomicU64,
    seq: AtomicU64,
    cancel: CancellationToken,
}

/// A running controller.
pub struct Controller {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Start the event loop and the workers; they stop when `cancel` fires.
    pub fn start(
        deps: ControllerDeps,
        settings: ControllerSettings,
        cancel: CancellationToken,
    ) -> Controller {
        let (live, changes) = LiveCache::new(settings.tracking);
        // Subscribe before the first full read, so nothing applied in between is missed.
        let store_events = deps.store.subscribe();
        let shard_events = deps.shards.changes();
        let inner = Arc::new(Inner {
            queue: WorkQueue::new(settings.queue_capacity),
            live,
            watched: Mutex::default(),
            permits: Mutex::default(),
            apps: Mutex::default(),
            index: Mutex::default(),
            last_fetch: Mutex::default(),
            revisions: Mutex::default(),
            shard_count: AtomicU32::new(0),
            reconciles: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            status_writes: AtomicU64::new(0),
            not_owned: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            cancel: cancel.clone(),
            deps,
            settings,
        });
        inner.rebuild_index();
        inner.enqueue_owned(Duration::ZERO);
        let mut tasks = vec![tokio::spawn(event_loop(
            inner.clone(),
            store_events,
            shard_events,
            changes,
        ))];
        for _ in 0..inner.settings.workers.max(1) {
            tasks.push(tokio::spawn(worker(inner.clone())));
        }
        Controller { inner, tasks }
    }

    /// The controller's counters now.
    pub fn stats(&self) -> ControllerStats {
        let (queued, running) = self.inner.queue.len();
        ControllerStats {
            queue_depth: self.inner.queue.ready(),
            queued,
            running,
            reconciles_total: self.inner.reconciles.load(Ordering::Relaxed),
            syncs_total: self.inner.syncs.load(Ordering::Relaxed),
            status_writes_total: self.inner.status_writes.load(Ordering::Relaxed),
            not_owned_total: self.inner.not_owned.load(Ordering::Relaxed),
        }
    }

    /// Wait until every task has stopped (after the cancellation token fired), then stop the
    /// live-state watches.
    pub async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.inner.live.shutdown().await;
    }
}

/// A pseudo-random duration below `max`.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(max.as_nanos() as u64);
    let r = h.finish();
    Duration::from_nanos(r % (max.as_nanos().min(u64::MAX as u128) as u64).max(1))
}

impl Inner {
    fn shard_count(&self) -> u32 {
        let n = self.shard_count.load(Ordering::Relaxed);
        if n > 0 {
            return n;
        }
        let n = self
            .deps
            .store
            .local()
            .shard_map()
            .ok()
            .flatten()
            .map(|m| m.shard_count())
            .unwrap_or(0);
        self.shard_count.store(n, Ordering::Relaxed);
        n
    }

    fn shard(&self, key: &str) -> Option<ShardId> {
        let n = self.shard_count();
        (n > 0).then(|| shard_of(key, n))
    }

    fn owned(&self) -> Arc<BTreeSet<ShardId>> {
        self.deps.shards.ownership().borrow().owned.clone()
    }

    fn owns(&self, key: &str) -> bool {
        self.shard(key).is_some_and(|s| self.owned().contains(&s))
    }

    /// The epoch to write under, if this node may act on `key` now.
    fn may_act(&self, key: &str) -> Result<flotilla_shard::Epoch, ControllerError> {
        let not_ours = || ControllerError::NotOurs(key.to_string());
        let shard = self.shard(key).ok_or_else(not_ours)?;
        self.deps.shards.may_act(shard).map_err(|_| not_ours())
    }

    /// [`Inner::may_act`], waiting up to [`crate::sync::executor::GATE_WAIT`] while only the
    /// lease is missing (the map still gives this node the app's shard): a lease that
    /// lapsed under load is usually renewed within a second, and giving up would throw the
    /// reconcile's work away.
    async fn may_act_soon(&self, key: &str) -> Result<flotilla_shard::Epoch, ControllerError> {
        let deadline = tokio::time::Instant::now() + crate::sync::executor::GATE_WAIT;
        loop {
            match self.may_act(key) {
                Ok(epoch) => return Ok(epoch),
                Err(_)
                    if self.owns(key)
                        && tokio::time::Instant::now() < deadline
                        && !self.cancel.is_cancelled() =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn enqueue(&self, key: &str, delay: Duration) {
        self.added(key, self.queue.add_after(key, delay));
    }

    /// Queue ahead of background work: what a user or a new commit asked for.
    fn enqueue_urgent(&self, key: &str, delay: Duration) {
        self.added(key, self.queue.add_urgent_after(key, delay));
    }

    fn added(&self, key: &str, added: Added) {
        match added {
            Added::New => metrics::counter!("flotilla_workqueue_adds_total").increment(1),
            Added::Coalesced => {}
            Added::Full => {
                tracing::warn!(app = %key, capacity = self.settings.queue_capacity,
                    "work queue full; the app waits for the next sweep");
            }
        }
    }

    fn publish_depth(&self) {
        let (_, running) = self.queue.len();
        // Apps waiting for their periodic resync are not backlog: count the ready ones.
        metrics::gauge!("flotilla_workqueue_depth").set(self.queue.ready() as f64);
        metrics::gauge!("flotilla_workqueue_running").set(running as f64);
    }

    fn with_state<T>(&self, key: &str, f: impl FnOnce(&mut AppState) -> T) -> T {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        f(apps.entry(key.to_string()).or_default())
    }

    /// Stop acting on an app: cancel its sync, drop it from the queue, forget its state.
    fn drop_app(&self, key: &str) {
        self.queue.remove(key);
        let state = {
            let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
            apps.remove(key)
        };
        if let Some(c) = state.and_then(|s| s.cancel) {
            c.cancel();
        }
    }

    fn index_app(&self, key: &str, spec: &flotilla_raft::Json) {
        let entry = spec
            .to_value()
            .ok()
            .and_then(|v| crate::status::parse_stored_app(key, &v).ok())
            .map(|app| {
                let all = app.sources();
                let git = || all.iter().filter(|s| s.chart.is_none());
                // Boxed slices: exact sizes, one entry per app of ten thousand, where a
                // collected `Vec` would keep room for four.
                let sources = git()
                    .map(|s| {
                        (
                            intern(&crate::source::normalize_url(&s.repo_url)),
                            intern(s.revision()),
                        )
                    })
                    .collect();
                let written = git()
                    .map(|s| (intern(&s.repo_url), intern(s.revision())))
                    .collect();
                Indexed {
                    name: Arc::from(app.metadata.name.as_str()),
                    project: intern(&app.spec.project),
                    sources,
                    written,
                    refresh: paths::refresh_paths(&app).map(Arc::new),
                }
            })
            .unwrap_or_else(|| Indexed {
                name: Arc::from(key.rsplit('/').next().unwrap_or(key)),
                ..Default::default()
            });
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.insert(key, entry);
    }

    fn rebuild_index(&self) {
        let apps = match self.deps.store.local().apps() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reading applications for the controller index");
                return;
            }
        };
        self.index.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for rec in apps {
            self.index_app(&rec.app, &rec.spec);
        }
        match self.deps.store.local().revisions() {
            Ok(revs) => {
                let mut known = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
                known.clear();
                known.extend(revs.into_iter().map(|r| ((r.repo, r.git_ref), r.sha)));
            }
            Err(e) => tracing::warn!(error = %e, "reading recorded revisions for the controller"),
        }
    }

    fn keys_where(&self, f: impl Fn(&str, &Indexed) -> bool) -> Vec<String> {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index
            .apps
            .iter()
            .filter(|(k, i)| f(k, i))
            .map(|(k, _)| k.to_string())
            .collect()
    }

    /// Queue every app of the owned shards.
    fn enqueue_owned(&self, delay: Duration) {
        let owned = self.owned();
        for key in self.keys_where(|_, _| true) {
            if self.shard(&key).is_some_and(|s| owned.contains(&s)) {
                self.enqueue(&key, delay);
            }
        }
    }

    /// Queue every owned app that is neither queued nor running; returns how many there were.
    fn requeue_missing(&self) -> usize {
        let owned = self.owned();
        let mut missing = 0;
        for key in self.keys_where(|_, _| true) {
            if self.shard(&key).is_some_and(|s| owned.contains(&s)) && !self.queue.contains(&key) {
                missing += 1;
                self.enqueue(&key, Duration::ZERO);
            }
        }
        if missing > 0 {
            metrics::counter!("flotilla_workqueue_requeued_missing_total")
                .increment(missing as u64);
            tracing::warn!(
                apps = missing,
                "owned apps found outside the work queue; queued again"
            );
        }
        missing
    }

    /// Stop acting on every app whose shard is in `lost`.
    fn drop_shards(&self, lost: &BTreeSet<ShardId>) {
        let keys: Vec<String> = {
            let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
            apps.keys().cloned().collect()
        };
        let mut all: BTreeSet<String> = keys.into_iter().collect();
        all.extend(self.keys_where(|_, _| true));
        for key in all {
            if self.shard(&key).is_some_and(|s| lost.contains(&s)) {
                self.drop_app(&key);
            }
        }
    }

    fn cluster_permit(&self, cluster: &str) -> Arc<Semaphore> {
        let mut p = self.permits.lock().unwrap_or_else(|p| p.into_inner());
        p.entry(cluster.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_cluster.max(1))))
            .clone()
    }

    /// Start the live-state watches an app needs on its cluster: every kind the cluster
    /// serves (once per cluster) with `watch_all_kinds`, else the kinds in `kinds` that
    /// the cluster serves and that are not watched yet.
    async fn ensure_watch(&self, cluster: &Arc<Cluster>, kinds: &GroupKinds) {
        if !self.settings.watch_all_kinds {
            let Ok(index) = cluster.kinds().await else {
                return;
            };
            for (group, kind) in kinds {
                if let Some(k) = index.by_group_kind(group, kind).filter(|k| k.watchable) {
                    self.live.watch_kind(cluster, k);
                }
            }
            return;
        }
        let first = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cluster.name().to_string());
        if first {
            if let Err(e) = self.live.watch_cluster(cluster).await {
                tracing::debug!(cluster = cluster.name(), error = %e, "cannot watch yet");
                self.watched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(cluster.name());
            }
        }
    }

    /// The kinds to list an app's live objects over while the cache is not ready: those
    /// it needs, or every kind with `watch_all_kinds` (`None`).
    fn listed_kinds<'a>(&self, kinds: &'a GroupKinds) -> Option<&'a GroupKinds> {
        (!self.settings.watch_all_kinds).then_some(kinds)
    }

    /// Whether the cache has completed the initial list of every kind an app needs on its
    /// cluster (of every kind the cluster serves, with `watch_all_kinds`).
    async fn cache_ready(&self, cluster: &Cluster, kinds: &GroupKinds) -> bool {
        let Ok(index) = cluster.kinds().await else {
            return false;
        };
        let ready = |group: &str, kind: &str| self.live.is_ready(cluster.name(), group, kind);
        if self.settings.watch_all_kinds {
            return index
                .watchable()
                .all(|k| ready(&k.resource.group, &k.resource.kind));
        }
        kinds.iter().all(|(group, kind)| {
            index
                .by_group_kind(group, kind)
                .is_none_or(|k| !k.watchable || ready(group, kind))
        })
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn on_command(self: &Arc<Self>, command: &Command) {
        let d = self.settings.debounce;
        match command {
            Command::PutApp { app, spec, .. } => {
                self.index_app(app, spec);
                if self.owns(app) {
                    self.enqueue_urgent(app, d);
                }
            }
            Command::DeleteApp { app } => {
                self.index
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(app);
                self.drop_app(app);
            }
            Command::PutProject { name, .. } | Command::DeleteProject { name } => {
                for key in self.keys_where(|_, i| *i.project == **name) {
                    if self.owns(&key) {
                        self.enqueue(&key, d);
                    }
                }
            }
            Command::RecordRevision {
                repo, git_ref, sha, ..
            } => {
                let norm = crate::source::normalize_url(repo);
                let previous = self
                    .revisions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((repo.clone(), git_ref.clone()), sha.clone());
                if previous.as_ref() == Some(sha) {
                    // Recorded again (two nodes saw the same push): nothing new to render.
                    return;
                }
                let following: Vec<(String, Option<Arc<Vec<paths::RefreshPath>>>)> = {
                    let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
                    index
                        .apps
                        .iter()
                        .filter(|(_, i)| {
                            i.sources
                                .iter()
                                .any(|(u, r)| **u == *norm && **r == **git_ref)
                        })
                        .map(|(k, i)| (k.to_string(), i.refresh.clone()))
                        .collect()
                };
                // No forced fetch: the reconcile compares the cached commit with the
                // recorded one and fetches only while they differ, so one push costs one
                // fetch per repository, not one per app.
                let mut by_paths = Vec::new();
                for (key, refresh) in following {
                    if !self.owns(&key) {
                        continue;
                    }
                    match refresh {
                        Some(p) => by_paths.push((key, p)),
                        None => self.enqueue_urgent(&key, Duration::ZERO),
                    }
                }
                if !by_paths.is_empty() {
                    let inner = self.clone();
                    let (url, new) = (repo.clone(), sha.clone());
                    tokio::spawn(async move {
                        inner
                            .refresh_changed(&url, previous, &new, by_paths, true)
                            .await;
                    });
                }
            }
            Command::RequestRefresh { app, hard, .. } if self.owns(app) => {
                if *hard {
                    self.with_state(app, |s| s.hard = true);
                }
                self.enqueue_urgent(app, Duration::ZERO);
            }
            Command::RequestOperation { app, .. } if self.owns(app) => {
                self.enqueue_urgent(app, Duration::ZERO);
            }
            Command::SetShardMap(map) if map.shard_count() > 0 => {
                self.shard_count.store(map.shard_count(), Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Queue (as urgent) the apps of `candidates` that the files changed between the
    /// previous commit and `new` concern; all of them when the change cannot be read.
    /// `new_commit`: called for a newly recorded commit (the others count as skipped). Without a previous
    /// recorded commit (the first one recorded since this node started following the ref),
    /// each app is compared from the revision its status shows.
    async fn refresh_changed(
        &self,
        url: &str,
        previous: Option<String>,
        new: &str,
        candidates: Vec<Candidate>,
        new_commit: bool,
    ) {
        // A new commit is a single event, not a burst to coalesce: its apps go at once.
        let d = Duration::ZERO;
        let mut by_old: HashMap<String, Vec<Candidate>> = HashMap::new();
        for (key, refresh) in candidates {
            let old = match &previous {
                Some(p) => Some(p.clone()),
                None => self.shown_revision(&key),
            };
            match old {
                Some(old) if old == new => {}
                Some(old) => by_old.entry(old).or_default().push((key, refresh)),
                None => self.enqueue_urgent(&key, d),
            }
        }
        let sources = self.deps.renderer.sources();
        let mut skipped = 0u64;
        for (old, apps) in by_old {
            let changed = match sources
                .resolve(url, new, crate::source::Freshness::Cached)
                .await
            {
                Ok(_) => {
                    let (o, n) = (old.clone(), new.to_string());
                    sources
                        .with_repo(url, move |repo| {
                            paths::changed_files(repo, &o, &n).map_err(crate::source::git_err(
                                format!("compare commits {o} and {n}"),
                            ))
                        })
                        .await
                }
                Err(e) => Err(e),
            };
            match changed {
                Ok(files) => {
                    for (key, refresh) in apps {
                        if paths::concerns(&refresh, &files) {
                            self.enqueue_urgent(&key, d);
                        } else {
                            skipped += 1;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(repo = %crate::source::redact_url(url), error = %e,
                        "cannot tell which paths changed; refreshing the apps that list paths");
                    for (key, _) in apps {
                        self.enqueue_urgent(&key, d);
                    }
                }
            }
        }
        if new_commit {
            metrics::counter!("flotilla_refresh_skipped_total").increment(skipped);
        }
        tracing::debug!(repo = %crate::source::redact_url(url), skipped,
            "new commit: apps whose manifest paths did not change are not refreshed");
    }

    /// Queue the apps of gained shards. Those with work known to be waiting go first: an
    /// operation asked for or left running, no status yet, or a recorded commit their last
    /// owner did not apply (for apps listing manifest paths, one that changes them).
    fn enqueue_gained(self: &Arc<Self>, keys: Vec<String>) {
        let reader = self.deps.store.local();
        let mut by_commit: HashMap<(Arc<str>, String), Vec<Candidate>> = HashMap::new();
        for key in keys {
            self.enqueue(&key, Duration::ZERO);
            let waiting = reader.pending(&key).ok().flatten().is_some()
                || reader
                    .operation(&key)
                    .ok()
                    .flatten()
                    .is_some_and(|o| o.finished.is_none());
            let shown = self.shown_revision(&key);
            if waiting || (shown.is_none() && reader.status(&key).ok().flatten().is_none()) {
                self.enqueue_urgent(&key, Duration::ZERO);
                continue;
            }
            let Some(shown) = shown else { continue };
            let (written, refresh) = {
                let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
                match index.apps.get(key.as_str()) {
                    Some(i) => (i.written.clone(), i.refresh.clone()),
                    None => continue,
                }
            };
            for (url, git_ref) in written {
                let Some(rec) = reader.revision(&url, &git_ref).ok().flatten() else {
                    continue;
                };
                if rec.sha == shown {
                    continue;
                }
                match &refresh {
                    None => self.enqueue_urgent(&key, Duration::ZERO),
                    Some(p) => by_commit
                        .entry((url, rec.sha))
                        .or_default()
                        .push((key.clone(), p.clone())),
                }
            }
        }
        for ((url, sha), candidates) in by_commit {
            let inner = self.clone();
            tokio::spawn(async move {
                inner
                    .refresh_changed(&url, None, &sha, candidates, false)
                    .await;
            });
        }
    }

    /// The single revision an app's status shows, if it has one.
    fn shown_revision(&self, key: &str) -> Option<String> {
        let rec = self.deps.store.local().status(key).ok().flatten()?;
        let st: crate::status::AppStatus = serde_json::from_str(rec.status.as_str()).ok()?;
        let rev = st.sync.revision;
        (rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())).then_some(rev)
    }

    fn on_live_change(&self, app_name: &str) {
        let keys: Vec<Arc<str>> = {
            let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            index
                .by_name
                .get(app_name)
                .map(|k| k.to_vec())
                .unwrap_or_default()
        };
        for key in keys {
            if self.owns(&key) {
                self.enqueue(&key, self.settings.debounce);
            }
        }
    }

    fn on_shard_event(self: &Arc<Self>, event: ShardEvent) {
        match event {
            ShardEvent::Changed(change) => {
                self.shard_count.store(0, Ordering::Relaxed);
                let lost: BTreeSet<ShardId> = change.lost.iter().copied().collect();
                if !lost.is_empty() {
                    self.drop_shards(&lost);
                }
                let gained: BTreeSet<ShardId> = change.gained.iter().copied().collect();
                let keys: Vec<String> = self
                    .keys_where(|_, _| true)
                    .into_iter()
                    .filter(|k| self.shard(k).is_some_and(|s| gained.contains(&s)))
                    .collect();
                self.enqueue_gained(keys);
            }
            // A lapse keeps the queue: workers wait for the lease (see `wait_active`), syncs
            // hold their writes at the gate, and the store fences every status write. Shards
            // that move meanwhile arrive as `Changed` and are dropped then.
            ShardEvent::LeaseLost | ShardEvent::LeaseRegained => {}
        }
    }

    /// Whether this node may act on nothing now (its shard lease has lapsed).
    fn paused(&self) -> bool {
        !self.deps.shards.ownership().borrow().lease_valid
    }

    /// Cancel every running sync (their apps stay queued).
    fn cancel_syncs(&self) {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for c in apps.values().filter_map(|s| s.cancel.as_ref()) {
            c.cancel();
            n += 1;
        }
        if n > 0 {
            tracing::warn!(
                syncs = n,
                "the shard lease stays lapsed: running syncs cancelled"
            );
        }
    }

    /// Wait until the shard lease is valid; `false` once the controller stops.
    async fn wait_active(&self) -> bool {
        let mut rx = self.deps.shards.ownership();
        loop {
            if rx.borrow_and_update().lease_valid {
                return true;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                r = rx.changed() => if r.is_err() { return false },
            }
        }
    }

    /// Stop acting on every app of a shard this node does not own.
    fn drop_not_owned(&self) {
        let owned = self.owned();
        let not_owned: BTreeSet<ShardId> = (0..self.shard_count())
            .filter(|s| !owned.contains(s))
            .collect();
        self.drop_shards(&not_owned);
    }

    /// After missed store events: drop what is not owned, queue everything that is.
    fn resync_ownership(&self) {
        self.drop_not_owned();
        self.enqueue_owned(Duration::ZERO);
    }
}

/// The longest time between two checks that every owned app is queued.
const SWEEP_MAX: Duration = Duration::from_secs(30);

async fn event_loop(
    inner: Arc<Inner>,
    mut store_events: tokio::sync::broadcast::Receiver<Arc<ChangeEvent>>,
    mut shard_events: tokio::sync::broadcast::Receiver<ShardEvent>,
    mut changes: ChangeReceiver,
) {
    let mut live_open = true;
    // Every owned app is always queued (for its next resync at the latest) or running. A
    // sweep checks that invariant: an owned app that is neither (after a full queue, or a
    // trigger lost in a race) is queued at once and counted.
    let period = inner.settings.resync.min(SWEEP_MAX);
    let mut sweep = tokio::time::interval(period.max(Duration::from_millis(100)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweep.tick().await;
    // A lapse that outlasts the write gate's wait stops the running syncs.
    let mut lapse_deadline: Option<tokio::time::Instant> = None;
    loop {
        let lapse = async {
            match lapse_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = lapse => {
                lapse_deadline = None;
                if inner.paused() {
                    inner.cancel_syncs();
                }
            }
            _ = sweep.tick() => {
                if !inner.paused() {
                    inner.requeue_missing();
                }
                inner.publish_depth();
            }
            e = store_events.recv() => match e {
                Ok(ev) => match &*ev {
                    ChangeEvent::Applied { command, result, .. } => {
                        if result.is_ok() {
                            inner.on_command(command);
                        }
                    }
                    ChangeEvent::Reset { .. } => {
                        inner.rebuild_index();
                        inner.resync_ownership();
                    }
                },
                Err(RecvError::Lagged(missed)) => {
                    metrics::counter!("flotilla_controller_events_lagged_total").increment(1);
                    tracing::warn!(missed, "controller fell behind the store's changes; \
                        re-reading every app");
                    inner.rebuild_index();
                    inner.resync_ownership();
                }
                Err(RecvError::Closed) => return,
            },
            e = shard_events.recv() => match e {
                Ok(ev) => {
                    match ev {
                        ShardEvent::LeaseLost => {
                            lapse_deadline = Some(
                                tokio::time::Instant::now() + crate::sync::executor::GATE_WAIT,
                            );
                        }
                        ShardEvent::LeaseRegained => lapse_deadline = None,
                        ShardEvent::Changed(_) => {}
                    }
                    inner.on_shard_event(ev);
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "controller missed shard events; re-reading ownership");
                    inner.drop_not_owned();
                    inner.requeue_missing();
                }
                Err(RecvError::Closed) => return,
            },
            c = changes.recv(), if live_open => match c {
                Some(c) => inner.on_live_change(&c.app),
                None => live_open = false,
            },
        }
    }
}

async fn worker(inner: Arc<Inner>) {
    loop {
        // While the lease has lapsed nothing is taken: the queue waits as it is.
        if !inner.wait_active().await {
            return;
        }
        let Some(key) = inner.queue.next(&inner.cancel).await else {
            return;
        };
        inner.publish_depth();
        let started = std::time::Instant::now();
        let outcome = reconcile::reconcile(&inner, &key).await;
        inner.reconciles.fetch_add(1, Ordering::Relaxed);
        inner.queue.done(&key);
        match outcome {
            Ok(None) => {}
            Ok(Some(labels)) => {
                metrics::histogram!("argocd_app_reconcile",
                    "namespace" => labels.0, "dest_server" => labels.1)
                .record(started.elapsed().as_secs_f64());
                let s = &inner.settings;
                inner.enqueue(&key, s.resync + jitter(s.resync_jitter));
            }
            Err(ControllerError::NotOurs(_)) => {
                inner.not_owned.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(app = %key, "not acting: not ours");
                if !inner.owns(&key) {
                    inner.drop_app(&key);
                } else {
                    // Owned in the map, but the lease stayed away: try again, spread out so
                    // that the apps cut short together do not all come back at once.
                    let retry = inner.settings.error_retry;
                    inner.enqueue(&key, retry + jitter(retry / 2));
                }
            }
            Err(e) => {
                tracing::warn!(app = %key, error = %e, "reconcile failed");
                let retry = inner.settings.error_retry;
                inner.enqueue(&key, retry + jitter(retry / 2));
            }
        }
        inner.publish_depth();
    }
}
