//! The HTTP client under each destination cluster's `kube::Client`.
//!
//! It is the stack `kube` builds by default (TLS from the cluster's configuration, connect,
//! read and write timeouts, retries of throttled and unavailable responses, authentication
//! and extra headers), with a connection pool sized for a controller that talks to many
//! clusters at once:
//!
//! - **Idle connections close.** Without a pool timer, `hyper`'s pool never closes an idle
//!   connection, so every connection a burst of syncs opened stayed open for good: about
//!   three TLS connections per cluster per node after a cold sync, none of them used again.
//!   Idle connections now close after [`IDLE_TIMEOUT`], and at most
//!   [`MAX_IDLE_PER_CLUSTER`] are kept per cluster (client-go keeps 25 for 90 s).
//! - **Read buffers stay small.** `hyper`'s adaptive read buffer grows to about 400 KB for
//!   a large `LIST` response and keeps that size for the life of the connection, which
//!   for a watch is the life of the process. [`READ_BUFFER_MAX`] bounds it; a larger body
//!   is read in more, smaller reads.
//!
//! kube's debug-level tracing span per request is left out; requests are counted per
//! cluster by [`CountRequests`]. A `proxy-url` in a kubeconfig is refused with an error that
//! says so: flotilla does not connect through proxies yet.

use std::time::Duration;

use http::Response;
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{ClientBuilder, ConfigExt, DynBody};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder, ServiceExt as _};

use super::requests::CountRequests;

/// How long an unused pooled connection to a cluster stays open.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Unused connections kept open per cluster: as many as the default cap on requests in
/// flight per cluster, so a burst of syncs reuses its connections rather than opening new
/// TLS sessions.
pub const MAX_IDLE_PER_CLUSTER: usize = 32;
/// The largest read buffer of one connection. Watch events and response headers are far
/// smaller; `LIST` bodies are read in pieces of this size.
pub const READ_BUFFER_MAX: usize = 32 * 1024;

/// Why a cluster's client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration asks for something the client does not do.
    #[error("{0}")]
    Unsupported(String),
    /// `kube` rejected the configuration (TLS material, credentials, headers).
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// A `kube::Client` for the API server in `config`, counting its requests under `server`.
pub fn client(config: kube::Config, server: &str) -> Result<kube::Client, BuildError> {
    client_with(config, server, IDLE_TIMEOUT)
}

fn client_with(
    config: kube::Config,
    server: &str,
    idle_timeout: Duration,
) -> Result<kube::Client, BuildError> {
    if let Some(proxy) = &config.proxy_url {
        return Err(BuildError::Unsupported(format!(
            "the configuration asks for the proxy {proxy}; connecting through a proxy is not supported"
        )));
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let tls = config.rustls_https_connector_with_connector(http)?;
    let mut connector = TimeoutConnector::new(tls);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);

    let hyper = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .pool_max_idle_per_host(MAX_IDLE_PER_CLUSTER)
        .http1_max_buf_size(READ_BUFFER_MAX)
        .build(connector);

    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(hyper)
        .map_response(|res: Response<hyper::body::Incoming>| {
            res.map(|body| {
                Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>
            })
        })
        .boxed();
    let builder: ClientBuilder<_> = ClientBuilder::new(service, config.default_namespace.clone());
    Ok(builder.with_layer(&CountRequests::new(server)).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::Barrier;

    /// An HTTP/1.1 server on loopback that answers every request once `hold` connections
    /// are open, keeps connections alive, and counts those the client closes.
    async fn server(hold: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let closed = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(hold));
        let counter = closed.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (closed, barrier) = (counter.clone(), barrier.clone());
                tokio::spawn(async move {
                    let mut first = true;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if first {
                                barrier.wait().await;
                                first = false;
                            }
                            let body = r#"{"kind":"Status"}"#;
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if conn.write_all(resp.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (url, closed)
    }

    fn config(url: &str) -> kube::Config {
        kube::Config::new(url.parse().unwrap())
    }

    async fn get(client: &kube::Client) {
        let req = http::Request::get("/version").body(Vec::new()).unwrap();
        client.request_text(req).await.unwrap();
    }

    async fn wait_closed(closed: &AtomicUsize, want: usize) -> usize {
        for _ in 0..100 {
            if closed.load(Ordering::SeqCst) >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        closed.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let (url, closed) = server(1).await;
        let client = client_with(config(&url), &url, Duration::from_millis(200)).unwrap();
        get(&client).await;
        // The client is still alive: only the pool's timer can close the connection.
        assert_eq!(wait_closed(&closed, 1).await, 1);
        drop(client);
    }

    #[tokio::test]
    async fn at_most_the_idle_limit_of_connections_stays_open() {
        let n = MAX_IDLE_PER_CLUSTER + 4;
        let (url, closed) = server(n).await;
        let client = client_with(config(&url), &url, Duration::from_secs(600)).unwrap();
        // The server answers none of them before all are open: `n` connections at once.
        futures::future::join_all((0..n).map(|_| get(&client))).await;
        assert_eq!(wait_closed(&closed, 4).await, 4);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(closed.load(Ordering::SeqCst), 4, "the pool keeps the rest");
        drop(client);
    }

    #[test]
    fn a_proxy_is_refused_with_a_clear_error() {
        let mut c = config("https://127.0.0.1:6443");
        c.proxy_url = Some("http://proxy.example:3128".parse().unwrap());
        let Err(err) = client(c, "https://127.0.0.1:6443") else {
            panic!("a client through a proxy was built");
        };
        let err = err.to_string();
        assert!(err.contains("proxy.example:3128"), "{err}");
        assert!(err.contains("not supported"), "{err}");
    }
}
