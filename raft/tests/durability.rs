//! Process-level durability: a writer process is killed with SIGKILL while writing; after a
//! restart from its data directory, every write it reported as acknowledged is present.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("member");
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        l.local_addr().expect("addr").to_string()
    };

    tracing::info!("phase: start the writer process");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla-raft-durability"))
        .args([data.to_str().expect("utf-8 path"), &addr, "16"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let seen = Arc::new(AtomicUsize::new(0));
    let seen_by_reader = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(app) = line.strip_prefix("ACK ") {
                acked.push(app.to_string());
                seen_by_reader.fetch_add(1, Ordering::Relaxed);
            }
        }
        acked
    });

    tracing::info!("phase: let it write, then SIGKILL it mid-stream");
    // The writer never stops by itself: whenever the kill lands, writes are in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.load(Ordering::Relaxed) < 500 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("writer exited on its own: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "writer acknowledged too little in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let acked = reader.join().expect("reader thread");
    assert!(
        acked.len() >= 500,
        "too few writes before the kill: {}",
        acked.len()
    );
    tracing::info!(
        acked = acked.len(),
        "phase: restart from the data directory and check"
    );

    let mut cfg = flotilla_raft::StoreConfig::new(1, &data, addr.parse().expect("addr"));
    cfg.election_timeout_ms = (300, 600);
    let store = restart(cfg).await;
    let r = store
        .linearizable()
        .await
        .expect("linearizable read after restart");
    let missing: Vec<_> = acked
        .iter()
        .filter(|a| !matches!(r.app(a), Ok(Some(_))))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    store.shutdown().await;
}
