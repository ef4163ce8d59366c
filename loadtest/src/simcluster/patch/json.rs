//! RFC 6902 JSON patch with RFC 6901 pointers.

use crate::simcluster::status::ApiError;
use serde_json::Value;

fn tokens(ptr: &str) -> Result<Vec<String>, ApiError> {
    if ptr.is_empty() {
        return Ok(vec![]);
    }
    let rest = ptr.strip_prefix('/').ok_or_else(|| {
        ApiError::bad_request(format!("json patch: path {ptr:?} must start with '/'"))
    })?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn lookup<'a>(doc: &'a mut Value, toks: &[String], ptr: &str) -> Result<&'a mut Value, ApiError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| {
            ApiError::invalid_patch(format!("json patch: path {ptr:?} does not exist"))
        })?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, ptr: &str, value: Value) -> Result<(), ApiError> {
    let toks = tokens(ptr)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match lookup(doc, parent, ptr)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| {
                        ApiError::invalid_patch(format!(
                            "json patch: index in {ptr:?} out of range"
                        ))
                    })?
            };
            a.insert(i, value);
        }
        _ => {
            return Err(ApiError::invalid_patch(format!(
                "json patch: parent of {ptr:?} is not a container"
            )))
        }
    }
    Ok(())
}

fn remove(doc: &mut Value, ptr: &str) -> Result<Value, ApiError> {
    let toks = tokens(ptr)?;
    let Some((last, parent)) = toks.split_last() else {
        return Err(ApiError::invalid_patch(
            "json patch: cannot remove the whole document",
        ));
    };
    let missing = || ApiError::invalid_patch(format!("json patch: path {ptr:?} does not exist"));
    match lookup(doc, parent, ptr)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Applies a JSON patch (a list of operations) to a document.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be a list of operations"))?;
    for op in ops {
        let path = op["path"]
            .as_str()
            .ok_or_else(|| ApiError::bad_request("json patch operation without path"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| ApiError::bad_request(format!("json patch: {path:?} needs a value")))
        };
        let from = || {
            op["from"]
                .as_str()
                .ok_or_else(|| ApiError::bad_request(format!("json patch: {path:?} needs from")))
        };
        match op["op"].as_str() {
            Some("add") => add(doc, path, value()?)?,
            Some("remove") => {
                remove(doc, path)?;
            }
            Some("replace") => {
                let v = value()?;
                *lookup(doc, &tokens(path)?, path)? = v;
            }
            Some("move") => {
                let v = remove(doc, from()?)?;
                add(doc, path, v)?;
            }
            Some("copy") => {
                let f = from()?;
                let v = lookup(doc, &tokens(f)?, f)?.clone();
                add(doc, path, v)?;
            }
            Some("test") => {
                let want = value()?;
                if *lookup(doc, &tokens(path)?, path)? != want {
                    return Err(ApiError::invalid_patch(format!(
                        "json patch: test of {path:?} failed"
                    )));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "json patch: unknown op {other:?}"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_operations() {
        let mut d = json!({"a": {"b": [1, 2]}, "c/d": 1});
        apply(
            &mut d,
            &json!([
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/c~1d", "value": 2},
                {"op": "copy", "from": "/a/b/0", "path": "/x"},
                {"op": "move", "from": "/x", "path": "/y"},
                {"op": "remove", "path": "/a/b/1"},
                {"op": "test", "path": "/y", "value": 1},
            ]),
        )
        .unwrap();
        assert_eq!(d, json!({"a": {"b": [1, 3]}, "c/d": 2, "y": 1}));
        assert!(apply(&mut d, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(apply(&mut d, &json!([{"op": "test", "path": "/y", "value": 9}])).is_err());
    }
}
