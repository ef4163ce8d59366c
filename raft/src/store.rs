//! [`Store`]: one member of the replicated store, and the API the rest of flotilla uses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::raft::raft_peer_server::RaftPeerServer;
use flotilla_proto::raft::store_client_client::StoreClientClient;
use flotilla_proto::raft::store_client_server::StoreClientServer;
use flotilla_proto::raft::{MembershipRequest, ProposeRequest, ReadIndexRequest};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ReadPolicy, SnapshotPolicy};
use tokio::sync::{broadcast, mpsc, oneshot, Mutex, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig};

use crate::command::{Applied, ApplyError, Command, CommandResult, Request};
use crate::config::StoreConfig;
use crate::log_store::LogStore;
use crate::metrics::StoreMetrics;
use crate::network::{decode, encode, NetworkFactory, NetworkSetupError, Peers, TlsMaterial};
use crate::reads::StateReader;
use crate::server::{ClientService, PeerService};
use crate::state_machine::{ChangeEvent, StateMachine};
use crate::types::Raft;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configuration is unusable.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The data directory or sled failed.
    #[error("store storage at {path}: {message}")]
    Storage {
        /// The data directory.
        path: String,
        /// What failed.
        message: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The transport could not be set up.
    #[error(transparent)]
    Network(#[from] NetworkSetupError),
    /// The state machine refused the command; nothing changed.
    #[error("command rejected: {0}")]
    Rejected(#[from] ApplyError),
    /// A proposal failed.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// A local read failed.
    #[error(transparent)]
    Read(#[from] crate::reads::ReadError),
    /// openraft refused or failed a call.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a proposal did not produce results.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// This member is not the leader.
    #[error("not the leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        /// The leader, if known.
        leader_id: Option<u64>,
        /// Its address, if known.
        leader_addr: Option<String>,
    },
    /// No leader was found before the deadline.
    #[error("no leader within {0:?}")]
    NoLeader(Duration),
    /// Leadership changed after the entry was appended: it may or may not commit.
    #[error("outcome unknown after a leader change: {0}")]
    Unknown(String),
    /// The store is shutting down or its Raft node stopped.
    #[error("store stopped: {0}")]
    Stopped(String),
    /// Forwarding to the leader failed.
    #[error("forwarding to the leader at {addr}: {message}")]
    Forward {
        /// The leader's address.
        addr: String,
        /// What failed.
        message: String,
    },
}

/// A membership change that any member, or a process that is not a member yet, can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a learner; done once it has caught up with the log.
    AddLearner {
        /// Its Raft id.
        id: u64,
        /// Its peer address.
        addr: String,
    },
    /// Turn learners into voters.
    Promote(BTreeSet<u64>),
    /// Remove members (voters are demoted first).
    Remove(BTreeSet<u64>),
}

impl MembershipChange {
    fn to_request(&self) -> MembershipRequest {
        match self {
            MembershipChange::AddLearner { id, addr } => MembershipRequest {
                op: "add_learner".into(),
                ids: vec![*id],
                addr: addr.clone(),
            },
            MembershipChange::Promote(ids) => MembershipRequest {
                op: "promote".into(),
                ids: ids.iter().copied().collect(),
                addr: String::new(),
            },
            MembershipChange::Remove(ids) => MembershipRequest {
                op: "remove".into(),
                ids: ids.iter().copied().collect(),
                addr: String::new(),
            },
        }
    }

    pub(crate) fn from_request(r: MembershipRequest) -> Result<Self, String> {
        let ids: BTreeSet<u64> = r.ids.into_iter().collect();
        if ids.is_empty() || ids.contains(&0) {
            return Err("membership change needs node ids, all ≥ 1".into());
        }
        match r.op.as_str() {
            "add_learner" => match (ids.len(), r.addr.is_empty()) {
                (1, false) => Ok(MembershipChange::AddLearner {
                    id: ids.into_iter().next().unwrap_or_default(),
                    addr: r.addr,
                }),
                _ => Err("add_learner needs exactly one id and an address".into()),
            },
            "promote" => Ok(MembershipChange::Promote(ids)),
            "remove" => Ok(MembershipChange::Remove(ids)),
            other => Err(format!(
                "unknown membership operation {other:?}; expected add_learner, promote or remove"
            )),
        }
    }
}

/// How long a forwarded membership change may take (adding a learner waits for it to catch up).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

/// The outcome of a proposal: where it was committed and one result per command.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed {
    /// The log index of the entry that carried the commands.
    pub index: u64,
    /// One result per command, in order.
    pub results: Vec<CommandResult>,
}

