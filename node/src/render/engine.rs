//! The [`Renderer`]: resolve, plan, look up the cache, render each source, combine.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::cache::{InputKey, RenderCache};
use super::inputs::{checkout_paths, plan_git_source, SourcePlan};
use super::tool::ToolRun;
use super::{directory, helm, io_err, jsonnet, kustomize, parse_manifests, plugin};
use super::{KustomizeTool, Manifest, RenderError, RenderSettings};
use crate::model::{Application, ApplicationSource, SourceKind};
use crate::source::tree::{self, join_repo_path, Node};
use crate::source::{Freshness, Resolved, SourceCache};

/// The result of rendering an application.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// All sources' objects, concatenated in source order.
    pub manifests: Arc<Vec<Manifest>>,
    /// Per source: the resolved commit (`None` for Helm chart repositories).
    pub revisions: Vec<Option<String>>,
    /// The input key the output is cached under.
    pub key: InputKey,
    /// Whether the output came from the cache.
    pub cached: bool,
}

impl Rendered {
    /// The objects as JSON values, in order.
    pub fn objects(&self) -> Vec<serde_json::Value> {
        self.manifests.iter().map(|m| m.object.clone()).collect()
    }

    /// The resolved commits joined with commas (Argo CD's form for multi-source apps).
    pub fn revision(&self) -> String {
        self.revisions
            .iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A source after revision resolution and planning.
struct Planned<'a> {
    index: usize,
    source: &'a ApplicationSource,
    field: String,
    resolved: Option<Resolved>,
    plan: Option<SourcePlan>,
    /// `$ref` value files: (value file as written, ref source, repository path).
    ref_files: Vec<(String, Resolved, String)>,
}

/// Renders Applications, with a cache keyed by the app's inputs.
pub struct Renderer {
    sources: Arc<SourceCache>,
    settings: RenderSettings,
    cache: RenderCache,
    renders: AtomicU64,
    permits: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// Create a renderer over a source cache.
    pub fn new(sources: Arc<SourceCache>, settings: RenderSettings) -> Result<Self, RenderError> {
        let cache = RenderCache::new(settings.cache).map_err(|e| RenderError::Invalid {
            path: "cache".into(),
            message: e.to_string(),
        })?;
        let permits = tokio::sync::Semaphore::new(settings.max_parallel_renders.max(1));
        Ok(Self {
            sources,
            settings,
            cache,
            renders: AtomicU64::new(0),
            permits,
        })
    }

    /// Number of renders actually run (cache misses).
    pub fn render_count(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }

    /// The render cache.
    pub fn cache(&self) -> &RenderCache {
        &self.cache
    }

    /// The source cache.
    pub fn sources(&self) -> &Arc<SourceCache> {
        &self.sources
    }

