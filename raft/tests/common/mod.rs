//! Helpers for multi-member tests: members on loopback, real gRPC, bounded polling.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use flotilla_raft::{Command, Json, Store, StoreConfig};

/// Log to the test output once per process.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn,sled=warn,h2=warn,tower=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A member configuration tuned for a loaded 2-core machine.
pub fn config(id: u64, dir: &Path, listen: &str) -> StoreConfig {
    let mut c = StoreConfig::new(
        id,
        dir.join(format!("n{id}")),
        listen.parse().expect("addr"),
    );
    c.election_timeout_ms = (1000, 2000);
    c.heartbeat_ms = 200;
    c.cache_bytes = 8 << 20;
    c.leader_wait = Duration::from_secs(20);
    c
}

/// Start `n` members with ids 1..=n and form a group of them.
pub async fn group(n: u64, dir: &Path, tune: impl Fn(&mut StoreConfig)) -> Vec<Store> {
    let mut stores = Vec::new();
    for id in 1..=n {
        let mut c = config(id, dir, "127.0.0.1:0");
        tune(&mut c);
        stores.push(Store::start(c).await.expect("start member"));
    }
    let members: BTreeMap<u64, String> = stores
        .iter()
        .map(|s| (s.id(), s.addr().to_string()))
        .collect();
    stores[0].initialize(members).await.expect("initialize");
    wait_leader(&stores).await;
    stores
}

/// Poll `cond` every 50 ms until it holds or `secs` pass.
pub async fn wait_until<F, Fut>(what: &str, secs: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until all `stores` agree on one leader among them, and return its index in `stores`.
pub async fn wait_leader(stores: &[Store]) -> usize {
    let mut found = 0;
    wait_until("a leader everyone agrees on", 30, || {
        let leaders: Vec<Option<u64>> = stores.iter().map(|s| s.metrics().leader).collect();
        let ok = match leaders[0] {
            Some(l) => leaders.iter().all(|x| *x == Some(l)) && stores.iter().any(|s| s.id() == l),
            None => false,
        };
        if ok {
            found = stores
                .iter()
                .position(|s| Some(s.id()) == leaders[0])
                .unwrap_or(0);
        }
        async move { ok }
    })
    .await;
    found
}

/// A PutApp command for `ns/app-{i}`.
pub fn put_app(i: usize) -> Command {
    Command::PutApp {
        app: format!("test/app-{i}"),
        spec: Json::from(serde_json::json!({"i": i})),
        at: i as i64,
    }
}

/// Whether `store`'s replica has app `i`.
pub fn has_app(store: &Store, i: usize) -> bool {
    matches!(store.local().app(&format!("test/app-{i}")), Ok(Some(_)))
}

/// Start a member on a data directory a stopped member used, waiting (bounded) until the
/// stopped member's tasks have released the directory's lock.
pub async fn restart(cfg: StoreConfig) -> Store {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match Store::start(cfg.clone()).await {
            Ok(s) => return s,
            Err(e) if tokio::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("restart member {}: {e}", cfg.node_id),
        }
    }
}