struct Proposal {
    commands: Vec<Command>,
    reply: oneshot::Sender<Result<Proposed, ProposeError>>,
}

pub(crate) struct Inner {
    cfg: StoreConfig,
    addr: String,
    local_addr: SocketAddr,
    raft: Raft,
    db: sled::Db,
    reader: StateReader,
    peers: Arc<Peers>,
    proposals: mpsc::Sender<Proposal>,
    changes: broadcast::Sender<Arc<ChangeEvent>>,
    shard_heard: crate::shards::HeardLog,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// One member of flotilla's replicated store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// sled's segment size for a new database. sled stores a write larger than a quarter
/// segment as a separate blob file (create, write and sync per write), so a segment must be
/// large enough for batched entries to stay inline (the largest entry of a 10,000-app sync
/// is 16 KB deflated); and sled's write buffer is one segment, held for as long as the
/// segment is being filled, so it should not be larger than that.
const SEGMENT_BYTES: usize = 2 << 20;

/// The segment size to open the database in `dir` with: the one it was created with (sled
/// refuses any other; it is on the first line of sled's `conf` file, which databases created
/// with 8 MiB segments have), or [`SEGMENT_BYTES`] for a new one.
fn segment_size(dir: &std::path::Path) -> usize {
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|conf| {
            conf.split(|b| *b == b'\n').find_map(|line| {
                let line = std::str::from_utf8(line).ok()?;
                line.strip_prefix("segment_size: ")?.trim().parse().ok()
            })
        })
        .unwrap_or(SEGMENT_BYTES)
}

fn storage_err(cfg: &StoreConfig, e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage {
        path: cfg.data_dir.display().to_string(),
        message: e.to_string(),
    }
}

fn raft_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Raft(e.to_string())
}

impl Store {
    /// Open the data directory, start Raft, the gRPC server and the proposal batcher.
    ///
    /// A member restarted on the same data directory recovers from its log and snapshot. A new
    /// group is formed with [`Store::initialize`] on one member.
    pub async fn start(cfg: StoreConfig) -> Result<Store, StoreError> {
        if cfg.node_id == 0 {
            return Err(StoreError::Config("node_id must not be 0".into()));
        }
        if cfg.max_batch == 0 || cfg.proposal_queue == 0 || cfg.max_inflight_batches == 0 {
            return Err(StoreError::Config(
                "max_batch, proposal_queue and max_inflight_batches must be positive".into(),
            ));
        }
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| storage_err(&cfg, e))?;
        let sled_dir = cfg.data_dir.join("sled");
        let db = sled::Config::new()
            .cache_capacity(cfg.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .segment_size(segment_size(&sled_dir))
            .path(sled_dir)
            .open()
            .map_err(|e| storage_err(&cfg, e))?;
        let (changes, _) = broadcast::channel(cfg.change_buffer.max(1));
        let log = LogStore::open(&db).map_err(|e| storage_err(&cfg, e))?;
        let sm = StateMachine::open(&db, cfg.data_dir.join("snapshot"), changes.clone())
            .map_err(|e| storage_err(&cfg, e))?;
        let reader = StateReader::new(sm.state_tree());

        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| StoreError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StoreError::Listen {
            addr: cfg.listen,
            source,
        })?;
        let addr = cfg
            .advertise
            .clone()
            .unwrap_or_else(|| local_addr.to_string());

