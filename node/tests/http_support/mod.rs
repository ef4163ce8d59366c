//! Helpers for the HTTP, webhook and repository-polling tests: a single-member store with a
//! shard node, a real Git server with a fixture repository, stored apps, a raw HTTP client.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotilla_loadtest::git::{Fixture, FixtureSpec, GitServer, GitServerConfig};
use flotilla_node::source::{SourceCache, SourceConfig};
use flotilla_node::status::stored_app;
use flotilla_raft::shards::tune_store;
use flotilla_raft::{Command, Json, ShardConfig, ShardNode, Store, StoreConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A one-member store and its shard node.
pub async fn single_node(dir: &Path) -> (Store, Arc<ShardNode>) {
    single_node_with(dir, ShardConfig::default()).await
}

/// A one-member store and its shard node with these shard settings.
pub async fn single_node_with(dir: &Path, shard_cfg: ShardConfig) -> (Store, Arc<ShardNode>) {
    let mut cfg = StoreConfig::new(1, dir.join("raft"), "127.0.0.1:0".parse().expect("addr"));
    tune_store(&mut cfg);
    let store = Store::start(cfg).await.expect("store starts");
    store
        .initialize([(1, store.addr().to_string())].into())
        .await
        .expect("initialize");
    let shards = ShardNode::start(store.clone(), shard_cfg)
        .await
        .expect("shard node");
    (store, Arc::new(shards))
}

/// Waits (bounded) until the node owns shards under a valid lease.
pub async fn wait_owning(shards: &ShardNode) {
    wait_for("shard map and lease", Duration::from_secs(20), || {
        let o = shards.ownership().borrow().clone();
        o.epoch > 0 && o.lease_valid && !o.owned.is_empty()
    })
    .await;
}

/// Polls `cond` every 50 ms until it holds, panicking after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Git server with one fixture repository `apps.git` whose manifests name its own URL.
pub struct Git {
    pub server: GitServer,
    pub fixture: Fixture,
    pub url: String,
}

pub async fn git(dir: &Path) -> Git {
    let root = dir.join("git");
    std::fs::create_dir_all(&root).expect("git root");
    let server = GitServer::start(&root, GitServerConfig::default())
        .await
        .expect("git server");
    let url = server.url_for("apps.git");
    let spec = FixtureSpec {
        apps: 2,
        repo_url: url.clone(),
        ..FixtureSpec::default()
    };
    let fixture = Fixture::create(&root, "apps.git", spec).expect("fixture");
    Git {
        server,
        fixture,
        url,
    }
}

/// A source cache under `dir` (remote URLs only, as in production).
pub fn sources(dir: &Path) -> Arc<SourceCache> {
    Arc::new(SourceCache::new(SourceConfig::new(dir.join("mirrors"))).expect("source cache"))
}

/// Store `argocd/<name>` following `url` at `rev`.
pub async fn put_app(store: &Store, name: &str, url: &str, rev: &str) {
    let obj = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": url, "path": "apps/app-0", "targetRevision": rev},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "dest"},
            "syncPolicy": {"automated": {"prune": true}}
        }
    });
    store
        .propose(Command::PutApp {
            app: format!("argocd/{name}"),
            spec: Json::from(stored_app(&obj)),
            at: 1,
        })
        .await
        .expect("put app");
}

/// The recorded commit of `url`'s `git_ref`.
pub fn recorded(store: &Store, url: &str, git_ref: &str) -> Option<String> {
    store
        .local()
        .revision(url, git_ref)
        .expect("read revision")
        .map(|r| r.sha)
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body). Write errors are
/// ignored so that an early answer (413) is still read.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no answer to {method} {path} within 10 s");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad answer to {method} {path}: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub async fn get(port: u16, path: &str) -> (u16, String) {
    request(port, "GET", path, &[], b"").await
}
