//! Peer and client traffic over mutually authenticated TLS (rustls), with a test CA.

mod common;

use std::path::Path;

use common::*;
use flotilla_raft::{RemoteStore, TlsPaths};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// Write a CA and one member certificate for `name` into `dir`; return the paths.
fn make_pki(dir: &Path, name: &str) -> TlsPaths {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("member key");
    let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("member cert");
    let paths = TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join("member.pem"),
        key: dir.join("member-key.pem"),
        domain: name.to_string(),
    };
    std::fs::write(&paths.ca, ca_cert.pem()).expect("write ca");
    std::fs::write(&paths.cert, cert.pem()).expect("write cert");
    std::fs::write(&paths.key, key.serialize_pem()).expect("write key");
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_replicates_over_mutual_tls() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = make_pki(dir.path(), "flotilla-peer");

    tracing::info!("phase: form a 3-member group whose peers speak TLS only");
    let stores = group(3, dir.path(), |c| c.tls = Some(tls.clone())).await;
    let leader = wait_leader(&stores).await;
    let follower = (leader + 1) % 3;

    tracing::info!("phase: writes through a follower are forwarded over TLS and replicated");
    for i in 0..5 {
        stores[follower]
            .propose(put_app(i))
            .await
            .expect("propose over TLS");
    }
    for s in &stores {
        wait_until("replica has all writes", 20, || async {
            (0..5).all(|i| has_app(s, i))
        })
        .await;
    }

    tracing::info!("phase: a plaintext client is refused");
    let mut plain = RemoteStore::connect_lazy(stores[leader].addr()).expect("client");
    assert!(
        plain.propose(&[put_app(99)]).await.is_err(),
        "plaintext must not reach a TLS member"
    );
    assert!(!has_app(&stores[leader], 99));
    for s in &stores {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_joins_over_tls() {
    use flotilla_raft::MembershipChange;
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = make_pki(dir.path(), "flotilla-peer");
    let stores = group(3, dir.path(), |c| c.tls = Some(tls.clone())).await;
    let leader = wait_leader(&stores).await;
    let follower = (leader + 1) % 3;
    stores[leader].propose(put_app(0)).await.expect("propose");

    let mut cfg = config(4, dir.path(), "127.0.0.1:0");
    cfg.tls = Some(tls.clone());
    let four = flotilla_raft::Store::start(cfg).await.expect("start 4");
    let join = MembershipChange::AddLearner {
        id: 4,
        addr: four.addr().to_string(),
    };
    four.change_membership_via(
        &[stores[follower].addr().to_string()],
        &join,
        std::time::Duration::from_secs(20),
    )
    .await
    .expect("join over TLS through a follower");
    wait_until("the new member has the data", 20, || async {
        has_app(&four, 0)
    })
    .await;

    // Without TLS the same request is refused by the members.
    let plain = flotilla_raft::change_membership_via(
        &[stores[leader].addr().to_string()],
        &MembershipChange::AddLearner {
            id: 5,
            addr: "127.0.0.1:1".into(),
        },
        std::time::Duration::from_millis(800),
    )
    .await;
    assert!(plain.is_err(), "plaintext must not change a TLS group");
    four.shutdown().await;
    for s in &stores {
        s.shutdown().await;
    }
}
