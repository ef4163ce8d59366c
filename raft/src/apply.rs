//! The deterministic `apply`: a command and the current state in, writes and a result out.
//!
//! Applying reads and writes key/value pairs through [`Overlay`], which sees the writes of
//! earlier commands in the same batch; the state machine then commits the overlay's writes in
//! one atomic sled batch. Nothing here touches clocks, randomness or the disk.

use std::collections::BTreeMap;

use flotilla_shard::{shard_of, Epoch, NodeId, ShardMap};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::command::{
    Applied, ApplyError, ClusterRef, Command, CommandResult, Json, NodeInfo, RepoRef, UnixMillis,
};

/// Key layout of the state-machine tree: one prefix per table.
pub mod keys {
    /// Applications, by `namespace/name`.
    pub const APP: &str = "app/";
    /// Projects, by name.
    pub const PROJECT: &str = "project/";
    /// Application statuses, by `namespace/name`.
    pub const STATUS: &str = "status/";
    /// Application operations, by `namespace/name`.
    pub const OPERATION: &str = "op/";
    /// Destination clusters, by name.
    pub const CLUSTER: &str = "cluster/";
    /// Repositories, by URL.
    pub const REPO: &str = "repo/";
    /// Resolved revisions, by `url` + NUL + `ref`.
    pub const REVISION: &str = "rev/";
    /// Node information, by zero-padded node id.
    pub const NODE: &str = "node/";
    /// Requested sync operations not yet started, by `namespace/name`.
    pub const PENDING: &str = "pending/";
    /// The shard map (a single key).
    pub const SHARD_MAP: &str = "shardmap";
    /// Raft bookkeeping of the state machine (last applied log id, membership).
    pub const META: &str = "\u{0}meta/";

    /// The key of `id` in table `prefix`.
    pub fn key(prefix: &str, id: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(prefix.len() + id.len());
        k.extend_from_slice(prefix.as_bytes());
        k.extend_from_slice(id.as_bytes());
        k
    }

    /// The key of a repository's ref in the revision table.
    pub fn revision(repo: &str, git_ref: &str) -> Vec<u8> {
        key(REVISION, &format!("{repo}\u{0}{git_ref}"))
    }

    /// The key of a node in the node table.
    pub fn node(id: u64) -> Vec<u8> {
        key(NODE, &format!("{id:020}"))
    }
}

/// A stored application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    /// `namespace/name`.
    pub app: String,
    /// The spec as last put.
    pub spec: Json,
    /// Starts at 1, goes up by one on every spec change.
    pub generation: u64,
    /// When the last change was observed.
    pub updated_at: UnixMillis,
}

/// A stored project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectRecord {
    /// The project's name.
    pub name: String,
    /// The spec as last put.
    pub spec: Json,
    /// Starts at 1, goes up by one on every spec change.
    pub generation: u64,
}

/// A stored application status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// `namespace/name`.
    pub app: String,
    /// The node that wrote it.
    pub node: NodeId,
    /// The epoch it was written under.
    pub epoch: Epoch,
    /// The status document.
    pub status: Json,
    /// When it was computed.
    pub updated_at: UnixMillis,
}

/// A stored sync operation, running or finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationRecord {
    /// `namespace/name`.
    pub app: String,
    /// The operation's id.
    pub op_id: String,
    /// The node running it.
    pub node: NodeId,
    /// The epoch it started under.
    pub epoch: Epoch,
    /// What it does.
    pub request: Json,
    /// When it started.
    pub started_at: UnixMillis,
    /// Its outcome, once finished.
    pub finished: Option<FinishedOperation>,
}

/// The end of an operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedOperation {
    /// The outcome.
    pub result: Json,
    /// When it finished.
    pub at: UnixMillis,
}

/// A sync operation asked for and not yet started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOperation {
    /// `namespace/name`.
    pub app: String,
    /// The id the operation will carry.
    pub op_id: String,
    /// What to do.
    pub request: Json,
    /// When it was asked.
    pub requested_at: UnixMillis,
}

/// A resolved revision of a repository's ref.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionRecord {
    /// The repository URL.
    pub repo: String,
    /// The ref.
    pub git_ref: String,
    /// The commit.
    pub sha: String,
    /// When it was resolved.
    pub at: UnixMillis,
}

/// Read access to the committed state under an [`Overlay`].
pub trait KvRead {
    /// The value at `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError>;
}

impl KvRead for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        Ok(BTreeMap::get(self, key).cloned())
    }
}

/// A pending write: `None` deletes the key.
type PendingValue = Option<Vec<u8>>;

/// Pending writes of one apply batch over the committed state.
pub struct Overlay<'a, R: KvRead> {
    base: &'a R,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// What the current command overwrote in `pending`, to undo it if the command fails.
    undo: Vec<(Vec<u8>, Option<PendingValue>)>,
}

