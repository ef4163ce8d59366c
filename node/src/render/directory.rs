//! Plain-directory sources: YAML, JSON and Jsonnet files read straight from the Git object
//! database at the commit, as Argo CD's directory type does.
//!
//! Files are taken when their name ends in `.yaml`, `.yml`, `.json` or `.jsonnet`
//! (`.libsonnet` files are only imported), filtered by `exclude` then `include` globs
//! matched against the path relative to the source path (`*` also matches `/`, and `{a,b}`
//! sets are allowed, as with Argo CD's glob matching). A file that does not parse, or a
//! document without `kind`, is an error naming the file, as in Argo CD.
use git2::Repository;
use globset::{Glob, GlobMatcher};

use super::{parse_manifests, push_object, Manifest, RenderError};
use crate::model::ApplicationSourceDirectory;
use crate::source::tree::{self, FileEntry};

/// Which files of the directory are manifests.
#[derive(Debug)]
pub struct FileFilter {
    include: Option<GlobMatcher>,
    exclude: Option<GlobMatcher>,
}

fn compile(pattern: &Option<String>, field: &str) -> Result<Option<GlobMatcher>, RenderError> {
    match pattern.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(p) => Glob::new(p)
            .map(|g| Some(g.compile_matcher()))
            .map_err(|e| RenderError::Invalid {
                path: format!("directory.{field}"),
                message: format!("invalid glob {p:?}: {e}"),
            }),
    }
}

impl FileFilter {
    /// Build from the source's `directory` block.
    pub fn new(dir: Option<&ApplicationSourceDirectory>) -> Result<Self, RenderError> {
        let (inc, exc) = dir
            .map(|d| (d.include.clone(), d.exclude.clone()))
            .unwrap_or_default();
        Ok(Self {
            include: compile(&inc, "include")?,
            exclude: compile(&exc, "exclude")?,
        })
    }

    /// Whether the file at `rel_path` (relative to the source path) is read.
    pub fn accepts(&self, rel_path: &str) -> bool {
        let name = rel_path.rsplit('/').next().unwrap_or(rel_path);
        let manifest_ext = [".yaml", ".yml", ".json", ".jsonnet"]
            .iter()
            .any(|e| name.ends_with(e));
        if !manifest_ext {
            return false;
        }
        if self.exclude.as_ref().is_some_and(|g| g.is_match(rel_path)) {
            return false;
        }
        if self.include.as_ref().is_some_and(|g| !g.is_match(rel_path)) {
            return false;
        }
        true
    }
}

/// The files a directory source reads, in tree order.
pub fn manifest_files(
    repo: &Repository,
    root: &git2::Tree<'_>,
    path: &str,
    dir: Option<&ApplicationSourceDirectory>,
) -> Result<Vec<FileEntry>, RenderError> {
    let filter = FileFilter::new(dir)?;
    let recurse = dir.is_some_and(|d| d.recurse);
    let files = tree::list_files(repo, root, path, recurse)?;
    Ok(files
        .into_iter()
        .filter(|f| filter.accepts(&f.rel_path))
        .collect())
}

/// Parse the YAML/JSON files among `files` (Jsonnet files are skipped here and evaluated
/// by the caller). Output follows file order, then document order.
pub fn parse_files(
    repo: &Repository,
    path: &str,
    files: &[FileEntry],
) -> Result<Vec<Manifest>, RenderError> {
    let mut out = Vec::new();
    for f in files {
        if f.rel_path.ends_with(".jsonnet") {
            continue;
        }
        let shown = if path.is_empty() {
            f.rel_path.clone()
        } else {
            format!("{path}/{}", f.rel_path)
        };
        let data = tree::read_blob(repo, f.blob, &shown)?;
        let text = String::from_utf8(data).map_err(|_| RenderError::Parse {
            what: shown.clone(),
            message: "not UTF-8 text".into(),
        })?;
        if f.rel_path.ends_with(".json") {
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| RenderError::Parse {
                    what: shown.clone(),
                    message: e.to_string(),
                })?;
            push_object(&shown, value, &mut out)?;
        } else {
            out.extend(parse_manifests(&shown, &text)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: Option<&str>, exclude: Option<&str>) -> FileFilter {
        FileFilter::new(Some(&ApplicationSourceDirectory {
            include: include.map(String::from),
            exclude: exclude.map(String::from),
            ..Default::default()
        }))
        .expect("valid globs")
    }

    #[test]
    fn extension_include_exclude_and_brace_sets() {
        let all = filter(None, None);
        assert!(all.accepts("a.yaml") && all.accepts("b.yml") && all.accepts("c.json"));
        assert!(all.accepts("d.jsonnet"));
        assert!(!all.accepts("lib.libsonnet") && !all.accepts("README.md"));
        let f = filter(Some("{prod/*,*.json}"), Some("*skip*"));
        assert!(f.accepts("prod/a.yaml"));
        assert!(
            f.accepts("dev/x.json"),
            "* crosses '/' as in Argo CD's glob"
        );
        assert!(!f.accepts("dev/a.yaml"));
        assert!(!f.accepts("prod/skip-me.yaml"));
        assert!(FileFilter::new(Some(&ApplicationSourceDirectory {
            include: Some("{unclosed".into()),
            ..Default::default()
        }))
        .is_err());
    }
}