    /// Render an application: the desired objects of all its sources.
    pub async fn render(
        &self,
        app: &Application,
        freshness: Freshness,
    ) -> Result<Rendered, RenderError> {
        app.validate()?;
        let multi = app.is_multi_source();
        let mut planned = Vec::new();
        let mut fetched = std::collections::HashSet::new();
        for (index, source) in app.sources().into_iter().enumerate() {
            let field = if multi {
                format!("spec.sources[{index}]")
            } else {
                "spec.source".to_string()
            };
            let resolved = if source.chart.is_some() {
                None
            } else {
                // Sources sharing a repository fetch it once per render.
                let norm = crate::source::normalize_url(&source.repo_url);
                let fresh = if fetched.insert(norm) {
                    freshness
                } else {
                    Freshness::Cached
                };
                Some(
                    self.sources
                        .resolve(&source.repo_url, source.revision(), fresh)
                        .await?,
                )
            };
            planned.push(Planned {
                index,
                source,
                field,
                resolved,
                plan: None,
                ref_files: Vec::new(),
            });
        }
        let refs: HashMap<String, Resolved> = planned
            .iter()
            .filter_map(|p| Some((p.source.ref_name.clone()?, p.resolved.clone()?)))
            .collect();
        let mut key_sources = Vec::new();
        for p in &mut planned {
            if p.source.is_ref_only() {
                continue;
            }
            let mut inputs = Vec::new();
            if let Some(r) = &p.resolved {
                let (url, commit, source, field) = (
                    r.url.clone(),
                    r.commit.clone(),
                    p.source.clone(),
                    p.field.clone(),
                );
                let plan = self
                    .sources
                    .with_repo(&r.url, move |repo| {
                        plan_git_source(repo, &url, &commit, &source, &field)
                    })
                    .await?;
                inputs.extend(plan.inputs.iter().map(|(a, b)| json!([a, b])));
                p.plan = Some(plan);
            }
            for (i, vf) in p
                .source
                .helm
                .iter()
                .flat_map(|h| h.value_files.iter())
                .enumerate()
            {
                if let Some(rest) = vf.strip_prefix('$') {
                    let (name, file) = rest.split_once('/').unwrap_or((rest, ""));
                    let r = refs.get(name).ok_or_else(|| RenderError::Invalid {
                        path: format!("{}.helm.valueFiles[{i}]", p.field),
                        message: format!("no source has ref {name:?}"),
                    })?;
                    let file = join_repo_path("", file).map_err(|e| RenderError::Invalid {
                        path: format!("{}.helm.valueFiles[{i}]", p.field),
                        message: e.to_string(),
                    })?;
                    let (commit, f) = (r.commit.clone(), file.clone());
                    let id = self
                        .sources
                        .with_repo(&r.url, move |repo| {
                            let root = tree::commit_tree(repo, &commit)?;
                            Ok::<_, RenderError>(
                                tree::lookup(repo, &root, &f)?.map(|n| n.id().to_string()),
                            )
                        })
                        .await?;
                    inputs.push(json!([vf, id]));
                    p.ref_files.push((vf.clone(), r.clone(), file));
                }
            }
            key_sources.push(json!({
                "index": p.index,
                "spec": p.source,
                "inputs": inputs,
            }));
        }
        let description = json!({
            "v": 1,
            "app": app.metadata.name,
            "namespace": app.spec.destination.namespace,
            "sources": key_sources,
        });
        let key = InputKey::of(description.to_string().as_bytes());
        let revisions: Vec<Option<String>> = planned
            .iter()
            .map(|p| p.resolved.as_ref().map(|r| r.commit.clone()))
            .collect();
        if let Some(m) = self.cache.get(&key) {
            return Ok(Rendered {
                manifests: m,
                revisions,
                key,
                cached: true,
            });
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| RenderError::Task(e.to_string()))?;
        self.renders.fetch_add(1, Ordering::Relaxed);
        let mut all = Vec::new();
        for p in &planned {
            if p.source.is_ref_only() {
                continue;
            }
            all.extend(self.render_source(app, p).await?);
        }
        let manifests = Arc::new(all);
        self.cache.insert(key, manifests.clone());
        Ok(Rendered {
            manifests,
            revisions,
            key,
            cached: false,
        })
    }

    fn tempdir(&self) -> Result<tempfile::TempDir, RenderError> {
        let b = tempfile::Builder::new()
            .prefix("flotilla-render-")
            .to_owned();
        match &self.settings.work_dir {
            Some(d) => b.tempdir_in(d),
            None => b.tempdir(),
        }
        .map_err(io_err("create a temporary render directory"))
    }

    async fn checkout(
        &self,
        r: &Resolved,
        paths: Vec<String>,
        dest: PathBuf,
    ) -> Result<(), RenderError> {
        let commit = r.commit.clone();
        self.sources
            .with_repo(&r.url, move |repo| {
                checkout_paths(repo, &commit, &paths, &dest)
            })
            .await
    }

