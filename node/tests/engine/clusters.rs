//! The cluster registry built from Argo CD cluster Secrets and kubeconfigs.
use crate::env::start;
use base64::Engine as _;
use flotilla_node::clusters::{limit::Limits, ClusterRegistry, ConnectionStatus};
use flotilla_node::model::{ApplicationDestination, Credentials};
use serde_json::json;

fn secret(name: &str, server: &str, config: serde_json::Value) -> String {
    let cfg = serde_json::to_string(&config).expect("json");
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-secret\n  labels:\n    argocd.argoproj.io/secret-type: cluster\nstringData:\n  name: {name}\n  server: {server}\n  config: '{cfg}'\n"
    )
}

#[tokio::test]
async fn clusters_from_secrets_resolve_by_server_and_name() {
    let env = start().await;
    let url = env.sim.url();
    let token = env.sim.token().expect("token").to_string();
    let ca = base64::engine::general_purpose::STANDARD.encode(env.sim.ca_pem().expect("ca"));
    let mut creds = Credentials::default();
    creds
        .add_yaml(&secret(
            "prod",
            &url,
            json!({"bearerToken": token, "tlsClientConfig": {"caData": ca}}),
        ))
        .expect("secret");
    creds
        .add_yaml(&secret(
            "loose",
            &url.replace("127.0.0.1", "localhost"),
            json!({"bearerToken": token, "tlsClientConfig": {"insecure": true}}),
        ))
        .expect("secret");
    creds
        .add_yaml(&secret("wrong", &format!("{url}/"), json!({"bearerToken": "nope", "tlsClientConfig": {"caData": ca, "serverName": "127.0.0.1"}})))
        .expect("secret");
    let registry = ClusterRegistry::new();
    let mut clusters = Vec::new();
    for c in &creds.clusters {
        clusters.push(
            registry
                .add_secret(c, Limits::default())
                .await
                .expect("client"),
        );
    }
    // The same server twice: the later Secret replaces the earlier one.
    assert_eq!(registry.all().len(), 2);

    let by_name = registry
        .resolve(&ApplicationDestination {
            name: Some("loose".into()),
            ..Default::default()
        })
        .expect("by name");
    assert!(by_name.kinds().await.expect("insecure TLS works").len() > 5);
    assert_eq!(by_name.status(), ConnectionStatus::Connected);

    let by_server = registry
        .resolve(&ApplicationDestination {
            server: Some(url.clone()),
            ..Default::default()
        })
        .expect("by server");
    assert_eq!(by_server.name(), "wrong");
    let err = by_server.kinds().await.expect_err("a bad token is refused");
    assert!(err.to_string().contains("wrong"), "{err}");
    assert!(
        matches!(by_server.status(), ConnectionStatus::Failed(m) if m.contains("401") || m.to_lowercase().contains("unauthorized")),
        "{:?}",
        by_server.status()
    );
    // Credentials never show in Debug output.
    let debug = format!("{:?} {:?} {:?}", by_server, creds, clusters);
    assert!(!debug.contains(&token), "{debug}");
    assert!(!debug.contains("nope"), "{debug}");

    let err = registry
        .resolve(&ApplicationDestination {
            name: Some("staging".into()),
            ..Default::default()
        })
        .expect_err("unknown");
    assert!(
        err.to_string().contains("staging") && err.to_string().contains("loose"),
        "{err}"
    );

    tracing::info!("the CA-verified Secret, re-added alone, talks to the cluster");
    let prod = ClusterRegistry::new()
        .add_secret(&creds.clusters[0], Limits::default())
        .await
        .expect("client");
    assert!(prod.kinds().await.expect("discovery with the CA").len() > 5);

    tracing::info!("kubeconfig contexts are clusters too");
    let kc = ClusterRegistry::new();
    let c = kc
        .add_kubeconfig(&env.kubeconfig, Some(env.sim.name()), Limits::default())
        .await
        .expect("context");
    assert_eq!(c.server(), url);
    assert!(kc
        .add_kubeconfig(&env.kubeconfig, Some("missing"), Limits::default())
        .await
        .is_err());
}
