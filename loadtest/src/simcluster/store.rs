//! One cluster's object store: objects, the resource-version counter, the bounded event
//! history watches resume from, and the broadcast that fans events out to watches.

use super::kinds::{types_from_crd, ResourceType, BUILTIN};
use super::meta::metadata_mut;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Default number of past events a cluster keeps for watches that resume from a resourceVersion.
pub const HISTORY: usize = 1024;
/// Capacity of the watch fan-out; a watch that lags further behind is closed.
pub const FANOUT: usize = 256;

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object deleted.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to the store.
#[derive(Debug, Clone)]
pub struct Event {
    /// Resource version the change produced.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// `group/plural` of the object.
    pub gr: String,
    /// Namespace ("" for cluster-scoped).
    pub ns: String,
    /// The object after the change (before, for deletions, with the deletion's version).
    pub object: Value,
    /// Labels before a modification (watches with label selectors turn a change of
    /// labels into ADDED or DELETED).
    pub old_labels: Option<Value>,
}

/// Storage key: group/plural, namespace, name.
pub type Key = (String, String, String);

/// In-memory state of one simulated cluster.
#[derive(Debug)]
pub struct Store {
    history_limit: usize,
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    compacted: u64,
    tx: Option<broadcast::Sender<Arc<Event>>>,
    crd_types: Vec<Arc<ResourceType>>,
    /// Keys written since the last drain (for the simulated controllers). A set: bounded by
    /// the number of distinct objects one write touches, and no key is ever dropped.
    touched: BTreeSet<Key>,
}

impl Default for Store {
    fn default() -> Self {
        Store::with_history(HISTORY)
    }
}

impl Store {
    /// An empty store keeping at most `limit` past events for resuming watches.
    pub fn with_history(limit: usize) -> Store {
        Store {
            history_limit: limit.max(1),
            rv: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            tx: None,
            crd_types: Vec::new(),
            touched: BTreeSet::new(),
        }
    }

    /// The current resource version.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Resource versions at or below this are no longer in the history.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Finds a servable type.
    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.all_types()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// All servable types, built-ins first.
    pub fn all_types(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        BUILTIN.iter().chain(self.crd_types.iter())
    }

    /// One object.
    pub fn get(&self, gr: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(gr.to_string(), ns.to_string(), name.to_string()))
    }

    /// Objects of a type (`group/plural`), in one namespace or (with `None`) all.
    pub fn list(&self, gr: String, ns: Option<String>) -> impl Iterator<Item = &Value> + '_ {
        let start = (gr.clone(), ns.clone().unwrap_or_default(), String::new());
        self.objects
            .range(start..)
            .take_while(move |((g, n, _), _)| *g == gr && ns.as_ref().is_none_or(|ns| n == ns))
            .map(|(_, v)| v)
    }

    /// All objects (for garbage collection).
    pub fn all(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter()
    }

    /// Stores an object with a new resourceVersion and emits its event; returns the stored copy.
    pub fn put(&mut self, key: Key, mut obj: Value, kind: EventType) -> Value {
        self.rv += 1;
        metadata_mut(&mut obj).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        let prev = self.objects.insert(key.clone(), obj.clone());
        if key.0 == "apiextensions.k8s.io/customresourcedefinitions" {
            self.refresh_crds();
        }
        let old_labels = prev.map(|p| p["metadata"]["labels"].clone());
        self.emit(key, kind, obj.clone(), old_labels);
        obj
    }

    /// Removes an object and emits DELETED; returns the removed object.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.rv += 1;
        metadata_mut(&mut obj).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        if key.0 == "apiextensions.k8s.io/customresourcedefinitions" {
            self.refresh_crds();
        }
        self.emit(key.clone(), EventType::Deleted, obj.clone(), None);
        Some(obj)
    }

    fn emit(&mut self, key: Key, kind: EventType, object: Value, old_labels: Option<Value>) {
        let ev = Arc::new(Event {
            rv: self.rv,
            kind,
            gr: key.0.clone(),
            ns: key.1.clone(),
            object,
            old_labels,
        });
        if self.history.len() >= self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        self.history.push_back(ev.clone());
        if let Some(tx) = &self.tx {
            // No receivers is fine: nobody is watching.
            let _ = tx.send(ev);
        }
        self.touched.insert(key);
    }

    /// Takes the keys written since the last call.
    pub fn drain_touched(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.touched).into_iter().collect()
    }

    /// Subscribes to future events (creates the fan-out on first use).
    pub fn subscribe(&mut self) -> broadcast::Receiver<Arc<Event>> {
        self.tx
            .get_or_insert_with(|| broadcast::channel(FANOUT).0)
            .subscribe()
    }

    /// Events after `rv`, or `None` when they are no longer in the history.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.compacted {
            return None;
        }
        Some(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Forgets the whole event history (fault injection: every resume then gets 410).
    pub fn compact_all(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    fn refresh_crds(&mut self) {
        self.crd_types = self
            .objects
            .range(
                (
                    "apiextensions.k8s.io/customresourcedefinitions".to_string(),
                    String::new(),
                    String::new(),
                )..,
            )
            .take_while(|((g, _, _), _)| g == "apiextensions.k8s.io/customresourcedefinitions")
            .flat_map(|(_, crd)| types_from_crd(crd))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(n: &str) -> Key {
        ("/configmaps".into(), "default".into(), n.into())
    }

    #[test]
    fn history_is_bounded_and_old_versions_expire() {
        let mut s = Store::with_history(3);
        for i in 0..5 {
            s.put(
                key(&format!("c{i}")),
                json!({"metadata": {"name": format!("c{i}")}}),
                EventType::Added,
            );
        }
        assert_eq!(s.rv(), 5);
        assert!(
            s.events_since(1).is_none(),
            "rv 1 fell out of a 3-event history"
        );
        let evs = s.events_since(3).expect("rv 3 is still resumable");
        assert_eq!(evs.iter().map(|e| e.rv).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(
            s.list("/configmaps".into(), Some("default".into())).count(),
            5
        );
        let gone = s.remove(&key("c0")).unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "6");
        s.compact_all();
        assert!(s.events_since(5).is_none() && s.events_since(6).is_some());
    }

    #[test]
    fn touched_keys_are_never_dropped_and_appear_once() {
        let mut s = Store::with_history(8);
        s.drain_touched();
        for i in 0..5000 {
            let k = key(&format!("c{i}"));
            s.put(
                k.clone(),
                json!({"metadata": {"name": format!("c{i}")}}),
                EventType::Added,
            );
            s.put(
                k,
                json!({"metadata": {"name": format!("c{i}"), "labels": {"x": "y"}}}),
                EventType::Modified,
            );
        }
        let touched = s.drain_touched();
        assert_eq!(touched.len(), 5000, "one entry per object, none lost");
        assert!(s.drain_touched().is_empty());
    }
}
