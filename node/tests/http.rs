//! The node's HTTP server on a real port with a real store, shard node and Git server:
//! probes, `/metrics`, and push webhooks from every provider landing as recorded revisions.

#[path = "http_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use flotilla_loadtest::git::webhook::{build, hmac_sha256_hex, PushEvent, WebhookProvider};
use flotilla_node::clusters::limit::Limits;
use flotilla_node::clusters::{ClusterRegistry, ConnectionStatus};
use flotilla_node::http::{serve, HttpDeps, MAX_WEBHOOK_BODY};
use flotilla_node::metrics::{self, Collector};
use flotilla_node::source::SourceCache;
use flotilla_raft::{ShardNode, Store};
use support::*;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "webhook-s3cret";

struct Node {
    store: Store,
    sources: Arc<SourceCache>,
    shards: Arc<ShardNode>,
    port: u16,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

async fn start_node(dir: &std::path::Path, secret: Option<&str>) -> Node {
    let (store, shards) = single_node(dir).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cancel = CancellationToken::new();
    let sources = sources(dir);
    let deps = HttpDeps {
        store: store.clone(),
        shards: shards.clone(),
        metrics: metrics::install().expect("recorder"),
        webhook_secret: secret.map(str::to_string),
        sources: sources.clone(),
    };
    let c = cancel.clone();
    let server = tokio::spawn(async move {
        serve(listener, deps, c).await.expect("serve");
    });
    Node {
        store,
        sources,
        shards,
        port,
        cancel,
        server,
    }
}

impl Node {
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("server stops")
            .expect("server task");
        self.shards.shutdown().await;
        self.store.shutdown().await;
    }
}

