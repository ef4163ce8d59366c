//! The Raft transport, server side, and the store's client API over gRPC.

use flotilla_proto::raft::raft_peer_server::RaftPeer;
use flotilla_proto::raft::store_client_server::StoreClient;
use flotilla_proto::raft::{
    MembershipRequest, MembershipResponse, ProposeRequest, ProposeResponse, RaftPayload,
    ReadIndexRequest, ReadIndexResponse, ReadRequest, ReadResponse, SnapshotChunk,
};
use futures::StreamExt;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use crate::command::Command;
use crate::network::{decode, encode};
use crate::store::{ProposeError, Store};
use crate::types::{Raft, Snapshot, SnapshotMeta, TypeConfig, Vote};

/// Largest snapshot a member accepts (bytes).
const MAX_SNAPSHOT: usize = 4 << 30;

fn bad_request(what: &str, e: bincode::Error) -> Status {
    Status::invalid_argument(format!("cannot decode {what}: {e}"))
}

fn reply<T: Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    let data = encode(v).map_err(|e| Status::internal(format!("cannot encode reply: {e}")))?;
    Ok(Response::new(RaftPayload { data }))
}

/// Receives Raft RPCs from peers and hands them to the local Raft node.
pub(crate) struct PeerService {
    pub(crate) raft: Raft,
}

/// The reply stream of `StreamAppend`.
type AppendReplies =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RaftPayload, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RaftPeer for PeerService {
    type StreamAppendStream = AppendReplies;

    async fn stream_append(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        // The input ends at the first transport or decoding error; openraft then sees the
        // stream close and the leader starts a new one.
        let input = req
            .into_inner()
            .take_while(|r| futures::future::ready(r.is_ok()))
            .filter_map(|r| {
                futures::future::ready(
                    r.ok()
                        .and_then(|p| decode::<AppendEntriesRequest<TypeConfig>>(&p.data).ok()),
                )
            });
        let replies = self.raft.stream_append(input).map(|res| match res {
            Ok(r) => encode(&r)
                .map(|data| RaftPayload { data })
                .map_err(|e| Status::internal(format!("cannot encode reply: {e}"))),
            Err(fatal) => Err(Status::unavailable(fatal.to_string())),
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&req.into_inner().data).map_err(|e| bad_request("AppendEntries", e))?;
        let resp = self
            .raft
            .append_entries(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&resp)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<TypeConfig> =
            decode(&req.into_inner().data).map_err(|e| bad_request("Vote", e))?;
        let resp = self
            .raft
            .vote(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&resp)
    }

    async fn pre_vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<TypeConfig> =
            decode(&req.into_inner().data).map_err(|e| bad_request("PreVote", e))?;
        let resp = self
            .raft
            .pre_vote(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&resp)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftPayload>, Status> {
        let mut stream = req.into_inner();
        let mut vote: Option<Vote> = None;
        let mut meta: Option<SnapshotMeta> = None;
        let mut data = Vec::new();
        let mut done = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if vote.is_none() {
                vote = Some(decode(&chunk.vote).map_err(|e| bad_request("snapshot vote", e))?);
                meta = Some(decode(&chunk.meta).map_err(|e| bad_request("snapshot meta", e))?);
            }
            if data.len() + chunk.data.len() > MAX_SNAPSHOT {
                return Err(Status::resource_exhausted("snapshot larger than 4 GiB"));
            }
            data.extend_from_slice(&chunk.data);
            if chunk.done {
                done = true;
                break;
            }
        }
        let (Some(vote), Some(meta), true) = (vote, meta, done) else {
            return Err(Status::invalid_argument(
                "snapshot stream ended before its last chunk",
            ));
        };
        let snapshot = Snapshot {
            meta,
            snapshot: data,
        };
        let resp = self
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&resp)
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: TransferLeaderRequest<TypeConfig> =
            decode(&req.into_inner().data).map_err(|e| bad_request("TransferLeader", e))?;
        let resp = self
            .raft
            .handle_transfer_leader(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&resp)
    }
}

/// The store's client API: proposals (from other members and from clients) and reads.
pub(crate) struct ClientService {
    pub(crate) store: std::sync::Weak<crate::store::Inner>,
}

impl ClientService {
    fn store(&self) -> Result<Store, Status> {
        self.store
            .upgrade()
            .map(Store::from_inner)
            .ok_or_else(|| Status::unavailable("store is shutting down"))
    }
}

#[tonic::async_trait]
impl StoreClient for ClientService {
    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let mut commands = Vec::new();
        for (i, c) in req.into_inner().commands.iter().enumerate() {
            let cmd: Command =
                decode(c).map_err(|e| Status::invalid_argument(format!("command {i}: {e}")))?;
            commands.push(cmd);
        }
        match self.store()?.propose_local(commands).await {
            Ok(p) => {
                let mut results = Vec::with_capacity(p.results.len());
                for r in &p.results {
                    results.push(encode(r).map_err(|e| Status::internal(e.to_string()))?);
                }
                Ok(Response::new(ProposeResponse {
                    results,
                    leader_id: 0,
                    leader_addr: String::new(),
                    log_index: p.index,
                }))
            }
            Err(ProposeError::NotLeader {
                leader_id,
                leader_addr,
            }) => Ok(Response::new(ProposeResponse {
                results: Vec::new(),
                leader_id: leader_id.unwrap_or(u64::MAX),
                leader_addr: leader_addr.unwrap_or_default(),
                log_index: 0,
            })),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn read(&self, req: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        let req = req.into_inner();
        let store = self.store()?;
        let reader = if req.linearizable {
            store
                .linearizable()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?
        } else {
            store.local()
        };
        let value = reader
            .get_json(&req.table, &req.key)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(ReadResponse {
            found: value.is_some(),
            value_json: value
                .map(|v| v.to_string().into_bytes())
                .unwrap_or_default(),
            applied_index: store.metrics().applied_index.unwrap_or(0),
        }))
    }

    async fn read_index(
        &self,
        req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let store = self.store()?;
        // A lease renewal: the leader hears the node now, unless it already gave the node's
        // shards away.
        if let Some(node) = crate::shards::node_id_of(req.metadata()) {
            if !store.shard_heard().admit(node, std::time::Instant::now()) {
                return Err(Status::failed_precondition(format!(
                    "node {node} was declared dead; no lease until it is alive again"
                )));
            }
        }
        match store.leader_read_index().await {
            Ok(index) => Ok(Response::new(ReadIndexResponse {
                index,
                leader_id: 0,
                leader_addr: String::new(),
            })),
            Err(ProposeError::NotLeader {
                leader_id,
                leader_addr,
            }) => Ok(Response::new(ReadIndexResponse {
                index: 0,
                leader_id: leader_id.unwrap_or(u64::MAX),
                leader_addr: leader_addr.unwrap_or_default(),
            })),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn change_membership(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let change = crate::store::MembershipChange::from_request(req.into_inner())
            .map_err(Status::invalid_argument)?;
        match self.store()?.change_membership_local(change).await {
            Ok(()) => Ok(Response::new(MembershipResponse {
                leader_id: 0,
                leader_addr: String::new(),
            })),
            Err(crate::store::StoreError::Propose(ProposeError::NotLeader {
                leader_id,
                leader_addr,
            })) => Ok(Response::new(MembershipResponse {
                leader_id: leader_id.unwrap_or(u64::MAX),
                leader_addr: leader_addr.unwrap_or_default(),
            })),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }
}
