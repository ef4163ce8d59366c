//! The state machine in sled: applies committed entries, builds and installs snapshots.
//!
//! All replicated state lives in one sled tree (`state`), one key prefix per table (see
//! [`crate::apply::keys`]). Each call of `apply` commits its writes together with the new
//! last-applied log id in a single atomic sled batch, so a crash never leaves state and
//! position out of step. A snapshot is every key/value pair of that tree plus openraft's
//! metadata; the latest one is kept in the `snapshot` tree.

use std::io;
use std::sync::{Arc, Mutex as SyncMutex};

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::{broadcast, Mutex};

use crate::apply::{keys, KvRead, Overlay};
use crate::command::{ApplyError, Command, CommandResult, Response};
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

const KEY_SNAP_META: &[u8] = b"meta";
const KEY_SNAP_DATA: &[u8] = b"data";

/// One applied change, as seen by subscribers of [`crate::Store::subscribe`].
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeEvent {
    /// A command was applied at log `index` (accepted or rejected: see `result`).
    Applied {
        /// The log index of the entry that carried the command.
        index: u64,
        /// The command.
        command: Command,
        /// What applying it did.
        result: CommandResult,
    },
    /// A snapshot replaced the whole state: subscribers must read everything again.
    Reset {
        /// The last log index the snapshot covers.
        index: Option<u64>,
    },
}

fn meta_key(name: &str) -> Vec<u8> {
    keys::key(keys::META, name)
}

/// Shared state of the state machine and its snapshot builders.
struct Shared {
    db: sled::Db,
    state: sled::Tree,
    snapshots: sled::Tree,
    /// Held while applying or while copying the state for a snapshot, so a snapshot is a
    /// consistent cut at its last-applied log id.
    lock: Mutex<()>,
    changes: broadcast::Sender<Arc<ChangeEvent>>,
}

/// flotilla's Raft state machine over sled.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// A sled tree read by `apply`, remembering the first I/O error so the batch can be aborted.
struct SledView<'a> {
    tree: &'a sled::Tree,
    error: SyncMutex<Option<io::Error>>,
}

impl KvRead for SledView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        match self.tree.get(key) {
            Ok(v) => Ok(v.map(|v| v.to_vec())),
            Err(e) => {
                let msg = e.to_string();
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(io::Error::other(e));
                }
                Err(ApplyError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    message: msg,
                })
            }
        }
    }
}

impl StateMachine {
    /// Open the state-machine trees of `db`; applied changes are announced on `changes`.
    pub fn open(db: &sled::Db, changes: broadcast::Sender<Arc<ChangeEvent>>) -> io::Result<Self> {
        let state = db.open_tree("state").map_err(io::Error::other)?;
        let snapshots = db.open_tree("snapshot").map_err(io::Error::other)?;
        Ok(Self {
            shared: Arc::new(Shared {
                db: db.clone(),
                state,
                snapshots,
                lock: Mutex::new(()),
                changes,
            }),
        })
    }

    /// The tree holding the replicated state, for local reads.
    pub fn state_tree(&self) -> sled::Tree {
        self.shared.state.clone()
    }

    fn read_position(&self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let t = &self.shared.state;
        let applied = match t.get(meta_key("applied")).map_err(io::Error::other)? {
            Some(v) => bincode::deserialize(&v).map_err(invalid("applied log id"))?,
            None => None,
        };
        let membership = match t.get(meta_key("membership")).map_err(io::Error::other)? {
            Some(v) => bincode::deserialize(&v).map_err(invalid("membership"))?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    fn load_snapshot(&self) -> io::Result<Option<Snapshot>> {
        let t = &self.shared.snapshots;
        let (Some(meta), Some(data)) = (
            t.get(KEY_SNAP_META).map_err(io::Error::other)?,
            t.get(KEY_SNAP_DATA).map_err(io::Error::other)?,
        ) else {
            return Ok(None);
        };
        let meta: SnapshotMeta = bincode::deserialize(&meta).map_err(invalid("snapshot meta"))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: data.to_vec(),
        }))
    }

    async fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(
            KEY_SNAP_META,
            bincode::serialize(meta).map_err(io::Error::other)?,
        );
        batch.insert(KEY_SNAP_DATA, data);
        self.shared
            .snapshots
            .apply_batch(batch)
            .map_err(io::Error::other)?;
        self.shared
            .db
            .flush_async()
            .await
            .map_err(io::Error::other)?;
        Ok(())
    }
}

