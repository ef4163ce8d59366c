//! A client of a store member's gRPC `StoreClient` API, for processes that do not host a
//! member themselves (the store benchmark, tools).

use flotilla_proto::raft::store_client_client::StoreClientClient;
use flotilla_proto::raft::{ProposeRequest, ReadIndexRequest};
use tonic::transport::{Channel, Endpoint};

use crate::command::Command;
use crate::network::{decode, encode};
use crate::store::{ProposeError, Proposed};

/// Why a remote call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not usable.
    #[error("invalid store address {addr:?}: {message}")]
    Address {
        /// The address given.
        addr: String,
        /// Why.
        message: String,
    },
    /// The RPC failed.
    #[error("store RPC failed: {0}")]
    Rpc(#[from] tonic::Status),
    /// The member answered something undecodable.
    #[error("undecodable reply: {0}")]
    Decode(String),
    /// The member is not the leader.
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

/// A connection to one store member over plain TCP.
#[derive(Clone)]
pub struct RemoteStore {
    client: StoreClientClient<Channel>,
}

impl RemoteStore {
    /// Connect (lazily) to the member at `host:port`.
    pub fn connect_lazy(addr: &str) -> Result<Self, ClientError> {
        let ep =
            Endpoint::from_shared(format!("http://{addr}")).map_err(|e| ClientError::Address {
                addr: addr.into(),
                message: e.to_string(),
            })?;
        let ch = ep.tcp_nodelay(true).connect_lazy();
        Ok(Self {
            client: StoreClientClient::new(ch),
        })
    }

    /// Propose commands through this member; a follower answers `NotLeader`.
    pub async fn propose(&mut self, commands: &[Command]) -> Result<Proposed, ClientError> {
        let mut encoded = Vec::with_capacity(commands.len());
        for c in commands {
            encoded.push(encode(c).map_err(|e| ClientError::Decode(e.to_string()))?);
        }
        let resp = self
            .client
            .propose(ProposeRequest { commands: encoded })
            .await?
            .into_inner();
        if resp.leader_id != 0 {
            return Err(ProposeError::NotLeader {
                leader_id: (resp.leader_id != u64::MAX).then_some(resp.leader_id),
                leader_addr: (!resp.leader_addr.is_empty()).then_some(resp.leader_addr),
            }
            .into());
        }
        let mut results = Vec::with_capacity(resp.results.len());
        for r in &resp.results {
            results.push(decode(r).map_err(|e| ClientError::Decode(e.to_string()))?);
        }
        Ok(Proposed {
            index: resp.log_index,
            results,
        })
    }

    /// Whether this member is the leader (it confirmed leadership with a quorum).
    pub async fn is_leader(&mut self) -> Result<bool, ClientError> {
        let resp = self
            .client
            .read_index(ReadIndexRequest {})
            .await?
            .into_inner();
        Ok(resp.leader_id == 0)
    }
}
