//! The commands that change the replicated state, and what applying them returns.
//!
//! Commands are plain data: every timestamp is chosen by the proposer and carried inside the
//! command, so applying the same log gives the same state on every node.

use std::fmt;
use std::sync::Arc;

use flotilla_shard::{Epoch, FenceError, NodeId, ShardMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, as chosen by the proposer.
pub type UnixMillis = i64;

/// An opaque JSON document (an application spec, a status, an operation's result).
///
/// The store never looks inside; the node crate defines the schemas. It holds the document's
/// JSON text, checked once when built from a value and then carried as-is through the log,
/// the network and the state machine, so replication never re-parses it. Two documents are
/// equal when their texts are: build them with [`Json::from`] (serde_json's output is
/// deterministic for equal values) to compare like with like.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Json(Arc<str>);

impl Default for Json {
    /// JSON `null`.
    fn default() -> Self {
        Json(Arc::from("null"))
    }
}

impl Json {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parse the text back into a value.
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// Take JSON text, checking that it parses.
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        Ok(Json(Arc::from(text)))
    }
}

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Self {
        Json(Arc::from(v.to_string()))
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Trusted: the text was checked when the proposer built it.
        let text = String::deserialize(deserializer)?;
        Ok(Json(Arc::from(text)))
    }
}

/// A destination cluster registration: a reference to its credentials, never the credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRef {
    /// The cluster's name, unique in flotilla.
    pub name: String,
    /// The Kubernetes API server URL.
    pub server: String,
    /// Where the credentials live (for example `namespace/secret-name`).
    pub secret_ref: Option<String>,
}

/// A Git repository registration: a reference to its credentials, never the credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoRef {
    /// The repository URL, as written in applications.
    pub url: String,
    /// Where the credentials live (for example `namespace/secret-name`).
    pub secret_ref: Option<String>,
}

/// What a node tells the group about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's Raft id.
    pub id: NodeId,
    /// Addresses the node serves on (Raft, API, metrics).
    pub addresses: Vec<String>,
    /// The flotilla version the node runs.
    pub version: String,
    /// When the node reported this.
    pub at: UnixMillis,
    /// Anything else the node crate wants to publish.
    pub extra: Json,
    /// The node is leaving: the leader gives it no shards and removes it once it has none.
    #[serde(default)]
    pub draining: bool,
}

/// One change to the replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create or update an application; the generation goes up when the spec changes.
    PutApp {
        /// `namespace/name`.
        app: String,
        /// The application's spec.
        spec: Json,
        /// When the change was observed.
        at: UnixMillis,
    },
    /// Delete an application with its status and operation.
    DeleteApp {
        /// `namespace/name`.
        app: String,
    },
    /// Create or update a project; the generation goes up when the spec changes.
    PutProject {
        /// The project's name.
        name: String,
        /// The project's spec.
        spec: Json,
    },
    /// Delete a project.
    DeleteProject {
        /// The project's name.
        name: String,
    },
    /// Replace an application's status. Fenced by the shard map.
    SetStatus {
        /// `namespace/name`.
        app: String,
        /// The writing node.
        node: NodeId,
        /// The shard-map epoch the writer acts under.
        epoch: Epoch,
        /// The status document.
        status: Json,
        /// When the status was computed.
        at: UnixMillis,
    },
    /// A sync operation started on an application. Fenced by the shard map.
    OperationStarted {
        /// `namespace/name`.
        app: String,
        /// The writing node.
        node: NodeId,
        /// The shard-map epoch the writer acts under.
        epoch: Epoch,
        /// The operation's id, unique per application.
        op_id: String,
        /// What the operation does (revision, options, who asked).
        request: Json,
        /// When it started.
        at: UnixMillis,
    },
    /// A sync operation finished. Fenced by the shard map.
    OperationFinished {
        /// `namespace/name`.
        app: String,
        /// The writing node.
        node: NodeId,
        /// The shard-map epoch the writer acts under.
        epoch: Epoch,
        /// The id given in [`Command::OperationStarted`].
        op_id: String,
        /// The outcome.
        result: Json,
        /// When it finished.
        at: UnixMillis,
    },
    /// Replace the shard map; its epoch must be higher than the current one.
    SetShardMap(ShardMap),
    /// Register or update a destination cluster.
    PutCluster(ClusterRef),
    /// Remove a destination cluster.
    RemoveCluster {
        /// The cluster's name.
        name: String,
    },
    /// Register or update a repository.
    PutRepo(RepoRef),
    /// Remove a repository.
    RemoveRepo {
        /// The repository URL.
        url: String,
    },
    /// Record the commit a repository's ref resolved to.
    RecordRevision {
        /// The repository URL.
        repo: String,
        /// The ref (branch, tag, `HEAD`).
        git_ref: String,
        /// The commit it resolved to.
        sha: String,
        /// When it was resolved.
        at: UnixMillis,
    },
    /// Publish a node's information.
    PutNodeInfo(NodeInfo),
    /// Ask the owner of an application to run a sync operation. Not fenced: anyone may ask.
    /// The request stays pending until an [`Command::OperationStarted`] with the same
    /// `op_id` takes it, or a newer request replaces it.
    RequestOperation {
        /// `namespace/name`.
        app: String,
        /// The id the operation will carry.
        op_id: String,
        /// What to do (revision, prune, selection, who asked).
        request: Json,
        /// When it was asked.
        at: UnixMillis,
    },
    /// Ask the owner of an application to reconcile it now. Changes no state: the owner
    /// sees it on the change stream.
    RequestRefresh {
        /// `namespace/name`.
        app: String,
        /// Re-render even when the inputs look unchanged.
        hard: bool,
        /// When it was asked.
        at: UnixMillis,
    },
}

