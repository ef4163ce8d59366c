//! Git sources: one bare mirror per repository URL per node, fetched with git2.
//!
//! [`SourceCache`] owns the mirrors under a cache directory (the path is a hash of the
//! normalized URL). Concurrent fetches of one repository are coalesced: callers that arrive
//! while a fetch is in flight wait for it and share its result. Fetches of different
//! repositories run in parallel, bounded by a semaphore, each on a blocking thread.
//! Trees are read straight from the object database ([`tree`]); tools that need files get a
//! checkout of just the subtrees they use.
mod auth;
pub mod tree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::model::Credentials;

pub use auth::KnownHosts;

/// Errors from Git sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// libgit2 failed; `context` says what flotilla was doing.
    #[error("{context}: {source}")]
    Git {
        /// What was being done, with the repository URL.
        context: String,
        /// The libgit2 error.
        source: git2::Error,
    },
    /// The revision is not a branch, tag or commit of the repository.
    #[error("{url}: revision {revision:?} not found (not a branch, tag or commit)")]
    RevisionNotFound {
        /// Repository URL, without user-info ([`redact_url`]).
        url: String,
        /// The requested revision.
        revision: String,
    },
    /// A path is not in the tree.
    #[error("{url}@{commit}: path {path:?} does not exist")]
    PathNotFound {
        /// Repository URL, without user-info ([`redact_url`]).
        url: String,
        /// Commit id.
        commit: String,
        /// The missing path.
        path: String,
    },
    /// A path or symlink points outside the repository.
    #[error("{path:?} points outside the repository ({detail})")]
    Escape {
        /// The offending path.
        path: String,
        /// Where it points.
        detail: String,
    },
    /// A file system operation on the cache or a checkout failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("git task failed: {0}")]
    Task(String),
    /// The repository URL is not allowed or not understood.
    #[error("repository URL {url:?} refused: {reason}")]
    Refused {
        /// The URL, with any user-info removed.
        url: String,
        /// Why it was refused.
        reason: String,
    },
}

pub(crate) fn git_err(context: impl Into<String>) -> impl FnOnce(git2::Error) -> SourceError {
    let context = context.into();
    move |source| SourceError::Git { context, source }
}

/// Normalize a repository URL for identity: trimmed, no trailing `/` or `.git`, and for
/// remote URLs lower-cased (local paths keep their case).
pub fn normalize_url(url: &str) -> String {
    let mut u = url.trim().trim_end_matches('/').to_string();
    if let Some(s) = u.strip_suffix(".git") {
        u = s.to_string();
    }
    if is_local(&u) {
        u
    } else {
        u.to_lowercase()
    }
}

/// Whether a repository URL names a local path: `file://`, absolute, or starting with
/// `./` or `../`. A URL with no scheme such as `github.com/x/y` is not local (see
/// [`check_url`]).
pub fn is_local(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("file://")
        || url.starts_with('/')
        || url.starts_with("./")
        || url.starts_with("../")
}

/// Check that a repository URL may be fetched: remote URLs (`scheme://` or `user@host:path`)
/// always, local paths only when `allow_local` is set; anything else (a URL without a scheme
/// such as `github.com/x/y`) is refused, as Argo CD does not guess a scheme either.
pub fn check_url(url: &str, allow_local: bool) -> Result<(), SourceError> {
    let u = url.trim();
    let refused = |reason: &str| SourceError::Refused {
        url: redact_url(u),
        reason: reason.to_string(),
    };
    if is_local(u) {
        if allow_local {
            return Ok(());
        }
        return Err(refused(
            "local paths and file:// URLs are not allowed for Applications \
             (they could read any repository on this node's disk)",
        ));
    }
    if u.contains("://") || looks_scp(u) {
        return Ok(());
    }
    Err(refused(
        "no scheme; write https://, ssh:// or user@host:path \
         (or ./path or an absolute path for a local repository where allowed)",
    ))
}

/// A repository URL with any user-info (`user:password@`) removed, for logs and errors.
/// SCP-like URLs (`git@host:path`) keep their user name, which is not a secret.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn looks_scp(url: &str) -> bool {
    // user@host:path
    match (url.find('@'), url.find(':')) {
        (Some(a), Some(c)) => a < c,
        _ => false,
    }
}

/// Settings of a [`SourceCache`].
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Directory holding the bare mirrors.
    pub cache_dir: PathBuf,
    /// Maximum fetches running at once (different repositories).
    pub max_parallel_fetches: usize,
    /// Repository credentials.
    pub credentials: Credentials,
    /// SSH known hosts; when `None`, SSH host keys are refused unless the repository is insecure.
    pub known_hosts: Option<KnownHosts>,
    /// Allow local paths and `file://` URLs (off by default: whoever can write an
    /// Application could otherwise read any repository on the node's disk). The CLI turns
    /// it on, since its user renders their own files.
    pub allow_local: bool,
}

