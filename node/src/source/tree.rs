//! Reading commits and trees from a mirror's object database, and checking out subtrees.
//!
//! Repository paths are `/`-separated and relative to the root. Every path and symlink is
//! resolved lexically inside the repository; anything that would leave it is refused with
//! [`SourceError::Escape`] naming the path.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use git2::{ObjectType, Oid, Repository, Tree};

use super::{git_err, SourceError};

const MAX_LINK_HOPS: usize = 8;
const FILEMODE_LINK: i32 = 0o120000;
const FILEMODE_EXEC: i32 = 0o100755;
const FILEMODE_COMMIT: i32 = 0o160000;

/// Join `rel` onto the repository directory `base` and resolve `.` and `..`; refuse
/// absolute paths and paths that leave the repository.
pub fn join_repo_path(base: &str, rel: &str) -> Result<String, SourceError> {
    if rel.starts_with('/') {
        return Err(SourceError::Escape {
            path: rel.to_string(),
            detail: "absolute path".into(),
        });
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in base.split('/').chain(rel.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(SourceError::Escape {
                        path: if base.is_empty() {
                            rel.to_string()
                        } else {
                            format!("{base}/{rel}")
                        },
                        detail: "resolves above the repository root".into(),
                    });
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// The commit a revision names: `HEAD`, a branch, a tag (annotated tags are peeled), a
/// full ref, or a full or abbreviated commit SHA.
pub fn resolve_revision(repo: &Repository, url: &str, rev: &str) -> Result<String, SourceError> {
    let not_found = || SourceError::RevisionNotFound {
        url: crate::source::redact_url(url),
        revision: rev.to_string(),
    };
    let rev = rev.trim();
    let candidates: Vec<String> = if rev.is_empty() || rev == "HEAD" {
        vec!["HEAD".into()]
    } else if rev.starts_with("refs/") {
        vec![rev.to_string()]
    } else {
        vec![format!("refs/heads/{rev}"), format!("refs/tags/{rev}")]
    };
    for name in &candidates {
        if let Ok(r) = repo.resolve_reference_from_short_name(name) {
            if let Ok(c) = r.peel_to_commit() {
                return Ok(c.id().to_string());
            }
        }
        if name == "HEAD" {
            if let Ok(c) = repo.head().and_then(|h| h.peel_to_commit()) {
                return Ok(c.id().to_string());
            }
        }
    }
    if (4..=40).contains(&rev.len()) && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        if let Ok(obj) = repo.revparse_single(rev) {
            if let Ok(c) = obj.peel_to_commit() {
                return Ok(c.id().to_string());
            }
        }
    }
    Err(not_found())
}

/// The root tree of a commit.
pub fn commit_tree<'r>(repo: &'r Repository, commit: &str) -> Result<Tree<'r>, SourceError> {
    let oid = Oid::from_str(commit).map_err(git_err(format!("commit id {commit}")))?;
    repo.find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(git_err(format!("read commit {commit}")))
}

/// What a repository path holds, after following symlinks inside the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory (tree id).
    Tree(Oid),
    /// A file (blob id, executable bit).
    Blob(Oid, bool),
}

impl Node {
    /// The object id.
    pub fn id(&self) -> Oid {
        match self {
            Node::Tree(o) | Node::Blob(o, _) => *o,
        }
    }
}

/// One entry of a directory: object id, kind, file mode.
type Entry = (Oid, Option<ObjectType>, i32);

/// Directories with at least this many entries are indexed by name once and kept.
const BIG_TREE: usize = 128;
/// Most entries kept in [`DIRECTORIES`] (about 100 bytes each); beyond, it starts over.
const DIRECTORIES_MAX_ENTRIES: usize = 200_000;

/// Name indexes of large directories, by tree id (trees never change, so an index never
/// goes stale). libgit2 keeps only small trees in its object cache: without this, every
/// lookup under a directory holding one entry per app read, inflated, hashed and parsed
/// that whole directory again.
static DIRECTORIES: LazyLock<Mutex<Directories>> = LazyLock::new(Mutex::default);

/// Name indexes by tree id, and how many entries they hold in all.
type Directories = (HashMap<Oid, Arc<HashMap<Vec<u8>, Entry>>>, usize);

/// The entry `name` of the directory `tree_id`.
fn entry_in(repo: &Repository, tree_id: Oid, name: &str) -> Result<Option<Entry>, SourceError> {
    let cached = DIRECTORIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .0
        .get(&tree_id)
        .cloned();
    if let Some(index) = cached {
        return Ok(index.get(name.as_bytes()).copied());
    }
    let tree = repo
        .find_tree(tree_id)
        .map_err(git_err(format!("read tree {tree_id}")))?;
    if tree.len() < BIG_TREE {
        return Ok(tree
            .get_name_bytes(name.as_bytes())
            .map(|e| (e.id(), e.kind(), e.filemode())));
    }
    let index: HashMap<Vec<u8>, Entry> = tree
        .iter()
        .map(|e| (e.name_bytes().to_vec(), (e.id(), e.kind(), e.filemode())))
        .collect();
    let found = index.get(name.as_bytes()).copied();
    let mut dirs = DIRECTORIES.lock().unwrap_or_else(|p| p.into_inner());
    if dirs.1 + index.len() > DIRECTORIES_MAX_ENTRIES {
        dirs.0.clear();
        dirs.1 = 0;
    }
    dirs.1 += index.len();
    dirs.0.insert(tree_id, Arc::new(index));
    Ok(found)
}

