//! Field sets in the FieldsV1 encoding (`f:name`, `k:{...}`, `v:value`, `i:index`, `.`),
//! computed from objects, and navigation of objects by field paths.

use crate::simcluster::kinds::{is_set_list, list_map_keys};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A set of field paths; a child with no children is a member.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet(pub BTreeMap<String, FieldSet>);

/// A field path: FieldsV1 path elements.
pub type Path = Vec<String>;

/// Top-level fields never tracked.
const UNTRACKED_TOP: &[&str] = &["apiVersion", "kind"];
/// Metadata fields never tracked.
const UNTRACKED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
];

impl FieldSet {
    /// Parses a `fieldsV1` JSON value.
    pub fn from_json(v: &Value) -> FieldSet {
        let mut out = FieldSet::default();
        if let Some(m) = v.as_object() {
            for (k, c) in m {
                out.0.insert(k.clone(), FieldSet::from_json(c));
            }
        }
        out
    }

    /// The `fieldsV1` JSON value.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All member paths.
    pub fn leaves(&self) -> Vec<Path> {
        let mut out = vec![];
        self.collect(&mut vec![], &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for (k, c) in &self.0 {
            prefix.push(k.clone());
            if c.0.is_empty() {
                out.push(prefix.clone());
            } else {
                c.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// Whether a path is a member.
    pub fn contains(&self, path: &[String]) -> bool {
        let mut cur = self;
        for (i, p) in path.iter().enumerate() {
            match cur.0.get(p) {
                Some(c) if i + 1 == path.len() => return c.0.is_empty(),
                Some(c) => cur = c,
                None => return false,
            }
        }
        false
    }

    /// Adds a member path.
    pub fn insert(&mut self, path: &[String]) {
        let mut cur = self;
        for p in path {
            cur = cur.0.entry(p.clone()).or_default();
        }
    }

    /// Removes a member path, pruning parents left empty.
    pub fn remove(&mut self, path: &[String]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        if rest.is_empty() {
            return match self.0.get(first) {
                Some(c) if c.0.is_empty() => self.0.remove(first).is_some(),
                _ => false,
            };
        }
        let Some(child) = self.0.get_mut(first) else {
            return false;
        };
        let removed = child.remove(rest);
        if removed && child.0.is_empty() {
            self.0.remove(first);
        }
        removed
    }

    /// Adds all members of another set.
    pub fn union(&mut self, other: &FieldSet) {
        for p in other.leaves() {
            self.insert(&p);
        }
    }
}

/// JSON of a list item's key fields (`{"name":"web"}`), sorted by field name.
pub fn item_key(item: &Value, keys: &[&str]) -> String {
    let mut sorted: Vec<&&str> = keys.iter().collect();
    sorted.sort();
    let mut m = Map::new();
    for k in sorted {
        let v = match item.get(*k) {
            Some(v) => v.clone(),
            None if *k == "protocol" => Value::String("TCP".into()),
            None => continue,
        };
        m.insert(k.to_string(), v);
    }
    Value::Object(m).to_string()
}

/// Whether list fields below this point use built-in list semantics.
fn lists_are_builtin(custom: bool, path: &[String]) -> bool {
    !custom || path.first().is_some_and(|p| p == "f:metadata")
}

/// The field set an object (or applied configuration) sets.
/// `custom` objects have atomic lists outside metadata; `skip_status` drops `.status`.
pub fn fields_of(obj: &Value, custom: bool, skip_status: bool) -> FieldSet {
    let mut out = FieldSet::default();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if UNTRACKED_TOP.contains(&k.as_str()) || (skip_status && k == "status") {
                continue;
            }
            if k == "metadata" {
                let mut meta = FieldSet::default();
                if let Some(mm) = v.as_object() {
                    for (mk, mv) in mm {
                        if !UNTRACKED_META.contains(&mk.as_str()) {
                            let path = vec!["f:metadata".to_string(), format!("f:{mk}")];
                            meta.0
                                .insert(format!("f:{mk}"), field_node(mk, mv, custom, &path));
                        }
                    }
                }
                if !meta.is_empty() {
                    out.0.insert("f:metadata".into(), meta);
                }
                continue;
            }
            let path = vec![format!("f:{k}")];
            out.0
                .insert(format!("f:{k}"), field_node(k, v, custom, &path));
        }
    }
    out
}

fn field_node(name: &str, v: &Value, custom: bool, path: &Path) -> FieldSet {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut node = FieldSet::default();
            for (k, c) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                node.0
                    .insert(format!("f:{k}"), field_node(k, c, custom, &p));
            }
            node
        }
        Value::Array(items) if !items.is_empty() && lists_are_builtin(custom, path) => {
            if let Some(keys) = list_map_keys(name, items.first()) {
                let mut node = FieldSet::default();
                for item in items {
                    let key = format!("k:{}", item_key(item, keys));
                    let mut p = path.clone();
                    p.push(key.clone());
                    let mut child = match item {
                        Value::Object(m) if !m.is_empty() => {
                            let mut c = FieldSet::default();
                            for (k, iv) in m {
                                let mut ip = p.clone();
                                ip.push(format!("f:{k}"));
                                c.0.insert(format!("f:{k}"), field_node(k, iv, custom, &ip));
                            }
                            c
                        }
                        _ => FieldSet::default(),
                    };
                    child.0.insert(".".into(), FieldSet::default());
                    node.0.insert(key, child);
                }
                node
            } else if is_set_list(name) && items.iter().all(|i| !i.is_object() && !i.is_array()) {
                let mut node = FieldSet::default();
                for item in items {
                    node.0.insert(format!("v:{item}"), FieldSet::default());
                }
                node
            } else {
                FieldSet::default()
            }
        }
        _ => FieldSet::default(),
    }
}

