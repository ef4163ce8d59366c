//! Watches: newline-delimited JSON events, flushed one by one, resumable from a
//! resourceVersion, with bookmarks, timeouts and 410 `Expired` for versions the history lost.

use super::ops::{matching, typed, ListQuery, Target};
use super::status::ApiError;
use super::store::{Event, EventType};
use super::table::{TableRequest, TableSpec};
use super::Cluster;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Parameters of a watch request.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// `resourceVersion` to resume after; `None` or `0` starts with the current state.
    pub rv: Option<String>,
    /// `timeoutSeconds` (the server closes the stream after it).
    pub timeout: Duration,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents` (streaming list).
    pub initial_events: bool,
    /// `as=Table`: event objects are Tables of one row, column definitions in the first only.
    pub table: Option<(TableRequest, TableSpec)>,
}

/// Encodes the objects of events: typed objects, or one-row Tables.
struct Encoder {
    table: Option<(TableRequest, TableSpec)>,
    headers_sent: bool,
}

impl Encoder {
    fn object(&mut self, t: &Target, obj: &Value) -> Value {
        match &self.table {
            None => typed(obj.clone(), &t.rt),
            Some((req, spec)) => {
                let mut table = spec.render_one(*req, &t.rt, obj);
                if self.headers_sent {
                    table["columnDefinitions"] = Value::Null;
                }
                self.headers_sent = true;
                table
            }
        }
    }

    fn event_line(&mut self, t: &Target, kind: EventType, e: &Event) -> Bytes {
        line(&json!({"type": kind.as_str(), "object": self.object(t, &e.object)}))
    }
}

/// One piece of a watch body; an error aborts the connection (a dropped watch).
pub type Chunk = Result<Bytes, std::io::Error>;

/// Bounded buffer between the event loop and the HTTP body.
const BODY_BUFFER: usize = 64;

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(t: &Target, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        &json!({"type": "BOOKMARK", "object": {"apiVersion": t.rt.api_version(), "kind": t.rt.kind, "metadata": meta}}),
    )
}

/// An ERROR event carrying a 410 Expired Status.
pub fn expired_line(rv: &str) -> Bytes {
    let err = ApiError::expired(format!("too old resource version: {rv}"));
    line(&json!({"type": "ERROR", "object": err.to_status()}))
}

/// The event type a watch sees for a change, if any: a modification that moves an object
/// into or out of the selection is an ADDED or DELETED for this watch.
fn seen_as(t: &Target, q: &ListQuery, e: &Event) -> Option<EventType> {
    if e.gr != t.rt.group_resource()
        || (t.rt.namespaced && t.ns.as_ref().is_some_and(|ns| *ns != e.ns))
        || !q.fields.matches(&e.object)
    {
        return None;
    }
    let now = q.labels.matches(&e.object);
    match (e.kind, &e.old_labels) {
        (EventType::Modified, Some(old)) => match (q.labels.matches_labels(old), now) {
            (true, true) => Some(EventType::Modified),
            (false, true) => Some(EventType::Added),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        },
        (kind, _) => now.then_some(kind),
    }
}

/// Starts a watch; the receiver yields the lines of the response body.
pub(crate) fn start(
    cluster: &Arc<Cluster>,
    t: Target,
    q: ListQuery,
    p: WatchParams,
) -> Result<mpsc::Receiver<Chunk>, ApiError> {
    cluster
        .watches_started
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, body) = mpsc::channel(BODY_BUFFER);
    let mut first: Vec<Bytes> = vec![];
    let force_410 = cluster.faults.get().force_watch_410;
    let mut enc = Encoder {
        table: p.table.clone(),
        headers_sent: false,
    };
    let (mut rx, mut last_rv) = {
        let mut store = cluster.lock();
        let resume: Option<u64> = match p.rv.as_deref() {
            None | Some("") | Some("0") => None,
            Some(r) => Some(
                r.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {r:?}")))?,
            ),
        };
        if force_410 && resume.is_some() {
            let _ = tx.try_send(Ok(expired_line(p.rv.as_deref().unwrap_or_default())));
            return Ok(body);
        }
        let current = store.rv();
        match resume {
            Some(rv) if !p.initial_events => match store.events_since(rv) {
                Some(evs) => first.extend(
                    evs.iter()
                        .filter_map(|e| seen_as(&t, &q, e).map(|k| enc.event_line(&t, k, e))),
                ),
                None => {
                    let _ = tx.try_send(Ok(expired_line(&rv.to_string())));
                    return Ok(body);
                }
            },
            _ => {
                for o in matching(&store, &t, &q) {
                    first.push(line(&json!({"type": "ADDED", "object": enc.object(&t, o)})));
                }
                if p.initial_events {
                    first.push(bookmark(&t, current, true));
                }
            }
        }
        (store.subscribe(), current)
    };
    let cluster = cluster.clone();
    let mut drop_rx = cluster.drop_watches.subscribe();
    tokio::spawn(async move {
        for l in first {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(p.timeout);
        tokio::pin!(deadline);
        let drop_after = cluster.faults.get().watch_drop_after_ms;
        let drop_timer = tokio::time::sleep(Duration::from_millis(drop_after));
        tokio::pin!(drop_timer);
        let dropped = || {
            Err(std::io::Error::other(
                "simcluster: watch connection dropped",
            ))
        };
        let mut ticker = tokio::time::interval(cluster.bookmark_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = drop_rx.changed() => {
                    let _ = tx.send(dropped()).await;
                    return;
                }
                _ = &mut drop_timer, if drop_after > 0 => {
                    let _ = tx.send(dropped()).await;
                    return;
                }
                _ = tx.closed() => return,
                _ = ticker.tick(), if p.bookmarks => {
                    if tx.send(Ok(bookmark(&t, last_rv, false))).await.is_err() { return; }
                }
                ev = rx.recv() => match ev {
                    Ok(e) => {
                        if e.rv <= last_rv { continue; }
                        last_rv = e.rv;
                        if let Some(kind) = seen_as(&t, &q, &e) {
                            if tx.send(Ok(enc.event_line(&t, kind, &e))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // A watch that fell behind the fan-out is closed; the client re-watches.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Ok(body)
}
