//! `flotilla render APP.yaml`: render an Application locally and print its objects.
//!
//! Objects are printed in a stable order: sorted by API group, kind, namespace and name
//! (objects that tie keep the tools' order). `-o yaml` prints one YAML document per object
//! (separated by `---`); `-o json` prints one JSON object per line. Unknown Application
//! fields are reported on stderr as warnings; errors go to stderr with exit status 1.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::model::{Application, Credentials};
use crate::render::{sort_manifests, PluginConfig, RenderSettings, Renderer};
use crate::source::{Freshness, KnownHosts, SourceCache, SourceConfig};

/// Output formats of `flotilla render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// YAML documents separated by `---`.
    Yaml,
    /// One JSON object per line.
    Json,
}

/// Arguments of `flotilla render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The Application manifest (YAML or JSON).
    pub app: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// Files with repository, repo-creds (and cluster) Secrets, as YAML streams.
    #[arg(long = "secrets", visible_alias = "repo-creds")]
    pub secrets: Vec<PathBuf>,
    /// SSH known_hosts file for SSH repository URLs.
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// YAML list of config management plugins (`name`, `generate`, optional `init`).
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Directory for Git mirrors (kept between runs).
    #[arg(long, env = "FLOTILLA_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("flotilla")
        .join("repos")
}

/// Run `flotilla render`, writing the objects to `out`.
pub async fn run(args: &RenderArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.app)
        .with_context(|| format!("read {}", args.app.display()))?;
    let app = Application::from_yaml(&args.app.display().to_string(), &text)?;
    for w in app.unknown_fields() {
        tracing::warn!("{}: {w}", args.app.display());
    }
    let mut creds = Credentials::default();
    for f in &args.secrets {
        let t = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        creds
            .add_yaml(&t)
            .with_context(|| format!("in {}", f.display()))?;
    }
    let mut config = SourceConfig::new(args.cache_dir.clone().unwrap_or_else(default_cache_dir));
    config.credentials = creds;
    config.allow_local = true;
    if let Some(k) = &args.known_hosts {
        let t = std::fs::read_to_string(k).with_context(|| format!("read {}", k.display()))?;
        config.known_hosts = Some(KnownHosts::parse(&t));
    }
    let mut settings = RenderSettings::discover();
    if let Some(p) = &args.plugins {
        let t = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        settings.plugins = serde_yaml::from_str::<Vec<PluginConfig>>(&t)
            .with_context(|| format!("parse plugins in {}", p.display()))?;
    }
    let sources = Arc::new(SourceCache::new(config)?);
    let renderer = Renderer::new(sources, settings)?;
    let rendered = renderer.render(&app, Freshness::Fetch).await?;
    let mut manifests = rendered.manifests.as_ref().clone();
    sort_manifests(&mut manifests);
    for m in &manifests {
        match args.output {
            OutputFormat::Yaml => {
                writeln!(out, "---")?;
                out.write_all(serde_yaml::to_string(&m.object)?.as_bytes())?;
            }
            OutputFormat::Json => {
                writeln!(out, "{}", serde_json::to_string(&m.object)?)?;
            }
        }
    }
    Ok(())
}
