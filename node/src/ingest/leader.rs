//! Leader-only ingestion: started when this node becomes the Raft leader, stopped when it
//! stops being it. Every new leader starts from a full list, so the store is reconciled with
//! the management cluster after each change of leadership.

use std::time::Duration;

use flotilla_raft::Store;
use tokio_util::sync::CancellationToken;

use super::{apps, directory, events, secrets, writeback, Ctx};

/// How often leadership is checked.
const LEADER_POLL: Duration = Duration::from_millis(200);

/// Whether this member leads the Raft group now.
pub(crate) fn is_leader(store: &Store) -> bool {
    store.metrics().leader == Some(store.id())
}

/// Run the leader tasks whenever this node leads, until `cancel` fires.
pub(crate) async fn supervise(ctx: Ctx, cancel: CancellationToken) {
    loop {
        // Wait for leadership.
        while !is_leader(&ctx.store) {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(LEADER_POLL) => {}
            }
        }
        tracing::info!(node = ctx.store.id(), "leader: starting ingestion");
        let session = cancel.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(client) = ctx.management.clone() {
            tasks.spawn(secrets::mirror_refs(ctx.clone(), session.clone()));
            tasks.spawn(apps::mirror_apps(
                ctx.clone(),
                client.clone(),
                session.clone(),
            ));
            tasks.spawn(apps::mirror_projects(
                ctx.clone(),
                client.clone(),
                session.clone(),
            ));
            tasks.spawn(events::run(ctx.clone(), client.clone(), session.clone()));
            tasks.spawn(writeback::run(ctx.clone(), client, session.clone()));
        }
        if ctx.settings.apps_dir.is_some() || ctx.settings.apps_repo.is_some() {
            tasks.spawn(directory::run(ctx.clone(), session.clone()));
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(LEADER_POLL) => {
                    if !is_leader(&ctx.store) {
                        tracing::info!(node = ctx.store.id(), "no longer leader: stopping ingestion");
                        break;
                    }
                }
                Some(done) = tasks.join_next() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "leader ingestion task ended abnormally");
                    }
                }
            }
        }
        session.cancel();
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "leader ingestion task ended abnormally");
            }
        }
        if cancel.is_cancelled() {
            return;
        }
    }
}