    async fn render_source(
        &self,
        app: &Application,
        p: &Planned<'_>,
    ) -> Result<Vec<Manifest>, RenderError> {
        let (Some(r), Some(plan)) = (&p.resolved, &p.plan) else {
            return self.render_helm_repo(app, p).await;
        };
        match plan.kind {
            SourceKind::Directory => self.render_directory(r, p, plan).await,
            SourceKind::Kustomize => {
                let work = self.tempdir()?;
                let repo_dir = work.path().join("repo");
                self.checkout(r, plan.checkout.clone(), repo_dir.clone())
                    .await?;
                let dir = repo_dir.join(&plan.path);
                if let Some(k) = &p.source.kustomize {
                    kustomize::apply_overrides(&dir, k)?;
                }
                self.kustomize_build(&dir, work.path()).await
            }
            SourceKind::Helm => {
                let work = self.tempdir()?;
                let repo_dir = work.path().join("repo");
                self.checkout(r, plan.checkout.clone(), repo_dir.clone())
                    .await?;
                let chart_dir = repo_dir.join(&plan.path);
                self.helm_template(app, p, chart_dir, &repo_dir, &plan.path, work.path())
                    .await
            }
            SourceKind::Plugin => {
                let work = self.tempdir()?;
                let repo_dir = work.path().join("repo");
                self.checkout(r, plan.checkout.clone(), repo_dir.clone())
                    .await?;
                let cfg = plugin::select(&self.settings, p.source.plugin.as_ref())?;
                let ctx = plugin::PluginContext {
                    app_name: &app.metadata.name,
                    app_namespace: app.spec.destination.namespace.as_deref().unwrap_or(""),
                    revision: &r.commit,
                    source_path: &plan.path,
                    repo_url: &p.source.repo_url,
                    target_revision: p.source.target_revision.as_deref().unwrap_or(""),
                };
                let env = plugin::environment(&ctx, p.source.plugin.as_ref());
                let home = work.path().join("home");
                std::fs::create_dir_all(&home).map_err(io_err("create plugin home"))?;
                let cwd = repo_dir.join(&plan.path);
                std::fs::create_dir_all(&cwd).map_err(io_err("create plugin directory"))?;
                plugin::generate(&self.settings, cfg, &cwd, &home, &env).await
            }
        }
    }

    async fn render_directory(
        &self,
        r: &Resolved,
        p: &Planned<'_>,
        plan: &SourcePlan,
    ) -> Result<Vec<Manifest>, RenderError> {
        let needs_checkout = !plan.checkout.is_empty();
        let work = if needs_checkout {
            Some(self.tempdir()?)
        } else {
            None
        };
        let repo_dir = work.as_ref().map(|w| w.path().join("repo"));
        let (commit, files, path) = (r.commit.clone(), plan.files.clone(), plan.path.clone());
        let checkout = plan.checkout.clone();
        let jsonnet_opts = p.source.directory.as_ref().and_then(|d| d.jsonnet.clone());
        let dir_for_task = repo_dir.clone();
        self.sources
            .with_repo(&r.url, move |repo| {
                let run = || -> Result<Vec<Manifest>, RenderError> {
                    if let Some(dest) = &dir_for_task {
                        checkout_paths(repo, &commit, &checkout, dest)?;
                    }
                    let mut out = Vec::new();
                    for f in &files {
                        if f.rel_path.ends_with(".jsonnet") {
                            let Some(dest) = &dir_for_task else { continue };
                            let base = dest.join(&path);
                            let mut jpaths = vec![base.clone()];
                            if let Some(j) = &jsonnet_opts {
                                for lib in &j.libs {
                                    jpaths.push(dest.join(join_repo_path("", lib)?));
                                }
                            }
                            let shown = join_repo_path(&path, &f.rel_path)?;
                            out.extend(jsonnet::evaluate_file(
                                &base.join(&f.rel_path),
                                jpaths,
                                jsonnet_opts.as_ref(),
                                &shown,
                            )?);
                        } else {
                            out.extend(directory::parse_files(
                                repo,
                                &path,
                                std::slice::from_ref(f),
                            )?);
                        }
                    }
                    Ok(out)
                };
                run()
            })
            .await
    }

    async fn kustomize_build(&self, dir: &Path, work: &Path) -> Result<Vec<Manifest>, RenderError> {
        let tool = self
            .settings
            .kustomize
            .as_ref()
            .ok_or_else(|| RenderError::ToolMissing {
                tool: "kustomize".into(),
                hint: "install kustomize or kubectl, or set FLOTILLA_KUSTOMIZE".into(),
            })?;
        let home = work.join("home");
        std::fs::create_dir_all(&home).map_err(io_err("create kustomize home"))?;
        let (program, sub) = match tool {
            KustomizeTool::Kustomize(p) => (p, "build"),
            KustomizeTool::Kubectl(p) => (p, "kustomize"),
        };
        let mut run = ToolRun::new(
            program,
            dir,
            &home,
            &self.settings.tool_path,
            format!("kustomize build {}", dir.display()),
        );
        run.arg(sub).arg(".").env("KUBECONFIG", "/dev/null");
        run.timeout = self.settings.tool_timeout;
        run.limit = self.settings.max_output_bytes;
        let out = run.run().await?;
        let text = String::from_utf8(out).map_err(|_| RenderError::Parse {
            what: "kustomize build".into(),
            message: "output is not UTF-8".into(),
        })?;
        parse_manifests("kustomize build", &text)
    }