impl<'a, R: KvRead> Overlay<'a, R> {
    /// An overlay with no writes yet.
    pub fn new(base: &'a R) -> Self {
        Self {
            base,
            pending: BTreeMap::new(),
            undo: Vec::new(),
        }
    }

    /// The writes so far: `None` deletes the key.
    pub fn into_writes(self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.pending
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        match self.pending.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ApplyError> {
        self.get_raw(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        // Serializing plain owned data into a Vec cannot fail.
        let bytes = crate::values::encode(value).unwrap_or_default();
        self.write(key, Some(bytes));
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let previous = self.pending.insert(key.clone(), value);
        self.undo.push((key, previous));
    }

    fn delete(&mut self, key: Vec<u8>) -> Result<bool, ApplyError> {
        let existed = self.get_raw(&key)?.is_some();
        self.write(key, None);
        Ok(existed)
    }

    /// Apply one command: on success its writes stay in the overlay; on error nothing is added.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        self.undo.clear();
        let result = self.apply_inner(cmd);
        if result.is_err() {
            for (key, previous) in self.undo.drain(..).rev() {
                match previous {
                    Some(v) => self.pending.insert(key, v),
                    None => self.pending.remove(&key),
                };
            }
        }
        result
    }

    fn apply_inner(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::PutApp { app, spec, at } => {
                check_app_key(app)?;
                let key = keys::key(keys::APP, app);
                let old: Option<AppRecord> = self.get(&key)?;
                let (generation, changed) = match &old {
                    Some(o) if o.spec == *spec => (o.generation, false),
                    Some(o) => (o.generation + 1, true),
                    None => (1, true),
                };
                if changed {
                    let rec = AppRecord {
                        app: app.clone(),
                        spec: spec.clone(),
                        generation,
                        updated_at: *at,
                    };
                    self.put(key, &rec);
                }
                Ok(Applied::Generation {
                    generation,
                    changed,
                })
            }
            Command::DeleteApp { app } => {
                check_app_key(app)?;
                let existed = self.delete(keys::key(keys::APP, app))?;
                self.delete(keys::key(keys::STATUS, app))?;
                self.delete(keys::key(keys::OPERATION, app))?;
                self.delete(keys::key(keys::PENDING, app))?;
                Ok(changed_if(existed))
            }
            Command::PutProject { name, spec } => {
                let key = keys::key(keys::PROJECT, name);
                let old: Option<ProjectRecord> = self.get(&key)?;
                let (generation, changed) = match &old {
                    Some(o) if o.spec == *spec => (o.generation, false),
                    Some(o) => (o.generation + 1, true),
                    None => (1, true),
                };
                if changed {
                    let rec = ProjectRecord {
                        name: name.clone(),
                        spec: spec.clone(),
                        generation,
                    };
                    self.put(key, &rec);
                }
                Ok(Applied::Generation {
                    generation,
                    changed,
                })
            }
            Command::DeleteProject { name } => {
                Ok(changed_if(self.delete(keys::key(keys::PROJECT, name))?))
            }
            Command::SetStatus {
                app,
                node,
                epoch,
                status,
                at,
            } => {
                self.fence(app, *node, *epoch)?;
                let rec = StatusRecord {
                    app: app.clone(),
                    node: *node,
                    epoch: *epoch,
                    status: status.clone(),
                    updated_at: *at,
                };
                self.put(keys::key(keys::STATUS, app), &rec);
                Ok(Applied::Changed)
            }
            Command::OperationStarted {
                app,
                node,
                epoch,
                op_id,
                request,
                at,
            } => {
                self.fence(app, *node, *epoch)?;
                let key = keys::key(keys::OPERATION, app);
                if let Some(old) = self.get::<OperationRecord>(&key)? {
                    if old.finished.is_none() {
                        if old.op_id == *op_id {
                            return Ok(Applied::Unchanged);
                        }
                        // An operation left by a previous owner of the shard is taken over.
                        if old.node == *node {
                            return Err(ApplyError::OperationInProgress {
                                app: app.clone(),
                                running: old.op_id,
                            });
                        }
                    }
                }
                let pending = keys::key(keys::PENDING, app);
                if self
                    .get::<PendingOperation>(&pending)?
                    .is_some_and(|p| p.op_id == *op_id)
                {
                    self.delete(pending)?;
                }
                let rec = OperationRecord {
                    app: app.clone(),
                    op_id: op_id.clone(),
                    node: *node,
                    epoch: *epoch,
                    request: request.clone(),
                    started_at: *at,
                    finished: None,
                };
                self.put(key, &rec);
                Ok(Applied::Changed)
            }
            Command::OperationFinished {
                app,
                node,
                epoch,
                op_id,
                result,
                at,
            } => {
                self.fence(app, *node, *epoch)?;
                let key = keys::key(keys::OPERATION, app);
                let Some(mut rec) = self
                    .get::<OperationRecord>(&key)?
                    .filter(|r| r.op_id == *op_id)
                else {
                    return Err(ApplyError::NoSuchOperation {
                        app: app.clone(),
                        op_id: op_id.clone(),
                    });
                };
                if rec.finished.is_some() {
                    return Ok(Applied::Unchanged);
                }
                rec.finished = Some(FinishedOperation {
                    result: result.clone(),
                    at: *at,
                });
                self.put(key, &rec);
                Ok(Applied::Changed)
            }
            Command::SetShardMap(map) => {
                if map.shards.is_empty() {
                    return Err(ApplyError::EmptyShardMap { epoch: map.epoch });
                }
                let key = keys::SHARD_MAP.as_bytes().to_vec();
                if let Some(cur) = self.get::<ShardMap>(&key)? {
                    if map.epoch <= cur.epoch {
                        return Err(ApplyError::StaleShardMap {
                            proposed: map.epoch,
                            current: cur.epoch,
                        });
                    }
                }
                self.put(key, map);
                Ok(Applied::Changed)
            }
            Command::PutCluster(c) => {
                let key = keys::key(keys::CLUSTER, &c.name);
                Ok(self.put_if_changed::<ClusterRef>(key, c)?)
            }
            Command::RemoveCluster { name } => {
                Ok(changed_if(self.delete(keys::key(keys::CLUSTER, name))?))
            }
            Command::PutRepo(r) => {
                let key = keys::key(keys::REPO, &r.url);
                Ok(self.put_if_changed::<RepoRef>(key, r)?)
            }
            Command::RemoveRepo { url } => Ok(changed_if(self.delete(keys::key(keys::REPO, url))?)),
            Command::RecordRevision {
                repo,
                git_ref,
                sha,
                at,
            } => {
                let key = keys::revision(repo, git_ref);
                if let Some(old) = self.get::<RevisionRecord>(&key)? {
                    if old.sha == *sha {
                        return Ok(Applied::Unchanged);
                    }
                }
                let rec = RevisionRecord {
                    repo: repo.clone(),
                    git_ref: git_ref.clone(),
                    sha: sha.clone(),
                    at: *at,
                };
                self.put(key, &rec);
                Ok(Applied::Changed)
            }
            Command::PutNodeInfo(info) => {
                let key = keys::node(info.id);
                Ok(self.put_if_changed::<NodeInfo>(key, info)?)
            }
            Command::RequestOperation {
                app,
                op_id,
                request,
                at,
            } => {
                check_app_key(app)?;
                if self.get_raw(&keys::key(keys::APP, app))?.is_none() {
                    return Err(ApplyError::NoSuchApp { app: app.into() });
                }
                let rec = PendingOperation {
                    app: app.clone(),
                    op_id: op_id.clone(),
                    request: request.clone(),
                    requested_at: *at,
                };
                Ok(self.put_if_changed(keys::key(keys::PENDING, app), &rec)?)
            }
            Command::RequestRefresh { app, .. } => {
                check_app_key(app)?;
                if self.get_raw(&keys::key(keys::APP, app))?.is_none() {
                    return Err(ApplyError::NoSuchApp { app: app.into() });
                }
                Ok(Applied::Unchanged)
            }
        }
    }