fn ev(url: &str, before: &str, after: &str) -> PushEvent {
    PushEvent::new(
        url,
        "main",
        before,
        after,
        vec!["apps/app-0/cm-0.yaml".into()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_metrics_and_signed_webhooks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), Some(SECRET)).await;
    let port = node.port;

    // Before any shard map: alive but not ready.
    assert_eq!(get(port, "/healthz").await, (200, "ok\n".to_string()));
    let (code, reason) = get(port, "/readyz").await;
    assert_eq!(code, 503, "{reason}");
    assert_eq!(
        reason.trim().lines().count(),
        1,
        "one-line reason: {reason:?}"
    );
    assert!(
        ["shard", "lease", "member"]
            .iter()
            .any(|w| reason.contains(w)),
        "{reason}"
    );
    wait_owning(&node.shards).await;
    let mut ready = false;
    for _ in 0..100 {
        if get(port, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "/readyz never became 200 with a map and a lease");

    let mut g = git(dir.path()).await;
    put_app(&node.store, "guestbook", &g.url, "main").await;
    put_app(&node.store, "other-branch", &g.url, "release").await;

    // Every provider's push lands as the pushed commit, under the app's URL and ref.
    let mut first_push = None;
    for provider in [
        WebhookProvider::GitHub,
        WebhookProvider::GitLab,
        WebhookProvider::Bitbucket,
        WebhookProvider::Gogs,
    ] {
        let c = g
            .fixture
            .commit_change(&[0], &format!("{provider:?}"))
            .expect("commit");
        let req = build(provider, &ev(&g.url, &c.parent, &c.id), Some(SECRET));
        let (code, body) = request(port, "POST", "/api/webhook", &req.headers, &req.body).await;
        first_push.get_or_insert((req.headers.clone(), req.body.clone()));
        assert_eq!(code, 200, "{provider:?}: {body}");
        assert!(body.contains("\"recorded\":1"), "{provider:?}: {body}");
        assert_eq!(
            recorded(&node.store, &g.url, "main").as_deref(),
            Some(c.id.as_str()),
            "{provider:?}"
        );
        // The app on another branch is untouched.
        assert_eq!(recorded(&node.store, &g.url, "release"), None);
    }
    let last = recorded(&node.store, &g.url, "main");

    // A redelivered old push (its `before` is not what the store has) does not move the ref
    // back: it is resolved by fetching instead, which finds the current head.
    let first_push = first_push.expect("a push was sent");
    let (code, body) = request(port, "POST", "/api/webhook", &first_push.0, &first_push.1).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(recorded(&node.store, &g.url, "main"), last);
    // Let that fetch finish before the next commit, so it cannot see it.
    let sources = node.sources.clone();
    wait_for("the webhook's fetch", Duration::from_secs(20), || {
        sources.fetch_count() >= 1
    })
    .await;

    // A wrong signature is refused and records nothing.
    let c = g.fixture.commit_change(&[0], "unsigned").expect("commit");
    for provider in [WebhookProvider::GitHub, WebhookProvider::Gogs] {
        let req = build(provider, &ev(&g.url, &c.parent, &c.id), Some("wrong"));
        let (code, body) = request(port, "POST", "/api/webhook", &req.headers, &req.body).await;
        assert_eq!(code, 401, "{provider:?}: {body}");
        assert!(!body.contains(SECRET) && !body.contains("wrong"), "{body}");
    }
    assert_eq!(recorded(&node.store, &g.url, "main"), last);

    // A correctly signed but malformed payload is 400 with what is wrong.
    let bad = br#"{"ref": "refs/heads/main", "after": "nope"}"#;
    let headers = vec![
        ("X-GitHub-Event".to_string(), "push".to_string()),
        (
            "X-Hub-Signature-256".to_string(),
            format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), bad)),
        ),
    ];
    let (code, body) = request(port, "POST", "/api/webhook", &headers, bad).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("repository"), "{body}");
    let (code, body) = request(port, "POST", "/api/webhook", &[], b"{}").await;
    assert_eq!(code, 400, "{body}");

    // A ping is fine; an oversized body is 413.
    let ping = br#"{"zen": "hi"}"#;
    let headers = vec![
        ("X-GitHub-Event".to_string(), "ping".to_string()),
        (
            "X-Hub-Signature-256".to_string(),
            format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), ping)),
        ),
    ];
    assert_eq!(
        request(port, "POST", "/api/webhook", &headers, ping)
            .await
            .0,
        200
    );
    let huge = vec![b' '; MAX_WEBHOOK_BODY + 1];
    let headers = vec![("X-GitHub-Event".to_string(), "push".to_string())];
    assert_eq!(
        request(port, "POST", "/api/webhook", &headers, &huge)
            .await
            .0,
        413
    );
    assert_eq!(recorded(&node.store, &g.url, "main"), last);

    // Metrics: the owned app with Argo CD's labels, clusters, and the store's figures.
    let clusters = Arc::new(ClusterRegistry::new());
    let kubeconfig = "apiVersion: v1\nkind: Config\ncurrent-context: dev\nclusters:\n- name: dev\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: dev\n  context:\n    cluster: dev\n    user: dev\nusers:\n- name: dev\n  user:\n    token: abc\n";
    let dev = clusters
        .add_kubeconfig(kubeconfig, None, Limits::default())
        .await
        .expect("cluster");
    dev.set_status(ConnectionStatus::Connected);
    let collector = Collector::start(
        node.store.clone(),
        node.shards.clone(),
        clusters.clone(),
        Duration::from_millis(100),
        node.cancel.child_token(),
    );
    let mut text = String::new();
    for _ in 0..100 {
        text = get(port, "/metrics").await.1;
        if text.contains("argocd_app_info{") && text.contains("flotilla_raft_term") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = text
        .lines()
        .find(|l| l.starts_with("argocd_app_info{") && l.contains("name=\"guestbook\""))
        .unwrap_or_else(|| panic!("no argocd_app_info for guestbook in:\n{text}"));
    for label in [
        "namespace=\"argocd\"".to_string(),
        "project=\"default\"".to_string(),
        "dest_server=\"https://kubernetes.default.svc\"".to_string(),
        "dest_namespace=\"dest\"".to_string(),
        format!("repo=\"{}\"", g.url),
        "sync_status=\"Unknown\"".to_string(),
        "health_status=\"Unknown\"".to_string(),
        "autosync_enabled=\"true\"".to_string(),
        "operation=\"\"".to_string(),
    ] {
        assert!(info.contains(&label), "{label} missing in {info}");
    }
    assert!(info.ends_with(" 1"), "{info}");
    assert!(
        text.lines().any(|l| l.starts_with("flotilla_raft_term ")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "flotilla_shard_lease_valid 1"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "flotilla_apps_owned 2"), "{text}");
    for counted in [
        r#"flotilla_webhook_requests_total{provider="github",result="200"}"#,
        r#"flotilla_webhook_requests_total{provider="github",result="401"}"#,
        r#"flotilla_webhook_requests_total{provider="unknown",result="400"}"#,
    ] {
        assert!(text.contains(counted), "{counted} missing in:\n{text}");
    }
    let dev_labels = r#"{name="dev",server="https://127.0.0.1:6443"} 1"#;
    for family in ["argocd_cluster_info", "argocd_cluster_connection_status"] {
        assert!(
            text.lines().any(|l| l == format!("{family}{dev_labels}")),
            "{family} missing in:\n{text}"
        );
    }
    assert!(!text.contains("abc"), "a credential leaked into /metrics");

    // Histograms others record get Argo CD's reconcile buckets and the described help.
    ::metrics::histogram!(
        "argocd_app_reconcile",
        "namespace" => "argocd",
        "dest_server" => "https://kubernetes.default.svc"
    )
    .record(0.3);
    let text = get(port, "/metrics").await.1;
    assert!(
        text.contains("# HELP argocd_app_reconcile "),
        "no help for argocd_app_reconcile:\n{text}"
    );
    for le in ["0.25", "0.5", "16"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("argocd_app_reconcile_bucket{")
                    && l.contains(&format!("le=\"{le}\""))),
            "no bucket {le}:\n{text}"
        );
    }

    // A deleted app's series disappears from the next collection.
    node.store
        .propose(flotilla_raft::Command::DeleteApp {
            app: "argocd/other-branch".into(),
        })
        .await
        .expect("delete app");
    let mut gone = false;
    for _ in 0..100 {
        let t = get(port, "/metrics").await.1;
        if !t.contains("name=\"other-branch\"") && t.contains("name=\"guestbook\"") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "argocd_app_info of a deleted app stayed");

    node.stop().await;
    collector.stopped().await;
    g.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_webhook_resolves_the_ref_by_fetching() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), None).await;
    wait_owning(&node.shards).await;
    let mut g = git(dir.path()).await;
    // The app writes the URL without `.git`; the payload's URLs still match it.
    let app_url = g.url.trim_end_matches(".git").to_string();
    put_app(&node.store, "guestbook", &app_url, "HEAD").await;
    let c = g.fixture.commit_change(&[1], "push").expect("commit");
    // A made-up commit in the payload is not trusted without a secret: the ref is fetched.
    let fake = "0123456789abcdef0123456789abcdef01234567";
    let req = build(WebhookProvider::GitLab, &ev(&g.url, &c.parent, fake), None);
    let (code, body) = request(node.port, "POST", "/api/webhook", &req.headers, &req.body).await;
    assert_eq!(code, 202, "{body}");
    let store = node.store.clone();
    wait_for("fetched revision", Duration::from_secs(20), || {
        recorded(&store, &app_url, "HEAD").is_some()
    })
    .await;
    assert_eq!(
        recorded(&node.store, &app_url, "HEAD").as_deref(),
        Some(c.id.as_str())
    );
    // The fetch is counted and timed under Argo CD's Git metrics.
    let text = get(node.port, "/metrics").await.1;
    let fetches = text
        .lines()
        .find(|l| {
            l.starts_with("argocd_git_request_total{") && l.contains("request_type=\"fetch\"")
        })
        .unwrap_or_else(|| panic!("no Git fetch counted in /metrics:\n{text}"));
    assert!(fetches.contains("repo=\"http://127.0.0.1"), "{fetches}");
    assert!(
        text.contains("argocd_git_request_duration_seconds_bucket{"),
        "no Git request durations in /metrics"
    );
    node.stop().await;
    g.server.shutdown().await;
}
