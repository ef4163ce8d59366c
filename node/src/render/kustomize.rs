//! Kustomize sources: `kustomize build` (or `kubectl kustomize`) on a checkout, with the
//! Application's overrides applied to a copy of the kustomization first.
//!
//! Argo CD applies overrides with `kustomize edit set|add ...` in a temporary copy; flotilla
//! writes the same fields into the copied kustomization directly: `namePrefix`,
//! `nameSuffix`, `namespace`, `images` (replaced by name), `replicas` (replaced by name),
//! `commonLabels` / `commonAnnotations` (a conflicting existing key is an error unless
//! `forceCommonLabels` / `forceCommonAnnotations`), `patches` and `components` (appended).
//!
//! Only what the app uses is checked out: its path plus every directory or file its
//! kustomizations reference by relative path (followed recursively), so bases outside the
//! app path work and their tree ids are part of the render cache key.
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

use git2::Repository;
use serde_yaml::{Mapping, Value as Yaml};

use super::{io_err, RenderError};
use crate::model::ApplicationSourceKustomize;
use crate::source::tree::{self, join_repo_path, Node};

/// File names Kustomize accepts, in its order of preference.
pub const KUSTOMIZATION_FILES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Errors specific to Kustomize overrides (reported as [`RenderError::Invalid`]).
#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    /// The kustomization is not a YAML mapping.
    #[error("kustomization is not a YAML mapping")]
    NotAMapping,
    /// An override conflicts with the kustomization.
    #[error("{0}")]
    Conflict(String),
}

