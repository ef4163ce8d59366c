//! Which applications a new commit concerns, by Argo CD's
//! `argocd.argoproj.io/manifest-generate-paths` annotation.
//!
//! Without the annotation every new commit of the ref an application follows refreshes it
//! (so a change to a shared base elsewhere in the repository is never missed). With it, a
//! new commit refreshes the application only when a file it lists changed between the
//! previous recorded commit and the new one. The value is a `;`-separated list: a path
//! starting with `/` is taken from the repository root, any other path from each Git
//! source's `path` (`.` is the source path itself). A listed path matches a changed file
//! that is the path itself or lies below it; a path with `*`, `?` or `[` is a glob over the
//! changed file's repository path.

use crate::model::Application;
use crate::source::tree::join_repo_path;
use globset::{Glob, GlobMatcher};

/// The annotation naming the paths an application's manifests are generated from.
pub const MANIFEST_GENERATE_PATHS: &str = "argocd.argoproj.io/manifest-generate-paths";

/// One listed path, relative to the repository root.
#[derive(Debug, Clone)]
pub enum RefreshPath {
    /// A file or a directory (everything below it).
    Prefix(String),
    /// A glob over repository paths (boxed: a matcher is several times the size of a
    /// prefix, and every app of a large monorepo keeps its paths).
    Glob(Box<GlobMatcher>),
}

impl RefreshPath {
    /// Whether a change of the repository file `file` concerns this path.
    pub fn matches(&self, file: &str) -> bool {
        match self {
            RefreshPath::Prefix(p) => {
                p.is_empty()
                    || file == p
                    || (file.len() > p.len()
                        && file.starts_with(p.as_str())
                        && file.as_bytes()[p.len()] == b'/')
            }
            RefreshPath::Glob(g) => g.is_match(file),
        }
    }
}

/// The paths the annotation lists, resolved against each Git source; `None` when the app
/// has no such annotation (or lists nothing usable), so every new commit concerns it.
pub fn refresh_paths(app: &Application) -> Option<Vec<RefreshPath>> {
    let value = app.metadata.annotations.get(MANIFEST_GENERATE_PATHS)?;
    let bases: Vec<&str> = app
        .sources()
        .iter()
        .filter(|s| s.chart.is_none())
        .map(|s| s.path.as_deref().unwrap_or(""))
        .collect();
    let mut out = Vec::new();
    for item in value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let resolved: Vec<String> = match item.strip_prefix('/') {
            Some(root) => vec![root.to_string()],
            None => bases.iter().map(|b| format!("{b}/{item}")).collect(),
        };
        for path in resolved {
            if path.contains(['*', '?', '[']) {
                match Glob::new(path.trim_start_matches('/')) {
                    Ok(g) => out.push(RefreshPath::Glob(Box::new(g.compile_matcher()))),
                    // A pattern that does not parse cannot be trusted to exclude anything.
                    Err(_) => return None,
                }
            } else {
                // A path above the root lists nothing: no file can be there.
                if let Ok(p) = join_repo_path("", &path) {
                    out.push(RefreshPath::Prefix(p));
                }
            }
        }
    }
    out.shrink_to_fit();
    (!out.is_empty()).then_some(out)
}

/// Whether any of `changed` (repository paths) concerns an app listing `paths`.
pub fn concerns(paths: &[RefreshPath], changed: &[String]) -> bool {
    changed
        .iter()
        .any(|file| paths.iter().any(|p| p.matches(file)))
}

