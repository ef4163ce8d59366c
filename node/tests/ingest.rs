//! Ingestion against a simulated management cluster over HTTPS and a real single-member
//! store: Applications, AppProjects and Secrets mirrored into the store, status written back
//! onto the Application resources, finalizers released, apps directories and Git paths.
mod support;
#[path = "ingest/writeback.rs"]
mod writeback;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotilla_loadtest::simcluster::{SimCluster, SimConfig};
use flotilla_node::clusters::ClusterRegistry;
use flotilla_node::ingest::{origin_of, AppsRepo, Ingest, IngestSettings, ORIGIN_ANNOTATION};
use flotilla_node::source::{SourceCache, SourceConfig};
use flotilla_raft::{Command, Json, ShardConfig, ShardNode, Store, StoreConfig};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::ByteString;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// Poll `cond` every 50 ms until it holds; panic after `secs`.
async fn wait_until<F, Fut>(what: &str, secs: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Env {
    store: Store,
    clusters: Arc<ClusterRegistry>,
    sources: Arc<SourceCache>,
    cancel: CancellationToken,
    dir: TempDir,
}

/// A single-member store that leads, with empty registries.
async fn env() -> Env {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info,openraft=warn,sled=warn,h2=warn,tower=warn,hyper=warn")
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = StoreConfig::new(
        1,
        dir.path().join("store"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    flotilla_raft::shards::tune_store(&mut cfg);
    let store = Store::start(cfg).await.expect("store starts");
    store
        .initialize([(1, store.addr().to_string())].into())
        .await
        .expect("initialize");
    wait_until("the store to elect itself", 20, || async {
        store.metrics().leader == Some(1)
    })
    .await;
    let mut sc = SourceConfig::new(dir.path().join("git"));
    sc.allow_local = true;
    Env {
        store,
        clusters: Arc::new(ClusterRegistry::new()),
        sources: Arc::new(SourceCache::new(sc).expect("source cache")),
        cancel: CancellationToken::new(),
        dir,
    }
}

impl Env {
    fn start(&self, management: Option<kube::Client>, settings: IngestSettings) -> Ingest {
        Ingest::start(
            self.store.clone(),
            management,
            self.clusters.clone(),
            self.sources.clone(),
            settings,
            self.cancel.clone(),
        )
    }

    fn app(&self, key: &str) -> Option<(Value, u64)> {
        let r = self.store.local().app(key).expect("read app")?;
        Some((r.spec.to_value().expect("stored json"), r.generation))
    }
}

fn settings() -> IngestSettings {
    IngestSettings {
        status_interval: Duration::from_millis(100),
        poll: Duration::from_millis(200),
        ..IngestSettings::default()
    }
}

/// A simulated management cluster with flotilla's CRDs and the `argocd` namespace.
async fn management() -> (SimCluster, kube::Client) {
    let sim = SimCluster::start(SimConfig::default())
        .await
        .expect("simcluster");
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&sim.kubeconfig().expect("kubeconfig")).expect("yaml");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/crds");
    for file in ["application.yaml", "appproject.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("crd file");
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("crd yaml");
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("create crd");
    }
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "argocd"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let apps = apps_api(&client);
    wait_until("the Application API", 10, || async {
        apps.list(&Default::default()).await.is_ok()
    })
    .await;
    (sim, client)
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind))
}

fn apps_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), "argocd", &resource("Application"))
}

fn projects_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), "argocd", &resource("AppProject"))
}

fn application(name: &str, path: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"project": "default",
            "source": {"repoURL": "https://git.example.com/apps.git", "path": path},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "demo"}}
    })
}

async fn create(api: &Api<DynamicObject>, v: Value) {
    let obj: DynamicObject = serde_json::from_value(v).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create object");
}

async fn merge(api: &Api<DynamicObject>, name: &str, patch: Value) {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("patch object");
}

