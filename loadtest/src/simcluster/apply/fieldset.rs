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

/// Where list semantics come from: the built-in kinds' merge keys, or a CRD's structural
/// schema (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`; unmarked lists are atomic).
#[derive(Debug, Clone, Copy)]
pub enum Lists<'a> {
    /// Built-in kinds.
    Builtin,
    /// A custom resource with its `openAPIV3Schema` (Null when unknown).
    Schema(&'a Value),
}

/// How one list merges.
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    /// Items merge by these key fields.
    Map(Vec<String>),
    /// Primitive items form a set.
    Set,
    /// The list is owned and replaced whole.
    Atomic,
}

/// The kind of a list field. `schema` is the list's schema node (custom resources only).
pub fn list_kind(name: &str, items: &[Value], builtin: bool, schema: &Value) -> ListKind {
    if builtin {
        if let Some(keys) = list_map_keys(name, items.first()) {
            return ListKind::Map(keys.iter().map(|k| k.to_string()).collect());
        }
        if is_set_list(name) && items.iter().all(|i| !i.is_object() && !i.is_array()) {
            return ListKind::Set;
        }
        return ListKind::Atomic;
    }
    match schema["x-kubernetes-list-type"].as_str() {
        Some("map") => ListKind::Map(
            schema["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(String::from))
                .collect(),
        ),
        Some("set") => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// The schema node of a map field's child.
pub fn child_schema<'a>(schema: &'a Value, key: &str) -> &'a Value {
    match schema["properties"].get(key) {
        Some(s) => s,
        None => &schema["additionalProperties"],
    }
}

/// The root schema and whether built-in list rules apply.
fn roots<'a>(lists: Lists<'a>) -> (&'a Value, bool) {
    static NULL: Value = Value::Null;
    match lists {
        Lists::Builtin => (&NULL, true),
        Lists::Schema(s) => (s, false),
    }
}

/// The field set an object (or applied configuration) sets; `skip_status` drops `.status`.
pub fn fields_of(obj: &Value, lists: Lists<'_>, skip_status: bool) -> FieldSet {
    let (schema, builtin) = roots(lists);
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
                            meta.0
                                .insert(format!("f:{mk}"), field_node(mk, mv, true, &Value::Null));
                        }
                    }
                }
                if !meta.is_empty() {
                    out.0.insert("f:metadata".into(), meta);
                }
                continue;
            }
            out.0.insert(
                format!("f:{k}"),
                field_node(k, v, builtin, child_schema(schema, k)),
            );
        }
    }
    out
}

fn map_node(m: &serde_json::Map<String, Value>, builtin: bool, schema: &Value) -> FieldSet {
    let mut node = FieldSet::default();
    for (k, c) in m {
        node.0.insert(
            format!("f:{k}"),
            field_node(k, c, builtin, child_schema(schema, k)),
        );
    }
    node
}

fn field_node(name: &str, v: &Value, builtin: bool, schema: &Value) -> FieldSet {
    match v {
        Value::Object(m) if !m.is_empty() => map_node(m, builtin, schema),
        Value::Array(items) if !items.is_empty() => match list_kind(name, items, builtin, schema) {
            ListKind::Map(keys) => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let item_schema = &schema["items"];
                let mut node = FieldSet::default();
                for item in items {
                    let mut child = match item {
                        Value::Object(m) if !m.is_empty() => map_node(m, builtin, item_schema),
                        _ => FieldSet::default(),
                    };
                    child.0.insert(".".into(), FieldSet::default());
                    node.0.insert(format!("k:{}", item_key(item, &keys)), child);
                }
                node
            }
            ListKind::Set => {
                let mut node = FieldSet::default();
                for item in items {
                    node.0.insert(format!("v:{item}"), FieldSet::default());
                }
                node
            }
            ListKind::Atomic => FieldSet::default(),
        },
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
