//! Partition drills: cutting one node off from the others on loopback, without root.
//!
//! A [`CutProxy`] stands in front of a member's listener (the member advertises the proxy's
//! address), so every RPC *to* the member passes through it; [`CutProxy::cut`] closes the
//! open connections and refuses new ones. An [`Isolation`] switch given to the member's
//! [`super::ShardConfig`] makes its lease renewals — the only RPCs it sends that could keep
//! its shards — fail while cut. Its Raft vote requests still leave, and are refused by
//! members that hear a leader, as after any partition.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

/// A switch that, while cut, makes a node's lease renewals fail.
#[derive(Debug, Clone, Default)]
pub struct Isolation(Arc<AtomicBool>);

impl Isolation {
    /// A switch that is not cut.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cuts (`true`) or restores (`false`).
    pub fn set(&self, cut: bool) {
        self.0.store(cut, Ordering::SeqCst);
    }

    /// Whether the node is cut off.
    pub fn is_cut(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The listen address could not be bound.
    #[error("partition proxy cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

struct ProxyState {
    target: Option<SocketAddr>,
    conns: Vec<AbortHandle>,
}

/// A TCP forwarder in front of one member that can drop all traffic to it.
pub struct CutProxy {
    addr: SocketAddr,
    cut: Isolation,
    state: Arc<Mutex<ProxyState>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    /// Listens on `listen` (port 0 picks one); forwards nowhere until [`CutProxy::forward_to`].
    pub async fn start(listen: SocketAddr) -> Result<CutProxy, FaultError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| FaultError::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| FaultError::Listen {
            addr: listen,
            source,
        })?;
        let cut = Isolation::new();
        let state = Arc::new(Mutex::new(ProxyState {
            target: None,
            conns: Vec::new(),
        }));
        let accept = tokio::spawn(accept_loop(listener, cut.clone(), state.clone()));
        Ok(CutProxy {
            addr,
            cut,
            state,
            accept,
        })
    }

    /// The address to advertise for the member behind the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forwards new connections to `target` (the member's bound address).
    pub fn forward_to(&self, target: SocketAddr) {
        if let Ok(mut s) = self.state.lock() {
            s.target = Some(target);
        }
    }

    /// Drops every open connection and refuses new ones (`true`), or lets traffic pass again.
    pub fn cut(&self, cut: bool) {
        self.cut.set(cut);
        if cut {
            if let Ok(mut s) = self.state.lock() {
                for c in s.conns.drain(..) {
                    c.abort();
                }
            }
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut s) = self.state.lock() {
            for c in s.conns.drain(..) {
                c.abort();
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, cut: Isolation, state: Arc<Mutex<ProxyState>>) {
    let mut pipes = JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        while pipes.try_join_next().is_some() {}
        let target = state.lock().ok().and_then(|s| s.target);
        let Some(target) = target.filter(|_| !cut.is_cut()) else {
            drop(inbound);
            continue;
        };
        let handle = pipes.spawn(pipe(inbound, target));
        if let Ok(mut s) = state.lock() {
            s.conns.retain(|c| !c.is_finished());
            s.conns.push(handle);
        }
    }
}

async fn pipe(mut inbound: TcpStream, target: SocketAddr) {
    let _ = inbound.set_nodelay(true);
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}
