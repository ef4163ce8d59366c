//! The Raft transport, client side: one cached tonic channel per peer, timeouts, optional TLS.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_proto::raft::raft_peer_client::RaftPeerClient;
use flotilla_proto::raft::store_client_client::StoreClientClient;
use flotilla_proto::raft::{RaftPayload, SnapshotChunk};
use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use openraft::{BasicNode, RaftNetworkFactory, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::types::{Snapshot, TypeConfig, Vote};

/// Size of one snapshot chunk on the wire.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// First wait before opening a replication stream again after the peer could not be reached.
const REOPEN_BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Longest such wait. Heartbeats go on meanwhile, so a peer that comes back within this time
/// does not call an election; it only receives new entries up to this much later.
const REOPEN_BACKOFF_MAX: Duration = Duration::from_millis(250);

/// The wait before the next attempt to open a stream after `failures` attempts in a row
/// failed: doubling from [`REOPEN_BACKOFF_MIN`] up to [`REOPEN_BACKOFF_MAX`].
fn reopen_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doubled = REOPEN_BACKOFF_MIN.saturating_mul(1 << (failures - 1).min(16));
    doubled.min(REOPEN_BACKOFF_MAX)
}

/// Errors of the transport setup.
#[derive(Debug, thiserror::Error)]
pub enum NetworkSetupError {
    /// A TLS file could not be read.
    #[error("cannot read TLS file {path}: {source}")]
    ReadTls {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A peer address is not usable as a URL.
    #[error("invalid peer address {addr:?}: {source}")]
    Address {
        /// The address given.
        addr: String,
        /// The cause.
        source: tonic::transport::Error,
    },
}

/// Where the PEM files for peer TLS are.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    /// The CA that signed every member's certificate.
    pub ca: PathBuf,
    /// This member's certificate.
    pub cert: PathBuf,
    /// This member's private key.
    pub key: PathBuf,
    /// The name peers' certificates are checked against (a SAN of every member's certificate).
    pub domain: String,
}

/// Loaded TLS material. Its `Debug` omits the identity (it holds the private key).
#[derive(Clone)]
pub(crate) struct TlsMaterial {
    pub ca: Certificate,
    pub identity: Identity,
    pub domain: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    pub(crate) fn load(p: &TlsPaths) -> Result<Self, NetworkSetupError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| NetworkSetupError::ReadTls {
                path: path.clone(),
                source,
            })
        };
        Ok(Self {
            ca: Certificate::from_pem(read(&p.ca)?),
            identity: Identity::from_pem(read(&p.cert)?, read(&p.key)?),
            domain: p.domain.clone(),
        })
    }
}

/// Cached channels to peers, shared by Raft replication and proposal forwarding.
pub(crate) struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    tls: Option<TlsMaterial>,
    connect_timeout: Duration,
    rpc_timeout: Duration,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peers: Vec<String> = self
            .channels
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Peers")
            .field("peers", &peers)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("rpc_timeout", &self.rpc_timeout)
            .finish()
    }
}

impl Peers {
    pub(crate) fn new(
        tls: Option<TlsMaterial>,
        connect_timeout: Duration,
        rpc_timeout: Duration,
    ) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            tls,
            connect_timeout,
            rpc_timeout,
        }
    }

    /// The channel to `addr`, created on first use and reused afterwards. tonic reconnects a
    /// channel by itself when the peer comes back.
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, NetworkSetupError> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let bad = |source| NetworkSetupError::Address {
            addr: addr.to_string(),
            source,
        };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(bad)?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        if let Some(t) = &self.tls {
            let cfg = ClientTlsConfig::new()
                .ca_certificate(t.ca.clone())
                .identity(t.identity.clone())
                .domain_name(t.domain.clone());
            ep = ep.tls_config(cfg).map_err(bad)?;
        }
        let ch = ep.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// A client for the store API of the member at `addr`.
    pub(crate) fn store_client(
        &self,
        addr: &str,
    ) -> Result<StoreClientClient<Channel>, NetworkSetupError> {
        Ok(StoreClientClient::new(self.channel(addr)?))
    }

    /// The default deadline of one RPC.
    pub(crate) fn rpc_timeout(&self) -> Duration {
        self.rpc_timeout
    }
}

/// Builds [`PeerClient`]s for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    pub(crate) peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            open_failures: 0,
            next_open_at: None,
        }
    }
}

/// openraft's view of one peer.
pub struct PeerClient {
    target: u64,
    addr: String,
    peers: Arc<Peers>,
    /// Replication streams that failed to open in a row. openraft backs off only between
    /// requests of an open stream, so a peer that refuses connections would otherwise be
    /// retried in a tight loop (thousands of times a second) until it comes back.
    open_failures: u32,
    /// No stream is opened before this instant. A deadline rather than a sleep of fixed
    /// length: a call cut short by its timeout (a heartbeat's is shorter than the longest
    /// wait) does not push the next attempt further away.
    next_open_at: Option<tokio::time::Instant>,
}

/// Encode an openraft message for the wire.
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(v)
}