/// Look a path up in the root tree, following symlinks that stay in the repository.
/// `Ok(None)` when it does not exist.
pub fn lookup(repo: &Repository, root: &Tree<'_>, path: &str) -> Result<Option<Node>, SourceError> {
    let mut path = join_repo_path("", path)?;
    'hops: for _ in 0..MAX_LINK_HOPS {
        if path.is_empty() {
            return Ok(Some(Node::Tree(root.id())));
        }
        // Walk the directories down to the last component; only that one may be a link.
        let mut dir = root.id();
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            let Some((id, kind, mode)) = entry_in(repo, dir, part)? else {
                return Ok(None);
            };
            let last = parts.peek().is_none();
            match (kind, mode) {
                (Some(ObjectType::Tree), _) if last => return Ok(Some(Node::Tree(id))),
                (Some(ObjectType::Tree), _) => dir = id,
                (Some(ObjectType::Blob), FILEMODE_LINK) if last => {
                    path = link_target(repo, &path, id)?;
                    continue 'hops;
                }
                (Some(ObjectType::Blob), mode) if last => {
                    return Ok(Some(Node::Blob(id, mode == FILEMODE_EXEC)))
                }
                _ => return Ok(None),
            }
        }
        return Ok(None);
    }
    Err(SourceError::Escape {
        path,
        detail: "too many levels of symbolic links".into(),
    })
}

/// Where the symlink at `path` (blob `id`) points, as a repository path.
fn link_target(repo: &Repository, path: &str, id: Oid) -> Result<String, SourceError> {
    let blob = repo
        .find_blob(id)
        .map_err(git_err(format!("read symlink {path}")))?;
    let target = String::from_utf8_lossy(blob.content()).into_owned();
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    join_repo_path(parent, &target).map_err(|_| SourceError::Escape {
        path: path.to_string(),
        detail: format!("symlink to {target:?}"),
    })
}

/// Read a blob's bytes.
pub fn read_blob(repo: &Repository, id: Oid, what: &str) -> Result<Vec<u8>, SourceError> {
    repo.find_blob(id)
        .map(|b| b.content().to_vec())
        .map_err(git_err(format!("read {what}")))
}

/// Read a file at a repository path (following in-repository symlinks).
pub fn read_file(
    repo: &Repository,
    root: &Tree<'_>,
    path: &str,
) -> Result<Option<Vec<u8>>, SourceError> {
    match lookup(repo, root, path)? {
        Some(Node::Blob(id, _)) => Ok(Some(read_blob(repo, id, path)?)),
        _ => Ok(None),
    }
}

/// A file found by [`list_files`].
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Path relative to the listed directory.
    pub rel_path: String,
    /// Blob id of the content (after following symlinks).
    pub blob: Oid,
}

/// List the files under directory `dir`, in tree order, optionally recursing. Symlinks to
/// files are followed inside the repository; symlinks to directories are not descended
/// (as a file-system walk would not); any symlink leaving the repository is an error.
pub fn list_files(
    repo: &Repository,
    root: &Tree<'_>,
    dir: &str,
    recurse: bool,
) -> Result<Vec<FileEntry>, SourceError> {
    let dir = join_repo_path("", dir)?;
    let tree_id = match lookup(repo, root, &dir)? {
        Some(Node::Tree(id)) => id,
        _ => {
            return Err(SourceError::PathNotFound {
                url: String::new(),
                commit: root.id().to_string(),
                path: dir,
            })
        }
    };
    let mut out = Vec::new();
    walk(repo, root, tree_id, &dir, "", recurse, &mut out)?;
    Ok(out)
}

fn walk(
    repo: &Repository,
    root: &Tree<'_>,
    tree_id: Oid,
    dir: &str,
    rel: &str,
    recurse: bool,
    out: &mut Vec<FileEntry>,
) -> Result<(), SourceError> {
    let tree = repo
        .find_tree(tree_id)
        .map_err(git_err(format!("read tree {dir}/{rel}")))?;
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        let rel_path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let full = join_repo_path(dir, &rel_path)?;
        match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Tree), _) if recurse => {
                walk(repo, root, entry.id(), dir, &rel_path, recurse, out)?;
            }
            (Some(ObjectType::Blob), FILEMODE_LINK) => {
                let target = link_target(repo, &full, entry.id())?;
                if let Some(Node::Blob(id, _)) = lookup(repo, root, &target)? {
                    out.push(FileEntry { rel_path, blob: id });
                }
            }
            (Some(ObjectType::Blob), _) => out.push(FileEntry {
                rel_path,
                blob: entry.id(),
            }),
            _ => {}
        }
    }
    Ok(())
}

