//! Repository revisions: which (repository, ref) pairs the stored applications follow,
//! polling them on the node that owns each repository's shard ([`RepoPoller`]), and push
//! webhooks ([`webhook::parse_push`]) that record new commits at once.
//!
//! A poll resolves the ref with a fresh fetch ([`SourceCache::resolve`] with
//! [`Freshness::Fetch`]) and proposes [`Command::RecordRevision`] when the commit differs
//! from the one in the store. Revisions are recorded under the repository URL and the ref
//! exactly as the application writes them (`targetRevision`, `HEAD` when empty), so the
//! owner of the application finds them with `store.local().revision(repoURL, ref)`.

pub mod webhook;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_raft::{ChangeEvent, Command, ReadError, ShardNode, StateReader, Store, StoreError};
use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::intern::intern;
use crate::metrics::names;
use crate::source::{normalize_url, redact_url, Freshness, SourceCache, SourceError};
use crate::status::parse_stored_app;

pub use webhook::{parse_push, Provider, PushEvent, WebhookError};

/// Errors recording a repository's revisions.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Reading the local store failed.
    #[error("reading the store: {0}")]
    Read(#[from] ReadError),
    /// Resolving the ref failed (unreachable repository, unknown ref).
    #[error("resolving {git_ref} of {url}: {source}")]
    Resolve {
        /// The repository (redacted).
        url: String,
        /// The ref.
        git_ref: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// Proposing the new revision failed.
    #[error("recording revisions: {0}")]
    Store(#[from] StoreError),
}

/// One ref of one repository that at least one application follows, as written there. Both
/// strings are shared with every other app naming them ([`intern`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackedRef {
    /// `repoURL` as the application writes it.
    pub url: Arc<str>,
    /// `targetRevision` as written (`HEAD` when empty).
    pub git_ref: Arc<str>,
}

/// Every Git (repository, ref) pair the stored applications follow, grouped by normalized
/// repository URL. Helm chart sources, commit SHAs and unparsable apps are left out.
pub fn tracked_refs(
    reader: &StateReader,
) -> Result<BTreeMap<String, BTreeSet<TrackedRef>>, ReadError> {
    let mut per_app = HashMap::new();
    for rec in reader.apps()? {
        per_app.insert(rec.app.clone(), refs_of(&rec.app, &rec.spec));
    }
    Ok(group(&per_app))
}

/// The Git refs one stored application follows (none when it cannot be parsed).
fn refs_of(key: &str, spec: &flotilla_raft::Json) -> Vec<TrackedRef> {
    let Ok(doc) = spec.to_value() else {
        return Vec::new();
    };
    let app = match parse_stored_app(key, &doc) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(app = %key, error = %e, "not polling for an unparsable app");
            return Vec::new();
        }
    };
    let mut refs = app
        .sources()
        .iter()
        .filter(|s| {
            s.chart.is_none() && !s.repo_url.trim().is_empty() && !is_full_sha(s.revision())
        })
        .map(|s| TrackedRef {
            url: intern(&s.repo_url),
            git_ref: intern(s.revision()),
        })
        .collect::<Vec<_>>();
    // Kept for every app: no spare room.
    refs.shrink_to_fit();
    refs
}

fn group(per_app: &HashMap<String, Vec<TrackedRef>>) -> Tracked {
    let mut out: Tracked = BTreeMap::new();
    for r in per_app.values().flatten() {
        out.entry(normalize_url(&r.url))
            .or_default()
            .insert(r.clone());
    }
    out
}

/// Every tracked ref by normalized repository URL, as [`tracked_refs`] returns it.
pub type Tracked = BTreeMap<String, BTreeSet<TrackedRef>>;

/// [`tracked_refs`] kept up to date from the store's changes: each added or changed
/// application is parsed once, when it changes; all of them only at the start and when the
/// change stream was missed (a lagging subscriber or a snapshot installed).
pub struct TrackedCache {
    state: std::sync::Mutex<CacheState>,
    /// Set once the first full read is in.
    ready: tokio::sync::watch::Receiver<bool>,
}

#[derive(Default)]
struct CacheState {
    per_app: HashMap<String, Vec<TrackedRef>>,
    /// [`group`] of `per_app`, made again after a change.
    grouped: Option<Arc<Tracked>>,
}

