//! Git sources on real repositories: revision resolution, fetch coalescing, local paths,
//! smart HTTP with basic auth (git http-backend) and git daemon.
mod support;

use std::sync::Arc;

use flotilla_node::model::Credentials;
use flotilla_node::source::{Freshness, SourceCache, SourceConfig, SourceError};
use support::{cm, git, Repo};

fn cache(dir: &std::path::Path, creds: Credentials) -> SourceCache {
    let mut c = SourceConfig::new(dir.join("mirrors"));
    c.credentials = creds;
    c.allow_local = true;
    SourceCache::new(c).expect("cache")
}

#[tokio::test]
async fn resolves_branches_tags_shas_and_head() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write("a/cm.yaml", &cm("one"));
    let first = repo.commit("first");
    repo.git(&["tag", "-a", "v1", "-m", "annotated"]);
    repo.git(&["tag", "light"]);
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("a/cm.yaml", &cm("two"));
    let second = repo.commit("second");
    repo.git(&["checkout", "-q", "main"]);
    let sc = cache(tmp.path(), Credentials::default());
    let url = repo.url();
    let r = |rev: &'static str| {
        let (sc, url) = (&sc, url.clone());
        async move { sc.resolve(&url, rev, Freshness::Fetch).await }
    };
    assert_eq!(r("HEAD").await.expect("HEAD").commit, first);
    assert_eq!(r("").await.expect("empty is HEAD").commit, first);
    assert_eq!(r("main").await.expect("branch").commit, first);
    assert_eq!(r("feature").await.expect("branch").commit, second);
    assert_eq!(r("v1").await.expect("annotated tag").commit, first);
    assert_eq!(r("light").await.expect("tag").commit, first);
    assert_eq!(
        r("refs/heads/feature").await.expect("full ref").commit,
        second
    );
    let short: &'static str = Box::leak(second[..8].to_string().into_boxed_str());
    assert_eq!(r(short).await.expect("short sha").commit, second);
    let full: &'static str = Box::leak(second.clone().into_boxed_str());
    assert_eq!(r(full).await.expect("full sha").commit, second);
    let err = r("nope").await.unwrap_err();
    assert!(matches!(err, SourceError::RevisionNotFound { .. }), "{err}");
    assert!(err.to_string().contains("\"nope\""), "{err}");

    // file:// URLs and the same repository share one mirror identity.
    let file_url = format!("file://{}", repo.url());
    let via_file = sc
        .resolve(&file_url, "feature", Freshness::Fetch)
        .await
        .expect("file url");
    assert_eq!(via_file.commit, second);

    // A new commit is seen after a fetch; Cached keeps the mirror as it was.
    repo.write("a/cm.yaml", &cm("three"));
    let third = repo.commit("third");
    assert_eq!(
        sc.resolve(&url, "main", Freshness::Cached)
            .await
            .expect("cached")
            .commit,
        first
    );
    assert_eq!(
        sc.resolve(&url, "main", Freshness::Fetch)
            .await
            .expect("fetched")
            .commit,
        third
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fetches_of_one_repository_are_coalesced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    for i in 0..200 {
        repo.write(&format!("apps/{i}/cm.yaml"), &cm(&format!("c{i}")));
    }
    repo.commit("many files");
    let other = Repo::init(&tmp.path().join("other"));
    other.write("x.yaml", &cm("x"));
    other.commit("x");
    let sc = Arc::new(cache(tmp.path(), Credentials::default()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let sc = sc.clone();
        let url = if i % 8 == 7 { other.url() } else { repo.url() };
        tasks.push(tokio::spawn(async move { sc.fetch(&url).await }));
    }
    for t in tasks {
        t.await.expect("join").expect("fetch");
    }
    // 16 callers on two repositories; concurrent callers of one repository share a fetch.
    // Callers arriving after a fetch finished may start another, so allow a few, but far
    // fewer than 16.
    let n = sc.fetch_count();
    assert!((2..=6).contains(&n), "expected coalesced fetches, got {n}");
}

#[tokio::test]
async fn errors_never_show_user_info_of_repository_urls() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    std::fs::create_dir_all(&root).expect("mkdir");
    let server = support::http::serve(support::http::Route::Git(root), Some(("alice", "s3cret")));
    let bare = server.url();
    let host = bare.trim_start_matches("http://");
    // A repository that does not exist, and a wrong token in the URL.
    let url = format!("http://alice:tok-123456@{host}/missing.git");
    let sc = cache(&tmp.path().join("c"), Credentials::default());
    let err = sc
        .resolve(&url, "main", Freshness::Fetch)
        .await
        .expect_err("missing repository");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("tok-123456"), "{shown}");
    assert!(shown.contains(&format!("{bare}/missing.git")), "{shown}");
}

