//! `apply` tested as a pure function over an in-memory map.

use std::collections::BTreeMap;

use flotilla_shard::{shard_of, Assignment, FenceError, ShardMap};
use serde_json::json;

use super::*;

type Mem = BTreeMap<Vec<u8>, Vec<u8>>;

/// Apply commands one batch at a time and commit the writes into `mem`.
fn run(mem: &mut Mem, cmds: &[Command]) -> Vec<CommandResult> {
    let mut ov = Overlay::new(&*mem);
    let results = cmds.iter().map(|c| ov.apply(c)).collect();
    for (k, v) in ov.into_writes() {
        match v {
            Some(v) => mem.insert(k, v),
            None => mem.remove(&k),
        };
    }
    results
}

fn put_app(app: &str, spec: serde_json::Value) -> Command {
    Command::PutApp {
        app: app.into(),
        spec: Json::from(spec),
        at: 1,
    }
}

fn status(app: &str, node: u64, epoch: u64) -> Command {
    Command::SetStatus {
        app: app.into(),
        node,
        epoch,
        status: Json::from(json!({"health": "Healthy"})),
        at: 2,
    }
}

/// A map of 8 shards at `epoch`, all owned by `owner` since `since`.
fn map(epoch: u64, owner: u64, since: u64) -> Command {
    let mut m = ShardMap::unassigned(8);
    m.epoch = epoch;
    for a in &mut m.shards {
        *a = Assignment {
            owner: Some(owner),
            since,
        };
    }
    Command::SetShardMap(m)
}

#[test]
fn generation_goes_up_only_when_the_spec_changes() {
    let mut mem = Mem::new();
    let r = run(
        &mut mem,
        &[
            put_app("argocd/guestbook", json!({"path": "a"})),
            put_app("argocd/guestbook", json!({"path": "a"})),
            put_app("argocd/guestbook", json!({"path": "b"})),
        ],
    );
    assert_eq!(
        r,
        vec![
            Ok(Applied::Generation {
                generation: 1,
                changed: true
            }),
            Ok(Applied::Generation {
                generation: 1,
                changed: false
            }),
            Ok(Applied::Generation {
                generation: 2,
                changed: true
            }),
        ]
    );
}

#[test]
fn bad_app_keys_are_rejected() {
    let mut mem = Mem::new();
    for key in ["noslash", "/name", "ns/", "a/b/c"] {
        let r = run(&mut mem, &[put_app(key, json!({}))]);
        assert_eq!(r, vec![Err(ApplyError::InvalidAppKey { key: key.into() })]);
    }
    assert!(mem.is_empty());
}

#[test]
fn status_writes_are_fenced_by_owner_and_epoch() {
    let mut mem = Mem::new();
    let app = "team/app";
    let r = run(&mut mem, &[put_app(app, json!({})), status(app, 1, 1)]);
    assert_eq!(r[1], Err(ApplyError::NoShardMap { app: app.into() }));

    run(&mut mem, &[map(5, 1, 5)]);
    let shard = shard_of(app, 8);
    let r = run(
        &mut mem,
        &[status(app, 1, 5), status(app, 1, 4), status(app, 2, 5)],
    );
    assert_eq!(r[0], Ok(Applied::Changed));
    assert_eq!(
        r[1],
        Err(ApplyError::Fenced {
            app: app.into(),
            source: FenceError::StaleEpoch {
                shard,
                writer: 1,
                epoch: 4,
                since: 5
            }
        })
    );
    assert!(matches!(
        r[2],
        Err(ApplyError::Fenced {
            source: FenceError::NotOwner { writer: 2, .. },
            ..
        })
    ));
}

#[test]
fn shard_maps_only_move_forward() {
    let mut mem = Mem::new();
    let r = run(
        &mut mem,
        &[map(2, 1, 2), map(2, 1, 2), map(1, 1, 1), map(3, 1, 3)],
    );
    assert_eq!(r[0], Ok(Applied::Changed));
    assert_eq!(
        r[1],
        Err(ApplyError::StaleShardMap {
            proposed: 2,
            current: 2
        })
    );
    assert!(r[2].is_err());
    assert_eq!(r[3], Ok(Applied::Changed));
    let empty = Command::SetShardMap(ShardMap {
        epoch: 9,
        shards: vec![],
    });
    assert_eq!(
        run(&mut mem, &[empty]),
        vec![Err(ApplyError::EmptyShardMap { epoch: 9 })]
    );
}

#[test]
fn operations_start_once_and_finish_once() {
    let mut mem = Mem::new();
    let app = "ns/app";
    run(&mut mem, &[map(1, 1, 1), put_app(app, json!({}))]);
    let start = |id: &str, node: u64| Command::OperationStarted {
        app: app.into(),
        node,
        epoch: 1,
        op_id: id.into(),
        request: Json::from(json!({"revision": "abc"})),
        at: 3,
    };
    let finish = |id: &str| Command::OperationFinished {
        app: app.into(),
        node: 1,
        epoch: 1,
        op_id: id.into(),
        result: Json::from(json!({"phase": "Succeeded"})),
        at: 4,
    };
    let r = run(
        &mut mem,
        &[
            start("op1", 1),
            start("op1", 1),
            start("op2", 1),
            finish("op2"),
            finish("op1"),
            finish("op1"),
        ],
    );
    assert_eq!(r[0], Ok(Applied::Changed));
    assert_eq!(r[1], Ok(Applied::Unchanged));
    assert!(matches!(r[2], Err(ApplyError::OperationInProgress { .. })));
    assert!(matches!(r[3], Err(ApplyError::NoSuchOperation { .. })));
    assert_eq!(r[4], Ok(Applied::Changed));
    assert_eq!(r[5], Ok(Applied::Unchanged));
}

