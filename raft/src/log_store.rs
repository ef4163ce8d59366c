//! The Raft log and vote in sled, with group-committed flushes.
//!
//! Entries are written into the `log` tree as soon as openraft hands them over (so they can be
//! read back at once), but openraft is told they are stored only after an explicit flush of
//! the whole database: sled's own background flush is not relied on. A single flusher task
//! takes every append waiting at that moment and covers all of them with one flush, so many
//! concurrent appends cost one disk sync.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use tokio::sync::mpsc;

use crate::types::{Entry, LogId, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// How many appends may wait for the flusher before `append` waits too.
const FLUSH_QUEUE: usize = 1024;

/// The Raft log of one store member.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    flush_tx: mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl LogStore {
    /// Open the log trees of `db` and start its flusher task (on the current tokio runtime).
    pub fn open(db: &sled::Db) -> io::Result<Self> {
        crate::values::upgrade(db)?;
        let log = db.open_tree("raft_log").map_err(io::Error::other)?;
        let meta = db.open_tree("raft_meta").map_err(io::Error::other)?;
        let (flush_tx, flush_rx) = mpsc::channel(FLUSH_QUEUE);
        // A dedicated thread: a flush blocks on the disk, and a tokio worker must not.
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flusher(flush_db, flush_rx))?;
        Ok(Self {
            db: db.clone(),
            log,
            meta,
            flush_tx,
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.meta.get(key).map_err(io::Error::other)? {
            None => Ok(None),
            Some(v) => bincode::deserialize(&v).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("raft_meta/{}: {e}", String::from_utf8_lossy(key)),
                )
            }),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> io::Result<()> {
        let bytes = bincode::serialize(value).map_err(io::Error::other)?;
        self.meta.insert(key, bytes).map_err(io::Error::other)?;
        Ok(())
    }

    async fn flush(&self) -> io::Result<()> {
        self.db.flush_async().await.map_err(io::Error::other)?;
        Ok(())
    }
}

/// Completes appends after a flush that covers them: one flush for everything queued. Runs on
/// its own thread and ends when every [`LogStore`] handle is dropped.
fn flusher(db: sled::Db, mut rx: mpsc::Receiver<IOFlushed<TypeConfig>>) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        waiting.push(first);
        while waiting.len() < FLUSH_QUEUE {
            match rx.try_recv() {
                Ok(cb) => waiting.push(cb),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let res = db.flush();
        let took = started.elapsed();
        if took > std::time::Duration::from_millis(20) {
            tracing::debug!(appends = waiting.len(), ?took, "slow raft log flush");
        }
        for cb in waiting.drain(..) {
            let r = match &res {
                Ok(_) => Ok(()),
                Err(e) => Err(io::Error::other(format!("flushing the raft log: {e}"))),
            };
            cb.io_completed(r);
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn decode_entry(stored: &[u8]) -> io::Result<Entry> {
    crate::values::decode(stored).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt raft log entry: {e}"),
        )
    })
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for item in self.log.range(index_key(start)..) {
            let (k, v) = item.map_err(io::Error::other)?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(io::Error::other)?);
            if !range.contains(&idx) {
                break;
            }
            out.push(decode_entry(&v)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last = match self.log.last().map_err(io::Error::other)? {
            Some((_, v)) => Some(decode_entry(&v)?.log_id()),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.put_meta(KEY_VOTE, vote)?;
        self.flush().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not flushed: losing it only means re-applying from the state machine's own position.
        self.put_meta(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = crate::values::encode(&entry).map_err(io::Error::other)?;
            batch.insert(&index_key(entry.index()), bytes);
        }
        self.log.apply_batch(batch).map_err(io::Error::other)?;
        if let Err(mpsc::error::SendError(cb)) = self.flush_tx.send(callback).await {
            // The flusher is gone (shutdown): flush here so the entry is still made durable.
            let r = self.flush().await;
            cb.io_completed(r);
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(from)..) {
            let (k, _) = item.map_err(io::Error::other)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(io::Error::other)?;
        // Flushed so that a restart never resurrects entries that a new leader overwrote.
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // Record the purge point first: entries at or below it are ignored from then on.
        self.put_meta(KEY_PURGED, &log_id)?;
        self.flush().await?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index())) {
            let (k, _) = item.map_err(io::Error::other)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(io::Error::other)?;
        Ok(())
    }
}
