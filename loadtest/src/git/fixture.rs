//! Generated app-of-apps repositories for scenarios and end-to-end tests.
//!
//! Layout of a fixture repository (bare, branch `main`):
//! - `apps/app-<i>/cm-<r>.yaml`: R ConfigMaps per app, namespace `app-<i>`;
//! - `applications/app-<i>.yaml`: an Argo CD `Application` per app, pointing at the repo URL
//!   and `apps/app-<i>`, destination cluster `sim-<i mod C>` by name, automated sync with
//!   prune and self-heal.
//!
//! The initial commit writes its objects into an in-memory pack and stores them as one
//! packfile, so 10,000 apps take seconds. [`Fixture::commit_change`] rebuilds only the
//! trees of the apps it touches (plus the `apps/` and root tree objects).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use git2::{build::TreeUpdateBuilder, Commit, FileMode, Oid, Repository, Signature, Tree};

/// Errors creating or changing a fixture repository.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A libgit2 operation failed.
    #[error("git fixture {path}: {what}: {source}")]
    Git {
        /// The repository.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The libgit2 error.
        #[source]
        source: git2::Error,
    },
    /// Writing the generated pack failed.
    #[error("git fixture {path}: writing pack: {source}")]
    Pack {
        /// The repository.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The spec is unusable.
    #[error("git fixture spec: {0}")]
    Spec(String),
    /// An app index out of range was asked to change.
    #[error("git fixture {path}: app {index} out of range (fixture has {apps} apps)")]
    NoSuchApp {
        /// The repository.
        path: PathBuf,
        /// The requested index.
        index: usize,
        /// The number of apps.
        apps: usize,
    },
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct FixtureSpec {
    /// Number of apps (A).
    pub apps: usize,
    /// Number of destination clusters (C), named `sim-0` .. `sim-<C-1>`.
    pub clusters: usize,
    /// ConfigMaps per app (R).
    pub resources_per_app: usize,
    /// The repository URL written into the Application manifests.
    pub repo_url: String,
    /// The `targetRevision` written into the Application manifests.
    pub target_revision: String,
    /// The namespace the Application objects live in.
    pub applications_namespace: String,
    /// The Argo CD project of every Application.
    pub project: String,
    /// Annotate each Application with `argocd.argoproj.io/manifest-generate-paths: .`, so a
    /// commit refreshes only the apps whose directory it changed.
    pub generate_paths: bool,
}

impl Default for FixtureSpec {
    fn default() -> Self {
        Self {
            apps: 10,
            clusters: 1,
            resources_per_app: 1,
            repo_url: "http://127.0.0.1/apps.git".to_string(),
            target_revision: "main".to_string(),
            applications_namespace: "argocd".to_string(),
            project: "default".to_string(),
            generate_paths: true,
        }
    }
}

/// A change committed by [`Fixture::commit_change`].
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    /// The new commit id (hex).
    pub id: String,
    /// The previous head commit id (hex).
    pub parent: String,
    /// Paths of the files changed, relative to the repository root.
    pub modified: Vec<String>,
    /// When the commit was made (wall clock), for churn-latency measurements.
    pub committed_at: SystemTime,
    /// How long building and writing the commit took.
    pub elapsed: Duration,
}

/// A generated bare repository and the state needed to change it.
pub struct Fixture {
    repo: Repository,
    path: PathBuf,
    spec: FixtureSpec,
    generations: Vec<u64>,
}

const BRANCH: &str = "refs/heads/main";

