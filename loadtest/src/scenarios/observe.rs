//! An observer of the apps' live objects in the destination clusters: when did app `i`'s
//! first ConfigMap (`app-<i>-cm-0` in namespace `app-<i>`, see [`flotilla_loadtest::git`]'s
//! fixture) change, and to what.
//!
//! [`Observer::start`] opens one watch per simulated cluster (kube-runtime's `watcher`: it
//! lists, watches from the list's resourceVersion and lists again after errors), on the
//! ConfigMaps carrying the fixture's `app.kubernetes.io/part-of` label in every namespace.
//! Each event is stamped with the [`Instant`] it arrived, so a latency measured from it
//! is as precise as the watch itself (no polling). State is one small record per app
//! index, behind its own lock, with its own [`Notify`] for waiters: memory and work grow
//! with apps and events, never apps × anything.
//!
//! Questions it answers, without blocking ([`Observer::generation_seen`],
//! [`Observer::restored_seen`]) or waiting up to a deadline ([`Observer::wait_generation`],
//! [`Observer::wait_restored`]):
//! - when app `i` first showed `data.generation` ≥ `g` (what a commit changes);
//! - when app `i`'s data, changed by someone after `since`, equalled the expected data again
//!   (what a self-heal does).
//!
//! The percentile helpers ([`Latencies`]) summarize the measured samples.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flotilla_loadtest::simcluster::SimCluster;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The label every fixture object carries (`app-<i>`).
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// Changes of one app's data kept for [`Observer::restored_seen`].
const HISTORY: usize = 16;

/// The `data` of a ConfigMap.
pub type Data = BTreeMap<String, String>;

/// Errors starting the observer.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The cluster's kubeconfig could not be made or used.
    #[error("cluster {cluster}: kubeconfig: {message}")]
    Kubeconfig {
        /// The cluster's name.
        cluster: String,
        /// What went wrong.
        message: String,
    },
    /// The client could not be built.
    #[error("cluster {cluster}: building the client: {source}")]
    Client {
        /// The cluster's name.
        cluster: String,
        /// The cause.
        source: kube::Error,
    },
    /// Not every watch finished its first list in time.
    #[error("the watches of {pending} of {total} clusters did not finish their first list within {seconds} s")]
    NotReady {
        /// Watches still listing.
        pending: usize,
        /// All watches.
        total: usize,
        /// The wait.
        seconds: u64,
    },
}

/// A kube client for a simulated cluster (its token and CA).
pub async fn client_for(cluster: &SimCluster) -> Result<kube::Client, ObserveError> {
    let name = cluster.name().to_string();
    let bad = |message: String| ObserveError::Kubeconfig {
        cluster: name.clone(),
        message,
    };
    let text = cluster.kubeconfig().map_err(|e| bad(e.to_string()))?;
    let kc = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| bad(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| bad(e.to_string()))?;
    kube::Client::try_from(config).map_err(|source| ObserveError::Client {
        cluster: name.clone(),
        source,
    })
}

/// What was seen of one app.
#[derive(Debug, Default)]
struct AppSeen {
    /// `(generation, first seen)` each time a generation larger than all before appeared.
    rises: Vec<(u64, Instant)>,
    /// The latest changes of the data (`None`: deleted), oldest first, at most [`HISTORY`].
    recent: VecDeque<(Instant, Option<Arc<Data>>)>,
}

impl AppSeen {
    fn record(&mut self, at: Instant, data: Option<Data>) {
        if let Some(g) = data
            .as_ref()
            .and_then(|d| d.get("generation"))
            .and_then(|g| g.parse::<u64>().ok())
        {
            if self.rises.last().is_none_or(|&(top, _)| g > top) {
                self.rises.push((g, at));
            }
        }
        // A relist repeats what was already seen: not a change.
        if self
            .recent
            .back()
            .is_some_and(|(_, last)| last.as_deref() == data.as_ref())
        {
            return;
        }
        if self.recent.len() >= HISTORY {
            self.recent.pop_front();
        }
        self.recent.push_back((at, data.map(Arc::new)));
    }

