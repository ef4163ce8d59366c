//! Shard ownership over a real 3–4 member group on loopback gRPC: failover after abrupt
//! stops (leader included), a joining node, a partitioned node, graceful leave, and a
//! recorder proving no two nodes ever held valid leases on one shard.

mod common;
mod shards_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_raft::shards::{CutProxy, Isolation, LeaseObserver};
use flotilla_raft::{ShardNode, Store};
use flotilla_shard::DEFAULT_SHARD_COUNT;
use shards_support::*;

const S: u32 = DEFAULT_SHARD_COUNT;

#[test]
fn recorder_detects_two_holders() {
    let rec = Recorder::default();
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    rec.map_installed(1, t0, 1, &BTreeSet::from([7]));
    rec.lease_renewed(1, t0, t0 + ms(600));
    rec.map_installed(2, t0 + ms(100), 2, &BTreeSet::from([7]));
    rec.lease_renewed(2, t0 + ms(100), t0 + ms(700));
    let o = rec.overlaps(t0 + ms(1000));
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].shard, 7);
    // Node 1 revoking before node 2 starts leaves no overlap.
    let rec = Recorder::default();
    rec.map_installed(1, t0, 1, &BTreeSet::from([7]));
    rec.lease_renewed(1, t0, t0 + ms(600));
    rec.lease_revoked(1, t0 + ms(50));
    rec.map_installed(2, t0 + ms(100), 2, &BTreeSet::from([7]));
    rec.lease_renewed(2, t0 + ms(100), t0 + ms(700));
    assert!(rec.overlaps(t0 + ms(1000)).is_empty());
}

/// 3 nodes; a 4th joins and takes about a quarter, moved only to it; then a follower and the
/// learner are stopped abruptly and their shards move to live nodes within the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_then_abrupt_stops_move_shards_to_live_nodes() {
    let (dir, rec, mut members) = start(3).await;
    let leader = leader_index(&members).await;
    let before = map_of(&members[leader]);
    let term = members[leader].store.metrics().term;

    tracing::info!("phase: a fourth node joins as a learner");
    let cfg4 = store_config(4, dir.path(), None);
    let s4 = Store::start(cfg4.clone()).await.expect("start member 4");
    members[leader]
        .store
        .add_learner(4, s4.addr().to_string())
        .await
        .expect("add learner");
    let n4 = ShardNode::start(s4.clone(), shard_config(&rec, None))
        .await
        .expect("shard node 4");
    members.push(Member {
        store: s4,
        shards: n4,
        cfg: cfg4,
    });
    let lead = &members[leader];
    measure(
        "node 4 owns shards and nothing is unowned",
        Duration::from_secs(20),
        || {
            let m = map_of(lead);
            !m.owned_by(4).is_empty() && m.shards.iter().all(|a| a.owner.is_some())
        },
    )
    .await;
    let after = map_of(&members[leader]);
    let moved: Vec<u32> = (0..S)
        .filter(|&s| before.owner(s) != after.owner(s))
        .collect();
    assert!(
        moved.iter().all(|&s| after.owner(s) == Some(4)),
        "a shard moved somewhere other than the new node"
    );
    let got = after.owned_by(4).len() as f64;
    let quarter = f64::from(S) / 4.0;
    tracing::info!(got, quarter, "node 4's share");
    assert!(
        (got - quarter).abs() <= quarter * 0.15,
        "node 4 got {got} shards, expected about {quarter}"
    );
    wait_all_owned(
        &members,
        "node 4 leases its shards",
        Duration::from_secs(10),
    )
    .await;

    // Joining and rebalancing under load caused no election.
    assert!(
        members.iter().all(|m| m.store.metrics().term == term),
        "a spurious election happened while the cluster was healthy"
    );

    tracing::info!("phase: a follower voter is stopped abruptly");
    let victim = (0..3).find(|&i| i != leader).expect("a follower");
    let victim_id = members[victim].store.id();
    let its = map_of(&members[leader]).owned_by(victim_id);
    assert!(!its.is_empty());
    let (_, took) = kill_and_fail_over(
        &mut members,
        victim,
        &its,
        "the stopped follower's shards owned by live nodes",
    )
    .await;
    tracing::info!(node = victim_id, failover = ?took, "failover after stopping a follower");

    tracing::info!("phase: the learner is stopped abruptly");
    let pos = members
        .iter()
        .position(|m| m.store.id() == 4)
        .expect("node 4");
    let leader_member = &members[leader_index(&members).await];
    let its = map_of(leader_member).owned_by(4);
    let (_, took) = kill_and_fail_over(
        &mut members,
        pos,
        &its,
        "the stopped learner's shards owned by live nodes",
    )
    .await;
    tracing::info!(failover = ?took, "failover after stopping the learner");
    let live: Vec<&Member> = members.iter().collect();
    assert!(all_owned_by_live(&live, S));
    finish(&rec, &members).await;
}

