//! A single-member store that writes applications as fast as it can and prints `ACK <i>` for
//! each acknowledged write. The durability test kills it with SIGKILL mid-stream and checks,
//! after a restart from the same data directory, that every printed write is present.
//!
//! Usage: `flotilla-raft-durability <data-dir> <listen-addr> <writers>`

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use flotilla_raft::{Command, Json, Store, StoreConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("missing <data-dir>")?;
    let listen = args.next().context("missing <listen-addr>")?;
    let writers: usize = args
        .next()
        .context("missing <writers>")?
        .parse()
        .context("<writers>")?;
    let mut cfg = StoreConfig::new(1, dir, listen.parse().context("<listen-addr>")?);
    cfg.election_timeout_ms = (300, 600);
    cfg.heartbeat_ms = 100;
    let store = Store::start(cfg).await?;
    if !store.raft().is_initialized().await? {
        store
            .initialize(BTreeMap::from([(1, store.addr().to_string())]))
            .await?;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
    for w in 0..writers {
        let store = store.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let app = format!("dur/w{w}-{i}");
                let cmd = Command::PutApp {
                    app: app.clone(),
                    spec: Json::from(serde_json::json!({"i": i})),
                    at: i,
                };
                if store.propose(cmd).await.is_err() || tx.send(app).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(app) = rx.recv().await {
        writeln!(out, "ACK {app}")?;
        out.flush()?;
    }
    Ok(())
}