    fn generation_seen(&self, g: u64) -> Option<Instant> {
        self.rises
            .iter()
            .find(|&&(top, _)| top >= g)
            .map(|&(_, at)| at)
    }

    /// The first time at or after `since` the data equalled `expected` after having
    /// differed from it (at or after `since`).
    fn restored_seen(&self, since: Instant, expected: &Data) -> Option<Instant> {
        let mut differed = false;
        for (at, data) in self.recent.iter().filter(|(at, _)| *at >= since) {
            let equal = data.as_deref() == Some(expected);
            if !equal {
                differed = true;
            } else if differed {
                return Some(*at);
            }
        }
        None
    }
}

struct Shared {
    apps: Vec<Mutex<AppSeen>>,
    notify: Vec<Notify>,
    listed: AtomicUsize,
    listed_notify: Notify,
    events: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn app(&self, i: usize) -> Option<MutexGuard<'_, AppSeen>> {
        self.apps
            .get(i)
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Watches the apps' first ConfigMaps in every cluster; stops the watches when dropped.
pub struct Observer {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// Counters of an [`Observer`].
#[derive(Debug, Clone, Copy)]
pub struct ObserverStats {
    /// Watch events of the apps' first ConfigMaps handled.
    pub events: u64,
    /// Watch errors (each followed by a retry with backoff).
    pub errors: u64,
}

impl Observer {
    /// Start one watch per cluster for apps `0..apps`. Call [`Observer::ready`] before
    /// relying on what it has seen.
    pub async fn start(clusters: &[SimCluster], apps: usize) -> Result<Self, ObserveError> {
        let shared = Arc::new(Shared {
            apps: (0..apps).map(|_| Mutex::default()).collect(),
            notify: (0..apps).map(|_| Notify::new()).collect(),
            listed: AtomicUsize::new(0),
            listed_notify: Notify::new(),
            events: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let mut tasks = Vec::with_capacity(clusters.len());
        for c in clusters {
            let client = client_for(c).await?;
            tasks.push(tokio::spawn(watch_cluster(
                client,
                c.name().to_string(),
                shared.clone(),
            )));
        }
        Ok(Self { shared, tasks })
    }

    /// Wait until every watch has finished its first list.
    pub async fn ready(&self, timeout: Duration) -> Result<(), ObserveError> {
        let total = self.tasks.len();
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.listed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let listed = self.shared.listed.load(Ordering::SeqCst);
            if listed >= total {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return Err(ObserveError::NotReady {
                    pending: total - self.shared.listed.load(Ordering::SeqCst).min(total),
                    total,
                    seconds: timeout.as_secs(),
                });
            }
        }
    }

    /// The latest data seen of app `i` (`None`: never seen, or deleted).
    pub fn latest(&self, i: usize) -> Option<Arc<Data>> {
        self.shared
            .app(i)
            .and_then(|a| a.recent.back().and_then(|(_, d)| d.clone()))
    }

    /// When app `i` first showed `data.generation` ≥ `g`, if it has.
    pub fn generation_seen(&self, i: usize, g: u64) -> Option<Instant> {
        self.shared.app(i).and_then(|a| a.generation_seen(g))
    }

    /// When app `i`'s data, after differing from `expected` at or after `since`, equalled it
    /// again, if it has (only the last few changes of each app are kept).
    pub fn restored_seen(&self, i: usize, since: Instant, expected: &Data) -> Option<Instant> {
        self.shared
            .app(i)
            .and_then(|a| a.restored_seen(since, expected))
    }

    /// Wait until [`Observer::generation_seen`] answers, or `deadline`.
    pub async fn wait_generation(&self, i: usize, g: u64, deadline: Instant) -> Option<Instant> {
        self.wait(i, deadline, |a| a.generation_seen(g)).await
    }

    /// Wait until [`Observer::restored_seen`] answers, or `deadline`.
    pub async fn wait_restored(
        &self,
        i: usize,
        since: Instant,
        expected: &Data,
        deadline: Instant,
    ) -> Option<Instant> {
        self.wait(i, deadline, |a| a.restored_seen(since, expected))
            .await
    }

    /// Events handled and watch errors so far.
    pub fn stats(&self) -> ObserverStats {
        ObserverStats {
            events: self.shared.events.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
        }
    }

    async fn wait<T>(
        &self,
        i: usize,
        deadline: Instant,
        check: impl Fn(&AppSeen) -> Option<T>,
    ) -> Option<T> {
        let notify = self.shared.notify.get(i)?;
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(t) = self.shared.app(i).and_then(|a| check(&a)) {
                return Some(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return self.shared.app(i).and_then(|a| check(&a));
            }
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The app index of a fixture ConfigMap `app-<i>-cm-0` in namespace `app-<i>`.
pub fn app_index(namespace: &str, name: &str) -> Option<usize> {
    let i: usize = name
        .strip_prefix("app-")?
        .strip_suffix("-cm-0")?
        .parse()
        .ok()?;
    (namespace.strip_prefix("app-")? == i.to_string()).then_some(i)
}

async fn watch_cluster(client: kube::Client, cluster: String, shared: Arc<Shared>) {
    let api: kube::Api<ConfigMap> = kube::Api::all(client);
    let stream =
        watcher::watcher(api, watcher::Config::default().labels(PART_OF)).default_backoff();
    tokio::pin!(stream);
    let mut listed = false;
    while let Some(ev) = stream.next().await {
        let at = Instant::now();
        let (cm, deleted) = match ev {
            Ok(Event::Apply(cm) | Event::InitApply(cm)) => (cm, false),
            Ok(Event::Delete(cm)) => (cm, true),
            Ok(Event::Init) => continue,
            Ok(Event::InitDone) => {
                if !listed {
                    listed = true;
                    shared.listed.fetch_add(1, Ordering::SeqCst);
                    shared.listed_notify.notify_waiters();
                }
                continue;
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%cluster, error = %e, "observer watch");
                continue;
            }
        };
        let ns = cm.metadata.namespace.as_deref().unwrap_or_default();
        let name = cm.metadata.name.as_deref().unwrap_or_default();
        let Some(i) = app_index(ns, name) else {
            continue;
        };
        let data = (!deleted).then(|| cm.data.unwrap_or_default());
        if let Some(mut a) = shared.app(i) {
            a.record(at, data);
        } else {
            continue;
        }
        shared.events.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = shared.notify.get(i) {
            n.notify_waiters();
        }
    }
}

/// Latency samples in milliseconds and their summary.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted: Vec<f64>,
}

impl Latencies {
    /// Summarize the samples (milliseconds; NaN samples are dropped).
    pub fn new(mut samples_ms: Vec<f64>) -> Self {
        samples_ms.retain(|v| !v.is_nan());
        samples_ms.sort_by(f64::total_cmp);
        Self { sorted: samples_ms }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The nearest-rank `p`-th percentile (0 < p ≤ 100), `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        percentile(&self.sorted, p)
    }

    /// The largest sample.
    pub fn max(&self) -> Option<f64> {
        self.sorted.last().copied()
    }

    /// The mean.
    pub fn mean(&self) -> Option<f64> {
        (!self.sorted.is_empty())
            .then(|| self.sorted.iter().sum::<f64>() / self.sorted.len() as f64)
    }

    /// The samples, ascending, rounded to 0.1 ms, as JSON.
    pub fn samples_json(&self) -> Value {
        json!(self.sorted.iter().map(|&v| round_ms(v)).collect::<Vec<_>>())
    }
}

/// The nearest-rank `p`-th percentile of ascending `sorted` samples (`None` when empty).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Milliseconds rounded to 0.1.
pub fn round_ms(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Milliseconds from `from` to `to` (0 when `to` is earlier).
pub fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests;
