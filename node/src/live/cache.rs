//! The live-state cache: one watch per (cluster, kind), shared by every app on that cluster,
//! feeding an in-memory index of the managed objects only (those carrying the tracking label,
//! or for annotation tracking a valid tracking id), by app.
//!
//! Each watch is kube-runtime's `watcher`, which lists, then watches from the list's
//! resourceVersion, and lists again when the server says the version is too old (410); a
//! relist replaces the kind's objects wholesale, so deletions missed while disconnected
//! disappear. Watch errors set the cluster's [`ConnectionStatus`]. Changes are announced (for
//! self-heal triggers) through a [`ChangeReceiver`] that coalesces them per (cluster, app):
//! an app with changes not yet received is queued once, so the queue is bounded by the
//! number of apps and no app misses a reconcile.

use super::{GroupKinds, Tracking, INSTANCE_LABEL};
use crate::clusters::{discovery::Kind, Cluster, ClusterError, ConnectionStatus};
use crate::diff::ResourceKey;
use crate::packed::Packed;
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;
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

/// Apps with changes not yet received, oldest first, and the latest changed key of each.
#[derive(Default)]
struct Dirty {
    order: VecDeque<(String, String)>,
    latest: HashMap<(String, String), ResourceKey>,
}

#[derive(Default)]
struct ChangeQueue {
    dirty: Mutex<Dirty>,
    wakeup: Notify,
    senders: AtomicUsize,
}

/// The sending side of change announcements (held by the cache and its watches).
struct ChangeSender(Arc<ChangeQueue>);

impl ChangeSender {
    fn announce(&self, cluster: &str, app: String, key: ResourceKey) {
        let id = (cluster.to_string(), app);
        let mut d = self.0.dirty.lock().unwrap_or_else(|p| p.into_inner());
        if d.latest.insert(id.clone(), key).is_none() {
            d.order.push_back(id);
        }
        drop(d);
        self.0.wakeup.notify_one();
    }
}

impl Clone for ChangeSender {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::AcqRel);
        Self(self.0.clone())
    }
}

impl Drop for ChangeSender {
    fn drop(&mut self) {
        self.0.senders.fetch_sub(1, Ordering::AcqRel);
        self.0.wakeup.notify_one();
    }
}

/// Receives change announcements, coalesced per (cluster, app): one [`Change`] per app
/// with changes since it was last received, carrying the latest changed object.
pub struct ChangeReceiver(Arc<ChangeQueue>);

impl std::fmt::Debug for ChangeReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeReceiver").finish_non_exhaustive()
    }
}

impl ChangeReceiver {
    /// The oldest pending change, if any.
    pub fn try_recv(&mut self) -> Option<Change> {
        let mut d = self.0.dirty.lock().unwrap_or_else(|p| p.into_inner());
        let (cluster, app) = d.order.pop_front()?;
        let key = d.latest.remove(&(cluster.clone(), app.clone()))?;
        // A relist of a large cluster queues every app at once; give the room back after.
        if d.order.is_empty() && d.latest.capacity() > 1024 {
            d.order.shrink_to_fit();
            d.latest.shrink_to_fit();
        }
        Some(Change { cluster, app, key })
    }

    /// Wait for the next change; `None` once the cache is gone and nothing is pending.
    pub async fn recv(&mut self) -> Option<Change> {
        loop {
            if let Some(c) = self.try_recv() {
                return Some(c);
            }
            if self.0.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            self.0.wakeup.notified().await;
        }
    }

    /// Number of apps with pending changes.
    pub fn pending(&self) -> usize {
        let d = self.0.dirty.lock().unwrap_or_else(|p| p.into_inner());
        d.order.len()
    }
}

/// A managed object's identity in one shared string: group, kind, namespace and name
/// joined by NUL, which none of them contains. One allocation serves both maps of a
/// [`ClusterObjects`], where a [`ResourceKey`] takes four strings per copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key(Arc<str>);

impl Key {
    fn of(k: &ResourceKey) -> Self {
        Self(Arc::from(format!(
            "{}\0{}\0{}\0{}",
            k.group, k.kind, k.namespace, k.name
        )))
    }

