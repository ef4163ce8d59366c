//! Repository polling against a real Git server: new commits are recorded without any
//! webhook, an unreachable repository does not hold the others up, pokes poll at once.

#[path = "http_support/mod.rs"]
mod support;

use std::time::Duration;

use flotilla_node::repos::RepoPoller;
use flotilla_raft::shards::Isolation;
use flotilla_raft::ShardConfig;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_records_new_commits_and_survives_an_unreachable_repo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, shards) = single_node(dir.path()).await;
    wait_owning(&shards).await;
    let mut g = git(dir.path()).await;
    // Nothing listens on port 9 of loopback: every poll of this repository fails.
    put_app(&store, "broken", "http://127.0.0.1:9/missing.git", "main").await;
    put_app(&store, "guestbook", &g.url, "main").await;
    put_app(&store, "pinned", &g.url, &g.fixture.head().expect("head")).await;

    let cancel = CancellationToken::new();
    let poller = RepoPoller::start(
        store.clone(),
        shards.clone(),
        sources(dir.path()),
        Duration::from_millis(300),
        cancel.clone(),
    );
    let first = g.fixture.head().expect("head");
    let s = store.clone();
    wait_for("first poll", Duration::from_secs(20), || {
        recorded(&s, &g.url, "main").as_deref() == Some(first.as_str())
    })
    .await;

    let c = g.fixture.commit_change(&[0], "change").expect("commit");
    wait_for("the new commit", Duration::from_secs(20), || {
        recorded(&s, &g.url, "main").as_deref() == Some(c.id.as_str())
    })
    .await;
    assert_eq!(
        recorded(&store, "http://127.0.0.1:9/missing.git", "main"),
        None
    );
    // A pinned commit is not polled: there is nothing to move.
    assert_eq!(store.local().revisions().expect("revisions").len(), 1);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), poller.stopped())
        .await
        .expect("poller stops");
    shards.shutdown().await;
    store.shutdown().await;
    g.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poke_polls_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, shards) = single_node(dir.path()).await;
    wait_owning(&shards).await;
    let mut g = git(dir.path()).await;
    let c = g.fixture.commit_change(&[1], "change").expect("commit");
    put_app(&store, "guestbook", &g.url, "main").await;
    let cancel = CancellationToken::new();
    // The regular poll is an hour away: only the poke can record the commit in time.
    let poller = RepoPoller::start(
        store.clone(),
        shards.clone(),
        sources(dir.path()),
        Duration::from_secs(3600),
        cancel.clone(),
    );
    let s = store.clone();
    let url = g.url.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // The first poke may arrive before the poller read the app; poke until recorded.
    while recorded(&s, &url, "main").as_deref() != Some(c.id.as_str()) {
        assert!(tokio::time::Instant::now() < deadline, "poke never polled");
        assert!(poller.poke(&format!("{url}/")), "poke queued");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cancel.cancel();
    poller.stopped().await;
    shards.shutdown().await;
    store.shutdown().await;
    g.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_lease_does_not_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let isolation = Isolation::new();
    let cfg = ShardConfig {
        isolation: Some(isolation.clone()),
        ..ShardConfig::default()
    };
    let (store, shards) = single_node_with(dir.path(), cfg).await;
    wait_owning(&shards).await;
    let mut g = git(dir.path()).await;
    put_app(&store, "guestbook", &g.url, "main").await;
    let cancel = CancellationToken::new();
    let poller = RepoPoller::start(
        store.clone(),
        shards.clone(),
        sources(dir.path()),
        Duration::from_millis(200),
        cancel.clone(),
    );
    let first = g.fixture.head().expect("head");
    let s = store.clone();
    wait_for("first poll", Duration::from_secs(20), || {
        recorded(&s, &g.url, "main").as_deref() == Some(first.as_str())
    })
    .await;

    // Cut the lease renewals: the node may no longer act on the repository's shard.
    isolation.set(true);
    wait_for("lease lost", Duration::from_secs(10), || {
        !shards.ownership().borrow().lease_valid
    })
    .await;
    let c = g.fixture.commit_change(&[0], "change").expect("commit");
    // Several poll intervals pass without the commit being recorded.
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < quiet_until {
        assert_eq!(
            recorded(&store, &g.url, "main").as_deref(),
            Some(first.as_str()),
            "polled without a lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    isolation.set(false);
    wait_for(
        "polling resumes with the lease",
        Duration::from_secs(20),
        || recorded(&s, &g.url, "main").as_deref() == Some(c.id.as_str()),
    )
    .await;
    cancel.cancel();
    poller.stopped().await;
    shards.shutdown().await;
    store.shutdown().await;
    g.server.shutdown().await;
}

/// The refs webhooks and the poller match against follow the stored apps as they are added,
/// changed and deleted, including apps stored before the cache started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_refs_follow_added_changed_and_deleted_apps() {
    use flotilla_node::repos::{tracked_refs, TrackedCache, TrackedRef};

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, shards) = single_node(dir.path()).await;
    let url = "https://git.example.com/org/apps.git";
    put_app(&store, "before", url, "main").await;
    let cancel = CancellationToken::new();
    let cache = TrackedCache::start(&store, cancel.clone());
    let refs = |t: &flotilla_node::repos::Tracked| -> Vec<String> {
        t.values()
            .flatten()
            .map(|r: &TrackedRef| format!("{} {}", r.url, r.git_ref))
            .collect()
    };
    assert_eq!(refs(&*cache.get().await), vec![format!("{url} main")]);

    put_app(&store, "after", url, "release").await;
    put_app(&store, "pinned", url, &"a".repeat(40)).await;
    let want_two = vec![format!("{url} main"), format!("{url} release")];
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = refs(&*cache.get().await);
        if seen == want_two {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen, want_two,
        "an added app's ref appears; a pinned commit is not tracked"
    );

    // `before` moves to `release`, then `after` is deleted: only `release` is left.
    put_app(&store, "before", url, "release").await;
    store
        .propose(flotilla_raft::Command::DeleteApp {
            app: "argocd/after".into(),
        })
        .await
        .expect("delete");
    let want_one = vec![format!("{url} release")];
    for _ in 0..100 {
        seen = refs(&*cache.get().await);
        if seen == want_one {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, want_one);
    // The same as reading every stored app afresh.
    assert_eq!(
        *cache.get().await,
        tracked_refs(store.local()).expect("tracked refs")
    );

    cancel.cancel();
    shards.shutdown().await;
    store.shutdown().await;
}