fn put_app(key: &str, doc: Value) -> Command {
    Command::PutApp {
        app: key.into(),
        spec: Json::from(doc),
        at: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_and_projects_are_mirrored() {
    let env = env().await;
    let (_sim, client) = management().await;
    let apps = apps_api(&client);
    let projects = projects_api(&client);
    // Left by an earlier leader: an app whose resource is gone, an app of the API, a project.
    let annotated = |origin: &str| json!({"metadata": {"name": "x", "annotations": {ORIGIN_ANNOTATION: origin}}});
    env.store
        .propose_many(vec![
            put_app("argocd/stale", annotated("kubernetes")),
            put_app("argocd/from-api", annotated("api")),
            Command::PutProject {
                name: "old".into(),
                spec: Json::from(json!({})),
            },
        ])
        .await
        .expect("seed");
    create(&apps, application("good", "one")).await;
    let mut invalid = application("invalid", "x");
    invalid["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("source");
    create(&apps, invalid).await;
    let mut broken = application("broken", "x");
    broken["spec"]["source"] = json!("not a source");
    create(&apps, broken).await;
    create(
        &projects,
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "team", "namespace": "argocd"},
            "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]}}),
    )
    .await;

    // A second application namespace: its Applications are ingested, its AppProjects are
    // not (projects live in the control-plane namespace only).
    let team_ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team-a"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &team_ns)
        .await
        .expect("create namespace");
    let team_apps: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "team-a", &resource("Application"));
    let mut team_app = application("svc", "svc");
    team_app["metadata"]["namespace"] = json!("team-a");
    create(&team_apps, team_app).await;
    create(
        &Api::namespaced_with(client.clone(), "team-a", &resource("AppProject")),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "rogue", "namespace": "team-a"},
            "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]}}),
    )
    .await;

    tracing::info!("phase: a new leader lists everything and reconciles the store");
    let ingest = env.start(
        Some(client.clone()),
        IngestSettings {
            namespaces: vec!["argocd".into(), "team-a".into()],
            ..settings()
        },
    );
    wait_until("the good and the invalid app", 20, || async {
        env.app("argocd/good").is_some() && env.app("argocd/invalid").is_some()
    })
    .await;
    let (good, generation) = env.app("argocd/good").expect("good");
    assert_eq!(origin_of(&good), Some("kubernetes"));
    assert_eq!(good["spec"]["source"]["path"], "one");
    assert!(good["metadata"].get("resourceVersion").is_none());
    assert_eq!(generation, 1);
    wait_until("the stale app and project to go", 10, || async {
        env.app("argocd/stale").is_none()
            && env.store.local().project("old").expect("read").is_none()
    })
    .await;
    assert!(env.app("argocd/from-api").is_some(), "other origins stay");
    assert!(
        env.app("argocd/broken").is_none(),
        "an unreadable app is skipped"
    );
    let team = env
        .store
        .local()
        .project("team")
        .expect("read")
        .expect("team");
    assert_eq!(
        team.spec.to_value().expect("json"),
        json!({"destinations": [{"namespace": "*", "server": "*"}], "sourceRepos": ["*"]})
    );

    wait_until("the app of the second namespace", 10, || async {
        env.app("team-a/svc").is_some()
    })
    .await;
    assert!(
        env.store.local().project("rogue").expect("read").is_none(),
        "an AppProject outside the control-plane namespace is not a project"
    );

    tracing::info!("phase: updates, a status-only change, deletes");
    merge(&apps, "good", json!({"spec": {"source": {"path": "two"}}})).await;
    wait_until("the spec update", 10, || async {
        env.app("argocd/good")
            .is_some_and(|(v, g)| g == 2 && v["spec"]["source"]["path"] == "two")
    })
    .await;
    merge(
        &apps,
        "good",
        json!({"status": {"sync": {"status": "Synced"}}}),
    )
    .await;
    // Events of one namespace arrive in order: once the next app is in, the status change
    // has been seen.
    create(&apps, application("later", "three")).await;
    wait_until("the later app", 10, || async {
        env.app("argocd/later").is_some()
    })
    .await;
    assert_eq!(
        env.app("argocd/good").expect("good").1,
        2,
        "status alone is no change"
    );
    merge(
        &projects,
        "team",
        json!({"spec": {"description": "the team"}}),
    )
    .await;
    wait_until("the project update", 10, || async {
        env.store
            .local()
            .project("team")
            .expect("read")
            .is_some_and(|p| p.generation == 2)
    })
    .await;
    apps.delete("good", &DeleteParams::default())
        .await
        .expect("delete");
    projects
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("the deletes", 10, || async {
        env.app("argocd/good").is_none()
            && env.store.local().project("team").expect("read").is_none()
    })
    .await;
    assert!(env.app("argocd/invalid").is_some() && env.app("argocd/later").is_some());

    env.cancel.cancel();
    ingest.stopped().await;
    env.store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_written_back_and_the_finalizer_released() {
    let env = env().await;
    let (_sim, client) = management().await;
    let shards = ShardNode::start(env.store.clone(), ShardConfig::default())
        .await
        .expect("shard node");
    let apps = apps_api(&client);
    let mut app = application("web", "web");
    app["metadata"]["finalizers"] = json!(["resources-finalizer.argocd.argoproj.io"]);
    create(&apps, app).await;
    let ingest = env.start(Some(client.clone()), settings());
    wait_until("the app in the store", 20, || async {
        env.app("argocd/web").is_some()
    })
    .await;
    wait_until("a shard map", 20, || async {
        env.store.local().shard_map().expect("read").is_some()
    })
    .await;
    let count = env
        .store
        .local()
        .shard_map()
        .expect("read")
        .expect("map")
        .shard_count();
    let shard = flotilla_shard::shard_of("argocd/web", count);
    let mut epoch = 0;
    wait_until("ownership of the app's shard", 20, || {
        let r = shards.may_act(shard);
        if let Ok(e) = r {
            epoch = e;
        }
        async move { r.is_ok() }
    })
    .await;

    tracing::info!("phase: status and operation in the store appear on the resource");
    let status = json!({"sync": {"status": "Synced", "revision": "abc"},
        "health": {"status": "Healthy"}, "observedGeneration": 1});
    env.store
        .propose_many(vec![
            Command::SetStatus {
                app: "argocd/web".into(),
                node: 1,
                epoch,
                status: Json::from(status),
                at: 0,
            },
            Command::OperationStarted {
                app: "argocd/web".into(),
                node: 1,
                epoch,
                op_id: "op-1".into(),
                request: Json::from(json!({"initiatedBy": "automated", "revision": "abc"})),
                at: 1_700_000_000_000,
            },
        ])
        .await
        .expect("status");
    wait_until("the status on the Application", 20, || async {
        let o = apps.get("web").await.expect("get");
        o.data["status"]["sync"]["status"] == "Synced"
            && o.data["status"]["health"]["status"] == "Healthy"
            && o.data["status"]["operationState"]["phase"] == "Running"
    })
    .await;
    env.store
        .propose(Command::OperationFinished {
            app: "argocd/web".into(),
            node: 1,
            epoch,
            op_id: "op-1".into(),
            result: Json::from(json!({"phase": "Succeeded", "message": "synced", "revision": "abc",
                "resources": [], "startedAt": "2023-11-14T22:13:20Z", "attempts": 1, "dryRun": false})),
            at: 1_700_000_001_000,
        })
        .await
        .expect("finished");
    wait_until("the finished operation on the Application", 20, || async {
        let o = apps.get("web").await.expect("get");
        o.data["status"]["operationState"]["phase"] == "Succeeded"
            && o.data["status"]["operationState"]["finishedAt"] == "2023-11-14T22:13:21Z"
    })
    .await;
    assert_eq!(
        env.app("argocd/web").expect("web").1,
        1,
        "write-back is no spec change"
    );

    tracing::info!("phase: what happened is recorded as Events on the Application");
    let uid = apps
        .get("web")
        .await
        .expect("get")
        .metadata
        .uid
        .expect("uid");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "argocd");
    let list_seen = || async {
        let list = events.list(&Default::default()).await.expect("events");
        list.items
            .iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some("web")
                    && e.involved_object.kind.as_deref() == Some("Application")
                    && e.involved_object.uid.as_deref() == Some(uid.as_str())
            })
            .map(|e| {
                (
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
    };
    wait_until("started, completed and status events", 20, || async {
        list_seen().await.len() >= 4
    })
    .await;
    let seen = list_seen().await;
    for want in [
        ("OperationStarted", "Initiated automated sync to 'abc'"),
        ("OperationCompleted", "Sync operation to abc succeeded"),
        ("ResourceUpdated", "Updated sync status: Unknown -> Synced"),
        (
            "ResourceUpdated",
            "Updated health status: Unknown -> Healthy",
        ),
    ] {
        assert!(
            seen.iter().any(|(r, m)| r == want.0 && m == want.1),
            "{want:?} in {seen:?}"
        );
    }

    tracing::info!("phase: delete; the controller drops the app; the finalizer goes");
    apps.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("the deletion in the store", 10, || async {
        env.app("argocd/web")
            .is_some_and(|(v, _)| v["metadata"].get("deletionTimestamp").is_some())
    })
    .await;
    assert!(
        apps.get_opt("web").await.expect("get").is_some(),
        "held by the finalizer"
    );
    env.store
        .propose(Command::DeleteApp {
            app: "argocd/web".into(),
        })
        .await
        .expect("delete app");
    wait_until("the Application to be gone", 10, || async {
        apps.get_opt("web").await.expect("get").is_none()
    })
    .await;

    env.cancel.cancel();
    ingest.stopped().await;
    shards.shutdown().await;
    env.store.shutdown().await;
}

fn secret(name: &str, kind: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("argocd".into()),
            labels: Some([("argocd.argoproj.io/secret-type".into(), kind.into())].into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Every record of the store, as text.
fn store_text(store: &Store) -> String {
    let r = store.local();
    format!(
        "{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
        r.apps().expect("apps"),
        r.projects().expect("projects"),
        r.statuses().expect("statuses"),
        r.clusters().expect("clusters"),
        r.repos().expect("repos"),
        r.revisions().expect("revisions"),
        r.nodes().expect("nodes"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_register_clusters_and_credentials_by_reference() {
    let env = env().await;
    let (_sim, client) = management().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    let pp = PostParams::default();
    let cluster_config = r#"{"bearerToken":"tok-SECRET-123","tlsClientConfig":{"insecure":true}}"#;
    secrets
        .create(
            &pp,
            &secret(
                "prod",
                "cluster",
                &[
                    ("name", "prod"),
                    ("server", "https://127.0.0.1:9"),
                    ("config", cluster_config),
                ],
            ),
        )
        .await
        .expect("cluster secret");
    secrets
        .create(&pp, &secret("broken", "cluster", &[("name", "broken")]))
        .await
        .expect("malformed secret");
    secrets
        .create(
            &pp,
            &secret(
                "repo",
                "repository",
                &[
                    ("url", "https://git.example.com/a.git"),
                    ("username", "u"),
                    ("password", "pw-SECRET-456"),
                ],
            ),
        )
        .await
        .expect("repository secret");
    secrets
        .create(
            &pp,
            &secret(
                "creds",
                "repo-creds",
                &[
                    ("url", "https://git.example.com/"),
                    ("password", "pw-SECRET-789"),
                ],
            ),
        )
        .await
        .expect("repo-creds secret");
    let ingest = env.start(Some(client.clone()), settings());

    wait_until(
        "the cluster and the repository in the store",
        20,
        || async {
            let r = env.store.local();
            r.clusters().expect("clusters").len() == 1 && r.repos().expect("repos").len() == 1
        },
    )
    .await;
    let cluster = &env.store.local().clusters().expect("clusters")[0];
    assert_eq!(
        (
            cluster.name.as_str(),
            cluster.server.as_str(),
            cluster.secret_ref.as_deref()
        ),
        ("prod", "https://127.0.0.1:9", Some("argocd/prod"))
    );
    let repo = &env.store.local().repos().expect("repos")[0];
    assert_eq!(repo.secret_ref.as_deref(), Some("argocd/repo"));
    wait_until("the cluster in the registry", 10, || async {
        env.clusters.all().iter().any(|c| c.name() == "prod")
    })
    .await;
    assert_eq!(
        env.clusters.all().len(),
        1,
        "the malformed Secret is skipped"
    );
    let creds = env.sources.credentials();
    let pw = |url: &str| {
        creds
            .for_repo(url)
            .and_then(|c| c.password.as_ref())
            .map(|p| p.expose().to_string())
    };
    assert_eq!(
        pw("https://git.example.com/a.git").as_deref(),
        Some("pw-SECRET-456")
    );
    assert_eq!(
        pw("https://git.example.com/b.git").as_deref(),
        Some("pw-SECRET-789")
    );
    let text = store_text(&env.store);
    for leak in ["tok-SECRET-123", "pw-SECRET-456", "pw-SECRET-789"] {
        assert!(!text.contains(leak), "{leak} reached the store");
    }

    tracing::info!("phase: a Secret changes");
    let moved = secret(
        "prod",
        "cluster",
        &[
            ("name", "prod"),
            ("server", "https://127.0.0.1:10"),
            ("config", cluster_config),
        ],
    );
    secrets
        .patch(
            "prod",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": moved.data})),
        )
        .await
        .expect("patch secret");
    wait_until(
        "the new server in the store and the registry",
        10,
        || async {
            let stored = env.store.local().clusters().expect("clusters");
            stored.len() == 1
                && stored[0].server == "https://127.0.0.1:10"
                && env
                    .clusters
                    .all()
                    .iter()
                    .any(|c| c.server() == "https://127.0.0.1:10")
        },
    )
    .await;
    assert_eq!(
        env.clusters.all().len(),
        1,
        "the old registration is replaced"
    );

    tracing::info!("phase: Secrets removed");
    secrets
        .delete("prod", &DeleteParams::default())
        .await
        .expect("delete");
    secrets
        .delete("repo", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("the registrations to go", 10, || async {
        let r = env.store.local();
        r.clusters().expect("clusters").is_empty()
            && r.repos().expect("repos").is_empty()
            && env.clusters.all().is_empty()
    })
    .await;

    env.cancel.cancel();
    ingest.stopped().await;
    env.store.shutdown().await;
}

const MANIFEST: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: NAME\nspec:\n  project: default\n  source: {repoURL: 'https://git.example.com/apps.git', path: NAME}\n  destination: {server: 'https://kubernetes.default.svc', namespace: demo}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_directories_and_git_paths_are_ingested() {
    let env = env().await;
    let dir = env.dir.path().join("apps");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).expect("write");
    write(
        "a.yaml",
        &(MANIFEST.replace("NAME", "one") + "---\n" + &MANIFEST.replace("NAME", "two")),
    );
    write("bad.yaml", "kind: Application\nmetadata: {name: [oops\n");
    write("notes.txt", &MANIFEST.replace("NAME", "ignored"));
    let repo = support::Repo::init(&env.dir.path().join("repo"));
    repo.write("apps/x.yaml", &MANIFEST.replace("NAME", "from-git"));
    support::git(&repo.dir, &["add", "-A"]);
    support::git(&repo.dir, &["commit", "-qm", "apps"]);
    let ingest = env.start(
        None,
        IngestSettings {
            apps_dir: Some(dir.clone()),
            apps_repo: Some(AppsRepo {
                url: repo.dir.display().to_string(),
                revision: "main".into(),
                path: "apps".into(),
            }),
            ..settings()
        },
    );
    wait_until(
        "the apps of the directory and the repository",
        30,
        || async {
            ["argocd/one", "argocd/two", "argocd/from-git"]
                .iter()
                .all(|k| env.app(k).is_some())
        },
    )
    .await;
    let (one, _) = env.app("argocd/one").expect("one");
    assert_eq!(origin_of(&one), Some("directory"));
    assert!(env.app("argocd/ignored").is_none());

    tracing::info!("phase: while a file is bad nothing is deleted; once fixed, removals apply");
    write(
        "a.yaml",
        &MANIFEST
            .replace("NAME", "one")
            .replace("path: one", "path: one-v2"),
    );
    // Updates and deletes of one read are proposed together: once the update is in, a
    // delete would be too.
    wait_until("the update of one", 10, || async {
        env.app("argocd/one")
            .is_some_and(|(v, _)| v["spec"]["source"]["path"] == "one-v2")
    })
    .await;
    assert!(
        env.app("argocd/two").is_some(),
        "no deletes while a file is bad"
    );
    write("bad.yaml", &MANIFEST.replace("NAME", "three"));
    wait_until("the fixed file's app and the removal", 10, || async {
        env.app("argocd/three").is_some() && env.app("argocd/two").is_none()
    })
    .await;
    assert!(env.app("argocd/from-git").is_some());

    env.cancel.cancel();
    ingest.stopped().await;
    env.store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_ingestion_over() {
    let env = env().await;
    let (_sim, client) = management().await;
    let apps = apps_api(&client);
    // Two more members join the group; each node runs ingestion, only the leader mirrors.
    let mut stores = vec![env.store.clone()];
    for id in [2, 3] {
        let mut cfg = StoreConfig::new(
            id,
            env.dir.path().join(format!("store-{id}")),
            "127.0.0.1:0".parse().expect("addr"),
        );
        flotilla_raft::shards::tune_store(&mut cfg);
        let s = Store::start(cfg).await.expect("member starts");
        env.store
            .add_learner(id, s.addr().to_string())
            .await
            .expect("learner");
        stores.push(s);
    }
    env.store.promote([2, 3].into()).await.expect("promote");
    let ingests: Vec<Ingest> = stores
        .iter()
        .map(|s| {
            Ingest::start(
                s.clone(),
                Some(client.clone()),
                Arc::new(ClusterRegistry::new()),
                env.sources.clone(),
                settings(),
                env.cancel.clone(),
            )
        })
        .collect();
    create(&apps, application("first", "one")).await;
    wait_until("the first app", 20, || async {
        env.app("argocd/first").is_some()
    })
    .await;

    tracing::info!("phase: leadership moves to member 2 and member 1 stops");
    env.store.transfer_leadership(2).await.expect("transfer");
    wait_until("member 2 to lead", 20, || async {
        stores.iter().all(|s| s.metrics().leader == Some(2))
    })
    .await;
    // Member 1 stops altogether: whatever reaches the store now comes from the new leader.
    stores[0].shutdown().await;
    create(&apps, application("second", "two")).await;
    apps.delete("first", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("the new leader's changes", 20, || async {
        let r = stores[1].local();
        r.app("argocd/second").expect("read").is_some()
            && r.app("argocd/first").expect("read").is_none()
    })
    .await;

    env.cancel.cancel();
    for i in ingests {
        i.stopped().await;
    }
    for s in &stores {
        s.shutdown().await;
    }
}
