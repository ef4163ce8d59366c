//! A client of a node's API, with the bearer token on every call.

use std::time::Duration;

use flotilla_proto::v1::flotilla_client::FlotillaClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::auth::{AuthError, BearerToken};

/// The largest answer a client accepts: a list of tens of thousands of apps with their
/// statuses is far above gRPC's default of 4 MiB.
pub const MAX_MESSAGE_BYTES: usize = 512 << 20;

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
    /// TLS settings are not usable.
    #[error("API TLS: {message}")]
    Tls {
        /// What is wrong.
        message: String,
    },
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

/// How a client verifies a node's API certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates to trust; the system's roots when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// The name the certificate must carry; the address's host when `None` (set it when
    /// connecting through a port-forward or a load balancer).
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Trust the CA certificates in the PEM file at `path`.
    pub fn from_ca_file(path: &std::path::Path) -> Result<Self, ClientError> {
        let pem = std::fs::read(path).map_err(|e| ClientError::Tls {
            message: format!("reading the CA file {}: {e}", path.display()),
        })?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(ClientError::Tls {
                message: format!("the CA file {} holds no PEM certificate", path.display()),
            });
        }
        Ok(Self {
            ca_pem: Some(pem),
            server_name: None,
        })
    }

    fn config(&self, host: &str) -> ClientTlsConfig {
        let name = self.server_name.as_deref().unwrap_or(host);
        let c = ClientTlsConfig::new().domain_name(name);
        match &self.ca_pem {
            Some(pem) => c.ca_certificate(Certificate::from_pem(pem)),
            None => c.with_native_roots(),
        }
    }
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

    /// Connect (lazily) with a prepared token header, in plain text (`host:port` or
    /// `http://…`) or over TLS with the system's roots (`https://…`).
    pub fn with_auth(addr: &str, auth: BearerToken) -> Result<Self, ClientError> {
        Self::with_tls(addr, auth, None)
    }

    /// Connect (lazily) with a prepared token header; with `tls`, over TLS verified by it
    /// (a bare `host:port` then means `https://host:port`).
    pub fn with_tls(
        addr: &str,
        auth: BearerToken,
        tls: Option<&ClientTls>,
    ) -> Result<Self, ClientError> {
        let bad = |message: String| ClientError::Address {
            addr: addr.into(),
            message,
        };
        let url = if addr.contains("://") {
            addr.to_string()
        } else if tls.is_some() {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        };
        let mut ep = Endpoint::from_shared(url.clone()).map_err(|e| bad(e.to_string()))?;
        if url.starts_with("https://") {
            let host = ep
                .uri()
                .host()
                .ok_or_else(|| bad("no host name".into()))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let default = ClientTls::default();
            let tls = tls.unwrap_or(&default);
            ep = ep
                .tls_config(tls.config(&host))
                .map_err(|e| ClientError::Tls {
                    message: format!("{addr}: {e}"),
                })?;
        } else if tls.is_some() {
            return Err(bad("a CA file was given, but the address is http://".into()));
        }
        let ch = ep
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .connect_lazy();
        Ok(Self {
            addr: addr.to_string(),
            grpc: FlotillaClient::with_interceptor(ch, auth)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
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