fn invalid(what: &'static str) -> impl Fn(bincode::Error) -> io::Error {
    move |e| io::Error::new(io::ErrorKind::InvalidData, format!("corrupt {what}: {e}"))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let (meta, data) = {
            let _guard = self.shared.lock.lock().await;
            let (applied, membership) = self.read_position()?;
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for item in self.shared.state.iter() {
                let (k, v) = item.map_err(io::Error::other)?;
                if k.starts_with(keys::META.as_bytes()) {
                    continue;
                }
                pairs.push((k.to_vec(), v.to_vec()));
            }
            let meta = SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
            };
            (meta, bincode::serialize(&pairs).map_err(io::Error::other)?)
        };
        self.save_snapshot(&meta, &data).await?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        self.read_position()
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let shared = self.shared.clone();
        let _guard = shared.lock.lock().await;
        let view = SledView {
            tree: &shared.state,
            error: SyncMutex::new(None),
        };
        let mut overlay = Overlay::new(&view);
        let mut last_applied = None;
        let mut membership = None;
        let mut responses = Vec::new();
        let mut events = Vec::new();
        // Change events are built only while someone listens.
        let publish = shared.changes.receiver_count() > 0;

        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let index = log_id.index();
            let response = match entry.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(req) => {
                    let mut results = Vec::with_capacity(req.commands.len());
                    for command in req.commands {
                        let result = overlay.apply(&command);
                        if publish {
                            events.push(ChangeEvent::Applied {
                                index,
                                command,
                                result: result.clone(),
                            });
                        }
                        results.push(result);
                    }
                    Response { results }
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(log_id), m));
                    Response::default()
                }
            };
            last_applied = Some(log_id);
            if let Some(r) = responder {
                responses.push((r, response));
            }
        }
        if let Some(e) = view.error.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }

        let mut batch = sled::Batch::default();
        for (k, v) in overlay.into_writes() {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        if let Some(l) = &last_applied {
            let v = bincode::serialize(&Some(*l)).map_err(io::Error::other)?;
            batch.insert(meta_key("applied"), v);
        }
        if let Some(m) = &membership {
            batch.insert(
                meta_key("membership"),
                bincode::serialize(m).map_err(io::Error::other)?,
            );
        }
        shared.state.apply_batch(batch).map_err(io::Error::other)?;

        for (responder, response) in responses {
            responder.send(response);
        }
        for ev in events {
            // No subscribers is fine; lagging ones learn it from their receiver.
            let _ = shared.changes.send(Arc::new(ev));
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            bincode::deserialize(&snapshot).map_err(invalid("snapshot data"))?;
        {
            let _guard = self.shared.lock.lock().await;
            let state = &self.shared.state;
            let mut batch = sled::Batch::default();
            for item in state.iter() {
                let (k, _) = item.map_err(io::Error::other)?;
                batch.remove(k);
            }
            for (k, v) in pairs {
                batch.insert(k, v);
            }
            let applied = bincode::serialize(&meta.last_log_id).map_err(io::Error::other)?;
            batch.insert(meta_key("applied"), applied);
            let membership = bincode::serialize(&meta.last_membership).map_err(io::Error::other)?;
            batch.insert(meta_key("membership"), membership);
            state.apply_batch(batch).map_err(io::Error::other)?;
        }
        self.save_snapshot(meta, &snapshot).await?;
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        let index = meta.last_log_id.as_ref().map(|l| l.index());
        let _ = self
            .shared
            .changes
            .send(Arc::new(ChangeEvent::Reset { index }));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        self.load_snapshot()
    }
}