#[tokio::test]
async fn smart_http_with_basic_auth() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    let work = Repo::init(&tmp.path().join("work"));
    work.write("app/cm.yaml", &cm("over-http"));
    let head = work.commit("c");
    std::fs::create_dir_all(&root).expect("mkdir");
    git(&root, &["clone", "-q", "--bare", &work.url(), "repo.git"]);
    let server = support::http::serve(support::http::Route::Git(root), Some(("alice", "s3cret")));
    let url = format!("{}/repo.git", server.url());

    // No credentials: refused with a clear error.
    let sc = cache(&tmp.path().join("c1"), Credentials::default());
    let err = sc
        .resolve(&url, "main", Freshness::Fetch)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no repository credentials"),
        "{err}"
    );

    // Wrong password: refused, and the attempt is bounded.
    let mut bad = Credentials::default();
    bad.add_yaml(&repo_secret(&url, "alice", "wrong"))
        .expect("secret");
    let sc = cache(&tmp.path().join("c2"), bad);
    assert!(sc.resolve(&url, "main", Freshness::Fetch).await.is_err());

    // A repo-creds template matching by prefix works.
    let mut good = Credentials::default();
    good.add_yaml(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tmpl\n  labels:\n    argocd.argoproj.io/secret-type: repo-creds\nstringData:\n  url: {}\n  username: alice\n  password: s3cret\n",
        server.url()
    ))
    .expect("secret");
    let sc = cache(&tmp.path().join("c3"), good);
    let r = sc
        .resolve(&url, "main", Freshness::Fetch)
        .await
        .expect("authenticated fetch");
    assert_eq!(r.commit, head);
}

fn repo_secret(url: &str, user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: repo\n  labels:\n    argocd.argoproj.io/secret-type: repository\ndata:\n  url: {}\n  username: {}\n  password: {}\n",
        b(url),
        b(user),
        b(pass)
    )
}

/// `git daemon` serving a directory on a free loopback port; killed on drop.
struct Daemon(std::process::Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn git_daemon() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    let work = Repo::init(&tmp.path().join("work"));
    work.write("app/cm.yaml", &cm("over-daemon"));
    let head = work.commit("c");
    std::fs::create_dir_all(&root).expect("mkdir");
    git(&root, &["clone", "-q", "--bare", &work.url(), "repo.git"]);
    let port = support::free_port();
    // Run git-daemon itself (not through the `git` wrapper, which would leave it orphaned
    // when killed).
    let exec_path = git(&root, &["--exec-path"]);
    let child = std::process::Command::new(std::path::Path::new(&exec_path).join("git-daemon"))
        .arg("--export-all")
        .arg("--reuseaddr")
        .arg("--listen=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", root.display()))
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("git daemon starts");
    let _daemon = Daemon(child);
    support::wait_for_port(port);
    let sc = cache(tmp.path(), Credentials::default());
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let r = sc
        .resolve(&url, "HEAD", Freshness::Fetch)
        .await
        .expect("fetch over git://");
    assert_eq!(r.commit, head);
}

#[tokio::test]
async fn fetches_a_pinned_commit_no_branch_reaches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let work = Repo::init(&tmp.path().join("work"));
    work.write("a.yaml", &cm("main"));
    work.commit("main");
    work.git(&["checkout", "-q", "-b", "gone"]);
    work.write("a.yaml", &cm("orphan"));
    let orphan = work.commit("on a branch that will be deleted");
    let root = tmp.path().join("srv");
    std::fs::create_dir_all(&root).expect("mkdir");
    git(&root, &["clone", "-q", "--bare", &work.url(), "repo.git"]);
    let bare = root.join("repo.git");
    git(&bare, &["branch", "-q", "-D", "gone"]);
    git(&bare, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
    let server = support::http::serve(support::http::Route::Git(root), None);
    let url = format!("{}/repo.git", server.url());
    let sc = cache(tmp.path(), Credentials::default());
    sc.resolve(&url, "main", Freshness::Fetch)
        .await
        .expect("main");
    let r = sc
        .resolve(&url, &orphan, Freshness::Fetch)
        .await
        .expect("pinned commit fetched on demand");
    assert_eq!(r.commit, orphan);
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let err = sc
        .resolve(&url, missing, Freshness::Fetch)
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::RevisionNotFound { .. }), "{err}");
}