#[test]
fn a_rejected_command_leaves_no_writes_and_deletes_cascade() {
    let mut mem = Mem::new();
    let app = "ns/app";
    run(
        &mut mem,
        &[map(1, 1, 1), put_app(app, json!({})), status(app, 1, 1)],
    );
    assert!(mem.contains_key(&keys::key(keys::STATUS, app)));
    let before = mem.clone();
    let r = run(&mut mem, &[status("ns/missing", 1, 1)]);
    assert_eq!(
        r,
        vec![Err(ApplyError::NoSuchApp {
            app: "ns/missing".into()
        })]
    );
    assert_eq!(mem, before);
    let r = run(&mut mem, &[Command::DeleteApp { app: app.into() }]);
    assert_eq!(r, vec![Ok(Applied::Changed)]);
    assert!(!mem.contains_key(&keys::key(keys::STATUS, app)));
    assert!(!mem.contains_key(&keys::key(keys::APP, app)));
}

#[test]
fn references_and_revisions_report_changes() {
    let mut mem = Mem::new();
    let cluster = ClusterRef {
        name: "prod".into(),
        server: "https://10.0.0.1:6443".into(),
        secret_ref: Some("argocd/prod".into()),
    };
    let rev = |sha: &str| Command::RecordRevision {
        repo: "https://git.example/r.git".into(),
        git_ref: "main".into(),
        sha: sha.into(),
        at: 5,
    };
    let r = run(
        &mut mem,
        &[
            Command::PutCluster(cluster.clone()),
            Command::PutCluster(cluster),
            rev("a1"),
            rev("a1"),
            rev("b2"),
            Command::RemoveCluster {
                name: "prod".into(),
            },
            Command::RemoveCluster {
                name: "prod".into(),
            },
        ],
    );
    use Applied::*;
    assert_eq!(
        r,
        vec![
            Ok(Changed),
            Ok(Unchanged),
            Ok(Changed),
            Ok(Unchanged),
            Ok(Changed),
            Ok(Changed),
            Ok(Unchanged)
        ]
    );
}

#[test]
fn json_payloads_survive_bincode() {
    let cmd = put_app(
        "a/b",
        json!({"source": {"repoURL": "x", "n": [1, 2.5, null]}}),
    );
    let bytes = bincode::serialize(&cmd).expect("encode");
    let back: Command = bincode::deserialize(&bytes).expect("decode");
    assert_eq!(back, cmd);
}

#[test]
fn json_text_is_checked_and_round_trips() {
    assert!(Json::parse("{\"a\": [1, 2]}").is_ok());
    assert!(Json::parse("{not json").is_err());
    let j = Json::from(json!({"b": 1, "a": "x"}));
    assert_eq!(j.to_value().expect("parse"), json!({"b": 1, "a": "x"}));
    assert_eq!(
        Json::default().to_value().expect("parse"),
        serde_json::Value::Null
    );
}

#[test]
fn requested_operation_is_pending_until_started_with_its_id() {
    let mut mem = Mem::new();
    let app = "ns/app";
    run(&mut mem, &[map(1, 1, 1), put_app(app, json!({}))]);
    let ask = |op: &str| Command::RequestOperation {
        app: app.into(),
        op_id: op.into(),
        request: Json::from(json!({"prune": true})),
        at: 5,
    };
    let start = |id: &str| Command::OperationStarted {
        app: app.into(),
        node: 1,
        epoch: 1,
        op_id: id.into(),
        request: Json::from(json!({})),
        at: 6,
    };
    let finish = |id: &str| Command::OperationFinished {
        app: app.into(),
        node: 1,
        epoch: 1,
        op_id: id.into(),
        result: Json::from(json!({})),
        at: 7,
    };
    let pending = |mem: &Mem| mem.contains_key(&keys::key(keys::PENDING, app));
    assert_eq!(run(&mut mem, &[ask("op-1")]), vec![Ok(Applied::Changed)]);
    assert_eq!(run(&mut mem, &[ask("op-1")]), vec![Ok(Applied::Unchanged)]);
    assert!(pending(&mem));
    // Another operation starting leaves the request pending.
    run(&mut mem, &[start("other"), finish("other")]);
    assert!(pending(&mem));
    run(&mut mem, &[start("op-1")]);
    assert!(!pending(&mem));
    // Unknown apps cannot be asked for anything.
    let unknown = Command::RequestRefresh {
        app: "ns/zzz".into(),
        hard: false,
        at: 1,
    };
    assert!(matches!(
        run(&mut mem, &[unknown])[0],
        Err(ApplyError::NoSuchApp { .. })
    ));
    // Deleting the app drops a pending request.
    run(
        &mut mem,
        &[ask("op-2"), Command::DeleteApp { app: app.into() }],
    );
    assert!(!pending(&mem));
}
