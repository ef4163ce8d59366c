//! Cluster-wide calls: destination clusters, repositories, members and shards.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_proto::v1 as pb;
use tonic::Status;

use super::server::{read_status, store_status, Service};
use crate::clusters::ConnectionStatus;

impl Service {
    pub(super) async fn do_list_clusters(
        &self,
        req: pb::ListClustersRequest,
    ) -> Result<pb::ListClustersResponse, Status> {
        let r = self.reader(req.consistent).await?;
        let loaded = self.deps.clusters.all();
        let norm = |s: &str| s.trim_end_matches('/').to_string();
        let clusters = r
            .clusters()
            .map_err(read_status)?
            .into_iter()
            .map(|c| {
                let found = loaded
                    .iter()
                    .find(|l| norm(l.server()) == norm(&c.server) || l.name() == c.name);
                let (connection, message) = match found.map(|l| l.status()) {
                    None => ("NotLoaded".to_string(), String::new()),
                    Some(ConnectionStatus::Unknown) => ("Unknown".into(), String::new()),
                    Some(ConnectionStatus::Connected) => ("Connected".into(), String::new()),
                    Some(ConnectionStatus::Failed(m)) => ("Failed".into(), m),
                };
                pb::ClusterEntry {
                    name: c.name,
                    server: c.server,
                    secret_ref: c.secret_ref.unwrap_or_default(),
                    connection,
                    message,
                }
            })
            .collect();
        Ok(pb::ListClustersResponse { clusters })
    }

    pub(super) async fn do_list_repos(
        &self,
        req: pb::ListReposRequest,
    ) -> Result<pb::ListReposResponse, Status> {
        let r = self.reader(req.consistent).await?;
        let mut revisions: BTreeMap<String, Vec<pb::RevisionEntry>> = BTreeMap::new();
        for rev in r.revisions().map_err(read_status)? {
            revisions
                .entry(rev.repo)
                .or_default()
                .push(pb::RevisionEntry {
                    git_ref: rev.git_ref,
                    sha: rev.sha,
                    at: rev.at,
                });
        }
        let mut repos: Vec<pb::RepoEntry> = r
            .repos()
            .map_err(read_status)?
            .into_iter()
            .map(|repo| pb::RepoEntry {
                revisions: revisions.remove(&repo.url).unwrap_or_default(),
                url: repo.url,
                secret_ref: repo.secret_ref.unwrap_or_default(),
            })
            .collect();
        // Repositories apps use without a registration (public ones) still have revisions.
        repos.extend(revisions.into_iter().map(|(url, revisions)| pb::RepoEntry {
            url,
            secret_ref: String::new(),
            revisions,
        }));
        Ok(pb::ListReposResponse { repos })
    }

    pub(super) async fn do_list_members(
        &self,
        req: pb::ListMembersRequest,
    ) -> Result<pb::ListMembersResponse, Status> {
        let r = self.reader(req.consistent).await?;
        let m = self.deps.store.metrics();
        let infos: BTreeMap<u64, flotilla_raft::NodeInfo> = r
            .nodes()
            .map_err(read_status)?
            .into_iter()
            .map(|n| (n.id, n))
            .collect();
        let voters: BTreeSet<u64> = m.voters.iter().copied().collect();
        let mut ids: BTreeSet<u64> = voters.clone();
        ids.extend(m.learners.iter().copied());
        let members = ids
            .into_iter()
            .map(|id| {
                let info = infos.get(&id);
                let addr_of = |prefix: &str| {
                    info.and_then(|i| i.addresses.iter().find_map(|a| a.strip_prefix(prefix)))
                        .map(str::to_string)
                };
                pb::Member {
                    id,
                    addr: if id == self.deps.store.id() {
                        Some(self.deps.store.addr().to_string())
                    } else {
                        addr_of("peer=")
                    }
                    .unwrap_or_default(),
                    api_addr: addr_of("api=").unwrap_or_default(),
                    role: if voters.contains(&id) {
                        "voter"
                    } else {
                        "learner"
                    }
                    .into(),
                    leader: m.leader == Some(id),
                    draining: info.is_some_and(|i| i.draining),
                    version: info.map(|i| i.version.clone()).unwrap_or_default(),
                }
            })
            .collect();
        Ok(pb::ListMembersResponse {
            members,
            term: m.term,
            leader: m.leader.unwrap_or(0),
        })
    }

