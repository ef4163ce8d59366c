//! Helpers for shard-ownership tests: members with shard nodes on loopback, and a recorder
//! of who held a valid lease on which shard when.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_raft::shards::{self, Isolation, LeaseObserver};
use flotilla_raft::{ShardConfig, ShardNode, Store, StoreConfig};
use flotilla_shard::{Epoch, NodeId, ShardId, ShardMap, DEFAULT_SHARD_COUNT};
use tempfile::TempDir;

use crate::common;

/// One member: its store, its shard node and how to restart it.
pub struct Member {
    pub store: Store,
    pub shards: ShardNode,
    pub cfg: StoreConfig,
}

/// Shard settings for tests: production timing, the shared recorder.
pub fn shard_config(rec: &Arc<Recorder>, isolation: Option<Isolation>) -> ShardConfig {
    ShardConfig {
        observer: Some(rec.clone()),
        isolation,
        ..ShardConfig::default()
    }
}

/// A store configuration with the shard timing defaults.
pub fn store_config(id: u64, dir: &Path, advertise: Option<String>) -> StoreConfig {
    let mut c = common::config(id, dir, "127.0.0.1:0");
    shards::tune_store(&mut c);
    c.advertise = advertise;
    c
}

/// Starts `n` members with ids 1..=n, forms a group and starts their shard nodes.
pub async fn cluster(n: u64, dir: &Path, rec: &Arc<Recorder>) -> Vec<Member> {
    let mut stores = Vec::new();
    let mut cfgs = Vec::new();
    for id in 1..=n {
        let mut c = store_config(id, dir, None);
        let s = Store::start(c.clone()).await.expect("start member");
        // A restart binds the same port: the membership keeps the address.
        c.listen = s.local_addr();
        stores.push(s);
        cfgs.push(c);
    }
    let members: BTreeMap<u64, String> = stores
        .iter()
        .map(|s| (s.id(), s.addr().to_string()))
        .collect();
    stores[0].initialize(members).await.expect("initialize");
    common::wait_leader(&stores).await;
    let mut out = Vec::new();
    for (store, cfg) in stores.into_iter().zip(cfgs) {
        let shards = ShardNode::start(store.clone(), shard_config(rec, None))
            .await
            .expect("start shard node");
        out.push(Member { store, shards, cfg });
    }
    out
}

/// Stops a member abruptly: no leave, no lease revocation, its server and Raft stopped.
pub async fn kill(m: Member) -> StoreConfig {
    drop(m.shards);
    m.store.shutdown().await;
    m.cfg
}

/// Whether every shard of the cluster is owned by one of `live` and that owner may act on it
/// now (valid lease, owns it in the map it follows).
pub fn all_owned_by_live(live: &[&Member], shard_count: u32) -> bool {
    (0..shard_count).all(|s| live.iter().any(|m| m.shards.may_act(s).is_ok()))
}

/// Whether the shards in `shards` are all owned and leased by one of `live`.
pub fn owned_by_live(live: &[&Member], shards: &[ShardId]) -> bool {
    shards
        .iter()
        .all(|&s| live.iter().any(|m| m.shards.may_act(s).is_ok()))
}

/// Waits (bounded) until `cond` holds, polling every 20 ms; returns how long it took.
pub async fn measure(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader's applied map.
pub fn map_of(m: &Member) -> ShardMap {
    m.store
        .local()
        .shard_map()
        .expect("read map")
        .expect("a map exists")
}

/// Generous bound for the 3 s failover target, for a loaded CI machine; the measured time
/// is logged.
pub const FAILOVER_LIMIT: Duration = Duration::from_secs(8);

/// Starts tracing, a data directory, a recorder and an `n`-member cluster, and waits until
/// every shard is owned and leased.
pub async fn start(n: u64) -> (TempDir, Arc<Recorder>, Vec<Member>) {
    common::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Arc::new(Recorder::default());
    let members = cluster(n, dir.path(), &rec).await;
    let took = wait_all_owned(
        &members,
        "every shard owned and leased",
        Duration::from_secs(20),
    )
    .await;
    tracing::info!(?took, "initial assignment done");
    (dir, rec, members)
}

/// Waits (bounded) until every shard is owned and leased by one of `members`; returns how
/// long it took.
pub async fn wait_all_owned(members: &[Member], what: &str, limit: Duration) -> Duration {
    let refs: Vec<&Member> = members.iter().collect();
    measure(what, limit, || {
        all_owned_by_live(&refs, DEFAULT_SHARD_COUNT)
    })
    .await
}

/// Waits (bounded) until `m` owns shards again and holds a valid lease.
pub async fn wait_owns_and_leases(m: &Member, what: &str, limit: Duration) -> Duration {
    measure(what, limit, || {
        !m.shards.ownership().borrow().owned.is_empty() && m.shards.ownership().borrow().lease_valid
    })
    .await
}

/// The index in `members` of the leader they all agree on; no store handle outlives the call.
pub async fn leader_index(members: &[Member]) -> usize {
    let stores: Vec<Store> = members.iter().map(|m| m.store.clone()).collect();
    common::wait_leader(&stores).await
}

/// Removes `members[pos]`, stops it abruptly and waits (within [`FAILOVER_LIMIT`]) until
/// `its` shards are owned and leased by the remaining members. Returns the stopped member's
/// configuration and how long the failover took.
pub async fn kill_and_fail_over(
    members: &mut Vec<Member>,
    pos: usize,
    its: &[ShardId],
    what: &str,
) -> (StoreConfig, Duration) {
    let m = members.remove(pos);
    let killed = Instant::now();
    let cfg = kill(m).await;
    let live: Vec<&Member> = members.iter().collect();
    measure(what, FAILOVER_LIMIT, || owned_by_live(&live, its)).await;
    (cfg, killed.elapsed())
}

/// Waits until the leader of `members` has removed node `id` from the membership.
pub async fn wait_removed(members: &[Member], id: u64, what: &str) {
    let lead = members[leader_index(members).await].store.clone();
    common::wait_until(what, 10, || {
        let m = lead.metrics();
        let gone = !m.voters.contains(&id) && !m.learners.contains(&id);
        async move { gone }
    })
    .await;
}

/// Asserts the recorder saw leases and never two holders of one shard at once.
pub fn assert_no_overlap(rec: &Recorder) {
    let overlaps = rec.overlaps(Instant::now());
    assert!(
        overlaps.is_empty(),
        "{} shards had two lease holders at once, first: {:?}",
        overlaps.len(),
        overlaps.first()
    );
    assert!(rec.renewals() > 0, "the recorder saw no lease at all");
}

/// Checks the recorder (see [`assert_no_overlap`]) and shuts every member down.
pub async fn finish(rec: &Recorder, members: &[Member]) {
    assert_no_overlap(rec);
    for m in members {
        m.shards.shutdown().await;
        m.store.shutdown().await;
    }
}

#[derive(Debug, Clone)]
enum Event {
    Map {
        at: Instant,
        owned: Arc<BTreeSet<ShardId>>,
    },
    Renewed {
        at: Instant,
        until: Instant,
    },
    Revoked {
        at: Instant,
    },
}

/// Records, for every node, the maps it followed and its lease renewals, on the one
/// monotonic clock all members of a test process share.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<BTreeMap<NodeId, Vec<Event>>>,
}

