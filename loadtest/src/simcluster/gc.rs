//! Deletion with finalizers and propagation policies, and owner-reference garbage collection.

use super::meta::{metadata_mut, now_rfc3339};
use super::store::{EventType, Key, Store};
use serde_json::{json, Value};
use std::collections::HashSet;

const FOREGROUND: &str = "foregroundDeletion";

fn uid_of(o: &Value) -> Option<&str> {
    o["metadata"]["uid"].as_str()
}

fn owner_uids(o: &Value) -> Vec<String> {
    o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(String::from))
        .collect()
}

fn finalizers(o: &Value) -> Vec<String> {
    o["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

/// Deletes an object under a propagation policy and collects garbage; returns the object as
/// the client sees it (marked with `deletionTimestamp` while finalizers remain).
pub fn delete_object(store: &mut Store, key: &Key, policy: &str) -> Value {
    let out = delete_inner(store, key, policy);
    sweep(store);
    out
}

fn delete_inner(store: &mut Store, key: &Key, policy: &str) -> Value {
    let Some(mut obj) = store.get(&key.0, &key.1, &key.2).cloned() else {
        return Value::Null;
    };
    let uid = uid_of(&obj).unwrap_or_default().to_string();
    if key.0 == "/namespaces" {
        let inside: Vec<Key> = store
            .all()
            .filter(|(k, _)| k.1 == key.2 && !k.1.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in inside {
            store.remove(&k);
        }
    }
    if key.0 == "apiextensions.k8s.io/customresourcedefinitions" {
        // The custom resources go with their definition.
        let gr = format!(
            "{}/{}",
            obj["spec"]["group"].as_str().unwrap_or_default(),
            obj["spec"]["names"]["plural"].as_str().unwrap_or_default()
        );
        let instances: Vec<Key> = store
            .all()
            .filter(|(k, _)| k.0 == gr)
            .map(|(k, _)| k.clone())
            .collect();
        for k in instances {
            store.remove(&k);
        }
    }
    if policy == "Orphan" {
        let dependents: Vec<(Key, Value)> = store
            .all()
            .filter(|(_, o)| owner_uids(o).contains(&uid))
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        for (k, mut d) in dependents {
            if let Some(Value::Array(refs)) = d["metadata"].get_mut("ownerReferences") {
                refs.retain(|r| r["uid"].as_str() != Some(&uid));
            }
            store.put(k, d, EventType::Modified);
        }
    }
    let mut fins = finalizers(&obj);
    if policy == "Foreground"
        && !fins.iter().any(|f| f == FOREGROUND)
        && obj["metadata"].get("deletionTimestamp").is_none()
    {
        fins.push(FOREGROUND.into());
    }
    if fins.is_empty() {
        return store.remove(key).unwrap_or(Value::Null);
    }
    let meta = metadata_mut(&mut obj);
    let mut changed = false;
    if meta.get("deletionTimestamp").is_none() {
        meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        changed = true;
    }
    if meta
        .get("finalizers")
        .and_then(Value::as_array)
        .map(Vec::len)
        != Some(fins.len())
    {
        meta.insert("finalizers".into(), json!(fins));
        changed = true;
    }
    if changed {
        store.put(key.clone(), obj, EventType::Modified)
    } else {
        obj
    }
}

/// Garbage collection: deletes dependents whose owners are all gone, drops references to
/// deleted owners, and finishes foreground deletions whose dependents are gone.
pub fn sweep(store: &mut Store) {
    for _ in 0..64 {
        let uids: HashSet<String> = store
            .all()
            .filter_map(|(_, o)| uid_of(o).map(String::from))
            .collect();
        let mut actions: Vec<(Key, Action)> = vec![];
        for (k, o) in store.all() {
            let owners = owner_uids(o);
            if !owners.is_empty() {
                let gone: Vec<&String> = owners.iter().filter(|u| !uids.contains(*u)).collect();
                if gone.len() == owners.len() {
                    if o["metadata"].get("deletionTimestamp").is_none() {
                        actions.push((k.clone(), Action::Delete));
                    }
                } else if !gone.is_empty() {
                    actions.push((k.clone(), Action::DropRefs));
                }
            }
            if o["metadata"].get("deletionTimestamp").is_some()
                && finalizers(o).iter().any(|f| f == FOREGROUND)
            {
                let uid = uid_of(o).unwrap_or_default().to_string();
                let dependents: Vec<Key> = store
                    .all()
                    .filter(|(_, d)| owner_uids(d).contains(&uid))
                    .map(|(dk, _)| dk.clone())
                    .collect();
                if dependents.is_empty() {
                    actions.push((k.clone(), Action::FinishForeground));
                } else {
                    for dk in dependents {
                        if store
                            .get(&dk.0, &dk.1, &dk.2)
                            .is_some_and(|d| d["metadata"].get("deletionTimestamp").is_none())
                        {
                            actions.push((dk, Action::Delete));
                        }
                    }
                }
            }
        }
        if actions.is_empty() {
            return;
        }
        for (k, action) in actions {
            match action {
                Action::Delete => {
                    delete_inner(store, &k, "Background");
                }
                Action::DropRefs => {
                    let Some(mut o) = store.get(&k.0, &k.1, &k.2).cloned() else {
                        continue;
                    };
                    if let Some(Value::Array(refs)) = o["metadata"].get_mut("ownerReferences") {
                        refs.retain(|r| r["uid"].as_str().is_some_and(|u| uids.contains(u)));
                    }
                    store.put(k, o, EventType::Modified);
                }
                Action::FinishForeground => {
                    let Some(mut o) = store.get(&k.0, &k.1, &k.2).cloned() else {
                        continue;
                    };
                    let rest: Vec<String> = finalizers(&o)
                        .into_iter()
                        .filter(|f| f != FOREGROUND)
                        .collect();
                    if rest.is_empty() {
                        store.remove(&k);
                    } else {
                        metadata_mut(&mut o).insert("finalizers".into(), json!(rest));
                        store.put(k, o, EventType::Modified);
                    }
                }
            }
        }
    }
}

enum Action {
    Delete,
    DropRefs,
    FinishForeground,
}