/// The kustomization file name in a directory of the tree, if any.
pub fn kustomization_in_tree(
    repo: &Repository,
    root: &git2::Tree<'_>,
    dir: &str,
) -> Result<Option<String>, RenderError> {
    for name in KUSTOMIZATION_FILES {
        let p = join_repo_path(dir, name)?;
        if let Some(Node::Blob(..)) = tree::lookup(repo, root, &p)? {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

fn is_remote(s: &str) -> bool {
    s.contains("://") || s.starts_with("git@") || s.starts_with("github.com/")
}

/// Relative path strings a kustomization refers to.
fn references(k: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: Option<&serde_json::Value>| {
        if let Some(s) = v.and_then(|v| v.as_str()) {
            // generator entries may be `key=path`
            let s = s.rsplit_once('=').map(|(_, p)| p).unwrap_or(s);
            if !s.is_empty() && !is_remote(s) {
                out.push(s.to_string());
            }
        }
    };
    for key in [
        "resources",
        "bases",
        "components",
        "crds",
        "configurations",
        "generators",
        "transformers",
        "validators",
        "patchesStrategicMerge",
    ] {
        if let Some(items) = k.get(key).and_then(|v| v.as_array()) {
            for i in items {
                push(Some(i));
            }
        }
    }
    for key in ["patches", "patchesJson6902", "replacements"] {
        if let Some(items) = k.get(key).and_then(|v| v.as_array()) {
            for i in items {
                push(i.get("path"));
            }
        }
    }
    for key in ["configMapGenerator", "secretGenerator"] {
        if let Some(items) = k.get(key).and_then(|v| v.as_array()) {
            for i in items {
                for field in ["files", "envs"] {
                    if let Some(fs) = i.get(field).and_then(|v| v.as_array()) {
                        for f in fs {
                            push(Some(f));
                        }
                    }
                }
                push(i.get("env"));
            }
        }
    }
    push(k.get("openapi").and_then(|o| o.get("path")));
    push(k.get("helmGlobals").and_then(|o| o.get("chartHome")));
    out
}

/// Every repository path a Kustomize app at `path` reads: the path itself, what the
/// Application's overrides add (`extra`, relative to `path`: components, patch files), and
/// whatever the kustomizations reference, recursively; minimal (no path inside another).
pub fn referenced_paths(
    repo: &Repository,
    root: &git2::Tree<'_>,
    path: &str,
    extra: &[String],
) -> Result<Vec<String>, RenderError> {
    let mut paths: BTreeSet<String> = BTreeSet::new();
    paths.insert(path.to_string());
    let mut queue = VecDeque::from([path.to_string()]);
    for r in extra.iter().filter(|r| !is_remote(r)) {
        let p = join_repo_path(path, r)?;
        match tree::lookup(repo, root, &p)? {
            Some(Node::Tree(_)) => {
                paths.insert(p.clone());
                queue.push_back(p);
            }
            Some(Node::Blob(..)) => {
                paths.insert(p);
            }
            None => {}
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(dir) = queue.pop_front() {
        if !seen.insert(dir.clone()) || seen.len() > 1000 {
            continue;
        }
        let Some(kfile) = kustomization_in_tree(repo, root, &dir)? else {
            continue;
        };
        let Some(data) = tree::read_file(repo, root, &kfile)? else {
            continue;
        };
        let k: serde_json::Value =
            serde_yaml::from_slice(&data).map_err(|e| RenderError::Parse {
                what: kfile.clone(),
                message: e.to_string(),
            })?;
        for r in references(&k) {
            let p = join_repo_path(&dir, &r)?;
            match tree::lookup(repo, root, &p)? {
                Some(Node::Tree(_)) => {
                    paths.insert(p.clone());
                    queue.push_back(p);
                }
                Some(Node::Blob(..)) => {
                    paths.insert(p);
                }
                None => {}
            }
        }
    }
    Ok(minimal(paths))
}

/// Drop paths that lie inside another path of the set.
pub(crate) fn minimal(paths: BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        let covered = out
            .iter()
            .any(|q| q.is_empty() || p == *q || p.starts_with(&format!("{q}/")));
        if !covered {
            out.push(p);
        }
    }
    out
}

/// Relative paths the Application's overrides refer to (components, patch files).
pub fn override_references(o: Option<&ApplicationSourceKustomize>) -> Vec<String> {
    let Some(o) = o else { return Vec::new() };
    let mut out = o.components.clone();
    out.extend(
        o.patches
            .iter()
            .filter_map(|p| p.get("path").and_then(|v| v.as_str()).map(String::from)),
    );
    out
}

/// Apply the Application's overrides to the kustomization in `dir` (a checkout).
pub fn apply_overrides(dir: &Path, o: &ApplicationSourceKustomize) -> Result<(), RenderError> {
    let file = KUSTOMIZATION_FILES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| RenderError::Invalid {
            path: "kustomize".into(),
            message: format!("no kustomization file in {}", dir.display()),
        })?;
    let text =
        std::fs::read_to_string(&file).map_err(io_err(format!("read {}", file.display())))?;
    let mut doc: Yaml = serde_yaml::from_str(&text).map_err(|e| RenderError::Parse {
        what: file.display().to_string(),
        message: e.to_string(),
    })?;
    if doc.is_null() {
        doc = Yaml::Mapping(Mapping::new());
    }
    let invalid = |e: KustomizeError| RenderError::Invalid {
        path: "kustomize".into(),
        message: e.to_string(),
    };
    let map = doc
        .as_mapping_mut()
        .ok_or(KustomizeError::NotAMapping)
        .map_err(invalid)?;
    edit(map, o).map_err(invalid)?;
    let out = serde_yaml::to_string(&doc).map_err(|e| RenderError::Parse {
        what: file.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(&file, out).map_err(io_err(format!("write {}", file.display())))
}

fn s(v: &str) -> Yaml {
    Yaml::String(v.to_string())
}

fn list<'m>(map: &'m mut Mapping, key: &str) -> &'m mut Vec<Yaml> {
    let entry = map
        .entry(s(key))
        .or_insert_with(|| Yaml::Sequence(Vec::new()));
    if !entry.is_sequence() {
        *entry = Yaml::Sequence(Vec::new());
    }
    match entry {
        Yaml::Sequence(v) => v,
        _ => unreachable!("just made a sequence"),
    }
}

fn merge_map(
    map: &mut Mapping,
    key: &str,
    add: &std::collections::BTreeMap<String, String>,
    force: bool,
    what: &str,
) -> Result<(), KustomizeError> {
    if add.is_empty() {
        return Ok(());
    }
    let entry = map
        .entry(s(key))
        .or_insert_with(|| Yaml::Mapping(Mapping::new()));
    if !entry.is_mapping() {
        *entry = Yaml::Mapping(Mapping::new());
    }
    let Yaml::Mapping(m) = entry else {
        return Err(KustomizeError::NotAMapping);
    };
    for (k, v) in add {
        if let Some(old) = m.get(s(k)) {
            if !force && old.as_str() != Some(v.as_str()) {
                return Err(KustomizeError::Conflict(format!(
                    "{what} {k:?} is already in the kustomization with another value; set force{}",
                    if what == "label" {
                        "CommonLabels"
                    } else {
                        "CommonAnnotations"
                    }
                )));
            }
        }
        m.insert(s(k), s(v));
    }
    Ok(())
}

/// Parse an image override as `kustomize edit set image` does:
/// `[name=]image[:tag|@digest]`.
pub fn parse_image(spec: &str) -> Mapping {
    let (name, image) = match spec.split_once('=') {
        Some((n, i)) => (Some(n), i),
        None => (None, spec),
    };
    let (base, tag, digest) = if let Some((b, d)) = image.split_once('@') {
        (b, None, Some(d))
    } else {
        match image.rfind(':') {
            Some(i) if i > image.rfind('/').map_or(0, |j| j) && !image[..i].is_empty() => {
                (&image[..i], Some(&image[i + 1..]), None)
            }
            _ => (image, None, None),
        }
    };
    let mut m = Mapping::new();
    match name {
        Some(n) => {
            m.insert(s("name"), s(n));
            if base != n {
                m.insert(s("newName"), s(base));
            }
        }
        None => {
            m.insert(s("name"), s(base));
        }
    }
    if let Some(t) = tag {
        m.insert(s("newTag"), s(t));
    }
    if let Some(d) = digest {
        m.insert(s("digest"), s(d));
    }
    m
}

fn upsert_by_name(items: &mut Vec<Yaml>, entry: Mapping) {
    let name = entry.get(s("name")).cloned();
    if let Some(existing) = items
        .iter_mut()
        .find(|i| i.get("name").is_some() && i.get("name") == name.as_ref())
    {
        *existing = Yaml::Mapping(entry);
    } else {
        items.push(Yaml::Mapping(entry));
    }
}

fn edit(map: &mut Mapping, o: &ApplicationSourceKustomize) -> Result<(), KustomizeError> {
    if let Some(p) = &o.name_prefix {
        map.insert(s("namePrefix"), s(p));
    }
    if let Some(p) = &o.name_suffix {
        map.insert(s("nameSuffix"), s(p));
    }
    if let Some(ns) = &o.namespace {
        map.insert(s("namespace"), s(ns));
    }
    for img in &o.images {
        upsert_by_name(list(map, "images"), parse_image(img));
    }
    for r in &o.replicas {
        let count = match &r.count {
            serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
            serde_json::Value::String(v) => v.parse().unwrap_or(0),
            _ => 0,
        };
        let mut m = Mapping::new();
        m.insert(s("name"), s(&r.name));
        m.insert(s("count"), Yaml::Number(count.into()));
        upsert_by_name(list(map, "replicas"), m);
    }
    merge_map(
        map,
        "commonLabels",
        &o.common_labels,
        o.force_common_labels,
        "label",
    )?;
    merge_map(
        map,
        "commonAnnotations",
        &o.common_annotations,
        o.force_common_annotations,
        "annotation",
    )?;
    for p in &o.patches {
        let y: Yaml =
            serde_yaml::to_value(p).map_err(|e| KustomizeError::Conflict(e.to_string()))?;
        list(map, "patches").push(y);
    }
    for c in &o.components {
        let items = list(map, "components");
        if !items.iter().any(|i| i.as_str() == Some(c)) {
            items.push(s(c));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_overrides_parse_like_kustomize_edit() {
        let y = |m: Mapping| serde_yaml::to_string(&m).expect("yaml");
        assert_eq!(
            y(parse_image("nginx:1.25")),
            "name: nginx\nnewTag: '1.25'\n"
        );
        assert_eq!(
            y(parse_image("nginx=registry:5000/mirror/nginx:1.2")),
            "name: nginx\nnewName: registry:5000/mirror/nginx\nnewTag: '1.2'\n"
        );
        assert_eq!(
            y(parse_image("app@sha256:abc")),
            "name: app\ndigest: sha256:abc\n"
        );
        assert_eq!(
            y(parse_image("registry:5000/app")),
            "name: registry:5000/app\n"
        );
    }

    #[test]
    fn label_conflicts_need_force() {
        let mut map: Mapping = serde_yaml::from_str("commonLabels: {team: a}\n").expect("yaml");
        let mut o = ApplicationSourceKustomize::default();
        o.common_labels.insert("team".into(), "b".into());
        assert!(edit(&mut map, &o).is_err());
        o.force_common_labels = true;
        edit(&mut map, &o).expect("forced");
        assert_eq!(
            map.get("commonLabels")
                .and_then(|m| m.get("team"))
                .and_then(Yaml::as_str),
            Some("b")
        );
    }

    #[test]
    fn minimal_drops_nested_paths() {
        let set: BTreeSet<String> = ["apps/a", "apps/a/sub", "base", "base2/x.yaml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(minimal(set), ["apps/a", "base", "base2/x.yaml"]);
    }
}