/// The symlinks under repository path `path` (recursively) with the ids of what they
/// point to: a symlink's own blob does not change when its target does, so render keys
/// include these. Symlinks leaving the repository are an error.
pub fn link_targets(
    repo: &Repository,
    root: &Tree<'_>,
    path: &str,
) -> Result<Vec<(String, Oid)>, SourceError> {
    let mut out = Vec::new();
    if let Some(Node::Tree(id)) = lookup(repo, root, path)? {
        links_in(repo, root, id, &join_repo_path("", path)?, &mut out)?;
    }
    Ok(out)
}

fn links_in(
    repo: &Repository,
    root: &Tree<'_>,
    id: Oid,
    path: &str,
    out: &mut Vec<(String, Oid)>,
) -> Result<(), SourceError> {
    let tree = repo
        .find_tree(id)
        .map_err(git_err(format!("read tree {path}")))?;
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        let child = join_repo_path(path, &name)?;
        match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Tree), _) => links_in(repo, root, entry.id(), &child, out)?,
            (Some(ObjectType::Blob), FILEMODE_LINK) => {
                let target = link_target(repo, &child, entry.id())?;
                if let Some(n) = lookup(repo, root, &target)? {
                    out.push((child, n.id()));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Write the file or directory at repository path `path` into `dest_root/path`, from the
/// object database. Symlinks inside the repository are materialized as copies of their
/// target; symlinks leaving it are refused. Submodules are skipped.
pub fn checkout(
    repo: &Repository,
    root: &Tree<'_>,
    path: &str,
    dest_root: &Path,
) -> Result<(), SourceError> {
    let path = join_repo_path("", path)?;
    let dest = if path.is_empty() {
        dest_root.to_path_buf()
    } else {
        dest_root.join(&path)
    };
    match lookup(repo, root, &path)? {
        Some(Node::Tree(id)) => write_tree(repo, root, id, &path, &dest, 0),
        Some(Node::Blob(id, exec)) => write_blob(repo, id, exec, &path, &dest),
        None => Err(SourceError::PathNotFound {
            url: String::new(),
            commit: root.id().to_string(),
            path,
        }),
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> SourceError {
    move |source| SourceError::Io { context, source }
}

fn write_blob(
    repo: &Repository,
    id: Oid,
    exec: bool,
    path: &str,
    dest: &Path,
) -> Result<(), SourceError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
    }
    let data = read_blob(repo, id, path)?;
    std::fs::write(dest, data).map_err(io_err(format!("write {}", dest.display())))?;
    if exec {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("chmod {}", dest.display())))?;
    }
    Ok(())
}

fn write_tree(
    repo: &Repository,
    root: &Tree<'_>,
    id: Oid,
    path: &str,
    dest: &Path,
    depth: usize,
) -> Result<(), SourceError> {
    if depth > MAX_LINK_HOPS {
        return Err(SourceError::Escape {
            path: path.to_string(),
            detail: "symbolic link loop".into(),
        });
    }
    std::fs::create_dir_all(dest).map_err(io_err(format!("create {}", dest.display())))?;
    let tree = repo
        .find_tree(id)
        .map_err(git_err(format!("read tree {path}")))?;
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        if name == ".git" {
            continue;
        }
        let child = join_repo_path(path, &name)?;
        let child_dest = dest.join(&name);
        match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Tree), _) => {
                write_tree(repo, root, entry.id(), &child, &child_dest, depth)?
            }
            (Some(ObjectType::Blob), FILEMODE_LINK) => {
                let target = link_target(repo, &child, entry.id())?;
                match lookup(repo, root, &target)? {
                    Some(Node::Blob(b, exec)) => write_blob(repo, b, exec, &child, &child_dest)?,
                    Some(Node::Tree(t)) => {
                        write_tree(repo, root, t, &target, &child_dest, depth + 1)?
                    }
                    None => {} // dangling link: nothing to materialize
                }
            }
            (Some(ObjectType::Blob), mode) => {
                write_blob(repo, entry.id(), mode == FILEMODE_EXEC, &child, &child_dest)?
            }
            (_, FILEMODE_COMMIT) => {}
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_refuses_escapes() {
        assert_eq!(
            join_repo_path("apps/a", "../b/x.yaml").ok(),
            Some("apps/b/x.yaml".into())
        );
        assert_eq!(join_repo_path("", "./a//b/").ok(), Some("a/b".into()));
        assert_eq!(join_repo_path("", ".").ok(), Some(String::new()));
        assert!(matches!(
            join_repo_path("apps", "../../x"),
            Err(SourceError::Escape { .. })
        ));
        assert!(matches!(
            join_repo_path("", "/etc/passwd"),
            Err(SourceError::Escape { .. })
        ));
    }
}