impl TrackedCache {
    /// A cache following the store's changes until `cancel` fires.
    pub fn start(store: &Store, cancel: CancellationToken) -> Arc<TrackedCache> {
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let cache = Arc::new(TrackedCache {
            state: std::sync::Mutex::new(CacheState::default()),
            ready,
        });
        // Subscribed before the first read, so no change falls between the two.
        let mut rx = store.subscribe();
        let (store, me) = (store.clone(), cache.clone());
        tokio::spawn(async move {
            let mut reload = true;
            loop {
                if reload {
                    match me.reload(&store).await {
                        Ok(()) => {
                            reload = false;
                            ready_tx.send_replace(true);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the applications' repositories");
                            tokio::select! {
                                _ = cancel.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            }
                        }
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    ev = rx.recv() => match ev {
                        Ok(ev) => match &*ev {
                            ChangeEvent::Reset { .. } => reload = true,
                            ChangeEvent::Applied { command, .. } => me.apply(command),
                        },
                        Err(broadcast::error::RecvError::Lagged(_)) => reload = true,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        cache
    }

    async fn reload(&self, store: &Store) -> Result<(), String> {
        let reader = store.local().clone();
        let per_app = tokio::task::spawn_blocking(move || {
            let mut per_app = HashMap::new();
            for rec in reader.apps()? {
                per_app.insert(rec.app.clone(), refs_of(&rec.app, &rec.spec));
            }
            Ok::<_, ReadError>(per_app)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.per_app = per_app;
        st.grouped = None;
        Ok(())
    }

    fn apply(&self, command: &Command) {
        let (key, refs) = match command {
            Command::PutApp { app, spec, .. } => (app, Some(refs_of(app, spec))),
            Command::DeleteApp { app } => (app, None),
            _ => return,
        };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let before = st.per_app.get(key);
        if before == refs.as_ref() {
            return;
        }
        match refs {
            Some(r) => st.per_app.insert(key.clone(), r),
            None => st.per_app.remove(key),
        };
        st.grouped = None;
    }

    /// The tracked refs now; waits for the first read of the store.
    pub async fn get(&self) -> Arc<Tracked> {
        let mut ready = self.ready.clone();
        // An error means the cache stopped (the node is stopping): answer with what it has.
        let _ = ready.wait_for(|r| *r).await;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = &st.grouped {
            return g.clone();
        }
        let g = Arc::new(group(&st.per_app));
        st.grouped = Some(g.clone());
        g
    }
}

fn is_full_sha(r: &str) -> bool {
    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Host, port (when explicit and not SSH) and path of a repository URL, for matching a
/// webhook's URLs against applications' across the HTTPS and SSH forms.
fn identity(url: &str) -> Option<(String, Option<String>, String, bool)> {
    let n = normalize_url(url);
    let (ssh, rest) = match n.split_once("://") {
        Some((scheme, rest)) => (
            scheme.starts_with("ssh") || scheme == "git",
            rest.to_string(),
        ),
        None => {
            // user@host:path (scp form)
            let (_, hp) = n.split_once('@')?;
            (true, hp.replacen(':', "/", 1))
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((&rest, ""));
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_string(), Some(p.to_string()))
        }
        _ => (host_port.to_string(), None),
    };
    let path = path
        .trim_matches('/')
        .trim_start_matches("scm/")
        .to_string();
    Some((host, if ssh { None } else { port }, path, ssh))
}

/// Whether two URLs name the same repository: equal once normalized, or the same host and
/// path where one is an SSH form of the other.
pub fn same_repo(a: &str, b: &str) -> bool {
    if normalize_url(a) == normalize_url(b) {
        return true;
    }
    match (identity(a), identity(b)) {
        (Some((ha, pa, xa, sa)), Some((hb, pb, xb, sb))) => {
            ha == hb && xa == xb && !xa.is_empty() && (pa == pb || sa || sb)
        }
        _ => false,
    }
}

/// Whether an application's ref follows a pushed branch or tag. `HEAD` follows the default
/// branch; when the payload does not name it, `HEAD` is taken to match.
pub fn ref_matches(app_ref: &str, ev: &PushEvent) -> bool {
    let short = app_ref
        .strip_prefix("refs/heads/")
        .or_else(|| app_ref.strip_prefix("refs/tags/"))
        .unwrap_or(app_ref);
    if short == ev.git_ref {
        return true;
    }
    (short == "HEAD" || short.is_empty())
        && !ev.is_tag
        && ev.default_branch.as_deref().is_none_or(|d| d == ev.git_ref)
}

/// The tracked refs a push moves.
pub fn refs_for_push(
    tracked: &BTreeMap<String, BTreeSet<TrackedRef>>,
    ev: &PushEvent,
) -> Vec<TrackedRef> {
    tracked
        .values()
        .flatten()
        .filter(|t| ev.repo_urls.iter().any(|u| same_repo(u, &t.url)))
        .filter(|t| ref_matches(&t.git_ref, ev))
        .cloned()
        .collect()
}

/// Milliseconds since the Unix epoch, for `RecordRevision.at`.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Record `sha` for each ref whose stored revision differs; returns how many were proposed.
pub async fn record(store: &Store, refs: &[TrackedRef], sha: &str) -> Result<usize, RepoError> {
    let mut cmds = Vec::new();
    for t in refs {
        let current = store.local().revision(&t.url, &t.git_ref)?;
        if current.is_some_and(|r| r.sha == sha) {
            continue;
        }
        cmds.push(Command::RecordRevision {
            repo: t.url.to_string(),
            git_ref: t.git_ref.to_string(),
            sha: sha.to_string(),
            at: now_millis(),
        });
    }
    let n = cmds.len();
    if n > 0 {
        let proposed = store.propose_many(cmds).await?;
        for r in proposed.results {
            r.map_err(StoreError::from)?;
        }
    }
    Ok(n)
}

/// Fetch the repository once and record the commit of each of its `refs` that moved.
/// Returns how many revisions were proposed.
pub async fn refresh(
    store: &Store,
    sources: &SourceCache,
    refs: &[TrackedRef],
) -> Result<usize, RepoError> {
    let mut recorded = 0;
    let mut first = true;
    for t in refs {
        // One fetch per repository: later refs read the mirror the first one refreshed.
        let fresh = if first {
            Freshness::Fetch
        } else {
            Freshness::Cached
        };
        first = false;
        let resolved = sources
            .resolve(&t.url, &t.git_ref, fresh)
            .await
            .map_err(|source| RepoError::Resolve {
                url: redact_url(&t.url),
                git_ref: t.git_ref.to_string(),
                source,
            })?;
        recorded += record(store, std::slice::from_ref(t), &resolved.commit).await?;
    }
    Ok(recorded)
}

/// A random duration in `[0, max)`.
fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(r % ms)
}

/// Asks a [`RepoPoller`] to poll a repository now. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RepoPoke {
    tx: mpsc::Sender<String>,
}

impl RepoPoke {
    /// Poll the repository at `url` as soon as possible, whichever node owns its shard.
    /// Returns false if the poller is gone or too many pokes are queued (the regular poll
    /// still comes).
    pub fn poke(&self, url: &str) -> bool {
        self.tx.try_send(normalize_url(url)).is_ok()
    }
}

/// Polls the repositories whose shard this node owns, every `interval` with jitter.
pub struct RepoPoller {
    poke: RepoPoke,
    task: JoinHandle<()>,
}

/// How often each repository is polled unless told otherwise (Argo CD's
/// `timeout.reconciliation` default).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(180);

/// Repositories polled at once.
const PARALLEL_POLLS: usize = 4;
/// Pokes waiting to be handled.
const POKE_QUEUE: usize = 256;

impl RepoPoller {
    /// Start polling on this node. `interval` is Argo CD's `timeout.reconciliation`
    /// equivalent ([`DEFAULT_POLL_INTERVAL`]); each poll comes up to a tenth of it early.
    pub fn start(
        store: Store,
        shards: Arc<ShardNode>,
        sources: Arc<SourceCache>,
        interval: Duration,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(POKE_QUEUE);
        let interval = interval.max(Duration::from_millis(100));
        let task = tokio::spawn(run(store, shards, sources, interval, rx, cancel));
        RepoPoller {
            poke: RepoPoke { tx },
            task,
        }
    }

    /// Poll the repository at `url` now (see [`RepoPoke::poke`]).
    pub fn poke(&self, url: &str) -> bool {
        self.poke.poke(url)
    }

    /// A handle that pokes this poller.
    pub fn handle(&self) -> RepoPoke {
        self.poke.clone()
    }

    /// Wait until the poller has stopped (after its cancellation token fired).
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::warn!("repository poller ended abnormally: {e}");
        }
    }
}

struct Due {
    at: Instant,
    failures: u32,
    /// Poked: poll even if another node owns the repository's shard.
    poked: bool,
}

async fn run(
    store: Store,
    shards: Arc<ShardNode>,
    sources: Arc<SourceCache>,
    interval: Duration,
    mut pokes: mpsc::Receiver<String>,
    cancel: CancellationToken,
) {
    let cache = TrackedCache::start(&store, cancel.clone());
    let mut tracked: Arc<Tracked> = Arc::new(BTreeMap::new());
    let mut due: HashMap<String, Due> = HashMap::new();
    let mut running: JoinSet<(String, Result<usize, RepoError>)> = JoinSet::new();
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    let tick = (interval / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
            url = pokes.recv() => {
                if let Some(url) = url {
                    due.insert(url, Due { at: Instant::now(), failures: 0, poked: true });
                }
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((url, result)) = done {
                    in_flight.remove(&url);
                    let d = due.entry(url.clone()).or_insert(Due { at: Instant::now(), failures: 0, poked: false });
                    match result {
                        Ok(n) => {
                            metrics::counter!(names::REPO_POLLS_TOTAL, "result" => "ok").increment(1);
                            metrics::counter!(names::REVISIONS_RECORDED_TOTAL, "via" => "poll")
                                .increment(n as u64);
                            if n > 0 {
                                tracing::info!(repo = %redact_url(&url), recorded = n, "new revisions");
                            }
                            d.failures = 0;
                            d.at = Instant::now() + interval - jitter(interval / 10);
                        }
                        Err(e) => {
                            metrics::counter!(names::REPO_POLLS_TOTAL, "result" => "error").increment(1);
                            d.failures = d.failures.saturating_add(1);
                            // Retry sooner than the interval at first, never later than it.
                            let backoff = (Duration::from_secs(5) * 2u32.saturating_pow(d.failures.min(10)))
                                .min(interval);
                            tracing::warn!(repo = %redact_url(&url), error = %e, retry_in = ?backoff, "polling failed");
                            d.at = Instant::now() + backoff + jitter(backoff / 10);
                        }
                    }
                }
            }
        }
        let now_tracked = cache.get().await;
        if !Arc::ptr_eq(&now_tracked, &tracked) {
            tracked = now_tracked;
            due.retain(|url, _| tracked.contains_key(url));
        }
        let count = match store.local().shard_map() {
            Ok(Some(m)) if m.shard_count() > 0 => m.shard_count(),
            _ => continue,
        };
        let now = Instant::now();
        for (url, refs) in tracked.iter() {
            if running.len() >= PARALLEL_POLLS {
                break;
            }
            if in_flight.contains(url) {
                continue;
            }
            let d = due.entry(url.clone()).or_insert_with(|| Due {
                at: now + jitter(interval),
                failures: 0,
                poked: false,
            });
            if d.at > now {
                continue;
            }
            let shard = flotilla_shard::shard_of(url, count);
            if !d.poked && shards.may_act(shard).is_err() {
                // Another node polls it; look again later (ownership may move here).
                d.at = now + interval / 4 + jitter(interval / 4);
                continue;
            }
            d.poked = false;
            let refs: Vec<TrackedRef> = refs.iter().cloned().collect();
            let (store, sources, url) = (store.clone(), sources.clone(), url.clone());
            in_flight.insert(url.clone());
            running.spawn(async move {
                let r = refresh(&store, &sources, &refs).await;
                (url, r)
            });
        }
    }
    running.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(git_ref: &str, default_branch: Option<&str>, is_tag: bool) -> PushEvent {
        PushEvent {
            provider: Provider::GitHub,
            repo_urls: vec!["https://github.com/org/apps".into()],
            git_ref: git_ref.into(),
            is_tag,
            sha: None,
            before: None,
            default_branch: default_branch.map(str::to_string),
        }
    }

    #[test]
    fn repository_urls_match_across_forms() {
        let web = "https://github.com/Org/Apps";
        for same in [
            "https://github.com/org/apps.git",
            "https://github.com/org/apps/",
            "git@github.com:org/apps.git",
            "ssh://git@github.com/org/apps.git",
            "ssh://git@github.com:22/org/apps",
            "https://user:token@github.com/org/apps.git",
        ] {
            assert!(same_repo(web, same), "{same}");
        }
        for other in [
            "https://github.com/org/apps2",
            "https://gitlab.com/org/apps",
            "https://github.com:8443/org/apps",
            "https://github.com/other/apps",
        ] {
            assert!(!same_repo(web, other), "{other}");
        }
        assert!(same_repo(
            "https://bb.example.com/scm/proj/apps.git",
            "ssh://git@bb.example.com:7999/proj/apps.git"
        ));
    }

    #[test]
    fn refs_follow_branches_tags_and_head() {
        assert!(ref_matches("main", &push("main", None, false)));
        assert!(ref_matches("refs/heads/main", &push("main", None, false)));
        assert!(!ref_matches("release", &push("main", None, false)));
        assert!(ref_matches("HEAD", &push("main", Some("main"), false)));
        assert!(!ref_matches("HEAD", &push("feature", Some("main"), false)));
        assert!(ref_matches("HEAD", &push("main", None, false)));
        assert!(ref_matches("v1.0", &push("v1.0", None, true)));
        assert!(ref_matches("refs/tags/v1.0", &push("v1.0", None, true)));
        assert!(!ref_matches("HEAD", &push("v1.0", None, true)));
    }
}
