//! Server-side apply and `managedFields` bookkeeping.
//!
//! `apply` merges an applied configuration into the live object, checking conflicts with
//! other managers and removing fields the manager stopped applying; `record_update` gives
//! fields changed by ordinary writes to their manager with operation `Update`.

pub mod fieldset;

use super::meta::now_rfc3339;
use super::status::ApiError;
use fieldset::{
    child_schema, display_path, fields_of, item_key, list_kind, remove_at, value_at, FieldSet,
    ListKind, Lists, Path,
};
use serde_json::{json, Map, Value};

/// Annotation where client-side `kubectl apply` keeps its last applied configuration.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Field manager of client-side `kubectl apply`.
pub const CLIENT_SIDE_APPLY: &str = "kubectl-client-side-apply";

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the fields were written in.
    pub api_version: String,
    /// Time of the last write.
    pub time: String,
    /// Subresource (`status`) or empty.
    pub subresource: String,
    /// Owned fields.
    pub fields: FieldSet,
}

/// Reads `metadata.managedFields`.
pub fn read_managed(obj: &Value) -> Vec<Managed> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Managed {
            manager: e["manager"].as_str().unwrap_or_default().into(),
            operation: e["operation"].as_str().unwrap_or("Update").into(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
            time: e["time"].as_str().unwrap_or_default().into(),
            subresource: e["subresource"].as_str().unwrap_or_default().into(),
            fields: FieldSet::from_json(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes `metadata.managedFields` (dropping entries that own nothing).
pub fn write_managed(obj: &mut Value, entries: &[Managed]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": e.fields.to_json(),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = Value::String(e.subresource.clone());
            }
            v
        })
        .collect();
    let meta = super::meta::metadata_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

fn entry<'a>(
    entries: &'a mut Vec<Managed>,
    manager: &str,
    op: &str,
    api_version: &str,
    sub: &str,
) -> &'a mut Managed {
    let pos = entries
        .iter()
        .position(|e| e.manager == manager && e.operation == op && e.subresource == sub);
    let i = match pos {
        Some(i) => i,
        None => {
            entries.push(Managed {
                manager: manager.into(),
                operation: op.into(),
                api_version: api_version.into(),
                time: String::new(),
                subresource: sub.into(),
                fields: FieldSet::default(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[i];
    e.api_version = api_version.into();
    e.time = now_rfc3339();
    e
}

/// Records a non-apply write: fields it changed move to `manager` (operation `Update`),
/// fields it removed leave every manager. `new` gets the resulting `managedFields`.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    lists: Lists<'_>,
    sub: &str,
) {
    let empty = Value::Null;
    let old_v = old.unwrap_or(&empty);
    let mut entries = old.map(read_managed).unwrap_or_default();
    let new_fields = fields_of(new, lists, false);
    let old_fields = fields_of(old_v, lists, false);
    let changed: Vec<Path> = new_fields
        .leaves()
        .into_iter()
        .filter(|p| match value_at(old_v, p) {
            None => true,
            Some(_) if p.last().is_some_and(|l| l == ".") => false,
            Some(o) => Some(o) != value_at(new, p),
        })
        .collect();
    let removed: Vec<Path> = old_fields
        .leaves()
        .into_iter()
        .filter(|p| !new_fields.contains(p))
        .collect();
    if changed.is_empty() && removed.is_empty() {
        write_managed(new, &entries);
        return;
    }
    for e in entries.iter_mut() {
        for p in changed.iter().chain(removed.iter()) {
            e.fields.remove(p);
        }
    }
    if !changed.is_empty() {
        let api_version = new["apiVersion"].as_str().unwrap_or_default().to_string();
        let e = entry(&mut entries, manager, "Update", &api_version, sub);
        for p in &changed {
            e.fields.insert(p);
        }
    }
    write_managed(new, &entries);
}

/// Applies `applied` as `manager` onto `live` (or onto nothing, creating).
/// Returns the merged object with updated `managedFields`.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    lists: Lists<'_>,
) -> Result<Value, ApiError> {
    let api_version = applied["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let afields = fields_of(applied, lists, false);
    let Some(live) = live else {
        let mut obj = applied.clone();
        let mut entries = vec![];
        entry(&mut entries, manager, "Apply", &api_version, "").fields = afields;
        write_managed(&mut obj, &entries);
        return Ok(obj);
    };
    let mut entries = read_managed(live);
    let mut conflicts: Vec<(usize, Path)> = vec![];
    for (i, e) in entries.iter().enumerate() {
        if (e.manager == manager && e.operation == "Apply") || !e.subresource.is_empty() {
            continue;
        }
        for p in afields.leaves() {
            if p.last().is_some_and(|l| l == ".") || !e.fields.contains(&p) {
                continue;
            }
            if value_at(live, &p) != value_at(applied, &p) {
                conflicts.push((i, p));
            }
        }
    }
    // As the API server does, conflicts with client-side apply on fields of its
    // last-applied configuration are resolved in favour of the applier (kubectl's upgrade
    // path from client-side to server-side apply).
    if let Some(last) = live["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    {
        let last_fields = fields_of(&last, lists, false);
        let (taken, rest): (Vec<_>, Vec<_>) = conflicts.into_iter().partition(|(i, p)| {
            entries[*i].manager == CLIENT_SIDE_APPLY && last_fields.contains(p)
        });
        for (i, p) in &taken {
            entries[*i].fields.remove(p);
        }
        conflicts = rest;
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&entries, &conflicts));
    }
    for (i, p) in &conflicts {
        entries[*i].fields.remove(p);
    }
    let mut merged = live.clone();
    let previous = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource.is_empty())
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut dropped: Vec<Path> = previous
        .leaves()
        .into_iter()
        .filter(|p| !afields.contains(p))
        .collect();
    // Whole list items first (shallowest first): fields inside a removed item then find
    // nothing to remove. Key fields of items that stay are never removed, or the item
    // would lose its identity.
    dropped.sort_by_key(|p| (p.last().is_none_or(|l| l != "."), p.len()));
    for p in &dropped {
        let owned_elsewhere = entries
            .iter()
            .any(|e| !(e.manager == manager && e.operation == "Apply") && e.fields.contains(p));
        if !owned_elsewhere && !is_item_key_field(p) {
            remove_at(&mut merged, p);
        }
    }
    let (schema, builtin) = match lists {
        Lists::Builtin => (&Value::Null, true),
        Lists::Schema(s) => (s, false),
    };
    merge_into(&mut merged, applied, builtin, schema, "");
    let unchanged_fields = entries.iter().any(|e| {
        e.manager == manager
            && e.operation == "Apply"
            && e.subresource.is_empty()
            && e.fields == afields
    });
    let mut bare_merged = merged.clone();
    let mut bare_live = live.clone();
    for o in [&mut bare_merged, &mut bare_live] {
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    }
    if conflicts.is_empty() && unchanged_fields && bare_merged == bare_live {
        // A no-op apply changes nothing, not even the manager's timestamp.
        return Ok(live.clone());
    }
    entry(&mut entries, manager, "Apply", &api_version, "").fields = afields;
    write_managed(&mut merged, &entries);
    Ok(merged)
}