impl Fixture {
    /// Create the bare repository `root/name` (it must not exist) with one commit holding
    /// all apps and Application manifests.
    pub fn create(root: &Path, name: &str, spec: FixtureSpec) -> Result<Self, FixtureError> {
        if spec.clusters == 0 || spec.resources_per_app == 0 {
            return Err(FixtureError::Spec(format!(
                "clusters ({}) and resources_per_app ({}) must be at least 1",
                spec.clusters, spec.resources_per_app
            )));
        }
        if name.is_empty() || name.contains("..") || name.contains('/') {
            return Err(FixtureError::Spec(format!(
                "repository name {name:?} must be one path component"
            )));
        }
        let path = root.join(name);
        let g = |what: &'static str| {
            move |source| FixtureError::Git {
                path: root.join(name),
                what,
                source,
            }
        };
        let mut opts = git2::RepositoryInitOptions::new();
        opts.bare(true).no_reinit(true).initial_head("main");
        let repo = Repository::init_opts(&path, &opts).map_err(g("init"))?;
        {
            let odb = repo.odb().map_err(g("odb"))?;
            let mempack = odb.add_new_mempack_backend(1000).map_err(g("mempack"))?;
            let mut apps = repo.treebuilder(None).map_err(g("treebuilder"))?;
            let mut applications = repo.treebuilder(None).map_err(g("treebuilder"))?;
            for i in 0..spec.apps {
                let app_tree = write_app_tree(&repo, &spec, i, 0).map_err(g("app tree"))?;
                apps.insert(app_dir(i), app_tree, FileMode::Tree.into())
                    .map_err(g("apps tree"))?;
                let blob = repo
                    .blob(application_manifest(&spec, i).as_bytes())
                    .map_err(g("blob"))?;
                applications
                    .insert(format!("app-{i}.yaml"), blob, FileMode::Blob.into())
                    .map_err(g("applications tree"))?;
            }
            let mut top = repo.treebuilder(None).map_err(g("treebuilder"))?;
            let readme = repo.blob(readme(&spec).as_bytes()).map_err(g("blob"))?;
            top.insert("README.md", readme, FileMode::Blob.into())
                .map_err(g("root tree"))?;
            if spec.apps > 0 {
                top.insert(
                    "apps",
                    apps.write().map_err(g("apps tree"))?,
                    FileMode::Tree.into(),
                )
                .map_err(g("root tree"))?;
                let at = applications.write().map_err(g("applications tree"))?;
                top.insert("applications", at, FileMode::Tree.into())
                    .map_err(g("root tree"))?;
            }
            let tree_id = top.write().map_err(g("root tree"))?;
            let tree = repo.find_tree(tree_id).map_err(g("root tree"))?;
            let sig = signature().map_err(g("signature"))?;
            let msg = format!(
                "Generate {} apps over {} clusters",
                spec.apps, spec.clusters
            );
            let commit = repo
                .commit(None, &sig, &sig, &msg, &tree, &[])
                .map_err(g("commit"))?;
            let mut buf = git2::Buf::new();
            mempack.dump(&repo, &mut buf).map_err(g("dump pack"))?;
            let mut writer = odb.packwriter().map_err(g("pack writer"))?;
            writer
                .write_all(&buf)
                .map_err(|source| FixtureError::Pack {
                    path: path.clone(),
                    source,
                })?;
            writer.commit().map_err(g("index pack"))?;
            mempack.reset().map_err(g("reset mempack"))?;
            repo.reference(BRANCH, commit, true, "fixture: initial commit")
                .map_err(g("update main"))?;
        }
        // Reopen so later writes go to the on-disk object store, not the in-memory pack.
        drop(repo);
        let repo = Repository::open_bare(&path).map_err(g("reopen"))?;
        let generations = vec![0; spec.apps];
        Ok(Self {
            repo,
            path,
            spec,
            generations,
        })
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The spec the fixture was generated from.
    pub fn spec(&self) -> &FixtureSpec {
        &self.spec
    }

    /// The libgit2 handle, for inspection in tests.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The commit `main` points at (hex).
    pub fn head(&self) -> Result<String, FixtureError> {
        Ok(self.head_oid()?.to_string())
    }

    /// The repository path of app `i` (`apps/app-<i>`).
    pub fn app_path(i: usize) -> String {
        format!("apps/{}", app_dir(i))
    }

