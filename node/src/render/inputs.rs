//! Planning a source's render from the Git tree: which tool, which repository paths it
//! reads (for the cache key and the checkout), and which files a directory source takes.
use git2::Repository;

use super::{directory, helm, kustomize, RenderError};
use crate::model::{ApplicationSource, SourceKind};
use crate::source::tree::{self, join_repo_path, FileEntry, Node};
use crate::source::SourceError;

/// What rendering one Git source needs.
#[derive(Debug, Clone)]
pub(crate) struct SourcePlan {
    /// The tool.
    pub kind: SourceKind,
    /// Normalized source path ("" for the root).
    pub path: String,
    /// Repository paths to check out for tools.
    pub checkout: Vec<String>,
    /// `(repository path, object id)` of everything read, for the cache key.
    pub inputs: Vec<(String, String)>,
    /// Directory sources: the files taken, in order.
    pub files: Vec<FileEntry>,
}

/// Plan a Git source at `commit`. `field` locates the source in errors.
pub(crate) fn plan_git_source(
    repo: &Repository,
    url: &str,
    commit: &str,
    source: &ApplicationSource,
    field: &str,
) -> Result<SourcePlan, RenderError> {
    let root = tree::commit_tree(repo, commit)?;
    let path = join_repo_path("", source.path.as_deref().unwrap_or("")).map_err(|e| {
        RenderError::Invalid {
            path: format!("{field}.path"),
            message: e.to_string(),
        }
    })?;
    let path_id = match tree::lookup(repo, &root, &path)? {
        Some(Node::Tree(id)) => id,
        _ => {
            return Err(SourceError::PathNotFound {
                url: crate::source::redact_url(url),
                commit: commit.to_string(),
                path: if path.is_empty() { ".".into() } else { path },
            }
            .into())
        }
    };
    let explicit = source
        .explicit_kind()
        .map_err(|kinds| RenderError::Invalid {
            path: field.to_string(),
            message: format!("multiple application sources defined: {kinds:?}"),
        })?;
    let kind = match explicit {
        Some(k) => k,
        // As Argo CD's discovery: a kustomization wins over a Chart.yaml in the same path.
        None if kustomize::kustomization_in_tree(repo, &root, &path)?.is_some() => {
            SourceKind::Kustomize
        }
        None if helm::is_chart(repo, &root, &path)? => SourceKind::Helm,
        None => SourceKind::Directory,
    };
    let mut plan = SourcePlan {
        kind,
        path: path.clone(),
        checkout: Vec::new(),
        inputs: vec![(path.clone(), path_id.to_string())],
        files: Vec::new(),
    };
    match kind {
        SourceKind::Directory => {
            let dir = source.directory.as_ref();
            plan.files = directory::manifest_files(repo, &root, &path, dir)?;
            if plan.files.iter().any(|f| f.rel_path.ends_with(".jsonnet")) {
                plan.checkout.push(path.clone());
                let libs = dir
                    .and_then(|d| d.jsonnet.as_ref())
                    .map(|j| j.libs.clone())
                    .unwrap_or_default();
                for (i, lib) in libs.iter().enumerate() {
                    let p = join_repo_path("", lib).map_err(|e| RenderError::Invalid {
                        path: format!("{field}.directory.jsonnet.libs[{i}]"),
                        message: e.to_string(),
                    })?;
                    if let Some(n) = tree::lookup(repo, &root, &p)? {
                        plan.inputs.push((p.clone(), n.id().to_string()));
                        plan.checkout.push(p);
                    }
                }
            }
        }
        SourceKind::Kustomize => {
            let extra = kustomize::override_references(source.kustomize.as_ref());
            plan.checkout = kustomize::referenced_paths(repo, &root, &path, &extra)?;
        }
        SourceKind::Helm => {
            plan.checkout = helm::git_paths(repo, &root, &path, source.helm.as_ref())?;
        }
        SourceKind::Plugin => {
            plan.checkout = vec![path.clone()];
            // The plugin sees the revision, so its output may depend on it.
            plan.inputs.push(("@commit".into(), commit.to_string()));
        }
    }
    for p in &plan.checkout {
        if *p != path {
            if let Some(n) = tree::lookup(repo, &root, p)? {
                plan.inputs.push((p.clone(), n.id().to_string()));
            }
        }
        for (link, target) in tree::link_targets(repo, &root, p)? {
            plan.inputs.push((format!("{link}@"), target.to_string()));
        }
    }
    // Files of a directory source may be symlinks to elsewhere in the repository.
    for f in &plan.files {
        plan.inputs
            .push((format!("{}/{}", plan.path, f.rel_path), f.blob.to_string()));
    }
    Ok(plan)
}

/// Check out `paths` of `commit` under `dest`.
pub(crate) fn checkout_paths(
    repo: &Repository,
    commit: &str,
    paths: &[String],
    dest: &std::path::Path,
) -> Result<(), RenderError> {
    let root = tree::commit_tree(repo, commit)?;
    for p in paths {
        tree::checkout(repo, &root, p, dest)?;
    }
    Ok(())
}
