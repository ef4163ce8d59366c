//! Helpers shared by the simcluster integration tests.
#![allow(dead_code)]

pub mod kubectl;

use flotilla_loadtest::simcluster::{ControllerConfig, SimCluster, SimConfig};
use std::future::Future;
use std::time::{Duration, Instant};

/// Starts an HTTPS cluster with fast simulated controllers.
pub async fn start() -> SimCluster {
    SimCluster::start(SimConfig {
        controllers: ControllerConfig {
            enabled: true,
            delay: Duration::from_millis(50),
            children: true,
        },
        bookmark_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .expect("simcluster starts")
}

/// A kube client for a cluster, configured only from its kubeconfig.
pub async fn client(sim: &SimCluster) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig().expect("kubeconfig"))
        .expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Kubernetes Status of a failed kube call.
pub fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
