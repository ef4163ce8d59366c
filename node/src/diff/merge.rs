//! Overlay of desired fields onto a live object, predicting what the live object will be
//! once the desired state is applied.
//!
//! Objects merge field by field. Lists of objects merge by the key the API server uses for
//! them (`name` for containers, env and volumes, `containerPort` for container ports, …), so
//! that defaults the server adds to one item do not count as drift; other lists are replaced
//! whole, as server-side apply does with atomic lists.

use serde_json::{Map, Value};

/// Fields that identify an item of a keyed list, tried in order.
const MERGE_KEYS: [&[&str]; 6] = [
    &["name"],
    &["containerPort", "protocol"],
    &["port", "protocol"],
    &["mountPath"],
    &["devicePath"],
    &["ip"],
];

/// `live` with every field of `desired` laid over it.
pub fn overlay(live: &Value, desired: &Value) -> Value {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => Value::Object(overlay_map(l, d)),
        (Value::Array(l), Value::Array(d)) => Value::Array(overlay_list(l, d)),
        (l, d) if super::normalize::equivalent(l, d) => l.clone(),
        (_, d) => d.clone(),
    }
}

fn overlay_map(live: &Map<String, Value>, desired: &Map<String, Value>) -> Map<String, Value> {
    let mut out = live.clone();
    for (k, dv) in desired {
        let merged = match live.get(k) {
            Some(lv) => overlay(lv, dv),
            None => dv.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

/// The key fields shared by every item of `items`, if the list looks keyed.
pub fn list_key(items: &[Value]) -> Option<&'static [&'static str]> {
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    MERGE_KEYS
        .iter()
        .copied()
        .find(|key| items.iter().all(|i| i.get(key[0]).is_some()))
}

/// The key of one item: the values of the key fields (absent ones as null).
pub fn item_key(item: &Value, key: &[&str]) -> Vec<Value> {
    key.iter()
        .map(|f| match (item.get(*f), *f) {
            // The server defaults a port's protocol to TCP.
            (None, "protocol") => Value::String("TCP".into()),
            (v, _) => v.cloned().unwrap_or(Value::Null),
        })
        .collect()
}

fn overlay_list(live: &[Value], desired: &[Value]) -> Vec<Value> {
    if let Some(key) = list_key(desired) {
        if list_key(live) == Some(key) || live.is_empty() {
            // Live items keep their place and take the desired fields; items only the
            // desired list has are appended; items only live has stay, as server-side
            // apply leaves other managers' items alone (items this manager applied before
            // and dropped since are removed by the managed-fields step).
            let mut out: Vec<Value> = live
                .iter()
                .map(|l| {
                    let k = item_key(l, key);
                    match desired.iter().find(|d| item_key(d, key) == k) {
                        Some(d) => overlay(l, d),
                        None => l.clone(),
                    }
                })
                .collect();
            for d in desired {
                let k = item_key(d, key);
                if !live.iter().any(|l| item_key(l, key) == k) {
                    out.push(d.clone());
                }
            }
            return out;
        }
    }
    if live.len() == desired.len() && desired.iter().all(Value::is_object) {
        return live
            .iter()
            .zip(desired)
            .map(|(l, d)| overlay(l, d))
            .collect();
    }
    desired.to_vec()
}