        let tls = cfg.tls.as_ref().map(TlsMaterial::load).transpose()?;
        let peers = Arc::new(Peers::new(
            tls.clone(),
            Duration::from_secs(2),
            cfg.rpc_timeout,
        ));
        let raft_cfg = openraft::Config {
            cluster_name: "flotilla".into(),
            election_timeout_min: cfg.election_timeout_ms.0,
            election_timeout_max: cfg.election_timeout_ms.1,
            heartbeat_interval: cfg.heartbeat_ms,
            install_snapshot_timeout: cfg.rpc_timeout.as_millis() as u64 * 4,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.keep_after_snapshot,
            // Replicate entries while the leader's own flush is still running.
            broadcast_submitted_on_append: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::Config(e.to_string()))?;
        let network = NetworkFactory {
            peers: peers.clone(),
        };
        let raft = Raft::new(cfg.node_id, Arc::new(raft_cfg), network, log, sm)
            .await
            .map_err(raft_err)?;

        let (ptx, prx) = mpsc::channel(cfg.proposal_queue);
        let cancel = CancellationToken::new();
        let store = Store {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                addr,
                local_addr,
                raft: raft.clone(),
                db,
                reader,
                peers,
                proposals: ptx,
                changes,
                shard_heard: Default::default(),
                cancel: cancel.clone(),
                tasks: Mutex::new(Vec::new()),
            }),
        };

        let batcher = tokio::spawn(batcher(
            raft.clone(),
            prx,
            cfg.max_batch,
            cfg.max_inflight_batches,
            cancel.clone(),
        ));

        let mut builder = Server::builder().tcp_nodelay(true);
        if let Some(t) = &tls {
            let server_tls = ServerTlsConfig::new()
                .identity(t.identity.clone())
                .client_ca_root(t.ca.clone());
            builder = builder
                .tls_config(server_tls)
                .map_err(|e| StoreError::Config(format!("TLS: {e}")))?;
        }
        // The client service holds a weak handle, so dropping every Store stops nothing by
        // surprise and leaks nothing: shutdown is explicit.
        let router = builder
            .add_service(
                RaftPeerServer::new(PeerService { raft: raft.clone() })
                    .max_decoding_message_size(64 << 20),
            )
            .add_service(StoreClientServer::new(ClientService {
                store: Arc::downgrade(&store.inner),
            }));
        // Accepted sockets need TCP_NODELAY themselves: with Nagle's algorithm and delayed
        // ACKs, small replies would wait ~40 ms.
        let incoming = futures::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            |conn| {
                if let Ok(c) = &conn {
                    let _ = c.set_nodelay(true);
                }
                conn
            },
        );
        let server_cancel = cancel.clone();
        let id = cfg.node_id;
        let server = tokio::spawn(async move {
            let res = router
                .serve_with_incoming_shutdown(incoming, server_cancel.cancelled_owned())
                .await;
            if let Err(e) = res {
                tracing::error!(node = id, error = %e, "store gRPC server stopped");
            }
        });
        store.inner.tasks.lock().await.extend([batcher, server]);
        tracing::info!(node = id, addr = %store.inner.addr, "store member started");
        Ok(store)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Store {
        Store { inner }
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.inner.cfg.node_id
    }

    /// The address peers reach this member at.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The socket address the gRPC server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The underlying openraft handle, for what this API does not cover.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Lease-renewal requests this member admitted, and fenced nodes (the shard manager's).
    pub(crate) fn shard_heard(&self) -> &crate::shards::HeardLog {
        &self.inner.shard_heard
    }

    /// Form a new group with `members` (id → `host:port`), this member among them. Call on
    /// one member of a brand-new group only.
    pub async fn initialize(&self, members: BTreeMap<u64, String>) -> Result<(), StoreError> {
        let nodes: BTreeMap<u64, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        self.inner.raft.initialize(nodes).await.map_err(raft_err)
    }

    /// Propose one command; a rejection by the state machine comes back as
    /// [`StoreError::Rejected`].
    pub async fn propose(&self, command: Command) -> Result<Applied, StoreError> {
        let p = self.propose_many(vec![command]).await?;
        match p.results.into_iter().next() {
            Some(r) => Ok(r?),
            None => Err(StoreError::Raft("empty result for a proposal".into())),
        }
    }

    /// Propose commands to be applied in order in one entry; each has its own result. Any
    /// member accepts proposals: followers forward them to the leader.
    pub async fn propose_many(&self, commands: Vec<Command>) -> Result<Proposed, StoreError> {
        let deadline = tokio::time::Instant::now() + self.inner.cfg.leader_wait;
        loop {
            let err = match self.propose_local(commands.clone()).await {
                Ok(p) => return Ok(p),
                Err(ProposeError::NotLeader {
                    leader_id: Some(l),
                    leader_addr: Some(addr),
                }) if l != self.id() => match self.forward(&addr, &commands).await {
                    Ok(p) => return Ok(p),
                    Err(e) => e,
                },
                Err(e @ ProposeError::NotLeader { .. }) => e,
                Err(e) => return Err(e.into()),
            };
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(error = %err, "no leader accepted the proposal");
                return Err(ProposeError::NoLeader(self.inner.cfg.leader_wait).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Propose through this member's own Raft node; fails with `NotLeader` on followers.
    pub(crate) async fn propose_local(
        &self,
        commands: Vec<Command>,
    ) -> Result<Proposed, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .proposals
            .send(Proposal {
                commands,
                reply: tx,
            })
            .await
            .map_err(|_| ProposeError::Stopped("proposal queue closed".into()))?;
        rx.await
            .map_err(|_| ProposeError::Stopped("proposal dropped".into()))?
    }

    async fn forward(&self, addr: &str, commands: &[Command]) -> Result<Proposed, ProposeError> {
        let fwd = |message: String| ProposeError::Forward {
            addr: addr.to_string(),
            message,
        };
        let mut encoded = Vec::with_capacity(commands.len());
        for c in commands {
            encoded.push(encode(c).map_err(|e| fwd(e.to_string()))?);
        }
        let mut client = self
            .inner
            .peers
            .store_client(addr)
            .map_err(|e| fwd(e.to_string()))?;
        let mut req = tonic::Request::new(ProposeRequest { commands: encoded });
        req.set_timeout(self.inner.cfg.rpc_timeout);
        let resp = client
            .propose(req)
            .await
            .map_err(|s| fwd(s.message().to_string()))?
            .into_inner();
        if resp.leader_id != 0 {
            return Err(ProposeError::NotLeader {
                leader_id: (resp.leader_id != u64::MAX).then_some(resp.leader_id),
                leader_addr: (!resp.leader_addr.is_empty()).then_some(resp.leader_addr),
            });
        }
        let mut results = Vec::with_capacity(resp.results.len());
        for r in &resp.results {
            results.push(decode(r).map_err(|e| fwd(e.to_string()))?);
        }
        Ok(Proposed {
            index: resp.log_index,
            results,
        })
    }

    /// Reads of this member's replica, which may be behind the leader.
    pub fn local(&self) -> &StateReader {
        &self.inner.reader
    }

    /// Reads that see every write acknowledged before this call (read-index through the
    /// leader, then waiting until this replica has applied that far).
    pub async fn linearizable(&self) -> Result<&StateReader, StoreError> {
        let deadline = tokio::time::Instant::now() + self.inner.cfg.leader_wait;
        let index = loop {
            let err = match self.leader_read_index().await {
                Ok(i) => break i,
                Err(ProposeError::NotLeader {
                    leader_id: Some(l),
                    leader_addr: Some(addr),
                }) if l != self.id() => match self
                    .remote_read_index(&addr, self.inner.cfg.rpc_timeout, None)
                    .await
                {
                    Ok(i) => break i,
                    Err(e) => e,
                },
                Err(e @ ProposeError::NotLeader { .. }) => e,
                Err(e) => return Err(e.into()),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Propose(err));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.inner
            .raft
            .wait(Some(left.max(Duration::from_millis(100))))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(raft_err)?;
        Ok(&self.inner.reader)
    }

    /// On the leader: confirm leadership with a quorum and return the index reads must see.
    pub(crate) async fn leader_read_index(&self) -> Result<u64, ProposeError> {
        match self
            .inner
            .raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
        {
            Ok(read) => Ok(read.log_id().index()),
            Err(RaftError::APIError(e)) => match e {
                openraft::errors::LinearizableReadError::ForwardToLeader(f) => Err(not_leader(f)),
                // Quorum not reached: retried like an unknown leader.
                _ => Err(ProposeError::NotLeader {
                    leader_id: None,
                    leader_addr: None,
                }),
            },
            Err(RaftError::Fatal(f)) => Err(ProposeError::Stopped(f.to_string())),
        }
    }

    /// Ask the leader at `addr` for a read index. With `renewing`, the request also carries
    /// that node's id, which the leader counts as a shard-lease renewal from it.
    pub(crate) async fn remote_read_index(
        &self,
        addr: &str,
        timeout: Duration,
        renewing: Option<u64>,
    ) -> Result<u64, ProposeError> {
        let fwd = |message: String| ProposeError::Forward {
            addr: addr.to_string(),
            message,
        };
        let mut client = self
            .inner
            .peers
            .store_client(addr)
            .map_err(|e| fwd(e.to_string()))?;
        let mut req = tonic::Request::new(ReadIndexRequest {});
        req.set_timeout(timeout);
        if let Some(node) = renewing {
            req.metadata_mut().insert(
                crate::shards::NODE_ID_HEADER,
                tonic::metadata::MetadataValue::from(node),
            );
        }
        let resp = client
            .read_index(req)
            .await
            .map_err(|s| fwd(s.message().to_string()))?
            .into_inner();
        if resp.leader_id != 0 {
            return Err(ProposeError::NotLeader {
                leader_id: (resp.leader_id != u64::MAX).then_some(resp.leader_id),
                leader_addr: (!resp.leader_addr.is_empty()).then_some(resp.leader_addr),
            });
        }
        Ok(resp.index)
    }

    /// A stream of applied changes. A subscriber that falls more than the configured buffer
    /// behind receives `RecvError::Lagged` and must re-read the state it follows.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.inner.changes.subscribe()
    }

    /// Add a learner (a member that receives the log but does not vote); waits until it has
    /// caught up. Leader only.
    pub async fn add_learner(&self, id: u64, addr: String) -> Result<(), StoreError> {
        self.inner
            .raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map(|_| ())
            .map_err(membership_err)
    }

    /// Turn learners into voters. Leader only.
    pub async fn promote(&self, ids: BTreeSet<u64>) -> Result<(), StoreError> {
        self.inner
            .raft
            .change_membership(ChangeMembers::AddVoterIds(ids), false)
            .await
            .map(|_| ())
            .map_err(membership_err)
    }

    /// Remove members from the group entirely (voters are demoted first). Leader only.
    pub async fn remove(&self, ids: BTreeSet<u64>) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        let voters: BTreeSet<u64> = raft.voter_ids().collect();
        let demote: BTreeSet<u64> = ids.intersection(&voters).copied().collect();
        if !demote.is_empty() {
            raft.change_membership(ChangeMembers::RemoveVoters(demote), true)
                .await
                .map_err(membership_err)?;
        }
        raft.change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map(|_| ())
            .map_err(membership_err)
    }

    /// Make a membership change on this member, which must lead.
    pub(crate) async fn change_membership_local(
        &self,
        change: MembershipChange,
    ) -> Result<(), StoreError> {
        match change {
            MembershipChange::AddLearner { id, addr } => self.add_learner(id, addr).await,
            MembershipChange::Promote(ids) => self.promote(ids).await,
            MembershipChange::Remove(ids) => self.remove(ids).await,
        }
    }

    /// Make a membership change wherever the leader is: here, or forwarded to it.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), StoreError> {
        match self.change_membership_local(change.clone()).await {
            Err(StoreError::Propose(ProposeError::NotLeader {
                leader_addr: Some(addr),
                leader_id: Some(l),
            })) if l != self.id() => {
                self.change_membership_via(&[addr], &change, self.inner.cfg.leader_wait)
                    .await
            }
            Err(StoreError::Propose(ProposeError::NotLeader { .. })) => {
                let peers: Vec<String> = self
                    .metrics()
                    .addresses
                    .into_iter()
                    .filter(|(id, _)| *id != self.id())
                    .map(|(_, addr)| addr)
                    .collect();
                self.change_membership_via(&peers, &change, self.inner.cfg.leader_wait)
                    .await
            }
            other => other,
        }
    }

    /// Ask the leader (this member) to hand leadership to `to`, for a graceful stop.
    pub async fn transfer_leadership(&self, to: u64) -> Result<(), StoreError> {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        if m.current_leader != Some(self.id()) {
            return Err(ProposeError::NotLeader {
                leader_id: m.current_leader,
                leader_addr: None,
            }
            .into());
        }
        self.inner
            .raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(raft_err)
    }

    /// This member's figures: term, leader, indexes, apply lag, followers' progress.
    pub fn metrics(&self) -> StoreMetrics {
        StoreMetrics::from_raft(&self.inner.raft.metrics().borrow_watched())
    }

    /// Stop serving, stop Raft and flush sled. Waits at most a few seconds for tasks.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let tasks: Vec<_> = self.inner.tasks.lock().await.drain(..).collect();
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Err(e) = self.inner.db.flush_async().await {
            tracing::warn!(error = %e, "final sled flush");
        }
    }
}

