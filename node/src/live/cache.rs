//! The live-state cache: one watch per (cluster, kind), shared by every app on that cluster,
//! feeding an in-memory index of the managed objects only (those carrying the tracking label,
//! or for annotation tracking a valid tracking id), by app.
//!
//! Each watch is kube-runtime's `watcher`, which lists, then watches from the list's
//! resourceVersion, and lists again when the server says the version is too old (410); a
//! relist replaces the kind's objects wholesale, so deletions missed while disconnected
//! disappear. Watch errors set the cluster's [`ConnectionStatus`]. Changes are announced on
//! a bounded channel (for self-heal triggers); when it is full, announcements are dropped,
//! since the cache itself stays correct and consumers resync periodically.

use super::{Tracking, INSTANCE_LABEL};
use crate::clusters::{discovery::Kind, Cluster, ClusterError, ConnectionStatus};
use crate::diff::ResourceKey;
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A change of a managed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The cluster's name.
    pub cluster: String,
    /// The app that manages the object.
    pub app: String,
    /// The object.
    pub key: ResourceKey,
}

#[derive(Default)]
struct ClusterObjects {
    /// Every managed object: its app and the object.
    objects: BTreeMap<ResourceKey, (String, Value)>,
    /// Keys by app.
    by_app: HashMap<String, BTreeSet<ResourceKey>>,
    /// Kinds whose initial list is complete, by (group, kind).
    ready: BTreeSet<(String, String)>,
}

impl ClusterObjects {
    fn remove(&mut self, key: &ResourceKey) -> Option<String> {
        let (app, _) = self.objects.remove(key)?;
        if let Some(set) = self.by_app.get_mut(&app) {
            set.remove(key);
        }
        Some(app)
    }

    fn put(&mut self, key: ResourceKey, app: String, obj: Value) {
        self.remove(&key);
        self.by_app
            .entry(app.clone())
            .or_default()
            .insert(key.clone());
        self.objects.insert(key, (app, obj));
    }
}

/// The cache of managed live objects over all clusters.
pub struct LiveCache {
    tracking: Tracking,
    clusters: Arc<RwLock<HashMap<String, ClusterObjects>>>,
    watches: Mutex<HashMap<(String, String, String), JoinHandle<()>>>,
    changes: mpsc::Sender<Change>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for LiveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCache")
            .field("tracking", &self.tracking)
            .finish_non_exhaustive()
    }
}

impl LiveCache {
    /// A cache, and the receiver of its change announcements (at most `capacity` queued).
    pub fn new(tracking: Tracking, capacity: usize) -> (Self, mpsc::Receiver<Change>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                tracking,
                clusters: Arc::default(),
                watches: Mutex::default(),
                changes: tx,
                cancel: CancellationToken::new(),
            },
            rx,
        )
    }

    /// Start watching every listable kind of a cluster (kinds already watched are kept).
    /// Returns how many watches run for the cluster.
    pub async fn watch_cluster(&self, cluster: &Arc<Cluster>) -> Result<usize, ClusterError> {
        let kinds = cluster.kinds().await?;
        for kind in kinds.watchable() {
            self.watch_kind(cluster, kind);
        }
        Ok(self.watch_count(cluster.name()))
    }

    fn watch_count(&self, cluster: &str) -> usize {
        let w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        w.keys().filter(|(c, _, _)| c == cluster).count()
    }

    /// Start the watch of one kind on a cluster, unless it runs already.
    pub fn watch_kind(&self, cluster: &Arc<Cluster>, kind: &Kind) {
        let id = (
            cluster.name().to_string(),
            kind.resource.group.clone(),
            kind.resource.kind.clone(),
        );
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        if watches.get(&id).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let task = tokio::spawn(run_watch(
            cluster.clone(),
            kind.clone(),
            self.tracking,
            self.clusters.clone(),
            self.changes.clone(),
            self.cancel.child_token(),
        ));
        watches.insert(id, task);
    }

    /// The managed objects of `app` on `cluster`.
    pub fn app_objects(&self, cluster: &str, app: &str) -> Vec<Value> {
        let all = self.clusters.read().unwrap_or_else(|p| p.into_inner());
        let Some(c) = all.get(cluster) else {
            return Vec::new();
        };
        c.by_app
            .get(app)
            .into_iter()
            .flatten()
            .filter_map(|k| c.objects.get(k).map(|(_, v)| v.clone()))
            .collect()
    }

    /// One managed object, if cached.
    pub fn get(&self, cluster: &str, key: &ResourceKey) -> Option<Value> {
        let all = self.clusters.read().unwrap_or_else(|p| p.into_inner());
        all.get(cluster)?.objects.get(key).map(|(_, v)| v.clone())
    }

    /// Whether the initial list of a kind on a cluster is complete.
    pub fn is_ready(&self, cluster: &str, group: &str, kind: &str) -> bool {
        let all = self.clusters.read().unwrap_or_else(|p| p.into_inner());
        all.get(cluster)
            .is_some_and(|c| c.ready.contains(&(group.to_string(), kind.to_string())))
    }

    /// Stop every watch and wait for them to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let handles: Vec<_> = {
            let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            w.drain().map(|(_, h)| h).collect()
        };
        for h in handles {
            let _ = h.await;
        }
    }
}