    fn resource(&self) -> ResourceKey {
        let mut parts = self.0.splitn(4, '\0').map(str::to_string);
        let mut next = || parts.next().unwrap_or_default();
        ResourceKey {
            group: next(),
            kind: next(),
            namespace: next(),
            name: next(),
        }
    }

    /// Whether the object is of the kind `(group, kind)`.
    fn is_kind(&self, (group, kind): &(String, String)) -> bool {
        let mut parts = self.0.splitn(3, '\0');
        parts.next() == Some(group.as_str()) && parts.next() == Some(kind.as_str())
    }
}

/// A cached object and the app that manages it (one shared name per app). The object is
/// kept packed (compact JSON, deflated): a parsed `Value` tree takes several times the
/// memory of the text, and every node caches the managed objects of every app on the
/// clusters it watches. Readers inflate and parse the few objects they ask for; equal
/// objects pack to equal bytes, so a relist compares them as they are.
struct Entry {
    app: Arc<str>,
    obj: Packed,
}

#[derive(Default)]
struct ClusterObjects {
    /// Every managed object.
    objects: HashMap<Key, Entry>,
    /// Keys by app, sorted. Most apps have a few objects per cluster: a `Vec` holds them
    /// in a small fraction of what a `BTreeSet`'s first node takes (eleven keys' room).
    by_app: HashMap<Arc<str>, Vec<Key>>,
    /// Kinds whose initial list is complete, by (group, kind).
    ready: GroupKinds,
}

impl ClusterObjects {
    fn remove(&mut self, key: &Key) -> Option<Arc<str>> {
        let Entry { app, .. } = self.objects.remove(key)?;
        if let Some(keys) = self.by_app.get_mut(&app) {
            if let Ok(i) = keys.binary_search(key) {
                keys.remove(i);
            }
            if keys.is_empty() {
                self.by_app.remove(&app);
            }
        }
        Some(app)
    }

    /// Store an object; returns the app that managed it before, if any.
    fn put(&mut self, key: Key, app: &str, obj: Packed) -> Option<Arc<str>> {
        let before = self.remove(&key);
        let app = match self.by_app.get_key_value(app) {
            Some((shared, _)) => shared.clone(),
            None => Arc::from(app),
        };
        let keys = self.by_app.entry(app.clone()).or_default();
        if let Err(i) = keys.binary_search(&key) {
            keys.reserve_exact(1);
            keys.insert(i, key.clone());
        }
        self.objects.insert(key, Entry { app, obj });
        before
    }

    fn get(&self, key: &ResourceKey) -> Option<&Entry> {
        self.objects.get(&Key::of(key))
    }
}

/// The cache of managed live objects over all clusters.
pub struct LiveCache {
    tracking: Tracking,
    clusters: Arc<RwLock<HashMap<String, ClusterObjects>>>,
    watches: Mutex<HashMap<(String, String, String), JoinHandle<()>>>,
    changes: ChangeSender,
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
    /// A cache, and the receiver of its change announcements (at most one queued per app).
    pub fn new(tracking: Tracking) -> (Self, ChangeReceiver) {
        let queue = Arc::new(ChangeQueue::default());
        queue.senders.store(1, Ordering::Release);
        let (tx, rx) = (ChangeSender(queue.clone()), ChangeReceiver(queue));
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
            .filter_map(|k| c.objects.get(k).and_then(|e| e.obj.value()))
            .collect()
    }

