//! Status write-back of many apps at once, and statuses changed behind flotilla's back.

use super::*;

/// Wait until the store has every app and this node may act on each app's shard; the
/// epoch to write each app's status under.
async fn owned(env: &Env, shards: &ShardNode, keys: &[String]) -> Vec<u64> {
    for key in keys {
        wait_until("the app in the store", 20, || async {
            env.app(key).is_some()
        })
        .await;
    }
    wait_until("a shard map", 20, || async {
        env.store.local().shard_map().expect("read").is_some()
    })
    .await;
    let count = env
        .store
        .local()
        .shard_map()
        .expect("read")
        .expect("map")
        .shard_count();
    let mut epochs = Vec::new();
    for key in keys {
        let shard = flotilla_shard::shard_of(key, count);
        let mut epoch = 0;
        wait_until("ownership of the app's shard", 20, || {
            let r = shards.may_act(shard);
            if let Ok(e) = r {
                epoch = e;
            }
            async move { r.is_ok() }
        })
        .await;
        epochs.push(epoch);
    }
    epochs
}

fn set_status(key: &str, epoch: u64, revision: &str) -> Command {
    Command::SetStatus {
        app: key.into(),
        node: 1,
        epoch,
        status: Json::from(json!({"sync": {"status": "Synced", "revision": revision},
            "health": {"status": "Healthy"}})),
        at: 0,
    }
}

/// Whether the resource's status is exactly the one [`set_status`] writes.
fn shows(o: &DynamicObject, revision: &str) -> bool {
    o.data["status"]
        == json!({"sync": {"status": "Synced", "revision": revision},
            "health": {"status": "Healthy"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_statuses_are_written_back_and_the_next_write_replaces_a_foreign_change() {
    const APPS: usize = 40;
    let env = env().await;
    let (_sim, client) = management().await;
    let shards = ShardNode::start(env.store.clone(), ShardConfig::default())
        .await
        .expect("shard node");
    let apps = apps_api(&client);
    let names: Vec<String> = (0..APPS).map(|i| format!("app-{i:02}")).collect();
    for n in &names {
        create(&apps, application(n, n)).await;
    }
    let settings = IngestSettings {
        status_concurrency: 8,
        // Long: nothing here reads a resource again; each write replaces the whole status.
        status_resync: Duration::from_secs(3600),
        ..settings()
    };
    let ingest = env.start(Some(client.clone()), settings);
    let keys: Vec<String> = names.iter().map(|n| format!("argocd/{n}")).collect();
    let epochs = owned(&env, &shards, &keys).await;

    tracing::info!("phase: every app's status reaches its resource");
    let commands = keys
        .iter()
        .zip(&epochs)
        .map(|(k, e)| set_status(k, *e, "r1"))
        .collect();
    env.store.propose_many(commands).await.expect("statuses");
    wait_until("every status on its Application", 30, || async {
        let list = apps.list(&Default::default()).await.expect("list");
        list.items.len() == APPS && list.items.iter().all(|o| shows(o, "r1"))
    })
    .await;

    tracing::info!("phase: someone else changes a status; the next write corrects all of it");
    merge(
        &apps,
        "app-07",
        json!({"status": {"health": {"status": "Degraded"}, "foreign": "x"}}),
    )
    .await;
    env.store
        .propose(set_status(&keys[7], epochs[7], "r2"))
        .await
        .expect("new status");
    wait_until("the corrected status", 20, || async {
        shows(&apps.get("app-07").await.expect("get"), "r2")
    })
    .await;
    let others = apps.list(&Default::default()).await.expect("list");
    assert!(
        others
            .items
            .iter()
            .filter(|o| o.metadata.name.as_deref() != Some("app-07"))
            .all(|o| shows(o, "r1")),
        "the other apps keep their status"
    );

    env.cancel.cancel();
    ingest.stopped().await;
    shards.shutdown().await;
    env.store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_changed_behind_our_back_is_corrected_by_the_resync() {
    let env = env().await;
    let (_sim, client) = management().await;
    let shards = ShardNode::start(env.store.clone(), ShardConfig::default())
        .await
        .expect("shard node");
    let apps = apps_api(&client);
    create(&apps, application("web", "web")).await;
    let settings = IngestSettings {
        status_resync: Duration::from_millis(500),
        ..settings()
    };
    let ingest = env.start(Some(client.clone()), settings);
    let keys = vec!["argocd/web".to_string()];
    let epochs = owned(&env, &shards, &keys).await;
    env.store
        .propose(set_status(&keys[0], epochs[0], "r1"))
        .await
        .expect("status");
    wait_until("the status on the Application", 20, || async {
        shows(&apps.get("web").await.expect("get"), "r1")
    })
    .await;

    tracing::info!("phase: the status is changed by someone else; nothing changes in the store");
    merge(
        &apps,
        "web",
        json!({"status": {"sync": {"status": "OutOfSync"}, "foreign": "x"}}),
    )
    .await;
    wait_until("the status corrected", 20, || async {
        shows(&apps.get("web").await.expect("get"), "r1")
    })
    .await;

    env.cancel.cancel();
    ingest.stopped().await;
    shards.shutdown().await;
    env.store.shutdown().await;
}
