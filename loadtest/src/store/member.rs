//! `flotilla-loadtest store-member`: one flotilla store member in its own process.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use flotilla_raft::{Store, StoreConfig};

/// Arguments of the hidden `store-member` command.
#[derive(Debug, clap::Args)]
pub struct MemberArgs {
    /// This member's id (1-based).
    #[arg(long)]
    pub id: u64,
    /// Address to listen on.
    #[arg(long)]
    pub listen: String,
    /// Data directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Every member as `id=host:port`, comma-separated.
    #[arg(long)]
    pub peers: String,
    /// Form the group (one member only).
    #[arg(long)]
    pub init: bool,
}

/// Run a member until the process is killed.
pub async fn run_member(args: MemberArgs) -> anyhow::Result<()> {
    let mut members = BTreeMap::new();
    for p in args.peers.split(',') {
        let (id, addr) = p
            .split_once('=')
            .with_context(|| format!("--peers entry {p:?} is not id=host:port"))?;
        members.insert(
            id.parse::<u64>()
                .with_context(|| format!("--peers id {id:?}"))?,
            addr.to_string(),
        );
    }
    let listen = args
        .listen
        .parse()
        .with_context(|| format!("--listen {:?}", args.listen))?;
    let store = Store::start(StoreConfig::new(args.id, &args.dir, listen)).await?;
    if args.init && !store.raft().is_initialized().await? {
        store.initialize(members).await?;
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for a signal")?;
    store.shutdown().await;
    Ok(())
}