impl SourceConfig {
    /// Defaults: 4 parallel fetches, no credentials.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            max_parallel_fetches: 4,
            credentials: Credentials::default(),
            known_hosts: None,
            allow_local: false,
        }
    }
}

/// How fresh a resolved revision must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Fetch now (coalesced with a fetch already in flight).
    Fetch,
    /// Use the mirror as it is; fetch only if it lacks the revision.
    Cached,
}

struct Mirror {
    url: String,
    path: PathBuf,
    /// Serializes fetches of this repository.
    lock: tokio::sync::Mutex<()>,
    /// Fetches started so far (each one's number).
    started: AtomicU64,
    /// The number of the last fetch that completed.
    completed: AtomicU64,
}

/// A resolved revision: the commit a branch, tag, SHA or `HEAD` pointed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resolved {
    /// Repository URL as given.
    pub url: String,
    /// Full commit id (hex).
    pub commit: String,
}

/// The node's Git mirrors.
pub struct SourceCache {
    config: SourceConfig,
    credentials: std::sync::RwLock<Arc<Credentials>>,
    mirrors: Mutex<HashMap<String, Arc<Mirror>>>,
    permits: tokio::sync::Semaphore,
    fetches: AtomicU64,
}

impl std::fmt::Debug for SourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceCache")
            .field("cache_dir", &self.config.cache_dir)
            .finish_non_exhaustive()
    }
}

impl SourceCache {
    /// Create the cache; mirrors are created on first use.
    pub fn new(config: SourceConfig) -> Result<Self, SourceError> {
        std::fs::create_dir_all(&config.cache_dir).map_err(|source| SourceError::Io {
            context: format!("create cache directory {}", config.cache_dir.display()),
            source,
        })?;
        // Objects are verified once, when a fetch indexes them into the mirror (as git does);
        // hashing every object again on every read cost as much as the rest of a render.
        git2::opts::strict_hash_verification(false);
        let permits = tokio::sync::Semaphore::new(config.max_parallel_fetches.max(1));
        Ok(Self {
            credentials: std::sync::RwLock::new(Arc::new(config.credentials.clone())),
            config,
            mirrors: Mutex::new(HashMap::new()),
            permits,
            fetches: AtomicU64::new(0),
        })
    }

    /// Credentials this cache uses now (a copy: they can be replaced at any time).
    pub fn credentials(&self) -> Arc<Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replace the credentials (for example when repository Secrets change); fetches that
    /// start afterwards use the new ones.
    pub fn set_credentials(&self, credentials: Credentials) {
        *self.credentials.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(credentials);
    }

    /// Number of fetches actually run (coalesced callers do not count).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The mirror directory of a repository URL.
    pub fn mirror_path(&self, url: &str) -> PathBuf {
        let hash = Sha256::digest(normalize_url(url).as_bytes());
        let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.config.cache_dir.join(format!("{hex}.git"))
    }

