//! Cluster-wide calls: members, shards, clusters, repos, export/import, and the token.

use std::sync::Arc;

use flotilla_node::api::client::ApiClient;
use flotilla_node::clusters::ClusterRegistry;
use flotilla_proto::v1 as pb;
use flotilla_raft::{ClusterRef, Command, Json, RepoRef};
use serde_json::{json, Value};

use crate::harness::{eventually, flotilla, Node};

const TOKEN: &str = "s3cret-Token-9a8b7c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_token_is_refused_without_echo() {
    let node = Node::start(Some(TOKEN), Arc::new(ClusterRegistry::new())).await;
    let addr = node.addr.clone();

    let none = flotilla(&addr, &["app", "list"], &[]).await;
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("Unauthenticated") && none.stderr.contains("missing bearer token"),
        "{}",
        none.stderr
    );

    let wrong_token = "guess-0000-wrong";
    let wrong = flotilla(
        &addr,
        &["member", "list"],
        &[("FLOTILLA_TOKEN", wrong_token)],
    )
    .await;
    assert_eq!(wrong.code, 2);
    assert!(
        wrong.stderr.contains("invalid bearer token"),
        "{}",
        wrong.stderr
    );
    for run in [&none, &wrong] {
        for secret in [TOKEN, wrong_token] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "token echoed"
            );
        }
    }

    let file = node.dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("write");
    let file = file.to_string_lossy().into_owned();
    let ok = flotilla(
        &addr,
        &["member", "list", "--token-file", &file],
        &[("FLOTILLA_TOKEN", wrong_token)],
    )
    .await
    .ok();
    assert!(!ok.stdout.contains(TOKEN) && !ok.stderr.contains(TOKEN));

    let refused = ApiClient::connect_lazy(&addr, Some(wrong_token))
        .expect("client")
        .grpc()
        .list_members(pb::ListMembersRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(!refused.message().contains(wrong_token));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_shards_and_export_import() {
    let a = Node::start(None, Arc::new(ClusterRegistry::new())).await;
    let addr = a.addr.clone();

    tracing::info!("the single member is the leader");
    let members = flotilla(&addr, &["member", "list", "-o", "json"], &[])
        .await
        .ok()
        .json();
    assert_eq!(members["leader"], 1);
    let m = &members["members"][0];
    assert_eq!(m["id"], 1);
    assert_eq!(m["leader"], true);
    assert_eq!(m["role"], "voter");
    assert_eq!(m["apiAddr"], addr.as_str());
    assert_eq!(m["addr"], a.store.addr());
    let table = flotilla(&addr, &["member", "list"], &[]).await.ok();
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with('1') && l.contains("leader") && l.contains("voter")),
        "{}",
        table.stdout
    );
    let alone = flotilla(&addr, &["member", "remove", "1"], &[]).await;
    assert_eq!(alone.code, 2);
    assert!(alone.stderr.contains("only voter"), "{}", alone.stderr);

    tracing::info!("state to export");
    for (ns, name) in [("argocd", "one"), ("argocd", "two"), ("team", "three")] {
        a.put_app(
            ns,
            name,
            "default",
            json!({}),
            json!({"repoURL": "https://git.example.com/r.git", "path": name}),
        )
        .await;
    }
    let cmds = vec![
        Command::PutProject {
            name: "default".into(),
            spec: Json::from(json!({"spec": {"sourceRepos": ["*"]}})),
        },
        Command::PutCluster(ClusterRef {
            name: "prod".into(),
            server: "https://prod.example.com".into(),
            secret_ref: Some("argocd/cluster-prod".into()),
        }),
        Command::PutRepo(RepoRef {
            url: "https://git.example.com/r.git".into(),
            secret_ref: Some("argocd/repo-r".into()),
        }),
        Command::RecordRevision {
            repo: "https://git.example.com/r.git".into(),
            git_ref: "main".into(),
            sha: "abcdef0".into(),
            at: 5,
        },
    ];
    for r in a.store.propose_many(cmds).await.expect("propose").results {
        r.expect("applied");
    }

    tracing::info!("shards: every app counted once");
    let shards = eventually("a shard map", 30, || async {
        let s = flotilla(&addr, &["shard", "list", "--per-shard", "-o", "json"], &[])
            .await
            .ok()
            .json();
        (s["shardCount"].as_u64().unwrap_or(0) > 0).then_some(s)
    })
    .await;
    let apps: u64 = shards["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["apps"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(apps, 3);
    assert_eq!(
        shards["shards"].as_array().map(Vec::len) as Option<usize>,
        shards["shardCount"].as_u64().map(|c| c as usize)
    );

    tracing::info!("clusters and repos");
    let clusters = flotilla(&addr, &["cluster", "list", "-o", "json"], &[])
        .await
        .ok()
        .json();
    assert_eq!(clusters[0]["name"], "prod");
    assert_eq!(clusters[0]["connection"], "NotLoaded");
    let repos = flotilla(&addr, &["repo", "list"], &[]).await.ok();
    assert!(
        repos.stdout.contains("abcdef0") && repos.stdout.contains("argocd/repo-r"),
        "{}",
        repos.stdout
    );

    tracing::info!("export from one store, import into a fresh one");
    let exported = flotilla(&addr, &["admin", "export"], &[]).await.ok();
    let file = a.dir.path().join("export.json");
    std::fs::write(&file, &exported.stdout).expect("write");
    let b = Node::start(None, Arc::new(ClusterRegistry::new())).await;
    let imported = flotilla(&b.addr, &["admin", "import", &file.to_string_lossy()], &[])
        .await
        .ok();
    assert!(
        imported
            .stdout
            .contains("imported 3 apps, 1 projects, 1 clusters, 1 repos, 1 revisions"),
        "{}",
        imported.stdout
    );
    let again = flotilla(&b.addr, &["admin", "export", "--consistent"], &[])
        .await
        .ok()
        .json();
    let first: Value = exported.json();
    for field in ["apps", "projects", "clusters", "repos", "revisions"] {
        let strip = |v: &Value| -> Vec<Value> {
            v[field]
                .as_array()
                .expect(field)
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    if let Some(m) = e.as_object_mut() {
                        m.remove("generation");
                    }
                    e
                })
                .collect()
        };
        assert_eq!(strip(&first), strip(&again), "{field} differ after import");
        assert!(!strip(&first).is_empty(), "{field} empty");
    }
    let bad = std::fs::write(&file, r#"{"version": 7}"#);
    bad.expect("write");
    let refused = flotilla(&b.addr, &["admin", "import", &file.to_string_lossy()], &[]).await;
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("unsupported export version 7"),
        "{}",
        refused.stderr
    );

    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_are_forwarded_to_the_leader() {
    let a = Node::start(Some(TOKEN), Arc::new(ClusterRegistry::new())).await;
    let b = Node::start_member(
        2,
        Some(TOKEN),
        Arc::new(ClusterRegistry::new()),
        false,
        None,
    )
    .await;
    let env = [("FLOTILLA_TOKEN", TOKEN)];

    tracing::info!("the leader adds node 2 as a voter");
    let added = flotilla(
        &a.addr,
        &["member", "add", "2", b.store.addr(), "--promote"],
        &env,
    )
    .await
    .ok();
    assert!(
        added.stdout.contains("added as a voter"),
        "{}",
        added.stdout
    );
    eventually("node 2 to be a voter that knows the leader", 30, || async {
        let m = b.store.metrics();
        (m.voters.contains(&2) && m.leader == Some(1)).then_some(())
    })
    .await;
    let listed = flotilla(
        &b.addr,
        &["member", "list", "--consistent", "-o", "json"],
        &env,
    )
    .await
    .ok()
    .json();
    assert_eq!(listed["leader"], 1);
    assert_eq!(listed["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(listed["members"][1]["role"], "voter");

    tracing::info!("node 2, a follower, forwards its own removal to the leader's API");
    let removed = flotilla(&b.addr, &["member", "remove", "2"], &env)
        .await
        .ok();
    assert!(
        removed.stdout.contains("node 2 removed"),
        "{}",
        removed.stdout
    );
    eventually("node 2 to leave the membership", 30, || async {
        let m = a.store.metrics();
        (m.voters == [1] && m.learners.is_empty()).then_some(())
    })
    .await;

    b.stop().await;
    a.stop().await;
}