    /// The Application name of app `i`.
    pub fn app_name(i: usize) -> String {
        app_dir(i)
    }

    /// The Argo CD `Application` manifest of app `i`, as committed under `applications/`.
    pub fn application_yaml(&self, i: usize) -> String {
        application_manifest(&self.spec, i)
    }

    /// The destination cluster name of app `i`.
    pub fn cluster_of(&self, i: usize) -> String {
        format!("sim-{}", i % self.spec.clusters)
    }

    /// An app-of-apps `Application` that syncs the `applications/` directory into
    /// `spec.applications_namespace` on the in-cluster destination.
    pub fn root_application_manifest(&self) -> String {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: root\n  namespace: {ns}\nspec:\n  project: {project}\n  source:\n    repoURL: {url}\n    targetRevision: {rev}\n    path: applications\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n",
            ns = self.spec.applications_namespace,
            project = self.spec.project,
            url = self.spec.repo_url,
            rev = self.spec.target_revision,
        )
    }

    /// Commit a change to the given apps (the first ConfigMap of each gets a new
    /// `generation` value). Work is proportional to `apps.len()` (plus rewriting the
    /// `apps/` tree object itself).
    pub fn commit_change(
        &mut self,
        apps: &[usize],
        message: &str,
    ) -> Result<CommitOutcome, FixtureError> {
        let started = Instant::now();
        for &i in apps {
            if i >= self.spec.apps {
                return Err(FixtureError::NoSuchApp {
                    path: self.path.clone(),
                    index: i,
                    apps: self.spec.apps,
                });
            }
        }
        let (parent, base) = head_commit(&self.repo, &self.path)?;
        let mut update = TreeUpdateBuilder::new();
        let mut modified = Vec::with_capacity(apps.len());
        for &i in apps {
            self.generations[i] += 1;
            let file = format!("{}/cm-0.yaml", Fixture::app_path(i));
            let blob = self
                .repo
                .blob(configmap(&self.spec, i, 0, self.generations[i]).as_bytes())
                .map_err(git_error(&self.path, "blob"))?;
            update.upsert(file.as_str(), blob, FileMode::Blob);
            modified.push(file);
        }
        self.write_commit((&parent, &base), &mut update, modified, message, started)
    }

    /// Commit arbitrary file changes: `Some(content)` writes the file at that path, `None`
    /// removes it (e.g. a malformed manifest in one app, or a new app directory). Work is
    /// proportional to the number of files.
    pub fn commit_files(
        &mut self,
        files: &[(&str, Option<&[u8]>)],
        message: &str,
    ) -> Result<CommitOutcome, FixtureError> {
        let started = Instant::now();
        let (parent, base) = head_commit(&self.repo, &self.path)?;
        let mut update = TreeUpdateBuilder::new();
        let mut modified = Vec::with_capacity(files.len());
        for (file, content) in files {
            let file = file.trim_matches('/');
            if file.is_empty()
                || file
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".." || c == ".git")
            {
                return Err(FixtureError::Spec(format!(
                    "file path {file:?} is not a plain relative path"
                )));
            }
            match content {
                Some(bytes) => {
                    let blob = self
                        .repo
                        .blob(bytes)
                        .map_err(git_error(&self.path, "blob"))?;
                    update.upsert(file, blob, FileMode::Blob);
                }
                None => {
                    update.remove(file);
                }
            }
            modified.push(file.to_string());
        }
        self.write_commit((&parent, &base), &mut update, modified, message, started)
    }

    /// Applies `update` to the head tree `base`, commits the result on `main` with `parent` as
    /// its parent, and reports the commit with the sorted, deduplicated `modified` paths.
    fn write_commit(
        &self,
        (parent, base): (&Commit<'_>, &Tree<'_>),
        update: &mut TreeUpdateBuilder,
        mut modified: Vec<String>,
        message: &str,
        started: Instant,
    ) -> Result<CommitOutcome, FixtureError> {
        modified.sort();
        modified.dedup();
        let tree_id = update
            .create_updated(&self.repo, base)
            .map_err(git_error(&self.path, "update tree"))?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(git_error(&self.path, "find tree"))?;
        let sig = signature().map_err(git_error(&self.path, "signature"))?;
        let id = self
            .repo
            .commit(Some(BRANCH), &sig, &sig, message, &tree, &[parent])
            .map_err(git_error(&self.path, "commit"))?;
        Ok(CommitOutcome {
            id: id.to_string(),
            parent: parent.id().to_string(),
            modified,
            committed_at: SystemTime::now(),
            elapsed: started.elapsed(),
        })
    }

    fn head_oid(&self) -> Result<Oid, FixtureError> {
        self.repo
            .refname_to_id(BRANCH)
            .map_err(|source| FixtureError::Git {
                path: self.path.clone(),
                what: "resolve main",
                source,
            })
    }
}