    fn mirror(&self, url: &str) -> Result<Arc<Mirror>, SourceError> {
        check_url(url, self.config.allow_local)?;
        let key = normalize_url(url);
        let mut map = self.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Mirror {
                    url: fetch_url(url),
                    path: self.mirror_path(url),
                    lock: tokio::sync::Mutex::new(()),
                    started: AtomicU64::new(0),
                    completed: AtomicU64::new(0),
                })
            })
            .clone())
    }

    /// Fetch a repository into its mirror. Callers coalesce: one that arrives while a fetch
    /// of the same repository is running waits, and returns once a fetch that *started after
    /// it arrived* has completed (a fetch already under way may predate the commit the
    /// caller is after), so a crowd of callers costs at most one more fetch.
    pub async fn fetch(&self, url: &str) -> Result<(), SourceError> {
        let mirror = self.mirror(url)?;
        let arrived = mirror.started.load(Ordering::Acquire);
        let _guard = mirror.lock.lock().await;
        if mirror.completed.load(Ordering::Acquire) > arrived {
            return Ok(());
        }
        let number = mirror.started.fetch_add(1, Ordering::AcqRel) + 1;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| SourceError::Task(e.to_string()))?;
        let cred = self.credentials().for_repo(url).cloned();
        let known = self.config.known_hosts.clone();
        let (m_url, m_path) = (mirror.url.clone(), mirror.path.clone());
        let t0 = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            auth::fetch_blocking(&m_url, &m_path, cred.as_ref(), known.as_ref(), None)
        })
        .await
        .map_err(|e| SourceError::Task(e.to_string()))??;
        record_git_request(&mirror.url, "fetch", t0.elapsed());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        mirror.completed.store(number, Ordering::Release);
        tracing::debug!(url = %redact_url(&mirror.url), ms = t0.elapsed().as_millis() as u64, "fetched");
        Ok(())
    }

    /// Resolve a branch, tag (annotated too), full or short commit SHA, or `HEAD`.
    pub async fn resolve(
        &self,
        url: &str,
        revision: &str,
        freshness: Freshness,
    ) -> Result<Resolved, SourceError> {
        let mirror = self.mirror(url)?;
        if freshness == Freshness::Cached && mirror.path.join("HEAD").exists() {
            let (path, rev, u) = (mirror.path.clone(), revision.to_string(), url.to_string());
            let found = blocking(move || {
                let repo = open_cached(&path, &u)?;
                tree::resolve_revision(&repo, &u, &rev)
            })
            .await;
            if let Ok(commit) = found {
                return Ok(Resolved {
                    url: url.to_string(),
                    commit,
                });
            }
        }
        self.fetch(url).await?;
        let (path, rev, u) = (mirror.path.clone(), revision.to_string(), url.to_string());
        let found = blocking(move || {
            let repo = open_cached(&path, &u)?;
            tree::resolve_revision(&repo, &u, &rev)
        })
        .await;
        let commit = match found {
            Err(SourceError::RevisionNotFound { .. }) if is_full_sha(revision) => {
                self.fetch_commit(&mirror, url, revision).await?;
                let (path, rev, u) = (mirror.path.clone(), revision.to_string(), url.to_string());
                blocking(move || {
                    let repo = open_cached(&path, &u)?;
                    tree::resolve_revision(&repo, &u, &rev)
                })
                .await?
            }
            other => other?,
        };
        Ok(Resolved {
            url: url.to_string(),
            commit,
        })
    }

    /// Fetch one commit that no branch or tag reaches (Argo CD does the same for pinned SHAs).
    async fn fetch_commit(
        &self,
        mirror: &Arc<Mirror>,
        url: &str,
        sha: &str,
    ) -> Result<(), SourceError> {
        let _guard = mirror.lock.lock().await;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| SourceError::Task(e.to_string()))?;
        let cred = self.credentials().for_repo(url).cloned();
        let known = self.config.known_hosts.clone();
        let (m_url, m_path, sha) = (mirror.url.clone(), mirror.path.clone(), sha.to_lowercase());
        let revision = sha.clone();
        let t0 = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            auth::fetch_blocking(&m_url, &m_path, cred.as_ref(), known.as_ref(), Some(&sha))
        })
        .await
        .map_err(|e| SourceError::Task(e.to_string()))?;
        record_git_request(&mirror.url, "fetch", t0.elapsed());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        result.map_err(|e| {
            tracing::debug!(url = %redact_url(url), error = %e, "fetching a single commit failed");
            SourceError::RevisionNotFound {
                url: redact_url(url),
                revision,
            }
        })
    }

    /// Run `f` on a blocking thread with the repository's mirror opened.
    pub async fn with_repo<T, E, F>(&self, url: &str, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<SourceError> + Send + 'static,
        F: FnOnce(&git2::Repository) -> Result<T, E> + Send + 'static,
    {
        let mirror = self.mirror(url)?;
        let (path, u) = (mirror.path.clone(), url.to_string());
        match tokio::task::spawn_blocking(move || {
            let repo = open_cached(&path, &u)?;
            f(&repo)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => Err(SourceError::Task(e.to_string()).into()),
        }
    }

    /// Open a mirror synchronously (for code already on a blocking thread).
    pub fn open_repo(&self, url: &str) -> Result<git2::Repository, SourceError> {
        check_url(url, self.config.allow_local)?;
        open(&self.mirror_path(url), url)
    }
}

/// Count a Git request and its duration under Argo CD's metric names; the repository label
/// is the URL without credentials.
fn record_git_request(url: &str, request_type: &'static str, took: std::time::Duration) {
    use crate::metrics::names;
    let repo = redact_url(url);
    metrics::counter!(names::GIT_REQUEST_TOTAL, "repo" => repo.clone(), "request_type" => request_type)
        .increment(1);
    metrics::histogram!(names::GIT_REQUEST_DURATION, "repo" => repo, "request_type" => request_type)
        .record(took.as_secs_f64());
}

fn is_full_sha(rev: &str) -> bool {
    rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit())
}