/// The files that differ between two commits (both sides of renames and deletions).
pub fn changed_files(
    repo: &git2::Repository,
    old: &str,
    new: &str,
) -> Result<Vec<String>, git2::Error> {
    let tree = |sha: &str| -> Result<git2::Tree<'_>, git2::Error> {
        repo.find_commit(git2::Oid::from_str(sha)?)?.tree()
    };
    let (old_tree, new_tree) = (tree(old)?, tree(new)?);
    let diff = repo.diff_tree_to_tree(Some(&old_tree), Some(&new_tree), None)?;
    let mut files = Vec::new();
    for delta in diff.deltas() {
        for f in [delta.old_file(), delta.new_file()] {
            if let Some(p) = f.path().and_then(|p| p.to_str()) {
                files.push(p.to_string());
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(annotation: Option<&str>, paths: &[&str]) -> Application {
        let mut doc = serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "a", "namespace": "argocd"},
            "spec": {
                "project": "default",
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "x"},
                "sources": paths.iter().map(|p| serde_json::json!({
                    "repoURL": "https://git.example/r.git", "targetRevision": "main", "path": p
                })).collect::<Vec<_>>(),
            }
        });
        if let Some(a) = annotation {
            doc["metadata"]["annotations"] = serde_json::json!({ MANIFEST_GENERATE_PATHS: a });
        }
        serde_json::from_value(doc).expect("application")
    }

    fn files(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn without_the_annotation_every_commit_concerns_the_app() {
        assert!(refresh_paths(&app(None, &["apps/a"])).is_none());
        assert!(refresh_paths(&app(Some(" ; "), &["apps/a"])).is_none());
    }

    #[test]
    fn dot_is_the_source_path_and_matches_files_below_it_only() {
        let p = refresh_paths(&app(Some("."), &["apps/a"])).expect("paths");
        assert!(concerns(&p, &files(&["apps/a/cm.yaml"])));
        assert!(concerns(&p, &files(&["apps/a/sub/deep.yaml"])));
        assert!(
            !concerns(&p, &files(&["apps/ab/cm.yaml"])),
            "a sibling with a longer name"
        );
        assert!(!concerns(&p, &files(&["apps/b/cm.yaml", "README.md"])));
    }

    #[test]
    fn relative_paths_follow_every_source_and_absolute_ones_the_root() {
        let p = refresh_paths(&app(
            Some("../base;/shared/values.yaml"),
            &["apps/a", "apps/b"],
        ))
        .expect("paths");
        assert!(concerns(&p, &files(&["apps/base/x.yaml"])));
        assert!(concerns(&p, &files(&["shared/values.yaml"])));
        assert!(!concerns(&p, &files(&["shared/other.yaml"])));
        assert!(
            !concerns(&p, &files(&["apps/a/cm.yaml"])),
            "only the listed paths count"
        );
    }

    #[test]
    fn globs_match_repository_paths() {
        let p = refresh_paths(&app(Some("/envs/*/common.yaml"), &["apps/a"])).expect("paths");
        assert!(concerns(&p, &files(&["envs/prod/common.yaml"])));
        assert!(!concerns(&p, &files(&["envs/prod/other.yaml"])));
    }

    #[test]
    fn the_root_matches_everything() {
        let p = refresh_paths(&app(Some("/"), &["apps/a"])).expect("paths");
        assert!(concerns(&p, &files(&["anything/at/all"])));
    }

    #[test]
    fn changed_files_lists_both_sides_of_a_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(dir.path()).expect("init");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let commit = |files: &[(&str, &str)], parent: Option<git2::Oid>| -> git2::Oid {
            let mut idx = git2::Index::new().expect("index");
            for (path, body) in files {
                let blob = repo.blob(body.as_bytes()).expect("blob");
                let entry = git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    file_size: body.len() as u32,
                    id: blob,
                    flags: 0,
                    flags_extended: 0,
                    path: path.as_bytes().to_vec(),
                };
                idx.add(&entry).expect("add");
            }
            let tree = repo
                .find_tree(idx.write_tree_to(&repo).expect("tree"))
                .expect("find tree");
            let parents: Vec<git2::Commit<'_>> = parent
                .map(|p| repo.find_commit(p).expect("parent"))
                .into_iter()
                .collect();
            let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
            repo.commit(None, &sig, &sig, "c", &tree, &refs)
                .expect("commit")
        };
        let a = commit(&[("apps/a/cm.yaml", "1"), ("apps/b/cm.yaml", "1")], None);
        let b = commit(&[("apps/a/cm.yaml", "2"), ("apps/c/cm.yaml", "1")], Some(a));
        let changed = changed_files(&repo, &a.to_string(), &b.to_string()).expect("diff");
        assert_eq!(
            changed,
            files(&["apps/a/cm.yaml", "apps/b/cm.yaml", "apps/c/cm.yaml"])
        );
    }
}