impl LeaseObserver for Recorder {
    fn map_installed(&self, node: NodeId, at: Instant, _epoch: Epoch, owned: &BTreeSet<ShardId>) {
        self.push(
            node,
            Event::Map {
                at,
                owned: Arc::new(owned.clone()),
            },
        );
    }

    fn lease_renewed(&self, node: NodeId, at: Instant, until: Instant) {
        self.push(node, Event::Renewed { at, until });
    }

    fn lease_revoked(&self, node: NodeId, at: Instant) {
        self.push(node, Event::Revoked { at });
    }
}

/// Two nodes held valid leases on one shard at the same time.
#[derive(Debug)]
pub struct Overlap {
    pub shard: ShardId,
    pub nodes: (NodeId, NodeId),
    pub from: Instant,
    pub to: Instant,
}

impl Recorder {
    fn push(&self, node: NodeId, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node)
            .or_default()
            .push(e);
    }

    /// How many lease renewals were recorded in all.
    pub fn renewals(&self) -> usize {
        let ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.values()
            .flatten()
            .filter(|e| matches!(e, Event::Renewed { .. }))
            .count()
    }

    /// Every interval in which some node held a valid lease on a shard it owned, per shard.
    fn held(&self, now: Instant) -> BTreeMap<ShardId, Vec<(Instant, Instant, NodeId)>> {
        let ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<ShardId, Vec<(Instant, Instant, NodeId)>> = BTreeMap::new();
        for (&node, events) in ev.iter() {
            // Lease intervals, merged.
            let mut leases: Vec<(Instant, Instant)> = Vec::new();
            let mut cur: Option<(Instant, Instant)> = None;
            // Map segments: (from, to, owned).
            let mut maps: Vec<(Instant, Instant, Arc<BTreeSet<ShardId>>)> = Vec::new();
            for e in events {
                match e {
                    Event::Renewed { at, until } => {
                        cur = match cur {
                            Some((s, end)) if *at < end => Some((s, end.max(*until))),
                            Some(c) => {
                                leases.push(c);
                                Some((*at, *until))
                            }
                            None => Some((*at, *until)),
                        };
                    }
                    Event::Revoked { at } => {
                        if let Some((s, end)) = cur.take() {
                            leases.push((s, end.min(*at)));
                        }
                    }
                    Event::Map { at, owned } => {
                        if let Some(last) = maps.last_mut() {
                            last.1 = *at;
                        }
                        maps.push((*at, now.max(*at), owned.clone()));
                    }
                }
            }
            leases.extend(cur);
            for (ms, me, owned) in &maps {
                for &(ls, le) in &leases {
                    let (s, e) = ((*ms).max(ls), (*me).min(le));
                    if s < e {
                        for &shard in owned.iter() {
                            out.entry(shard).or_default().push((s, e, node));
                        }
                    }
                }
            }
        }
        out
    }

    /// Every moment at which two nodes held valid leases on the same shard, up to `now`.
    pub fn overlaps(&self, now: Instant) -> Vec<Overlap> {
        let mut found = Vec::new();
        for (shard, mut iv) in self.held(now) {
            iv.sort();
            let mut ends: BTreeMap<NodeId, Instant> = BTreeMap::new();
            for (s, e, n) in iv {
                for (&m, &end) in &ends {
                    if m != n && end > s {
                        found.push(Overlap {
                            shard,
                            nodes: (m, n),
                            from: s,
                            to: end.min(e),
                        });
                    }
                }
                let x = ends.entry(n).or_insert(e);
                *x = (*x).max(e);
            }
        }
        found
    }
}