fn not_leader(f: openraft::errors::ForwardToLeader<crate::types::TypeConfig>) -> ProposeError {
    ProposeError::NotLeader {
        leader_id: f.leader_id,
        leader_addr: f.leader_node.map(|n| n.addr),
    }
}

fn membership_err(
    e: RaftError<crate::types::TypeConfig, ClientWriteError<crate::types::TypeConfig>>,
) -> StoreError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            StoreError::Propose(not_leader(f))
        }
        other => raft_err(other),
    }
}

/// Takes queued proposals, packs them into entries of at most `max_batch` commands, and
/// writes up to `max_inflight` entries at once.
async fn batcher(
    raft: Raft,
    mut rx: mpsc::Receiver<Proposal>,
    max_batch: usize,
    max_inflight: usize,
    cancel: CancellationToken,
) {
    let inflight = Arc::new(Semaphore::new(max_inflight));
    let mut writers = JoinSet::new();
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            p = rx.recv() => match p { Some(p) => p, None => break },
        };
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = inflight.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let mut n = first.commands.len();
        let mut batch = vec![first];
        while n < max_batch {
            match rx.try_recv() {
                Ok(p) => {
                    n += p.commands.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        while writers.try_join_next().is_some() {}
        let raft = raft.clone();
        writers.spawn(async move {
            write_batch(&raft, batch).await;
            drop(permit);
        });
    }
    writers.abort_all();
    while writers.join_next().await.is_some() {}
}

async fn write_batch(raft: &Raft, batch: Vec<Proposal>) {
    let counts: Vec<usize> = batch.iter().map(|p| p.commands.len()).collect();
    let mut commands = Vec::with_capacity(counts.iter().sum());
    let mut replies = Vec::with_capacity(batch.len());
    for p in batch {
        commands.extend(p.commands);
        replies.push(p.reply);
    }
    let total = commands.len();
    let outcome = match raft.client_write(Request { commands }).await {
        Ok(resp) if resp.data.results.len() == total => {
            Ok((resp.log_id.index(), resp.data.results))
        }
        Ok(resp) => Err(ProposeError::Stopped(format!(
            "state machine returned {} results for {total} commands",
            resp.data.results.len()
        ))),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(f)),
        Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => {
            Err(ProposeError::Unknown(f.to_string()))
        }
        Err(e) => Err(ProposeError::Stopped(e.to_string())),
    };
    match outcome {
        Ok((index, results)) => {
            let mut it = results.into_iter();
            for (reply, n) in replies.into_iter().zip(counts) {
                let results: Vec<CommandResult> = it.by_ref().take(n).collect();
                let _ = reply.send(Ok(Proposed { index, results }));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Make a membership change through any of `peers` (peer addresses of members) over plain
/// TCP: each is asked in turn and a non-leader's answer leads to the leader. Retries until
/// `wait` has passed. Members use [`Store::change_membership_via`], which speaks TLS when the
/// store does.
pub async fn change_membership_via(
    peers: &[String],
    change: &MembershipChange,
    wait: Duration,
) -> Result<(), StoreError> {
    via(peers, change, wait, |addr: &str| {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(2));
        Ok(StoreClientClient::new(endpoint.connect_lazy()))
    })
    .await
}

impl Store {
    /// Make a membership change through any of `peers`, dialing them as this member dials
    /// its peers (with TLS when configured). Used by a process that is not a member yet, to
    /// join, and when rejoining after a restart.
    pub async fn change_membership_via(
        &self,
        peers: &[String],
        change: &MembershipChange,
        wait: Duration,
    ) -> Result<(), StoreError> {
        let net = self.inner.peers.clone();
        via(peers, change, wait, move |addr: &str| {
            net.store_client(addr).map_err(|e| e.to_string())
        })
        .await
    }
}

async fn via<F>(
    peers: &[String],
    change: &MembershipChange,
    wait: Duration,
    client: F,
) -> Result<(), StoreError>
where
    F: Fn(&str) -> Result<StoreClientClient<tonic::transport::Channel>, String>,
{
    if peers.is_empty() {
        return Err(StoreError::Config(
            "no peer address to ask for a membership change".into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut queue: std::collections::VecDeque<String> = peers.iter().cloned().collect();
    let mut last = String::from("no peer answered");
    loop {
        let addr = match queue.pop_front() {
            Some(a) => a,
            None => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError::Propose(ProposeError::Forward {
                        addr: peers.join(","),
                        message: last,
                    }));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                queue.extend(peers.iter().cloned());
                continue;
            }
        };
        let mut c = match client(&addr) {
            Ok(c) => c,
            Err(e) => {
                last = format!("{addr}: {e}");
                continue;
            }
        };
        let mut req = tonic::Request::new(change.to_request());
        req.set_timeout(MEMBERSHIP_TIMEOUT);
        match c.change_membership(req).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                if resp.leader_id == 0 {
                    return Ok(());
                }
                last = format!("{addr} is not the leader");
                if !resp.leader_addr.is_empty() && resp.leader_addr != addr {
                    queue.push_front(resp.leader_addr);
                }
            }
            Err(s) => last = format!("{addr}: {}", s.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_keeps_the_segment_size_it_was_created_with() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = dir.path().join("fresh");
        assert_eq!(segment_size(&fresh), SEGMENT_BYTES);
        let fresh_db = sled::Config::new()
            .segment_size(segment_size(&fresh))
            .path(&fresh)
            .open()
            .expect("new database");
        fresh_db.flush().expect("flush");
        drop(fresh_db);
        assert_eq!(segment_size(&fresh), SEGMENT_BYTES);

        // A database created with another size (as older versions did, with 8 MiB) opens
        // with that size; sled refuses a different one.
        let old = dir.path().join("old");
        let db = sled::Config::new()
            .segment_size(8 << 20)
            .path(&old)
            .open()
            .expect("old database");
        db.insert(b"k", b"v".as_slice()).expect("insert");
        db.flush().expect("flush");
        drop(db);
        assert_eq!(segment_size(&old), 8 << 20);
        assert!(sled::Config::new()
            .segment_size(SEGMENT_BYTES)
            .path(&old)
            .open()
            .is_err());
        let db = sled::Config::new()
            .segment_size(segment_size(&old))
            .path(&old)
            .open()
            .expect("reopened with its own size");
        assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    }
}