/// Maps a git error from step `what` on the repository at `path` into a [`FixtureError`].
fn git_error(path: &Path, what: &'static str) -> impl FnOnce(git2::Error) -> FixtureError {
    let path = path.to_path_buf();
    move |source| FixtureError::Git { path, what, source }
}

/// The commit `main` points at in `repo` (at `path`) and its tree: where a new commit starts.
fn head_commit<'r>(
    repo: &'r Repository,
    path: &Path,
) -> Result<(Commit<'r>, Tree<'r>), FixtureError> {
    let parent_id = repo
        .refname_to_id(BRANCH)
        .map_err(git_error(path, "resolve main"))?;
    let parent = repo
        .find_commit(parent_id)
        .map_err(git_error(path, "find head"))?;
    let base = parent.tree().map_err(git_error(path, "head tree"))?;
    Ok((parent, base))
}

fn signature() -> Result<Signature<'static>, git2::Error> {
    Signature::now("flotilla-loadtest", "loadtest@flotilla.invalid")
}

fn app_dir(i: usize) -> String {
    format!("app-{i}")
}

fn write_app_tree(
    repo: &Repository,
    spec: &FixtureSpec,
    i: usize,
    generation: u64,
) -> Result<Oid, git2::Error> {
    let mut tb = repo.treebuilder(None)?;
    for r in 0..spec.resources_per_app {
        let blob = repo.blob(configmap(spec, i, r, generation).as_bytes())?;
        tb.insert(format!("cm-{r}.yaml"), blob, FileMode::Blob.into())?;
    }
    tb.write()
}

/// The manifest of ConfigMap `r` of app `i`.
fn configmap(_spec: &FixtureSpec, i: usize, r: usize, generation: u64) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i}-cm-{r}\n  namespace: app-{i}\n  labels:\n    app.kubernetes.io/part-of: app-{i}\ndata:\n  app: \"app-{i}\"\n  index: \"{r}\"\n  generation: \"{generation}\"\n"
    )
}

/// The Argo CD Application manifest of app `i`.
fn application_manifest(spec: &FixtureSpec, i: usize) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: app-{i}\n  namespace: {ns}\n{annotations}spec:\n  project: {project}\n  source:\n    repoURL: {url}\n    targetRevision: {rev}\n    path: apps/app-{i}\n  destination:\n    name: sim-{c}\n    namespace: app-{i}\n  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n    syncOptions:\n      - CreateNamespace=true\n",
        ns = spec.applications_namespace,
        project = spec.project,
        url = spec.repo_url,
        rev = spec.target_revision,
        c = i % spec.clusters,
        annotations = if spec.generate_paths {
            "  annotations:\n    argocd.argoproj.io/manifest-generate-paths: .\n"
        } else {
            ""
        },
    )
}

fn readme(spec: &FixtureSpec) -> String {
    format!(
        "# Generated flotilla load-test repository\n\n{} apps over {} clusters, {} ConfigMaps per app.\n",
        spec.apps, spec.clusters, spec.resources_per_app
    )
}