/// 3 nodes; the leader is stopped abruptly, restarted from its data directory, and the new
/// leader is stopped too: each time its shards are owned and leased elsewhere within the
/// target, and no shard ever has two lease holders.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_stops_move_shards_and_leases_never_overlap() {
    let (_dir, rec, mut members) = start(3).await;

    for round in 1..=2 {
        tracing::info!(round, "phase: the leader is stopped abruptly");
        // The restart below needs every handle of the stopped member gone.
        let leader = leader_index(&members).await;
        let leader_id = members[leader].store.id();
        let its = map_of(&members[leader]).owned_by(leader_id);
        assert!(!its.is_empty(), "the leader owns shards");
        let (cfg, took) = kill_and_fail_over(
            &mut members,
            leader,
            &its,
            "the stopped leader's shards owned by live nodes",
        )
        .await;
        tracing::info!(round, node = leader_id, failover = ?took, "failover after stopping the leader");
        let live: Vec<&Member> = members.iter().collect();
        assert!(all_owned_by_live(&live, S));

        tracing::info!(
            round,
            "phase: the stopped leader restarts from its data directory"
        );
        let store = common::restart(cfg.clone()).await;
        let shards = ShardNode::start(store.clone(), shard_config(&rec, None))
            .await
            .expect("shard node");
        members.push(Member { store, shards, cfg });
        let back = members.last().expect("member");
        wait_owns_and_leases(
            back,
            "the restarted node owns and leases shards again",
            Duration::from_secs(20),
        )
        .await;
        wait_all_owned(
            &members,
            "every shard owned and leased",
            Duration::from_secs(10),
        )
        .await;
    }
    finish(&rec, &members).await;
}

