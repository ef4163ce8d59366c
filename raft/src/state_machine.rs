//! The state machine in sled: applies committed entries, builds and installs snapshots.
//!
//! All replicated state lives in one sled tree (`state`), one key prefix per table (see
//! [`crate::apply::keys`]). Each call of `apply` commits its writes together with the new
//! last-applied log id in a single atomic sled batch, so a crash never leaves state and
//! position out of step. A snapshot is every key/value pair of that tree plus openraft's
//! metadata. The latest one is kept in a file of its own beside the database (written to a
//! temporary file, synced, then renamed over the old one): kept in sled, a snapshot of
//! every app's state sat in sled's page cache beside the state it copies. A snapshot that
//! an older version kept in the `snapshot` tree is still read, and removed once a newer
//! one is saved.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
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
    /// Where an older version kept the latest snapshot.
    snapshots: sled::Tree,
    /// The file holding the latest snapshot.
    snapshot_file: PathBuf,
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
    /// Open the state-machine trees of `db`, with the latest snapshot kept in the file
    /// `snapshot_file`; applied changes are announced on `changes`.
    pub fn open(
        db: &sled::Db,
        snapshot_file: impl Into<PathBuf>,
        changes: broadcast::Sender<Arc<ChangeEvent>>,
    ) -> io::Result<Self> {
        crate::values::upgrade(db)?;
        let state = db.open_tree("state").map_err(io::Error::other)?;
        let snapshots = db.open_tree("snapshot").map_err(io::Error::other)?;
        Ok(Self {
            shared: Arc::new(Shared {
                db: db.clone(),
                state,
                snapshots,
                snapshot_file: snapshot_file.into(),
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
        match std::fs::read(&self.shared.snapshot_file) {
            Ok(bytes) => decode_snapshot(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{}: {e}", self.shared.snapshot_file.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.load_tree_snapshot(),
            Err(e) => Err(e),
        }
    }

    /// A snapshot an older version kept in the `snapshot` tree.
    fn load_tree_snapshot(&self) -> io::Result<Option<Snapshot>> {
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
        let meta = bincode::serialize(meta).map_err(io::Error::other)?;
        // An installed snapshot replaced the state tree: that goes to disk first, so the
        // saved snapshot is never ahead of the state it describes.
        self.shared
            .db
            .flush_async()
            .await
            .map_err(io::Error::other)?;
        write_durably(&self.shared.snapshot_file, &meta, data)?;
        if !self.shared.snapshots.is_empty() {
            // The file is read first: a crash before this is flushed loses nothing.
            self.shared.snapshots.clear().map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// The snapshot file: the length of the metadata (8 bytes, little-endian), the metadata
/// (bincode), then the data.
fn decode_snapshot(bytes: &[u8]) -> io::Result<Snapshot> {
    let cut = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "corrupt snapshot file: cut short",
        )
    };
    let (len, rest) = bytes.split_first_chunk::<8>().ok_or_else(cut)?;
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| cut())?;
    if rest.len() < len {
        return Err(cut());
    }
    let (meta, data) = rest.split_at(len);
    Ok(Snapshot {
        meta: bincode::deserialize(meta).map_err(invalid("snapshot meta"))?,
        snapshot: data.to_vec(),
    })
}

/// Write `meta` and `data` to `path` so that a crash leaves either the old file or the
/// whole new one: a temporary file, synced, renamed over `path`, and the directory synced.
fn write_durably(path: &Path, meta: &[u8], data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&(meta.len() as u64).to_le_bytes())?;
        f.write_all(meta)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
                // Snapshots carry records as bincode bytes, whatever the local layout.
                let bytes = crate::values::unpack(&v).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("record {}: {e}", String::from_utf8_lossy(&k)),
                    )
                })?;
                pairs.push((k.to_vec(), bytes.into_owned()));
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
                batch.insert(k, crate::values::pack(v));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (sled::Db, StateMachine) {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(1 << 20)
            .open()
            .expect("open sled");
        let (tx, _) = broadcast::channel(4);
        let sm = StateMachine::open(&db, dir.join("snapshot"), tx).expect("open");
        (db, sm)
    }

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
        }
    }

    #[tokio::test]
    async fn a_saved_snapshot_is_read_back_after_reopening_and_is_not_in_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (_db, sm) = open(dir.path());
            sm.save_snapshot(&meta(), b"the state").await.expect("save");
            assert!(sm.shared.snapshots.is_empty(), "no copy in sled");
        }
        let (_db, mut sm) = open(dir.path());
        let snap = sm
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("a snapshot");
        assert_eq!(snap.meta, meta());
        assert_eq!(snap.snapshot, b"the state");
        assert!(!dir.path().join("snapshot.tmp").exists());
    }

    #[tokio::test]
    async fn a_snapshot_kept_in_the_tree_is_read_and_removed_when_a_newer_one_is_saved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, mut sm) = open(dir.path());
        let old = bincode::serialize(&meta()).expect("meta");
        sm.shared
            .snapshots
            .insert(KEY_SNAP_META, old)
            .expect("insert");
        sm.shared
            .snapshots
            .insert(KEY_SNAP_DATA, &b"old"[..])
            .expect("insert");
        let snap = sm
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("a snapshot");
        assert_eq!(snap.snapshot, b"old");
        sm.save_snapshot(&meta(), b"new").await.expect("save");
        assert!(sm.shared.snapshots.is_empty());
        let snap = sm
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("a snapshot");
        assert_eq!(snap.snapshot, b"new");
    }

    #[test]
    fn a_cut_snapshot_file_is_an_error_that_says_so() {
        let meta = bincode::serialize(&meta()).expect("meta");
        let mut file = (meta.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&meta);
        file.extend_from_slice(b"data");
        assert_eq!(decode_snapshot(&file).expect("whole").snapshot, b"data");
        for len in [0, 5, 8 + meta.len() - 1] {
            let err = decode_snapshot(&file[..len]).expect_err("cut");
            assert!(err.to_string().contains("cut short"), "{err}");
        }
    }
}