/// The URL libgit2 fetches from: local relative paths are made absolute.
fn fetch_url(url: &str) -> String {
    let u = url.trim();
    if is_local(u) && !u.starts_with("file://") {
        std::path::absolute(u)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| u.to_string())
    } else {
        u.to_string()
    }
}

fn open(path: &Path, url: &str) -> Result<git2::Repository, SourceError> {
    git2::Repository::open_bare(path)
        .map_err(git_err(format!("open mirror of {}", redact_url(url))))
}

/// Mirrors opened on this (blocking) thread, kept open: opening a repository reads its
/// config and refs, which dominates cheap reads. libgit2 re-reads refs from disk and
/// rescans packs when an object is missing, so a handle sees later fetches.
const OPEN_PER_THREAD: usize = 64;

/// How long a thread keeps a mirror open before opening it again. Each handle has its own
/// libgit2 object cache, which keeps every small tree and commit read through it (up to
/// libgit2's global limit of 256 MB): a handle kept for the life of a blocking thread that
/// serves reconciliations of thousands of apps grew by megabytes a minute. Opening again
/// now and then starts an empty cache, at the cost of one open per thread and repository.
const OPEN_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// A mirror opened on this thread, and when.
type Opened = (std::time::Instant, std::rc::Rc<git2::Repository>);

thread_local! {
    static OPEN: std::cell::RefCell<HashMap<PathBuf, Opened>> =
        std::cell::RefCell::new(HashMap::new());
}

fn open_cached(path: &Path, url: &str) -> Result<std::rc::Rc<git2::Repository>, SourceError> {
    OPEN.with_borrow_mut(|map| {
        let now = std::time::Instant::now();
        if let Some((at, r)) = map.get(path) {
            if now.duration_since(*at) < OPEN_FOR {
                return Ok(r.clone());
            }
        }
        let repo = std::rc::Rc::new(open(path, url)?);
        map.retain(|_, (at, _)| now.duration_since(*at) < OPEN_FOR);
        if map.len() >= OPEN_PER_THREAD {
            map.clear();
        }
        map.insert(path.to_path_buf(), (now, repo.clone()));
        Ok(repo)
    })
}

async fn blocking<T, F>(f: F) -> Result<T, SourceError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SourceError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SourceError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_urls() {
        assert_eq!(
            normalize_url("https://Example.com/Org/Repo.git/"),
            "https://example.com/org/repo"
        );
        assert_eq!(normalize_url("/tmp/Repo"), "/tmp/Repo");
        assert!(is_local("file:///tmp/x"));
        assert!(!is_local("relative/dir"));
        assert!(!is_local("github.com/x/y"));
        assert!(!is_local("git@github.com:org/repo.git"));
        assert!(!is_local("https://h/r"));
    }

    #[test]
    fn local_urls_need_the_flag_and_schemeless_urls_are_refused() {
        for local in ["/srv/mirrors/x.git", "file:///srv/x", "./repo", "../repo"] {
            let err = check_url(local, false).expect_err(local).to_string();
            assert!(err.contains(local) && err.contains("not allowed"), "{err}");
            check_url(local, true).expect(local);
        }
        for bad in ["github.com/x/y", "repo"] {
            for allow in [false, true] {
                let err = check_url(bad, allow).expect_err(bad).to_string();
                assert!(err.contains(bad) && err.contains("no scheme"), "{err}");
            }
        }
        for remote in [
            "https://h/r",
            "ssh://git@h/r",
            "git@github.com:org/repo.git",
        ] {
            check_url(remote, false).expect(remote);
        }
    }

    #[tokio::test]
    async fn cache_refuses_local_repositories_by_default() {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = tmp.path().join("other-app-mirror");
        git2::Repository::init_bare(&repo).expect("init");
        let url = repo.display().to_string();
        let cache = SourceCache::new(SourceConfig::new(tmp.path().join("mirrors"))).expect("c");
        let err = cache
            .fetch(&url)
            .await
            .expect_err("local path must be refused");
        assert!(matches!(err, SourceError::Refused { .. }), "{err}");
        assert!(cache.open_repo(&url).is_err());
        let mut config = SourceConfig::new(tmp.path().join("mirrors2"));
        config.allow_local = true;
        let cache = SourceCache::new(config).expect("c");
        cache.fetch(&url).await.expect("allowed when configured");
    }

    #[test]
    fn redacts_user_info() {
        assert_eq!(
            redact_url("https://user:tok@example.com/o/r.git"),
            "https://example.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://example.com/a@b"),
            "https://example.com/a@b"
        );
        assert_eq!(redact_url("git@github.com:o/r"), "git@github.com:o/r");
    }
}