impl Command {
    /// A short name of the command's kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PutApp { .. } => "put_app",
            Command::DeleteApp { .. } => "delete_app",
            Command::PutProject { .. } => "put_project",
            Command::DeleteProject { .. } => "delete_project",
            Command::SetStatus { .. } => "set_status",
            Command::OperationStarted { .. } => "operation_started",
            Command::OperationFinished { .. } => "operation_finished",
            Command::SetShardMap(_) => "set_shard_map",
            Command::PutCluster(_) => "put_cluster",
            Command::RemoveCluster { .. } => "remove_cluster",
            Command::PutRepo(_) => "put_repo",
            Command::RemoveRepo { .. } => "remove_repo",
            Command::RecordRevision { .. } => "record_revision",
            Command::PutNodeInfo(_) => "put_node_info",
            Command::RequestOperation { .. } => "request_operation",
            Command::RequestRefresh { .. } => "request_refresh",
        }
    }
}

/// What an accepted command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// The state changed.
    Changed,
    /// The command was valid but the state already matched it.
    Unchanged,
    /// An application or project now has this generation.
    Generation {
        /// The generation after the command.
        generation: u64,
        /// Whether the command bumped it.
        changed: bool,
    },
}

/// Why a command was rejected. A rejected command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    /// The writer does not own the application's shard under the epoch it gave.
    #[error("write to {app} refused by the shard fence: {source}")]
    Fenced {
        /// The application written to.
        app: String,
        /// The fence's reason.
        source: FenceError,
    },
    /// A fenced write arrived before any shard map was committed.
    #[error("write to {app} refused: no shard map has been committed yet")]
    NoShardMap {
        /// The application written to.
        app: String,
    },
    /// The application does not exist.
    #[error("application {app} does not exist")]
    NoSuchApp {
        /// The application asked for.
        app: String,
    },
    /// An application key is not `namespace/name`.
    #[error("invalid application key {key:?}: expected `namespace/name`")]
    InvalidAppKey {
        /// The key given.
        key: String,
    },
    /// A new shard map must have a higher epoch than the current one.
    #[error("stale shard map: epoch {proposed} is not above the current epoch {current}")]
    StaleShardMap {
        /// The epoch proposed.
        proposed: Epoch,
        /// The epoch in force.
        current: Epoch,
    },
    /// A shard map without shards.
    #[error("invalid shard map at epoch {epoch}: it has no shards")]
    EmptyShardMap {
        /// The epoch proposed.
        epoch: Epoch,
    },
    /// Another operation is still running on the application.
    #[error("application {app} already runs operation {running}")]
    OperationInProgress {
        /// The application.
        app: String,
        /// The running operation's id.
        running: String,
    },
    /// The finished operation is not the one running.
    #[error("application {app} has no running operation {op_id}")]
    NoSuchOperation {
        /// The application.
        app: String,
        /// The operation id given.
        op_id: String,
    },
    /// A stored record could not be decoded.
    #[error("stored record {key} is corrupt: {message}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// The decoder's message.
        message: String,
    },
}

/// The outcome of one command.
pub type CommandResult = Result<Applied, ApplyError>;

/// The payload of one Raft log entry: many commands proposed together, applied in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Request {
    /// The commands, applied in this order; each succeeds or fails on its own.
    pub commands: Vec<Command>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} command(s)", self.commands.len())
    }
}

/// The state machine's answer to one log entry: one result per command.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Response {
    /// One result per command of the entry, in order.
    pub results: Vec<CommandResult>,
}
