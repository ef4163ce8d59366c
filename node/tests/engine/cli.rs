//! `flotilla health`, `flotilla diff` and `flotilla sync` as a user runs them.
use crate::env::{cm, get, start};
use crate::support::Repo;
use serde_json::Value;

async fn flotilla(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("flotilla runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_command_table_json_and_lua() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("objs.yaml");
    std::fs::write(
        &file,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: n, generation: 1}\nspec: {replicas: 1}\nstatus: {observedGeneration: 1, replicas: 1, updatedReplicas: 1, availableReplicas: 1, readyReplicas: 1}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: plain}\n- apiVersion: v1\n  kind: PersistentVolumeClaim\n  metadata: {name: data}\n  status: {phase: Pending}\n",
    )
    .expect("write");
    let f = file.to_string_lossy().into_owned();
    let (code, out, err) = flotilla(&["health", "-o", "json", &f]).await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("JSON array");
    let status = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .map(|r| r["status"].clone())
            .expect(name)
    };
    assert_eq!(rows.len(), 3, "the List is flattened: {out}");
    assert_eq!(status("web"), "Healthy");
    assert_eq!(status("plain"), Value::Null);
    assert_eq!(status("data"), "Progressing");
    assert_eq!(rows[0]["namespace"], "n");

    let (code, out, _) = flotilla(&["health", &f]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("KIND"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("plain") && l.split_whitespace().any(|c| c == "-")),
        "{out}"
    );

    let dir = tmp.path().join("custom");
    std::fs::create_dir_all(dir.join("ConfigMap")).expect("mkdir");
    std::fs::write(dir.join("ConfigMap/health.lua"), "while true do end").expect("write");
    let (code, out, err) = flotilla(&[
        "health",
        "-o",
        "json",
        "--customizations",
        &dir.to_string_lossy(),
        &f,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("JSON");
    let plain = rows.iter().find(|r| r["name"] == "plain").expect("plain");
    assert_eq!(plain["status"], "Unknown", "{plain}");

    let (code, _, err) = flotilla(&["health", "/nonexistent.yaml"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("nonexistent"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_and_sync_commands_against_a_cluster() {
    let env = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write("app/cm.yaml", &cm("cli-cm", "1"));
    repo.commit("c");
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(&kubeconfig, &env.kubeconfig).expect("write");
    let app = tmp.path().join("app.yaml");
    std::fs::write(
        &app,
        format!("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: cli}}\nspec:\n  project: default\n  destination: {{server: https://kubernetes.default.svc, namespace: default}}\n  source: {{repoURL: \"{}\", path: app}}\n", repo.url()),
    )
    .expect("write");
    let cache = tmp.path().join("cache");
    let (a, k, c) = (
        app.to_string_lossy(),
        kubeconfig.to_string_lossy(),
        cache.to_string_lossy(),
    );
    let base = ["--kubeconfig", &k, "--cache-dir", &c];

    let (code, out, err) = flotilla(&[&["diff", &a][..], &base].concat()).await;
    assert_eq!(code, 1, "out of sync: {out}{err}");
    assert!(
        out.contains("ConfigMap default/cli-cm (missing from the cluster)"),
        "{out}"
    );

    let (code, out, err) = flotilla(&[&["sync", &a, "--dry-run"][..], &base].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(get(&env, "v1", "ConfigMap", "default", "cli-cm")
        .await
        .is_none());

    let (code, out, err) = flotilla(&[&["sync", &a][..], &base].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cli-cm") && out.contains("Synced"), "{out}");
    assert!(get(&env, "v1", "ConfigMap", "default", "cli-cm")
        .await
        .is_some());

    let (code, out, err) = flotilla(&[&["diff", &a][..], &base].concat()).await;
    assert_eq!(code, 0, "in sync: {out}{err}");

    tracing::info!("system-level ignoreDifferences from --argocd-cm hide a change of data");
    repo.write("app/cm.yaml", &cm("cli-cm", "2"));
    repo.commit("c2");
    let argocd_cm = tmp.path().join("argocd-cm.yaml");
    std::fs::write(
        &argocd_cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-cm}\ndata:\n  resource.customizations.ignoreDifferences.ConfigMap: |\n    jsonPointers:\n    - /data/x\n",
    )
    .expect("write");
    let (code, out, err) = flotilla(&[&["diff", &a][..], &base].concat()).await;
    assert_eq!(code, 1, "data changed: {out}{err}");
    let m = argocd_cm.to_string_lossy();
    let (code, out, err) = flotilla(&[&["diff", &a, "--argocd-cm", &m][..], &base].concat()).await;
    assert_eq!(code, 0, "ignored by argocd-cm: {out}{err}");

    tracing::info!("a Job that fails makes the sync fail with exit 1");
    repo.write(
        "app/job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: cli-job\n  annotations: {simcluster.flotilla.dev/fail: \"true\"}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    repo.commit("job");
    let (code, out, err) =
        flotilla(&[&["sync", &a, "--json", "--timeout", "30"][..], &base].concat()).await;
    assert_eq!(code, 1, "{out}{err}");
    let op: Value = serde_json::from_str(&out).expect("operation JSON");
    assert_eq!(op["phase"], "Failed", "{op:#}");
    let job = op["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "cli-job")
        .expect("job result");
    assert_eq!(job["status"], "SyncFailed");

    let (code, _, err) = flotilla(&[
        "diff",
        &a,
        "--kubeconfig",
        "/nonexistent",
        "--cache-dir",
        &c,
    ])
    .await;
    assert_eq!(code, 2, "{err}");
}
