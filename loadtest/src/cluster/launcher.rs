//! Start, signal and kill `flotilla node` processes on loopback: the nodes of `flotilla dev`,
//! of the end-to-end tests and of the load-test scenarios.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};
use tokio::process::{Child, Command};

/// Environment variable that makes a node stop (as on SIGINT) when its parent process exits;
/// [`LocalCluster`] sets it on every node so no node outlives the process that started it.
pub const EXIT_WITH_PARENT_ENV: &str = "FLOTILLA_EXIT_WITH_PARENT";

/// Errors starting or stopping node processes.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A process could not be started or its log opened.
    #[error("node {node}: {what}: {source}")]
    Io {
        /// The node id.
        node: u64,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// No free port could be found.
    #[error("finding a free port: {0}")]
    Port(std::io::Error),
    /// The node index is unknown.
    #[error("no node with id {0}")]
    NoSuchNode(u64),
}

/// The addresses of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    /// Node id (≥ 1).
    pub id: u64,
    /// Raft/gRPC peer address.
    pub peer: String,
    /// `flotilla.v1` API address.
    pub api: String,
    /// HTTP address (metrics, probes, webhooks).
    pub http: String,
}

impl NodeAddrs {
    /// Fixed ports: API `base+id`, peer `base+100+id`, HTTP `base+200+id`.
    pub fn fixed(id: u64, base: u16) -> Self {
        let port = |off: u16| base + off + id as u16;
        Self {
            id,
            api: format!("127.0.0.1:{}", port(0)),
            peer: format!("127.0.0.1:{}", port(100)),
            http: format!("127.0.0.1:{}", port(200)),
        }
    }

    /// Free ports picked by the kernel (for tests running side by side).
    pub fn free(id: u64) -> Result<Self, LaunchError> {
        let pick = || -> Result<String, LaunchError> {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(LaunchError::Port)?;
            Ok(l.local_addr().map_err(LaunchError::Port)?.to_string())
        };
        Ok(Self {
            id,
            peer: pick()?,
            api: pick()?,
            http: pick()?,
        })
    }
}

/// A set of node processes sharing one peer list.
#[derive(Debug)]
pub struct LocalCluster {
    exe: PathBuf,
    dir: PathBuf,
    nodes: Vec<NodeAddrs>,
    children: Vec<Option<Child>>,
    common: Vec<String>,
    env: Vec<(String, String)>,
}

impl LocalCluster {
    /// Nodes `addrs` run from `exe`, with data and logs under `dir` and `common` flags added
    /// to every node's command line.
    pub fn new(exe: PathBuf, dir: &Path, addrs: Vec<NodeAddrs>, common: Vec<String>) -> Self {
        let children = addrs.iter().map(|_| None).collect();
        Self {
            exe,
            dir: dir.to_path_buf(),
            nodes: addrs,
            children,
            common,
            env: Vec::new(),
        }
    }

    /// Set an environment variable for every node started afterwards.
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    /// The nodes' addresses.
    pub fn nodes(&self) -> &[NodeAddrs] {
        &self.nodes
    }

    /// The addresses of node `id`.
    pub fn node(&self, id: u64) -> Result<&NodeAddrs, LaunchError> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or(LaunchError::NoSuchNode(id))
    }

    /// Add a node to the set (it is not started).
    pub fn add(&mut self, addrs: NodeAddrs) {
        self.nodes.push(addrs);
        self.children.push(None);
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// The log file of node `id`.
    pub fn log_file(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    fn index(&self, id: u64) -> Result<usize, LaunchError> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or(LaunchError::NoSuchNode(id))
    }

    /// Start node `id` (appending to its log).
    pub fn start(&mut self, id: u64) -> Result<(), LaunchError> {
        let i = self.index(id)?;
        let n = self.nodes[i].clone();
        let peers: Vec<String> = self
            .nodes
            .iter()
            .map(|p| format!("{}={}", p.id, p.peer))
            .collect();
        let io = |what| {
            move |source| LaunchError::Io {
                node: id,
                what,
                source,
            }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("create the directory"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(id))
            .map_err(io("open the log"))?;
        let err = log.try_clone().map_err(io("open the log"))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("node")
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--peer-listen", &n.peer, "--advertise", &n.peer])
            .args(["--api-listen", &n.api, "--http-listen", &n.http])
            .args(["--peers", &peers.join(",")])
            .args(&self.common)
            .env(EXIT_WITH_PARENT_ENV, "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(io("start the process"))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Start every node that is not running.
    pub fn start_all(&mut self) -> Result<(), LaunchError> {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            if !self.is_running(id) {
                self.start(id)?;
            }
        }
        Ok(())
    }

    /// Whether node `id`'s process is alive.
    pub fn is_running(&mut self, id: u64) -> bool {
        let Ok(i) = self.index(id) else { return false };
        match self.children[i].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id of node `id`, while it runs under this set.
    pub fn pid(&self, id: u64) -> Option<u32> {
        let i = self.index(id).ok()?;
        self.children[i].as_ref().and_then(Child::id)
    }

    /// Send a signal to node `id`.
    pub fn signal(&mut self, id: u64, signal: Signal) -> Result<(), LaunchError> {
        let i = self.index(id)?;
        if let Some(pid) = self.children[i]
            .as_ref()
            .and_then(Child::id)
            .and_then(|p| Pid::from_raw(p as i32))
        {
            kill_process(pid, signal).map_err(|e| LaunchError::Io {
                node: id,
                what: "signal the process",
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// SIGKILL node `id` and reap it.
    pub async fn kill(&mut self, id: u64) -> Result<(), LaunchError> {
        self.signal(id, Signal::KILL)?;
        self.wait(id, Duration::from_secs(10)).await;
        Ok(())
    }

    /// Wait up to `timeout` for node `id` to exit; returns its exit code if it did.
    pub async fn wait(&mut self, id: u64, timeout: Duration) -> Option<i32> {
        let i = self.index(id).ok()?;
        let child = self.children[i].as_mut()?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => {
                self.children[i] = None;
                Some(status.code().unwrap_or(-1))
            }
            _ => None,
        }
    }

    /// Stop every node with `signal`, waiting up to `timeout` each before killing it.
    pub async fn stop_all(&mut self, signal: Signal, timeout: Duration) {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for &id in &ids {
            let _ = self.signal(id, signal);
        }
        for &id in &ids {
            if self.wait(id, timeout).await.is_none() && self.is_running(id) {
                let _ = self.kill(id).await;
            }
        }
    }
}