    /// One managed object, if cached.
    pub fn get(&self, cluster: &str, key: &ResourceKey) -> Option<Value> {
        let all = self.clusters.read().unwrap_or_else(|p| p.into_inner());
        all.get(cluster)?.get(key)?.obj.value()
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
    changes: ChangeSender,
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
    let mut relist: Option<HashMap<Key, (String, Packed)>> = None;
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
            Some((Key::of(&ResourceKey::of(&v)), app, Packed::of(&v)))
        };
        // Objects of a relist are packed before the cache is locked; they go in at its end.
        if let Event::InitApply(obj) = &event {
            if let (Some(buf), Some((k, app, v))) = (relist.as_mut(), managed(obj)) {
                buf.insert(k, (app, v));
            }
            continue;
        }
        let applied = match &event {
            Event::Apply(obj) => Some(managed(obj).ok_or_else(|| to_value(obj, &kind))),
            _ => None,
        };
        let mut announce = Vec::new();
        {
            let mut all = store.write().unwrap_or_else(|p| p.into_inner());
            let objects = all.entry(name.clone()).or_default();
            match event {
                Event::Init => relist = Some(HashMap::new()),
                Event::InitApply(_) => {}
                Event::InitDone => {
                    let fresh = relist.take().unwrap_or_default();
                    let old: Vec<Key> = objects
                        .objects
                        .keys()
                        .filter(|k| k.is_kind(&gk))
                        .cloned()
                        .collect();
                    for k in old {
                        if !fresh.contains_key(&k) {
                            if let Some(app) = objects.remove(&k) {
                                announce.push((app.to_string(), k.resource()));
                            }
                        }
                    }
                    for (k, (app, v)) in fresh {
                        let same = objects
                            .objects
                            .get(&k)
                            .is_some_and(|e| *e.app == *app && e.obj == v);
                        if !same {
                            announce.push((app.clone(), k.resource()));
                        }
                        if let Some(before) = objects.put(k.clone(), &app, v) {
                            if *before != *app {
                                announce.push((before.to_string(), k.resource()));
                            }
                        }
                    }
                    objects.objects.shrink_to_fit();
                    objects.ready.insert(gk.clone());
                }
                Event::Apply(_) => match applied {
                    Some(Ok((k, app, v))) => {
                        // The tracking mark may have moved: the previous app changed too.
                        if let Some(before) = objects.put(k.clone(), &app, v) {
                            if *before != *app {
                                announce.push((before.to_string(), k.resource()));
                            }
                        }
                        announce.push((app, k.resource()));
                    }
                    Some(Err(Some(v))) => {
                        // The object lost its tracking mark: it is no longer managed.
                        let k = ResourceKey::of(&v);
                        if let Some(app) = objects.remove(&Key::of(&k)) {
                            announce.push((app.to_string(), k));
                        }
                    }
                    _ => {}
                },
                Event::Delete(obj) => {
                    if let Some(v) = to_value(&obj, &kind) {
                        let k = ResourceKey::of(&v);
                        if let Some(app) = objects.remove(&Key::of(&k)) {
                            announce.push((app.to_string(), k));
                        }
                    }
                }
            }
        }
        for (app, key) in announce {
            changes.announce(&name, app, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ResourceKey {
        ResourceKey::of(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}
        }))
    }

    #[tokio::test]
    async fn announcements_coalesce_per_app_and_are_never_dropped() {
        let queue = Arc::new(ChangeQueue::default());
        queue.senders.store(1, Ordering::Release);
        let (tx, mut rx) = (ChangeSender(queue.clone()), ChangeReceiver(queue));
        for i in 0..1000 {
            tx.announce("c", format!("app-{}", i % 3), key(&format!("o{i}")));
        }
        tx.announce("other", "app-0".into(), key("x"));
        assert_eq!(rx.pending(), 4);
        let mut got = Vec::new();
        while let Some(c) = rx.try_recv() {
            got.push((c.cluster, c.app, c.key.name));
        }
        assert_eq!(
            got,
            [
                ("c".into(), "app-0".into(), "o999".into()),
                ("c".into(), "app-1".into(), "o997".into()),
                ("c".into(), "app-2".into(), "o998".into()),
                ("other".into(), "app-0".into(), "x".into()),
            ]
        );
        tx.announce("c", "app-1".into(), key("again"));
        let c = rx.recv().await.expect("pending change");
        assert_eq!(c.key.name, "again");
        let waiter = tokio::spawn(async move { rx.recv().await });
        drop(tx);
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("recv ends")
            .expect("task");
        assert!(end.is_none());
    }
}