    fn put_if_changed<T: Serialize + DeserializeOwned + PartialEq>(
        &mut self,
        key: Vec<u8>,
        value: &T,
    ) -> CommandResult {
        if self.get::<T>(&key)?.as_ref() == Some(value) {
            return Ok(Applied::Unchanged);
        }
        self.put(key, value);
        Ok(Applied::Changed)
    }

    /// Refuse a write to `app` unless `node` owns its shard under `epoch`.
    fn fence(&self, app: &str, node: NodeId, epoch: Epoch) -> Result<(), ApplyError> {
        check_app_key(app)?;
        let map: Option<ShardMap> = self.get(keys::SHARD_MAP.as_bytes())?;
        let Some(map) = map.filter(|m| m.shard_count() > 0) else {
            return Err(ApplyError::NoShardMap { app: app.into() });
        };
        let shard = shard_of(app, map.shard_count());
        map.check_writer(shard, node, epoch)
            .map_err(|source| ApplyError::Fenced {
                app: app.into(),
                source,
            })?;
        if self.get_raw(&keys::key(keys::APP, app))?.is_none() {
            return Err(ApplyError::NoSuchApp { app: app.into() });
        }
        Ok(())
    }
}

fn changed_if(existed: bool) -> Applied {
    if existed {
        Applied::Changed
    } else {
        Applied::Unchanged
    }
}

fn check_app_key(key: &str) -> Result<(), ApplyError> {
    match key.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok(()),
        _ => Err(ApplyError::InvalidAppKey { key: key.into() }),
    }
}

/// Decode a stored record, saying which key was corrupt.
pub fn decode<T: DeserializeOwned>(key: &[u8], stored: &[u8]) -> Result<T, ApplyError> {
    crate::values::decode(stored).map_err(|message| ApplyError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message,
    })
}

#[cfg(test)]
mod tests;