/// A follower cut off from the others stops acting once its lease ends, its shards move to
/// the others; once reconnected (and heard for the rejoin hold) it gets shards back; then it
/// leaves gracefully: its shards are handed away and it is removed from the membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_node_stops_acting_and_leave_hands_shards_away() {
    common::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Arc::new(Recorder::default());
    let proxy = CutProxy::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("proxy");
    let isolation = Isolation::new();
    let mut stores = Vec::new();
    let mut cfgs = Vec::new();
    for id in 1..=3u64 {
        let adv = (id == 3).then(|| proxy.addr().to_string());
        let c = store_config(id, dir.path(), adv);
        let s = Store::start(c.clone()).await.expect("start member");
        if id == 3 {
            proxy.forward_to(s.local_addr());
        }
        stores.push(s);
        cfgs.push(c);
    }
    let all: std::collections::BTreeMap<u64, String> = stores
        .iter()
        .map(|s| (s.id(), s.addr().to_string()))
        .collect();
    stores[0].initialize(all).await.expect("initialize");
    let leader = common::wait_leader(&stores).await;
    if stores[leader].id() == 3 {
        stores[leader]
            .transfer_leadership(1)
            .await
            .expect("transfer");
        common::wait_until("node 3 not leading", 10, || {
            let ok = stores[0].metrics().leader.is_some_and(|l| l != 3)
                && !stores[2].metrics().is_leader;
            async move { ok }
        })
        .await;
    }
    let mut members = Vec::new();
    for (store, cfg) in stores.into_iter().zip(cfgs) {
        let iso = (store.id() == 3).then(|| isolation.clone());
        let shards = ShardNode::start(store.clone(), shard_config(&rec, iso))
            .await
            .expect("shard node");
        members.push(Member { store, shards, cfg });
    }
    wait_all_owned(
        &members,
        "every shard owned and leased",
        Duration::from_secs(20),
    )
    .await;
    let n3 = &members[2];
    let its: Vec<u32> = n3
        .shards
        .ownership()
        .borrow()
        .owned
        .iter()
        .copied()
        .collect();
    assert!(!its.is_empty());

    tracing::info!("phase: node 3 is cut off");
    let mut events = n3.shards.changes();
    let cut = Instant::now();
    proxy.cut(true);
    isolation.set(true);
    let lease = flotilla_raft::shards::default_lease();
    let stopped = measure("node 3 acts on nothing", Duration::from_secs(5), || {
        its.iter().all(|&s| n3.shards.may_act(s).is_err())
    })
    .await;
    tracing::info!(?stopped, "node 3 stopped acting");
    assert!(
        stopped <= lease.lease_duration + Duration::from_millis(700),
        "node 3 kept acting {stopped:?} after the cut, longer than its lease"
    );
    let lost = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.recv().await {
                Ok(flotilla_raft::ShardEvent::LeaseLost) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(lost, Ok(true), "components were told the lease was lost");
    let others: Vec<&Member> = members[..2].iter().collect();
    measure(
        "node 3's shards owned by the others",
        FAILOVER_LIMIT,
        || owned_by_live(&others, &its),
    )
    .await;
    tracing::info!(moved_after = ?cut.elapsed(), "node 3's shards moved");
    // Still cut off: it keeps acting on nothing.
    assert!(its.iter().all(|&s| n3.shards.may_act(s).is_err()));

    tracing::info!("phase: node 3 reconnects");
    proxy.cut(false);
    isolation.set(false);
    wait_owns_and_leases(
        &members[2],
        "node 3 owns and leases shards again",
        Duration::from_secs(20),
    )
    .await;

    tracing::info!("phase: node 3 leaves gracefully");
    members[2]
        .shards
        .leave(Duration::from_secs(20))
        .await
        .expect("leave");
    let gone = members.pop().expect("node 3");
    wait_all_owned(
        &members,
        "every shard owned by nodes 1 and 2",
        Duration::from_secs(5),
    )
    .await;
    wait_removed(&members, 3, "the leader removed node 3").await;
    gone.shards.shutdown().await;
    gone.store.shutdown().await;
    finish(&rec, &members).await;
}

/// The leader leaves gracefully: its shards are handed to the others (never two holders), it
/// hands leadership away, and the new leader removes it from the membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_leaves_gracefully() {
    let (_dir, rec, mut members) = start(3).await;
    let leader = leader_index(&members).await;
    let leaving = members.remove(leader);
    let id = leaving.store.id();

    tracing::info!(node = id, "phase: the leader leaves");
    leaving
        .shards
        .leave(Duration::from_secs(20))
        .await
        .expect("leave");
    assert!(leaving.shards.ownership().borrow().owned.is_empty());
    assert!(!leaving.store.metrics().is_leader);
    wait_all_owned(
        &members,
        "every shard owned by the others",
        Duration::from_secs(5),
    )
    .await;
    wait_removed(&members, id, "the new leader removed the leaving node").await;
    leaving.shards.shutdown().await;
    leaving.store.shutdown().await;
    finish(&rec, &members).await;
}
