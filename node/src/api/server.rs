//! The `flotilla.v1` gRPC service: [`serve`] runs it on a listener with the node's parts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flotilla_proto::v1 as pb;
use flotilla_proto::v1::flotilla_server::{Flotilla, FlotillaServer};
use flotilla_raft::{AppRecord, ApplyError, ProposeError, StateReader, Store, StoreError};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::auth::{BearerToken, TokenCheck, FORWARDED};
use super::client::{ApiClient, ClientTls, Grpc, MAX_MESSAGE_BYTES};
use crate::clusters::ClusterRegistry;
use crate::render::Renderer;

/// What the API needs from the node.
pub struct ApiDeps {
    /// The node's store member.
    pub store: Store,
    /// The node's renderer (diff and manifests render on the node answering).
    pub renderer: Arc<Renderer>,
    /// The destination clusters this node has clients for.
    pub clusters: Arc<ClusterRegistry>,
    /// The management cluster, where `Application` resources of origin `kubernetes` live.
    pub management: Option<kube::Client>,
    /// The bearer token every call must carry; `None` disables authentication.
    pub token: Option<String>,
    /// Serve TLS instead of plain text; `None` serves plain text.
    pub tls: Option<ApiTls>,
}

/// The API's TLS: the node's certificate, and how it verifies other nodes' API
/// certificates when it forwards a call to the leader.
#[derive(Clone)]
pub struct ApiTls {
    /// PEM certificate chain.
    pub cert_pem: Vec<u8>,
    /// PEM private key.
    pub key_pem: Vec<u8>,
    /// Trust for calls forwarded to the leader's API.
    pub forward: ClientTls,
}

impl std::fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTls")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field("forward", &self.forward)
            .finish()
    }
}

/// Why the API server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The gRPC server failed.
    #[error("API server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The configured token cannot be used (it is also used to forward calls to the leader).
    #[error(transparent)]
    Token(#[from] super::auth::AuthError),
}

/// Serve the API on `listener` until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    deps: ApiDeps,
    cancel: CancellationToken,
) -> Result<(), ApiError> {
    let check = TokenCheck::new(deps.token.as_deref());
    let forward = BearerToken::new(deps.token.as_deref())?.forwarded();
    let service = Service {
        deps: Arc::new(deps),
        forward,
        seq: Arc::new(AtomicU64::new(0)),
    };
    let incoming = futures::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |conn| {
            if let Ok(c) = &conn {
                let _ = c.set_nodelay(true);
            }
            conn
        },
    );
    let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
    if let Some(tls) = &service.deps.tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    builder
        .add_service(tonic::service::interceptor::InterceptedService::new(
            FlotillaServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            check,
        ))
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await?;
    Ok(())
}

/// The service behind [`serve`].
#[derive(Clone)]
pub(super) struct Service {
    pub(super) deps: Arc<ApiDeps>,
    forward: BearerToken,
    seq: Arc<AtomicU64>,
}

/// The gRPC status for a store failure.
pub(super) fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Rejected(ApplyError::NoSuchApp { app }) => {
            Status::not_found(format!("application {app} not found"))
        }
        StoreError::Rejected(ApplyError::InvalidAppKey { key }) => Status::invalid_argument(
            format!("invalid application key {key:?}: expected `namespace/name`"),
        ),
        StoreError::Rejected(e) => Status::failed_precondition(e.to_string()),
        StoreError::Propose(e @ (ProposeError::NotLeader { .. } | ProposeError::NoLeader(_))) => {
            Status::unavailable(format!("the store has no reachable leader: {e}"))
        }
        StoreError::Propose(e @ ProposeError::Unknown(_)) => Status::unknown(e.to_string()),
        e @ StoreError::Read(_) => Status::internal(e.to_string()),
        e => Status::unavailable(e.to_string()),
    }
}

/// The gRPC status for a failed read of the replica.
pub(super) fn read_status(e: flotilla_raft::ReadError) -> Status {
    Status::internal(e.to_string())
}

/// Parse a document the store holds.
pub(super) fn stored_json(
    what: &str,
    j: &flotilla_raft::Json,
) -> Result<serde_json::Value, Status> {
    j.to_value()
        .map_err(|e| Status::internal(format!("stored {what} is not JSON: {e}")))
}

/// The store key of an application named in a request.
pub(super) fn key_of(app: &str) -> Result<String, Status> {
    super::app_key_of(app).map_err(Status::invalid_argument)
}

impl Service {
    /// The replica to read: local, or after a read-index round when `consistent`.
    pub(super) async fn reader(&self, consistent: bool) -> Result<&StateReader, Status> {
        if consistent {
            self.deps.store.linearizable().await.map_err(store_status)
        } else {
            Ok(self.deps.store.local())
        }
    }

    /// An application's record, or NotFound.
    pub(super) fn app_record(r: &StateReader, key: &str) -> Result<AppRecord, Status> {
        r.app(key)
            .map_err(read_status)?
            .ok_or_else(|| Status::not_found(format!("application {key} not found")))
    }

