//! A client of a node's API, with the bearer token on every call.

use std::time::Duration;

use flotilla_proto::v1::flotilla_client::FlotillaClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::auth::{AuthError, BearerToken};

/// The generated gRPC client with the token interceptor.
pub type Grpc = FlotillaClient<InterceptedService<Channel, BearerToken>>;

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not usable.
    #[error("invalid API address {addr:?}: {message}")]
    Address {
        /// The address given.
        addr: String,
        /// Why.
        message: String,
    },
    /// The token is not usable.
    #[error(transparent)]
    Token(#[from] AuthError),
    /// The node answered with an error, or could not be reached.
    #[error("{addr}: {code:?}: {message}")]
    Rpc {
        /// The node's address.
        addr: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The node's message.
        message: String,
    },
}

/// A connection to one node's API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiClient {
    addr: String,
    grpc: Grpc,
}

impl ApiClient {
    /// Connect (lazily) to `host:port`, sending `token` with every call.
    pub fn connect_lazy(addr: &str, token: Option<&str>) -> Result<Self, ClientError> {
        Self::with_auth(addr, BearerToken::new(token)?)
    }

    /// Connect (lazily) with a prepared token header.
    pub fn with_auth(addr: &str, auth: BearerToken) -> Result<Self, ClientError> {
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let ep = Endpoint::from_shared(url).map_err(|e| ClientError::Address {
            addr: addr.into(),
            message: e.to_string(),
        })?;
        let ch = ep
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .connect_lazy();
        Ok(Self {
            addr: addr.to_string(),
            grpc: FlotillaClient::with_interceptor(ch, auth),
        })
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The gRPC client, for calls (`client.grpc().list_apps(req).await`).
    pub fn grpc(&self) -> Grpc {
        self.grpc.clone()
    }

    /// Turn a failed call into a [`ClientError`] naming this node.
    pub fn error(&self, status: tonic::Status) -> ClientError {
        ClientError::Rpc {
            addr: self.addr.clone(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}
