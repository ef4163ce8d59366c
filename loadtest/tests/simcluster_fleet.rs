//! Many clusters in one process: the `SimFleet` library API and the
//! `flotilla-loadtest simcluster` command with the kubeconfigs it writes.
#![cfg(feature = "simcluster")]

mod simcluster_support;

use flotilla_loadtest::simcluster::{SimConfig, SimFleet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

async fn client_for(path: &Path, context: &str) -> kube::Client {
    let kc = Kubeconfig::read_from(path).expect("kubeconfig reads");
    let opts = KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .expect("config"),
    )
    .expect("client")
}

#[tokio::test]
async fn fleet_clusters_are_isolated_and_reachable_through_written_kubeconfigs() {
    let fleet = SimFleet::start(
        3,
        0,
        SimConfig {
            name: "t".into(),
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    fleet.write_kubeconfigs(dir.path()).unwrap();
    for i in 0..3 {
        assert!(dir.path().join(format!("t-{i}.kubeconfig")).exists());
    }
    let all = dir.path().join("all.kubeconfig");
    let a: Api<ConfigMap> = Api::namespaced(client_for(&all, "t-0").await, "default");
    let b: Api<ConfigMap> = Api::namespaced(client_for(&all, "t-2").await, "default");
    a.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "only-in-0"}})).unwrap(),
    )
    .await
    .unwrap();
    assert!(a.get("only-in-0").await.is_ok());
    assert!(
        b.get("only-in-0").await.is_err(),
        "clusters do not share objects"
    );
    let single = client_for(&dir.path().join("t-1.kubeconfig"), "t-1").await;
    assert_eq!(
        Api::<Namespace>::all(single)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simcluster_command_serves_clusters_and_writes_kubeconfigs() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-loadtest"))
        .args(["simcluster", "--clusters", "2", "--dir"])
        .arg(dir.path())
        .args(["--exit-after-secs", "60"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("flotilla-loadtest starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = vec![];
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("output in time")
            .unwrap()
            .expect("ready line");
        if line.starts_with("ready:") {
            break;
        }
        urls.push(line);
    }
    assert_eq!(urls.len(), 2);
    assert!(
        urls[1].starts_with("sim-1 https://127.0.0.1:"),
        "{}",
        urls[1]
    );
    let all = dir.path().join("all.kubeconfig");
    let ns = Api::<Namespace>::all(client_for(&all, "sim-1").await)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(ns
        .items
        .iter()
        .any(|n| n.metadata.name.as_deref() == Some("default")));
    // The command in docs/simcluster.md: kubectl with the written kubeconfig.
    if std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok()
    {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&all)
            .args(["--context", "sim-0", "--cache-dir"])
            .arg(dir.path().join("cache"))
            .args(["get", "namespaces"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("kube-system")
        );
    }
    child.kill().await.unwrap();
}

#[tokio::test]
async fn plain_http_without_auth_serves_the_same_api() {
    let sim = flotilla_loadtest::simcluster::SimCluster::start(SimConfig {
        tls: false,
        token: Some(String::new()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    assert!(sim.url().starts_with("http://127.0.0.1:"));
    assert!(sim.ca_pem().is_none() && sim.token().is_none());
    let kc = Kubeconfig::from_yaml(&sim.kubeconfig().unwrap()).unwrap();
    let c = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "plain"}})).unwrap(),
    )
    .await
    .unwrap();
    assert!(api.get("plain").await.is_ok());
    sim.shutdown().await;
}

/// The library snippet of docs/simcluster.md, step by step.
#[tokio::test]
async fn library_api_as_documented() {
    use flotilla_loadtest::simcluster::{FaultConfig, SimCluster};
    let sim = SimCluster::start(SimConfig::default()).await.unwrap();
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    assert!(sim
        .ca_pem()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(sim.token().unwrap().len(), 32);
    assert!(sim
        .kubeconfig()
        .unwrap()
        .contains("certificate-authority-data"));
    sim.set_faults(FaultConfig {
        error_rate: 0.2,
        ..Default::default()
    });
    assert_eq!(sim.faults().error_rate, 0.2);
    sim.set_offline(true);
    assert!(sim.faults().offline);
    sim.drop_watches();
    sim.expire_watch_history();
    assert_eq!(sim.fault_counts().errors, 0);
    assert_eq!(sim.watches_started(), 0);
    sim.shutdown().await;

    let fleet = SimFleet::start(
        5,
        0,
        SimConfig {
            name: "dest".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    fleet.write_kubeconfigs(dir.path()).unwrap();
    assert!(
        dir.path().join("dest-4.kubeconfig").exists() && dir.path().join("all.kubeconfig").exists()
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn tokens_stay_out_of_debug_output_and_kubeconfigs_are_owner_only() {
    let token = "s3cr3t-bearer-token";
    let fleet = SimFleet::start(
        2,
        0,
        SimConfig {
            name: "priv".into(),
            token: Some(token.into()),
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let debug = format!(
        "{fleet:?} {:?}",
        SimConfig {
            token: Some(token.into()),
            ..SimConfig::default()
        }
    );
    assert!(!debug.contains(token), "Debug shows the token: {debug}");
    assert!(
        debug.contains("<redacted>"),
        "Debug says a token is set: {debug}"
    );

    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.kubeconfig");
    // A kubeconfig left readable by an older run is tightened, not just rewritten.
    std::fs::write(&all, "old").unwrap();
    fleet.write_kubeconfigs(dir.path()).unwrap();
    assert!(std::fs::read_to_string(&all).unwrap().contains(token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for name in ["priv-0.kubeconfig", "priv-1.kubeconfig", "all.kubeconfig"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{name} is readable by others: {mode:o}");
        }
    }
    fleet.shutdown().await;
}