/// Finds the index of the list item a `k:`/`v:`/`i:` element names.
fn find_item(items: &[Value], elem: &str) -> Option<usize> {
    if let Some(k) = elem.strip_prefix("k:") {
        let want: Value = serde_json::from_str(k).ok()?;
        let want = want.as_object()?;
        items.iter().position(|it| {
            want.iter().all(|(f, v)| match it.get(f) {
                Some(x) => x == v,
                None => f == "protocol" && v == "TCP",
            })
        })
    } else if let Some(v) = elem.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        items.iter().position(|it| *it == want)
    } else if let Some(i) = elem.strip_prefix("i:") {
        i.parse().ok().filter(|i| *i < items.len())
    } else {
        None
    }
}

/// The value at a path (a path ending in `.` names the item itself).
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        if p == "." {
            return Some(cur);
        }
        cur = if let Some(f) = p.strip_prefix("f:") {
            cur.get(f)?
        } else {
            let items = cur.as_array()?;
            &items[find_item(items, p)?]
        };
    }
    Some(cur)
}

/// Removes the field or item at a path; a path ending in `.` removes the item.
pub fn remove_at(obj: &mut Value, path: &[String]) {
    let path: Vec<&String> = if path.last().is_some_and(|p| p == ".") {
        path[..path.len() - 1].iter().collect()
    } else {
        path.iter().collect()
    };
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        let next = if let Some(f) = p.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            match cur.as_array_mut() {
                Some(items) => match find_item(items, p) {
                    Some(i) => items.get_mut(i),
                    None => None,
                },
                None => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(items) = cur.as_array_mut() {
        if let Some(i) = find_item(items, last) {
            items.remove(i);
        }
    }
}

/// Human form of a path for conflict messages (`.spec.containers[name="web"].image`).
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            let kv: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            let parts: Vec<String> = kv
                .as_object()
                .into_iter()
                .flatten()
                .map(|(f, v)| format!("{f}={v}"))
                .collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = p.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = p.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}
