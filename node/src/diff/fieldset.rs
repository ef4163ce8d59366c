//! Server-side apply field sets (`managedFields[].fieldsV1`): which fields a manager owns.
//!
//! A field set is a JSON tree whose keys name path elements: `f:<field>` for an object field,
//! `k:<json>` for an item of a keyed list (the JSON holds the item's key fields), `v:<json>`
//! for an item of a set list, `i:<index>` for a positional item, and `.` for the item itself.

use super::merge::item_key;
use serde_json::{Map, Value};

/// One element of a managed path.
#[derive(Debug, Clone, PartialEq)]
enum Element {
    Field(String),
    Key(Map<String, Value>),
    SetValue(Value),
    Index(usize),
}

fn parse_element(s: &str) -> Option<Element> {
    if let Some(f) = s.strip_prefix("f:") {
        return Some(Element::Field(f.to_string()));
    }
    if let Some(k) = s.strip_prefix("k:") {
        return serde_json::from_str::<Map<String, Value>>(k)
            .ok()
            .map(Element::Key);
    }
    if let Some(v) = s.strip_prefix("v:") {
        return serde_json::from_str(v).ok().map(Element::SetValue);
    }
    if let Some(i) = s.strip_prefix("i:") {
        return i.parse().ok().map(Element::Index);
    }
    None
}

/// The field sets of the `managedFields` entries of `obj` whose manager is in `managers`
/// (and, when `apply_only`, whose operation is `Apply`).
pub fn owned_by<'a>(obj: &'a Value, managers: &[&str], apply_only: bool) -> Vec<&'a Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| {
            let m = e.get("manager").and_then(Value::as_str).unwrap_or_default();
            let op = e
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or_default();
            managers.contains(&m) && (!apply_only || op == "Apply")
        })
        .filter_map(|e| e.get("fieldsV1"))
        .collect()
}

fn is_leaf(set: &Value) -> bool {
    set.as_object().is_none_or(|m| m.is_empty())
}

fn owns_self(set: &Value) -> bool {
    set.get(".").is_some()
}

fn find_item(list: &[Value], key: &Map<String, Value>) -> Option<usize> {
    let fields: Vec<&str> = key.keys().map(String::as_str).collect();
    let want: Vec<Value> = fields
        .iter()
        .map(|f| key.get(*f).cloned().unwrap_or(Value::Null))
        .collect();
    list.iter().position(|item| item_key(item, &fields) == want)
}

/// Remove from `obj` the fields in `owned` that `desired` no longer sets: what server-side
/// apply removes when a manager stops applying fields it owned.
pub fn remove_dropped(obj: &mut Value, owned: &Value, desired: Option<&Value>) {
    let Some(set) = owned.as_object() else { return };
    for (name, child) in set {
        let Some(el) = parse_element(name) else {
            continue;
        };
        match el {
            Element::Field(f) => {
                let d = desired.and_then(|d| d.get(&f));
                let Some(map) = obj.as_object_mut() else {
                    continue;
                };
                match d {
                    None if is_leaf(child) || owns_self(child) => {
                        map.remove(&f);
                    }
                    _ => {
                        if let Some(sub) = map.get_mut(&f) {
                            remove_dropped(sub, child, d);
                        }
                    }
                }
            }
            Element::Key(k) => {
                let Some(list) = obj.as_array_mut() else {
                    continue;
                };
                let Some(i) = find_item(list, &k) else {
                    continue;
                };
                let d = desired
                    .and_then(Value::as_array)
                    .and_then(|dl| find_item(dl, &k).map(|j| &dl[j]));
                match d {
                    None if is_leaf(child) || owns_self(child) => {
                        list.remove(i);
                    }
                    _ => remove_dropped(&mut list[i], child, d),
                }
            }
            Element::SetValue(v) => {
                let Some(list) = obj.as_array_mut() else {
                    continue;
                };
                let wanted = desired
                    .and_then(Value::as_array)
                    .is_some_and(|dl| dl.contains(&v));
                if !wanted {
                    list.retain(|x| x != &v);
                }
            }
            Element::Index(i) => {
                let d = desired.and_then(Value::as_array).and_then(|dl| dl.get(i));
                if let Some(item) = obj.as_array_mut().and_then(|l| l.get_mut(i)) {
                    remove_dropped(item, child, d);
                }
            }
        }
    }
}

/// Remove from `obj` every field in `owned`: used to ignore the fields of given managers.
pub fn remove_owned(obj: &mut Value, owned: &Value) {
    remove_dropped(obj, owned, None);
}