impl Drop for LiveCache {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn to_value(obj: &kube::api::DynamicObject, kind: &Kind) -> Option<Value> {
    let mut v = serde_json::to_value(obj).ok()?;
    let m = v.as_object_mut()?;
    m.insert(
        "apiVersion".into(),
        Value::String(kind.resource.api_version.clone()),
    );
    m.insert("kind".into(), Value::String(kind.resource.kind.clone()));
    Some(v)
}

async fn run_watch(
    cluster: Arc<Cluster>,
    kind: Kind,
    tracking: Tracking,
    store: Arc<RwLock<HashMap<String, ClusterObjects>>>,
    changes: mpsc::Sender<Change>,
    cancel: CancellationToken,
) {
    let api = cluster.api(&kind, "");
    let mut config = watcher::Config::default();
    if tracking == Tracking::Label {
        config = config.labels(INSTANCE_LABEL);
    }
    let gk = (kind.resource.group.clone(), kind.resource.kind.clone());
    let name = cluster.name().to_string();
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut relist: Option<BTreeMap<ResourceKey, (String, Value)>> = None;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        let event = match event {
            Ok(e) => {
                cluster.set_status(ConnectionStatus::Connected);
                e
            }
            Err(e) => {
                cluster.set_status(ConnectionStatus::Failed(e.to_string()));
                tracing::debug!(cluster = %name, kind = %kind.resource.kind, error = %e, "watch error");
                continue;
            }
        };
        let managed = |obj: &kube::api::DynamicObject| {
            let v = to_value(obj, &kind)?;
            let app = tracking.owner(&v)?;
            Some((ResourceKey::of(&v), app, v))
        };
        let mut announce = Vec::new();
        {
            let mut all = store.write().unwrap_or_else(|p| p.into_inner());
            let objects = all.entry(name.clone()).or_default();
            match event {
                Event::Init => relist = Some(BTreeMap::new()),
                Event::InitApply(obj) => {
                    if let (Some(buf), Some((k, app, v))) = (relist.as_mut(), managed(&obj)) {
                        buf.insert(k, (app, v));
                    }
                }
                Event::InitDone => {
                    let fresh = relist.take().unwrap_or_default();
                    let old: Vec<ResourceKey> = objects
                        .objects
                        .keys()
                        .filter(|k| k.group == gk.0 && k.kind == gk.1)
                        .cloned()
                        .collect();
                    for k in old {
                        if !fresh.contains_key(&k) {
                            if let Some(app) = objects.remove(&k) {
                                announce.push((app, k));
                            }
                        }
                    }
                    for (k, (app, v)) in fresh {
                        if objects.objects.get(&k).map(|(_, o)| o) != Some(&v) {
                            announce.push((app.clone(), k.clone()));
                        }
                        objects.put(k, app, v);
                    }
                    objects.ready.insert(gk.clone());
                }
                Event::Apply(obj) => {
                    if let Some((k, app, v)) = managed(&obj) {
                        objects.put(k.clone(), app.clone(), v);
                        announce.push((app, k));
                    } else if let Some(v) = to_value(&obj, &kind) {
                        // The object lost its tracking mark: it is no longer managed.
                        let k = ResourceKey::of(&v);
                        if let Some(app) = objects.remove(&k) {
                            announce.push((app, k));
                        }
                    }
                }
                Event::Delete(obj) => {
                    if let Some(v) = to_value(&obj, &kind) {
                        let k = ResourceKey::of(&v);
                        if let Some(app) = objects.remove(&k) {
                            announce.push((app, k));
                        }
                    }
                }
            }
        }
        for (app, key) in announce {
            let change = Change {
                cluster: name.clone(),
                app,
                key,
            };
            if changes.try_send(change).is_err() {
                tracing::debug!(cluster = %name, "change channel full; announcement dropped");
            }
        }
    }
}
