//! Strategic merge patch for built-in kinds: lists merge by their `patchMergeKey`,
//! with the `$patch`, `$retainKeys`, `$setElementOrder/` and `$deleteFromPrimitiveList/`
//! directives kubectl sends.

use crate::simcluster::kinds::{is_set_list, strategic_merge_key};
use crate::simcluster::status::ApiError;
use serde_json::{Map, Value};

/// Applies a strategic merge patch to `target`.
pub fn apply(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "strategic merge patch must be an object",
        ));
    }
    if let Some(v) = merge_map(target.take(), patch)? {
        *target = v;
    } else {
        *target = Value::Object(Map::new());
    }
    Ok(())
}

/// Removes directive keys from a value that is inserted as a whole.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

/// Merges a patch map into an original value; `None` means the map was deleted.
fn merge_map(original: Value, patch: &Value) -> Result<Option<Value>, ApiError> {
    let Some(p) = patch.as_object() else {
        return Ok(Some(patch.clone()));
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => return Ok(Some(strip(patch))),
        Some(other) if other != "merge" => {
            return Err(ApiError::bad_request(format!(
                "strategic merge patch: unknown $patch {other:?}"
            )))
        }
        _ => {}
    }
    let mut out = match original {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let orig = out.remove(k).unwrap_or(Value::Null);
        let merged = match v {
            Value::Object(_) => merge_map(orig, v)?,
            Value::Array(items) => Some(merge_list(k, orig, items)?),
            _ => Some(v.clone()),
        };
        if let Some(m) = merged {
            out.insert(k.clone(), m);
        }
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (out.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
        }
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let (Some(Value::Array(list)), Some(order)) = (out.get_mut(field), v.as_array()) {
                reorder(field, list, order);
            }
        }
    }
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        out.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Ok(Some(Value::Object(out)))
}

fn merge_list(field: &str, original: Value, items: &[Value]) -> Result<Value, ApiError> {
    let mut orig = match original {
        Value::Array(a) => a,
        _ => vec![],
    };
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .map(strip)
                .collect(),
        ));
    }
    let Some(key) = strategic_merge_key(field, items.first().or(orig.first())) else {
        if is_set_list(field) {
            for i in items {
                if !orig.contains(i) {
                    orig.push(i.clone());
                }
            }
            return Ok(Value::Array(orig));
        }
        return Ok(Value::Array(items.iter().map(strip).collect()));
    };
    for item in items {
        let k = item.get(key).cloned().unwrap_or(Value::Null);
        let pos = orig.iter().position(|o| o.get(key) == Some(&k));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                orig.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let o = std::mem::take(&mut orig[i]);
                match merge_map(o, item)? {
                    Some(m) => orig[i] = m,
                    None => {
                        orig.remove(i);
                    }
                }
            }
            (None, false) => orig.push(strip(item)),
        }
    }
    Ok(Value::Array(orig))
}

/// Orders a list as `$setElementOrder` says; items it does not name keep their place at the end.
fn reorder(field: &str, list: &mut Vec<Value>, order: &[Value]) {
    let key = strategic_merge_key(field, list.first());
    let id = |v: &Value| -> Value {
        match key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut sorted = Vec::with_capacity(list.len());
    for o in order {
        let want = match key {
            Some(k) => o.get(k).cloned().unwrap_or(Value::Null),
            None => o.clone(),
        };
        if let Some(i) = list.iter().position(|x| id(x) == want) {
            sorted.push(list.remove(i));
        }
    }
    sorted.append(list);
    *list = sorted;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_directives_apply() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}], "finalizers": ["f1"]}});
        apply(
            &mut t,
            &json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
            "containers": [{"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                           {"name": "c", "image": "c:1"}],
            "finalizers": ["f2"]}}),
        )
        .unwrap();
        let c = &t["spec"]["containers"];
        assert_eq!(c[0]["name"], "b");
        assert_eq!(c[1]["image"], "a:2");
        assert_eq!(c[1]["env"].as_array().unwrap().len(), 2);
        assert_eq!(c[2]["name"], "c");
        assert_eq!(t["spec"]["finalizers"], json!(["f1", "f2"]));
        apply(
            &mut t,
            &json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}],
            "$deleteFromPrimitiveList/finalizers": ["f1"]}}),
        )
        .unwrap();
        assert_eq!(t["spec"]["containers"].as_array().unwrap().len(), 2);
        assert_eq!(t["spec"]["finalizers"], json!(["f2"]));
        apply(&mut t, &json!({"spec": {"$retainKeys": ["containers"], "containers": [{"$patch": "replace"}, {"name": "z"}]}})).unwrap();
        assert_eq!(t, json!({"spec": {"containers": [{"name": "z"}]}}));
    }
}