    async fn render_helm_repo(
        &self,
        app: &Application,
        p: &Planned<'_>,
    ) -> Result<Vec<Manifest>, RenderError> {
        let chart = p.source.chart.as_deref().unwrap_or("");
        let work = self.tempdir()?;
        let creds = self.sources.credentials();
        let cred = creds.for_repo(&p.source.repo_url);
        let pass = p.source.helm.as_ref().is_some_and(|h| h.pass_credentials);
        let version = p.source.target_revision.as_deref().unwrap_or("");
        let chart_dir = helm::pull(
            &self.settings,
            work.path(),
            &p.source.repo_url,
            chart,
            version,
            cred,
            pass,
        )
        .await?;
        let base = chart_dir.clone();
        self.helm_template(app, p, chart_dir, &base, "", work.path())
            .await
    }

    /// `repo_dir` is where repository path `chart_path` of `chart_dir` is rooted.
    async fn helm_template(
        &self,
        app: &Application,
        p: &Planned<'_>,
        chart_dir: PathBuf,
        repo_dir: &Path,
        chart_path: &str,
        work: &Path,
    ) -> Result<Vec<Manifest>, RenderError> {
        let opts = p.source.helm.as_ref();
        let ignore_missing = opts.is_some_and(|h| h.ignore_missing_value_files);
        let mut value_files = Vec::new();
        for (i, vf) in opts.iter().flat_map(|h| h.value_files.iter()).enumerate() {
            let field = format!("{}.helm.valueFiles[{i}]", p.field);
            if vf.contains("://") {
                value_files.push(vf.clone());
                continue;
            }
            let local = if vf.starts_with('$') {
                let Some((_, r, file)) = p.ref_files.iter().find(|(w, _, _)| w == vf) else {
                    continue;
                };
                let dest = work.join("refs").join(
                    vf.trim_start_matches('$')
                        .split('/')
                        .next()
                        .unwrap_or("ref"),
                );
                let (commit, f, d) = (r.commit.clone(), file.clone(), dest.clone());
                let exists = self
                    .sources
                    .with_repo(&r.url, move |repo| {
                        let root = tree::commit_tree(repo, &commit)?;
                        match tree::lookup(repo, &root, &f)? {
                            Some(Node::Blob(..)) => {
                                tree::checkout(repo, &root, &f, &d)?;
                                Ok::<_, RenderError>(true)
                            }
                            _ => Ok(false),
                        }
                    })
                    .await?;
                exists.then(|| dest.join(file))
            } else {
                let rp = join_repo_path(chart_path, vf).map_err(|e| RenderError::Invalid {
                    path: field.clone(),
                    message: e.to_string(),
                })?;
                let full = repo_dir.join(&rp);
                full.is_file().then_some(full)
            };
            match local {
                Some(f) => value_files.push(f.to_string_lossy().into_owned()),
                None if ignore_missing => {}
                None => {
                    return Err(RenderError::Invalid {
                        path: field,
                        message: format!("value file {vf:?} not found"),
                    })
                }
            }
        }
        let mut set_files = Vec::new();
        for (i, fp) in opts
            .iter()
            .flat_map(|h| h.file_parameters.iter())
            .enumerate()
        {
            let rp = join_repo_path(chart_path, &fp.path).map_err(|e| RenderError::Invalid {
                path: format!("{}.helm.fileParameters[{i}]", p.field),
                message: e.to_string(),
            })?;
            let full = repo_dir.join(&rp);
            if !full.is_file() {
                return Err(RenderError::Invalid {
                    path: format!("{}.helm.fileParameters[{i}]", p.field),
                    message: format!("file {:?} not found", fp.path),
                });
            }
            set_files.push((fp.name.clone(), full));
        }
        let release = opts
            .and_then(|h| h.release_name.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| app.metadata.name.clone());
        let namespace = opts
            .and_then(|h| h.namespace.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| app.spec.destination.namespace.clone());
        let job = helm::HelmJob {
            chart_dir,
            release,
            namespace,
            opts,
            value_files,
            set_files,
            work,
        };
        helm::template(&self.settings, &job).await
    }
}
