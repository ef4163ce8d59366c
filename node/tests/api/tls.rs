//! The API over TLS: the CLI with `--ca-file`, calls a follower forwards to the leader over
//! TLS, and the refusals of plain-text clients and unknown CAs.

use std::path::Path;
use std::sync::Arc;

use flotilla_node::api::client::ClientTls;
use flotilla_node::api::server::ApiTls;
use flotilla_node::clusters::ClusterRegistry;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use crate::harness::{eventually, flotilla, Node};

const TOKEN: &str = "tls-test-token";

/// A CA and a server certificate for 127.0.0.1 signed by it: `(ca.pem, cert, key)`.
fn pki(dir: &Path, name: &str) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("cert");
    let ca_path = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_path, ca_cert.pem()).expect("write ca");
    (
        ca_path,
        cert.pem().into_bytes(),
        key.serialize_pem().into_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_tls_and_forwards_over_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let (ca, cert_pem, key_pem) = pki(dir.path(), "api");
    let (other_ca, _, _) = pki(dir.path(), "other");
    let tls = ApiTls {
        cert_pem,
        key_pem,
        forward: ClientTls::from_ca_file(&ca).expect("ca"),
    };
    let a = Node::start_member_tls(
        1,
        Some(TOKEN),
        Arc::new(ClusterRegistry::new()),
        true,
        None,
        Some(tls.clone()),
    )
    .await;
    let b = Node::start_member_tls(
        2,
        Some(TOKEN),
        Arc::new(ClusterRegistry::new()),
        false,
        None,
        Some(tls),
    )
    .await;
    let ca_arg = ca.display().to_string();
    let env = [("FLOTILLA_TOKEN", TOKEN)];

    tracing::info!("the CLI trusts the CA and adds node 2 through node 1");
    let added = flotilla(
        &a.addr,
        &[
            "member",
            "add",
            "2",
            b.store.addr(),
            "--promote",
            "--ca-file",
            &ca_arg,
        ],
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

    tracing::info!("node 2 forwards its own removal to the leader's API over TLS");
    let https = format!("https://{}", b.addr);
    let removed = flotilla(
        &https,
        &["member", "remove", "2"],
        &[("FLOTILLA_TOKEN", TOKEN), ("FLOTILLA_CA_FILE", &ca_arg)],
    )
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

    tracing::info!("plain text, the system's roots and another CA are all refused");
    let port_forwarded = format!("127.0.0.1:{}", a.addr.rsplit(':').next().unwrap_or(""));
    let by_name = flotilla(
        &port_forwarded,
        &[
            "member",
            "list",
            "--ca-file",
            &ca_arg,
            "--tls-server-name",
            "localhost",
        ],
        &env,
    )
    .await
    .ok();
    assert!(by_name.stdout.contains("leader"), "{}", by_name.stdout);
    let wrong_name = flotilla(
        &port_forwarded,
        &[
            "member",
            "list",
            "--ca-file",
            &ca_arg,
            "--tls-server-name",
            "flotilla.example",
        ],
        &env,
    )
    .await;
    assert_eq!(wrong_name.code, 2, "{}", wrong_name.stdout);

    let plain = flotilla(&a.addr, &["member", "list"], &env).await;
    assert_eq!(plain.code, 2, "{}", plain.stdout);
    let roots = flotilla(&format!("https://{}", a.addr), &["member", "list"], &env).await;
    assert_eq!(roots.code, 2, "{}", roots.stdout);
    let other = flotilla(
        &a.addr,
        &[
            "member",
            "list",
            "--ca-file",
            &other_ca.display().to_string(),
        ],
        &env,
    )
    .await;
    assert_eq!(other.code, 2, "{}", other.stdout);
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let bad = flotilla(
        &a.addr,
        &[
            "member",
            "list",
            "--ca-file",
            &not_pem.display().to_string(),
        ],
        &env,
    )
    .await;
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("holds no PEM certificate"),
        "{}",
        bad.stderr
    );

    b.stop().await;
    a.stop().await;
}