/// Whether a path names a key field of a keyed list item (`…k:{"name":"x"}, f:name`).
fn is_item_key_field(p: &[String]) -> bool {
    let [.., item, field] = p else { return false };
    let (Some(key), Some(f)) = (item.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Value>(key)
        .ok()
        .is_some_and(|k| k.get(f).is_some())
}

fn conflict_error(entries: &[Managed], conflicts: &[(usize, Path)]) -> ApiError {
    let who = |i: usize| {
        let e = &entries[i];
        if e.operation == "Update" {
            format!("\"{}\" using {}", e.manager, e.api_version)
        } else {
            format!("\"{}\"", e.manager)
        }
    };
    let n = conflicts.len();
    let mut managers: Vec<usize> = conflicts.iter().map(|(i, _)| *i).collect();
    managers.dedup();
    let body = if n == 1 {
        format!(
            "conflict with {}: {}",
            who(conflicts[0].0),
            display_path(&conflicts[0].1)
        )
    } else if managers.len() == 1 {
        let mut s = format!("conflicts with {}:", who(managers[0]));
        for (_, p) in conflicts {
            s.push_str(&format!("\n- {}", display_path(p)));
        }
        s
    } else {
        let mut s = format!("conflicts with {} managers:", managers.len());
        for (i, p) in conflicts {
            s.push_str(&format!("\n- {}: {}", who(*i), display_path(p)));
        }
        s
    };
    let causes = conflicts
        .iter()
        .map(|(i, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", who(*i)), "field": display_path(p)}))
        .collect();
    ApiError::apply_conflict(
        format!(
            "Apply failed with {n} conflict{}: {body}",
            if n == 1 { "" } else { "s" }
        ),
        causes,
    )
}

/// Merges an applied value into a live one: maps field by field, keyed lists item by item,
/// set lists as unions, everything else replaced.
fn merge_into(live: &mut Value, applied: &Value, builtin: bool, schema: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                // Metadata follows the built-in rules in every kind.
                let (b, s) = if field.is_empty() && k == "metadata" {
                    (true, &Value::Null)
                } else {
                    (builtin, child_schema(schema, k))
                };
                match l.get_mut(k) {
                    Some(lv) => merge_into(lv, av, b, s, k),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => {
            let sample: Vec<Value> = a.first().or(l.first()).cloned().into_iter().collect();
            match list_kind(field, &sample, builtin, schema) {
                ListKind::Map(keys) => {
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    for item in a {
                        let key = item_key(item, &keys);
                        match l.iter_mut().find(|x| item_key(x, &keys) == key) {
                            Some(existing) => {
                                merge_into(existing, item, builtin, &schema["items"], "")
                            }
                            None => l.push(item.clone()),
                        }
                    }
                }
                ListKind::Set => {
                    for item in a {
                        if !l.contains(item) {
                            l.push(item.clone());
                        }
                    }
                }
                ListKind::Atomic => *l = a.clone(),
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// Strips what an applied configuration may not set and checks it names an object.
pub fn clean_applied(applied: &mut Value) -> Result<(), ApiError> {
    if !applied.is_object() {
        return Err(ApiError::bad_request("apply patch must be an object"));
    }
    let meta: &mut Map<String, Value> = super::meta::metadata_mut(applied);
    meta.remove("managedFields");
    meta.remove("creationTimestamp");
    meta.remove("uid");
    Ok(())
}

#[cfg(test)]
mod tests;
