//! A 3-member group over loopback gRPC: election, replication, failover, restart, snapshot
//! transfer, membership changes and the shard-epoch fence.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use flotilla_raft::{Applied, ApplyError, ChangeEvent, Command, Json, StoreError};
use flotilla_shard::{Assignment, FenceError, ShardMap};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_replicate_and_transfer_leadership() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    tracing::info!("phase: start 3 members and elect a leader");
    let stores = group(3, dir.path(), |_| {}).await;
    let leader = wait_leader(&stores).await;
    let follower = (leader + 1) % 3;
    let mut changes = stores[(leader + 2) % 3].subscribe();

    tracing::info!("phase: write through the leader and through a follower");
    for i in 0..10 {
        let via = if i % 2 == 0 { leader } else { follower };
        let r = stores[via].propose(put_app(i)).await.expect("propose");
        assert_eq!(
            r,
            Applied::Generation {
                generation: 1,
                changed: true
            }
        );
    }

    tracing::info!("phase: every write is visible on every member");
    for s in &stores {
        wait_until("replica has all writes", 20, || async {
            (0..10).all(|i| has_app(s, i))
        })
        .await;
    }
    let ev = changes.recv().await.expect("change event");
    assert!(matches!(
        &*ev,
        ChangeEvent::Applied {
            command: Command::PutApp { .. },
            result: Ok(_),
            ..
        }
    ));

    tracing::info!("phase: a linearizable read on a follower sees a write just made");
    stores[leader].propose(put_app(10)).await.expect("propose");
    let reader = stores[follower].linearizable().await.expect("linearizable");
    assert!(reader.app("test/app-10").expect("read").is_some());

    tracing::info!("phase: the leader reports its followers' progress");
    let m = stores[leader].metrics();
    assert!(m.is_leader);
    assert_eq!(m.followers.len(), 2, "followers: {:?}", m.followers);
    assert!(m.followers.values().all(|f| f.matched_index.is_some()));

    tracing::info!("phase: hand leadership to another member");
    let target = stores[follower].id();
    stores[leader]
        .transfer_leadership(target)
        .await
        .expect("transfer");
    wait_until("target leads", 20, || async {
        stores.iter().all(|s| s.metrics().leader == Some(target))
    })
    .await;

    for s in &stores {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_stop_elects_new_leader_and_keeps_acknowledged_writes() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = group(3, dir.path(), |_| {}).await;
    let leader = wait_leader(&stores).await;

    tracing::info!("phase: 40 concurrent acknowledged writes");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = stores[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            s.propose(put_app(i)).await.map(|_| i)
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.expect("join").expect("acknowledged"));
    }

    tracing::info!("phase: stop the leader");
    let old = stores[leader].id();
    stores[leader].shutdown().await;
    let rest: Vec<_> = stores.iter().filter(|s| s.id() != old).cloned().collect();
    let new_leader = wait_leader(&rest).await;
    assert_ne!(rest[new_leader].id(), old);

    tracing::info!("phase: the new leader accepts writes, and every acknowledged write is present");
    rest[0]
        .propose(put_app(100))
        .await
        .expect("write after failover");
    for s in &rest {
        let r = s.linearizable().await.expect("linearizable");
        for i in &acked {
            assert!(
                r.app(&format!("test/app-{i}")).expect("read").is_some(),
                "app {i} lost on {}",
                s.id()
            );
        }
    }
    for s in &rest {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_recovers_and_catches_up() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stores = group(3, dir.path(), |_| {}).await;
    let leader = wait_leader(&stores).await;
    let f = (leader + 1) % 3;
    for i in 0..10 {
        stores[leader].propose(put_app(i)).await.expect("propose");
    }
    wait_until("follower has first writes", 20, || async {
        (0..10).all(|i| has_app(&stores[f], i))
    })
    .await;

    tracing::info!("phase: stop a follower and keep writing");
    let stopped = stores.remove(f);
    let (addr, id) = (stopped.local_addr().to_string(), stopped.id());
    stopped.shutdown().await;
    drop(stopped);
    let leader = stores
        .iter()
        .position(|s| s.metrics().is_leader)
        .expect("leader still up");
    for i in 10..30 {
        stores[leader]
            .propose(put_app(i))
            .await
            .expect("propose with one member down");
    }

    tracing::info!("phase: restart it from its data directory on the same address");
    let restarted = restart(config(id, dir.path(), &addr)).await;
    assert!(
        (0..10).all(|i| has_app(&restarted, i)),
        "state recovered from its own log"
    );
    wait_until("restarted member catches up", 30, || async {
        (0..30).all(|i| has_app(&restarted, i))
    })
    .await;
    stores.push(restarted);
    for s in &stores {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_behind_member_receives_a_snapshot() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let tune = |c: &mut flotilla_raft::StoreConfig| {
        c.snapshot_every = 20;
        c.keep_after_snapshot = 2;
    };
    let mut stores = group(3, dir.path(), tune).await;
    let leader = wait_leader(&stores).await;
    let f = (leader + 1) % 3;

    tracing::info!("phase: stop a follower, then write far past the log the leader keeps");
    let stopped = stores.remove(f);
    let (addr, id) = (stopped.local_addr().to_string(), stopped.id());
    stopped.shutdown().await;
    drop(stopped);
    let leader = stores
        .iter()
        .position(|s| s.metrics().is_leader)
        .expect("leader still up");
    for i in 0..80 {
        stores[leader].propose(put_app(i)).await.expect("propose");
    }
    wait_until("leader purged its log", 30, || async {
        stores[leader].metrics().purged_index.unwrap_or(0) > 20
    })
    .await;

    tracing::info!("phase: the restarted follower is brought up to date by a snapshot");
    let mut c = config(id, dir.path(), &addr);
    tune(&mut c);
    let restarted = restart(c).await;
    wait_until("follower caught up", 40, || async {
        (0..80).all(|i| has_app(&restarted, i))
    })
    .await;
    let m = restarted.metrics();
    stores.push(restarted);
    assert!(
        m.snapshot_index.unwrap_or(0) >= 20,
        "follower installed a snapshot: {m:?}"
    );
    for s in &stores {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_is_added_promoted_and_removed() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = group(3, dir.path(), |_| {}).await;
    let leader = &stores[wait_leader(&stores).await];
    for i in 0..5 {
        leader.propose(put_app(i)).await.expect("propose");
    }

    tracing::info!("phase: add member 4 as a learner");
    let four = flotilla_raft::Store::start(config(4, dir.path(), "127.0.0.1:0"))
        .await
        .expect("start 4");
    leader
        .add_learner(4, four.addr().to_string())
        .await
        .expect("add learner");
    wait_until("learner has the data", 20, || async {
        (0..5).all(|i| has_app(&four, i))
    })
    .await;
    assert!(leader.metrics().learners.contains(&4));

    tracing::info!("phase: promote it to voter");
    leader.promote(BTreeSet::from([4])).await.expect("promote");
    assert!(leader.metrics().voters.contains(&4));
    leader
        .propose(put_app(5))
        .await
        .expect("propose with 4 voters");
    wait_until("new voter has the write", 20, || async {
        has_app(&four, 5)
    })
    .await;

    tracing::info!("phase: remove it");
    leader.remove(BTreeSet::from([4])).await.expect("remove");
    let m = leader.metrics();
    assert!(!m.voters.contains(&4) && !m.learners.contains(&4), "{m:?}");
    four.shutdown().await;
    leader
        .propose(put_app(6))
        .await
        .expect("propose after removal");
    for s in &stores {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_joins_and_leaves_through_a_follower() {
    use flotilla_raft::{change_membership_via, MembershipChange};
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = group(3, dir.path(), |_| {}).await;
    let leader = wait_leader(&stores).await;
    let follower = &stores[(leader + 1) % 3];
    stores[leader].propose(put_app(0)).await.expect("propose");

    // A process that is not a member asks a follower; the follower points it at the leader.
    let four = flotilla_raft::Store::start(config(4, dir.path(), "127.0.0.1:0"))
        .await
        .expect("start 4");
    let join = MembershipChange::AddLearner {
        id: 4,
        addr: four.addr().to_string(),
    };
    change_membership_via(
        &[follower.addr().to_string()],
        &join,
        Duration::from_secs(20),
    )
    .await
    .expect("join through a follower");
    wait_until("joined learner has the data", 20, || async {
        has_app(&four, 0)
    })
    .await;

    // Members that do not lead forward their changes too.
    follower
        .change_membership(MembershipChange::Promote(BTreeSet::from([4])))
        .await
        .expect("promote through a follower");
    assert!(stores[leader].metrics().voters.contains(&4));
    four.change_membership(MembershipChange::Remove(BTreeSet::from([4])))
        .await
        .expect("a member removes itself through the leader");
    let m = stores[leader].metrics();
    assert!(!m.voters.contains(&4) && !m.learners.contains(&4), "{m:?}");

    // A bad request is refused with a reason, not retried forever.
    let bad = change_membership_via(
        &["127.0.0.1:1".to_string()],
        &join,
        Duration::from_millis(500),
    )
    .await
    .expect_err("nobody listens there");
    assert!(bad.to_string().contains("127.0.0.1:1"), "{bad}");
    four.shutdown().await;
    for s in &stores {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_epoch_status_write_is_rejected_at_the_proposer() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = group(3, dir.path(), |_| {}).await;
    let leader = wait_leader(&stores).await;
    let follower = &stores[(leader + 1) % 3];
    let map = |epoch: u64| {
        let mut m = ShardMap::unassigned(16);
        m.epoch = epoch;
        m.shards.iter_mut().for_each(|a| {
            *a = Assignment {
                owner: Some(1),
                since: epoch,
            }
        });
        Command::SetShardMap(m)
    };
    let status = |epoch: u64| Command::SetStatus {
        app: "team/web".into(),
        node: 1,
        epoch,
        status: Json::from(serde_json::json!({"sync": "Synced"})),
        at: 7,
    };

    tracing::info!("phase: node 1 owns every shard at epoch 2 and writes a status");
    follower.propose(map(2)).await.expect("map 2");
    follower
        .propose(Command::PutApp {
            app: "team/web".into(),
            spec: Json::from(serde_json::json!({})),
            at: 1,
        })
        .await
        .expect("app");
    assert_eq!(
        follower
            .propose(status(2))
            .await
            .expect("status at epoch 2"),
        Applied::Changed
    );

    tracing::info!("phase: a new map at epoch 3 fences writes made under epoch 2");
    follower.propose(map(3)).await.expect("map 3");
    let err = follower
        .propose(status(2))
        .await
        .expect_err("stale write must fail");
    match err {
        StoreError::Rejected(ApplyError::Fenced {
            source: FenceError::StaleEpoch {
                epoch: 2, since: 3, ..
            },
            ..
        }) => {}
        other => panic!("expected a stale-epoch rejection, got {other:?}"),
    }
    let st = stores[leader]
        .linearizable()
        .await
        .expect("read")
        .status("team/web")
        .expect("read")
        .expect("status");
    assert_eq!(st.epoch, 2, "the rejected write changed nothing");
    for s in &stores {
        s.shutdown().await;
    }
}
