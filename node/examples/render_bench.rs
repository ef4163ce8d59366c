//! Render throughput benchmark: N plain-directory apps and N Kustomize apps from one Git
//! repository, cold (empty mirror and render cache) and warm (cache filled), plus a warm
//! pass after a commit that touches one app.
//!
//! Run: `cargo run --release -p flotilla-node --example render_bench -- 1000`
//! (needs `git` and `kubectl` or `kustomize` on PATH).
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use flotilla_node::model::Application;
use flotilla_node::render::{RenderSettings, Renderer};
use flotilla_node::source::{Freshness, SourceCache, SourceConfig};

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .context("run git")?;
    if !st.success() {
        bail!("git {args:?} failed");
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().context("parent")?)?;
    std::fs::write(path, text)?;
    Ok(())
}

fn make_repo(dir: &Path, n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    git(dir, &["init", "-q", "-b", "main"])?;
    for i in 0..n {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  index: \"{i}\"\n"
        );
        let deploy = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web-{i}}}\n  template:\n    metadata:\n      labels: {{app: web-{i}}}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n");
        write(&dir.join(format!("dir/app-{i}/cm.yaml")), &cm)?;
        write(&dir.join(format!("dir/app-{i}/deploy.yaml")), &deploy)?;
        write(&dir.join(format!("kust/app-{i}/cm.yaml")), &cm)?;
        write(&dir.join(format!("kust/app-{i}/deploy.yaml")), &deploy)?;
        write(
            &dir.join(format!("kust/app-{i}/kustomization.yaml")),
            "resources:\n- cm.yaml\n- deploy.yaml\ncommonLabels:\n  team: bench\n",
        )?;
    }
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "apps"])?;
    Ok(())
}

fn app(name: &str, url: &str, path: &str) -> anyhow::Result<Application> {
    let yaml = format!("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\nspec:\n  project: default\n  destination: {{server: 'https://kubernetes.default.svc', namespace: bench}}\n  source:\n    repoURL: {url}\n    path: {path}\n");
    Ok(Application::from_yaml(name, &yaml)?)
}

/// Render every app concurrently; returns (seconds, renders run, objects).
async fn pass(r: &Arc<Renderer>, apps: &[Application]) -> anyhow::Result<(f64, u64, usize)> {
    let before = r.render_count();
    let start = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for a in apps {
        let (a, r, limit) = (a.clone(), r.clone(), limit.clone());
        set.spawn(async move {
            let _p = limit.acquire_owned().await?;
            let out = r.render(&a, Freshness::Cached).await?;
            anyhow::Ok(out.manifests.len())
        });
    }
    let mut objects = 0;
    while let Some(res) = set.join_next().await {
        objects += res??;
    }
    Ok((
        start.elapsed().as_secs_f64(),
        r.render_count() - before,
        objects,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1000);
    let tmp = tempfile::tempdir()?;
    let repo = tmp.path().join("repo");
    let t = Instant::now();
    make_repo(&repo, n)?;
    eprintln!(
        "created repository with {n} directory and {n} Kustomize apps in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let url = repo.to_string_lossy().into_owned();
    println!("| apps | kind | pass | seconds | apps/s | renders run |");
    println!("|---|---|---|---|---|---|");
    for (kind, dir) in [("directory", "dir"), ("kustomize", "kust")] {
        let apps = (0..n)
            .map(|i| app(&format!("{dir}-{i}"), &url, &format!("{dir}/app-{i}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut config = SourceConfig::new(tmp.path().join(format!("mirrors-{dir}")));
        config.allow_local = true;
        let sources = Arc::new(SourceCache::new(config)?);
        let mut settings = RenderSettings::discover();
        if let Ok(p) = std::env::var("PATH") {
            settings.tool_path = p;
        }
        let r = Arc::new(Renderer::new(sources.clone(), settings)?);
        let t = Instant::now();
        sources.fetch(&url).await?;
        let fetch = t.elapsed().as_secs_f64();
        let (cold, runs, objects) = pass(&r, &apps).await?;
        let cold = cold + fetch;
        println!(
            "| {n} | {kind} | cold (clone + render) | {cold:.2} | {:.0} | {runs} |",
            n as f64 / cold
        );
        let (warm, runs, _) = pass(&r, &apps).await?;
        println!(
            "| {n} | {kind} | warm (cache hits) | {warm:.2} | {:.0} | {runs} |",
            n as f64 / warm
        );
        write(
            &repo.join(format!("{dir}/app-7/cm.yaml")),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: changed\n",
        )?;
        git(&repo, &["commit", "-q", "-am", "touch one app"])?;
        let t = Instant::now();
        sources.fetch(&url).await?;
        let (_, runs, _) = pass(&r, &apps).await?;
        let after = t.elapsed().as_secs_f64();
        println!("| {n} | {kind} | new commit touching 1 app (fetch + render) | {after:.2} | {:.0} | {runs} |", n as f64 / after);
        eprintln!("{kind}: {objects} objects per full render");
    }
    Ok(())
}