/// Decode an openraft message from the wire.
pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(b)
}

fn status_to_rpc(target: u64, s: tonic::Status) -> RPCError<TypeConfig> {
    let msg = format!("peer {target}: {} {}", s.code(), s.message());
    match s.code() {
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::from_string(msg)),
        _ => RPCError::Network(NetworkError::from_string(msg)),
    }
}

impl PeerClient {
    /// Note a failed stream open: the next waits [`reopen_backoff`] from now.
    fn open_failed(&mut self) {
        self.open_failures = self.open_failures.saturating_add(1);
        self.next_open_at = Some(tokio::time::Instant::now() + reopen_backoff(self.open_failures));
    }

    fn client(&self) -> Result<RaftPeerClient<Channel>, RPCError<TypeConfig>> {
        let ch = self
            .peers
            .channel(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        Ok(RaftPeerClient::new(ch).max_decoding_message_size(64 << 20))
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        option: &RPCOption,
        f: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftPeerClient<Channel>, tonic::Request<RaftPayload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(option.hard_ttl().min(self.peers.rpc_timeout()));
        let resp = f(self.client()?, request)
            .await
            .map_err(|s| status_to_rpc(self.target, s))?;
        decode(&resp.into_inner().data).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Vec<u8>;

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            if let Some(at) = self.next_open_at {
                tokio::time::sleep_until(at).await;
            }
            let target = self.target;
            let mut client = match self.client() {
                Ok(c) => c,
                Err(e) => {
                    self.open_failed();
                    return Err(e);
                }
            };
            // Encoding plain openraft data cannot fail; a failure would end the stream.
            let requests = input
                .map(|r| encode(&r).map(|data| RaftPayload { data }))
                .take_while(|r| futures::future::ready(r.is_ok()))
                .filter_map(|r| futures::future::ready(r.ok()));
            let opened = client.stream_append(requests).await;
            match &opened {
                Ok(_) => {
                    self.open_failures = 0;
                    self.next_open_at = None;
                }
                Err(_) => self.open_failed(),
            }
            let replies = opened
                .map_err(|s| status_to_rpc(target, s))?
                .into_inner()
                .map(move |item| {
                    let p = item.map_err(|s| status_to_rpc(target, s))?;
                    decode::<StreamAppendResult<TypeConfig>>(&p.data)
                        .map_err(|e| RPCError::Network(NetworkError::new(&e)))
                });
            Ok(Box::pin(replies) as BoxStream<'s, _>)
        })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, |mut c, r| async move { c.pre_vote(r).await })
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let net = |e: &dyn std::fmt::Display| {
            NetworkError::from_string(format!("peer {}: {e}", self.target))
        };
        let vote_b = encode(&vote).map_err(|e| net(&e))?;
        let meta_b = encode(&snapshot.meta).map_err(|e| net(&e))?;
        let data = snapshot.snapshot;
        let mut chunks: Vec<SnapshotChunk> = data
            .chunks(SNAPSHOT_CHUNK)
            .map(|c| SnapshotChunk {
                vote: Vec::new(),
                meta: Vec::new(),
                data: c.to_vec(),
                done: false,
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(SnapshotChunk::default());
        }
        chunks[0].vote = vote_b;
        chunks[0].meta = meta_b;
        if let Some(last) = chunks.last_mut() {
            last.done = true;
        }
        let mut client = self.client().map_err(|e| net(&e))?;
        let send = client.install_snapshot(tokio_stream::iter(chunks));
        let resp = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = send => r,
        };
        let resp = resp.map_err(|s| match status_to_rpc(self.target, s) {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Network(NetworkError::from_string(other.to_string())),
        })?;
        decode(&resp.into_inner().data).map_err(|e| StreamingError::Network(net(&e)))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&req, &option, |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_a_failed_stream_backs_off_up_to_a_cap() {
        assert_eq!(reopen_backoff(0), Duration::ZERO);
        assert_eq!(reopen_backoff(1), REOPEN_BACKOFF_MIN);
        assert_eq!(reopen_backoff(2), REOPEN_BACKOFF_MIN * 2);
        assert_eq!(reopen_backoff(5), REOPEN_BACKOFF_MAX);
        assert_eq!(reopen_backoff(u32::MAX), REOPEN_BACKOFF_MAX);
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("ca params")
            .self_signed(&ca_key)
            .expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["m".to_string()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("cert");
        let paths = TlsPaths {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            domain: "m".into(),
        };
        std::fs::write(&paths.ca, ca.pem()).expect("write");
        std::fs::write(&paths.cert, cert.pem()).expect("write");
        std::fs::write(&paths.key, key.serialize_pem()).expect("write");
        let material = TlsMaterial::load(&paths).expect("load");
        let identity = format!("{:?}", material.identity);
        let peers = Peers::new(
            Some(material.clone()),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        for shown in [format!("{material:?}"), format!("{peers:?}")] {
            assert!(!shown.contains(&identity), "{shown}");
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
            assert!(shown.contains("domain"), "{shown}");
        }
    }
}
