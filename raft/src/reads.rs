//! Local reads of the replicated state from this member's sled replica.

use flotilla_shard::{NodeId, ShardMap};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::apply::{
    decode, keys, AppRecord, OperationRecord, PendingOperation, ProjectRecord, RevisionRecord,
    StatusRecord,
};
use crate::command::{ClusterRef, NodeInfo, RepoRef};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// sled failed.
    #[error("reading the local replica: {0}")]
    Storage(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error(transparent)]
    Corrupt(#[from] crate::command::ApplyError),
    /// The table name is not one of the store's tables.
    #[error("unknown table {0:?}; expected one of apps, projects, statuses, operations, clusters, repos, revisions, nodes, shardmap")]
    UnknownTable(String),
}

/// Reads of the state as applied on this member (possibly behind the leader).
#[derive(Clone)]
pub struct StateReader {
    tree: sled::Tree,
}

impl StateReader {
    pub(crate) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ReadError> {
        match self.tree.get(key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, ReadError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// One application by `namespace/name`.
    pub fn app(&self, app: &str) -> Result<Option<AppRecord>, ReadError> {
        self.get(&keys::key(keys::APP, app))
    }
    /// Every application, ordered by key.
    pub fn apps(&self) -> Result<Vec<AppRecord>, ReadError> {
        self.scan(keys::APP)
    }
    /// The applications whose `namespace/name` passes `keep`, ordered by key; the others are
    /// not decoded.
    pub fn apps_where(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<AppRecord>, ReadError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(keys::APP.as_bytes()) {
            let (k, v) = item?;
            let name = std::str::from_utf8(&k[keys::APP.len()..]).unwrap_or_default();
            if keep(name) {
                out.push(decode(&k, &v)?);
            }
        }
        Ok(out)
    }
    /// One project.
    pub fn project(&self, name: &str) -> Result<Option<ProjectRecord>, ReadError> {
        self.get(&keys::key(keys::PROJECT, name))
    }
    /// Every project.
    pub fn projects(&self) -> Result<Vec<ProjectRecord>, ReadError> {
        self.scan(keys::PROJECT)
    }
    /// An application's status.
    pub fn status(&self, app: &str) -> Result<Option<StatusRecord>, ReadError> {
        self.get(&keys::key(keys::STATUS, app))
    }
    /// Every status.
    pub fn statuses(&self) -> Result<Vec<StatusRecord>, ReadError> {
        self.scan(keys::STATUS)
    }
    /// An application's current or last operation.
    pub fn operation(&self, app: &str) -> Result<Option<OperationRecord>, ReadError> {
        self.get(&keys::key(keys::OPERATION, app))
    }
    /// The sync operation requested for an application and not yet started, if any.
    pub fn pending(&self, app: &str) -> Result<Option<PendingOperation>, ReadError> {
        self.get(&keys::key(keys::PENDING, app))
    }
    /// The committed shard map, if any.
    pub fn shard_map(&self) -> Result<Option<ShardMap>, ReadError> {
        self.get(keys::SHARD_MAP.as_bytes())
    }
    /// Every destination cluster.
    pub fn clusters(&self) -> Result<Vec<ClusterRef>, ReadError> {
        self.scan(keys::CLUSTER)
    }
    /// Every repository.
    pub fn repos(&self) -> Result<Vec<RepoRef>, ReadError> {
        self.scan(keys::REPO)
    }
    /// The recorded revision of a repository's ref.
    pub fn revision(&self, repo: &str, git_ref: &str) -> Result<Option<RevisionRecord>, ReadError> {
        self.get(&keys::revision(repo, git_ref))
    }
    /// Every recorded revision.
    pub fn revisions(&self) -> Result<Vec<RevisionRecord>, ReadError> {
        self.scan(keys::REVISION)
    }
    /// One node's information.
    pub fn node(&self, id: NodeId) -> Result<Option<NodeInfo>, ReadError> {
        self.get(&keys::node(id))
    }
    /// Every node's information.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, ReadError> {
        self.scan(keys::NODE)
    }

    /// One record as JSON, by table name and key (used by the gRPC `Read`).
    pub fn get_json(&self, table: &str, key: &str) -> Result<Option<serde_json::Value>, ReadError> {
        fn j<T: Serialize>(v: Option<T>) -> Option<serde_json::Value> {
            v.and_then(|v| serde_json::to_value(v).ok())
        }
        Ok(match table {
            "apps" => j(self.app(key)?),
            "projects" => j(self.project(key)?),
            "statuses" => j(self.status(key)?),
            "operations" => j(self.operation(key)?),
            "clusters" => j(self.get::<ClusterRef>(&keys::key(keys::CLUSTER, key))?),
            "repos" => j(self.get::<RepoRef>(&keys::key(keys::REPO, key))?),
            "revisions" => {
                let (repo, r) = key.rsplit_once('@').unwrap_or((key, "HEAD"));
                j(self.revision(repo, r)?)
            }
            "nodes" => match key.parse::<u64>() {
                Ok(id) => j(self.node(id)?),
                Err(_) => None,
            },
            "shardmap" => j(self.shard_map()?),
            other => return Err(ReadError::UnknownTable(other.into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Json;

    #[test]
    fn apps_where_decodes_only_the_apps_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = sled::open(dir.path())
            .and_then(|db| db.open_tree("state"))
            .expect("tree");
        for app in ["a/one", "b/two", "a/three"] {
            let rec = AppRecord {
                app: app.into(),
                spec: Json::from(serde_json::json!({"spec": {"project": "p".repeat(600)}})),
                generation: 1,
                updated_at: 0,
            };
            let value = crate::values::encode(&rec).expect("encode");
            tree.insert(keys::key(keys::APP, app), value)
                .expect("insert");
        }
        // A record the filter rejects is never decoded, so its damage goes unnoticed.
        tree.insert(keys::key(keys::APP, "c/broken"), b"\x09".as_slice())
            .expect("insert");
        let reader = StateReader::new(tree);
        let kept: Vec<String> = reader
            .apps_where(|app| app.starts_with("a/"))
            .expect("read")
            .into_iter()
            .map(|r| r.app)
            .collect();
        assert_eq!(kept, ["a/one", "a/three"]);
        assert!(
            reader.apps().is_err(),
            "decoding every app reaches the broken one"
        );
    }
}