    pub(super) async fn do_add_member(
        &self,
        req: pb::AddMemberRequest,
    ) -> Result<pb::AddMemberResponse, Status> {
        if req.id == 0 || req.addr.trim().is_empty() {
            return Err(Status::invalid_argument(
                "a member needs a non-zero id and its Raft address host:port",
            ));
        }
        if req.addr.parse::<std::net::SocketAddr>().is_err() && !req.addr.contains(':') {
            return Err(Status::invalid_argument(format!(
                "invalid member address {:?}: expected host:port",
                req.addr
            )));
        }
        let store = &self.deps.store;
        store
            .add_learner(req.id, req.addr.clone())
            .await
            .map_err(|e| membership_status(e, "adding", req.id))?;
        if req.promote {
            store
                .promote([req.id].into())
                .await
                .map_err(|e| membership_status(e, "promoting", req.id))?;
        }
        tracing::info!(node = req.id, addr = %req.addr, promote = req.promote, "member added through the API");
        Ok(pb::AddMemberResponse {
            message: format!(
                "node {} at {} added as a {}",
                req.id,
                req.addr,
                if req.promote { "voter" } else { "learner" }
            ),
        })
    }

    pub(super) async fn do_remove_member(
        &self,
        req: pb::RemoveMemberRequest,
    ) -> Result<pb::RemoveMemberResponse, Status> {
        let m = self.deps.store.metrics();
        if !m.voters.contains(&req.id) && !m.learners.contains(&req.id) {
            return Err(Status::not_found(format!(
                "node {} is not a member",
                req.id
            )));
        }
        if m.voters == [req.id] {
            return Err(Status::failed_precondition(format!(
                "node {} is the only voter; removing it would leave no group",
                req.id
            )));
        }
        self.deps
            .store
            .remove([req.id].into())
            .await
            .map_err(|e| membership_status(e, "removing", req.id))?;
        tracing::info!(node = req.id, "member removed through the API");
        Ok(pb::RemoveMemberResponse {
            message: format!("node {} removed", req.id),
        })
    }

    pub(super) async fn do_list_shards(
        &self,
        req: pb::ListShardsRequest,
    ) -> Result<pb::ListShardsResponse, Status> {
        let r = self.reader(req.consistent).await?;
        let Some(map) = r.shard_map().map_err(read_status)? else {
            return Ok(pb::ListShardsResponse::default());
        };
        let count = map.shard_count();
        let mut apps_per_shard = vec![0u64; count as usize];
        for app in r.apps().map_err(read_status)? {
            let s = flotilla_shard::shard_of(&app.app, count) as usize;
            if let Some(n) = apps_per_shard.get_mut(s) {
                *n += 1;
            }
        }
        let mut nodes: BTreeMap<u64, pb::NodeShards> = BTreeMap::new();
        let mut shards = Vec::new();
        for (i, a) in map.shards.iter().enumerate() {
            let owner = a.owner.unwrap_or(0);
            let apps = apps_per_shard.get(i).copied().unwrap_or(0);
            let n = nodes.entry(owner).or_insert(pb::NodeShards {
                node: owner,
                shards: 0,
                apps: 0,
            });
            n.shards += 1;
            n.apps += apps;
            if req.per_shard {
                shards.push(pb::ShardEntry {
                    shard: i as u32,
                    owner,
                    since: a.since,
                    apps,
                });
            }
        }
        Ok(pb::ListShardsResponse {
            epoch: map.epoch,
            shard_count: count,
            nodes: nodes.into_values().collect(),
            shards,
        })
    }
}

fn membership_status(e: flotilla_raft::StoreError, what: &str, id: u64) -> Status {
    let s = store_status(e);
    Status::new(s.code(), format!("{what} node {id}: {}", s.message()))
}