    /// A fresh operation id, unique on this node.
    pub(super) fn op_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{}-{n}", super::now_millis(), self.deps.store.id())
    }

    /// `None` on the leader; otherwise a client of the leader's API to forward a call to.
    pub(super) fn leader_api<T>(
        &self,
        req: &Request<T>,
    ) -> Result<Option<(ApiClient, Grpc)>, Status> {
        let m = self.deps.store.metrics();
        if m.is_leader {
            return Ok(None);
        }
        if req.metadata().get(FORWARDED).is_some() {
            return Err(Status::unavailable(
                "forwarded to a node that is not the leader (leadership is changing); retry",
            ));
        }
        let Some(leader) = m.leader else {
            return Err(Status::unavailable("no leader is known; retry"));
        };
        let info = self
            .deps
            .store
            .local()
            .node(leader)
            .map_err(read_status)?
            .ok_or_else(|| {
                Status::unavailable(format!(
                    "the leader (node {leader}) has not published its addresses yet"
                ))
            })?;
        let addr = info
            .addresses
            .iter()
            .find_map(|a| a.strip_prefix("api="))
            .ok_or_else(|| {
                Status::unavailable(format!("the leader (node {leader}) has no API address"))
            })?;
        let tls = self.deps.tls.as_ref().map(|t| &t.forward);
        let client = ApiClient::with_tls(addr, self.forward.clone(), tls)
            .map_err(|e| Status::internal(e.to_string()))?;
        let grpc = client.grpc();
        Ok(Some((client, grpc)))
    }
}

/// A forwarded call's answer, with the leader named in errors.
pub(super) fn forwarded<T>(
    client: &ApiClient,
    r: Result<Response<T>, Status>,
) -> Result<Response<T>, Status> {
    r.map_err(|s| {
        Status::new(
            s.code(),
            format!("leader at {}: {}", client.addr(), s.message()),
        )
    })
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Flotilla for Service {
    async fn list_apps(&self, req: Request<pb::ListAppsRequest>) -> Reply<pb::ListAppsResponse> {
        self.do_list_apps(req.into_inner()).await.map(Response::new)
    }
    async fn get_app(&self, req: Request<pb::GetAppRequest>) -> Reply<pb::GetAppResponse> {
        self.do_get_app(req.into_inner()).await.map(Response::new)
    }
    async fn sync_app(&self, req: Request<pb::SyncAppRequest>) -> Reply<pb::SyncAppResponse> {
        self.do_sync_app(req.into_inner()).await.map(Response::new)
    }
    async fn refresh_app(
        &self,
        req: Request<pb::RefreshAppRequest>,
    ) -> Reply<pb::RefreshAppResponse> {
        self.do_refresh_app(req.into_inner())
            .await
            .map(Response::new)
    }
    async fn diff_app(&self, req: Request<pb::DiffAppRequest>) -> Reply<pb::DiffAppResponse> {
        self.do_diff_app(req.into_inner()).await.map(Response::new)
    }
    async fn get_manifests(
        &self,
        req: Request<pb::GetManifestsRequest>,
    ) -> Reply<pb::GetManifestsResponse> {
        self.do_get_manifests(req.into_inner())
            .await
            .map(Response::new)
    }
    async fn history(&self, req: Request<pb::HistoryRequest>) -> Reply<pb::HistoryResponse> {
        self.do_history(req.into_inner()).await.map(Response::new)
    }
    async fn rollback(&self, req: Request<pb::RollbackRequest>) -> Reply<pb::RollbackResponse> {
        self.do_rollback(req.into_inner()).await.map(Response::new)
    }
    async fn delete_app(&self, req: Request<pb::DeleteAppRequest>) -> Reply<pb::DeleteAppResponse> {
        self.do_delete_app(req.into_inner())
            .await
            .map(Response::new)
    }
    async fn list_clusters(
        &self,
        req: Request<pb::ListClustersRequest>,
    ) -> Reply<pb::ListClustersResponse> {
        self.do_list_clusters(req.into_inner())
            .await
            .map(Response::new)
    }
    async fn list_repos(&self, req: Request<pb::ListReposRequest>) -> Reply<pb::ListReposResponse> {
        self.do_list_repos(req.into_inner())
            .await
            .map(Response::new)
    }
    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Reply<pb::ListMembersResponse> {
        self.do_list_members(req.into_inner())
            .await
            .map(Response::new)
    }
    async fn add_member(&self, req: Request<pb::AddMemberRequest>) -> Reply<pb::AddMemberResponse> {
        if let Some((client, mut grpc)) = self.leader_api(&req)? {
            return forwarded(&client, grpc.add_member(req.into_inner()).await);
        }
        self.do_add_member(req.into_inner())
            .await
            .map(Response::new)
    }
    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::RemoveMemberResponse> {
        if let Some((client, mut grpc)) = self.leader_api(&req)? {
            return forwarded(&client, grpc.remove_member(req.into_inner()).await);
        }
        self.do_remove_member(req.into_inner())
            .await
            .map(Response::new)
    }
    async fn list_shards(
        &self,
        req: Request<pb::ListShardsRequest>,
    ) -> Reply<pb::ListShardsResponse> {
        self.do_list_shards(req.into_inner())
            .await
            .map(Response::new)
    }
    async fn export(&self, req: Request<pb::ExportRequest>) -> Reply<pb::ExportResponse> {
        self.do_export(req.into_inner()).await.map(Response::new)
    }
    async fn import(&self, req: Request<pb::ImportRequest>) -> Reply<pb::ImportResponse> {
        self.do_import(req.into_inner()).await.map(Response::new)
    }
}
