//! `flotilla diff APP.yaml` and `flotilla sync APP.yaml`: compare an Application's rendered
//! objects with its destination cluster, and sync them once, without a controller cluster.
//!
//! The destination comes from `--kubeconfig` (its current context, or `--context`), or from
//! cluster Secrets in `--secrets` files matched by the Application's destination `server`
//! or `name`. `diff` prints a unified diff per out-of-sync resource and exits 1 when out of
//! sync, 0 when in sync, 2 on error. `sync` prints one line per resource and exits 0 when
//! the operation succeeded, 1 when it failed, 2 on error.

use crate::clusters::{limit::Limits, Cluster, ClusterRegistry};
use crate::diff::{DiffOptions, Drift, IgnoreRule};
use crate::live::{compare_app, Tracking};
use crate::model::{Application, Credentials};
use crate::render::{RenderSettings, Renderer};
use crate::source::{Freshness, SourceCache, SourceConfig};
use crate::sync::executor::{sync_app, SyncContext, SyncRequest};
use crate::sync::options::{parse_duration, Retry, SyncOptions};
use anyhow::Context as _;
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the destination cluster and the Git credentials come from.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The Application manifest (YAML or JSON).
    pub app: PathBuf,
    /// A kubeconfig file for the destination cluster.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Files with cluster and repository Secrets, as YAML streams.
    #[arg(long)]
    pub secrets: Vec<PathBuf>,
    /// Directory for Git mirrors (kept between runs).
    #[arg(long, env = "FLOTILLA_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Track managed objects with the `argocd.argoproj.io/tracking-id` annotation instead
    /// of the `app.kubernetes.io/instance` label.
    #[arg(long)]
    pub annotation_tracking: bool,
    /// An `argocd-cm` ConfigMap: its system-level `ignoreDifferences` apply with the app's
    /// own, and (for `sync`) its `resource.customizations.health.*` checks are used.
    #[arg(long = "argocd-cm")]
    pub argocd_cm: Option<PathBuf>,
}

/// Arguments of `flotilla diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Application and destination.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Arguments of `flotilla sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Application and destination.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Send every write with `dryRun=All`: nothing is persisted.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete tracked objects that are no longer desired.
    #[arg(long)]
    pub prune: bool,
    /// How long one sync step may take to become healthy, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Print the operation record as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A directory of custom health checks (`<group>/<kind>/health.lua`) used while waiting.
    #[arg(long)]
    pub customizations: Option<PathBuf>,
}

/// A loaded target: the app, its rendered objects and its cluster.
struct Loaded {
    app: Application,
    desired: Vec<Value>,
    revision: String,
    cluster: Arc<Cluster>,
    tracking: Tracking,
}

async fn load(t: &TargetArgs) -> anyhow::Result<Loaded> {
    let text =
        std::fs::read_to_string(&t.app).with_context(|| format!("read {}", t.app.display()))?;
    let app = Application::from_yaml(&t.app.display().to_string(), &text)?;
    let mut creds = Credentials::default();
    for f in &t.secrets {
        let s = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        creds
            .add_yaml(&s)
            .with_context(|| format!("in {}", f.display()))?;
    }
    let registry = ClusterRegistry::new();
    for c in &creds.clusters {
        registry.add_secret(c, Limits::default()).await?;
    }
    let cluster = if let Some(k) = &t.kubeconfig {
        let yaml = std::fs::read_to_string(k).with_context(|| format!("read {}", k.display()))?;
        registry
            .add_kubeconfig(&yaml, t.context.as_deref(), Limits::default())
            .await?
    } else {
        registry.resolve(&app.spec.destination)?
    };
    let cache_dir = t
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("flotilla-repos"));
    let mut config = SourceConfig::new(cache_dir);
    config.credentials = creds;
    config.allow_local = true;
    let renderer = Renderer::new(
        Arc::new(SourceCache::new(config)?),
        RenderSettings::discover(),
    )?;
    let rendered = renderer.render(&app, Freshness::Fetch).await?;
    let desired = rendered.objects();
    let revision = rendered.revision();
    let tracking = if t.annotation_tracking {
        Tracking::Annotation
    } else {
        Tracking::Label
    };
    Ok(Loaded {
        app,
        desired,
        revision,
        cluster,
        tracking,
    })
}

/// The diff options of an Application: its `ignoreDifferences`, then the system-level
/// ones of an `argocd-cm` ConfigMap file, if given.
pub fn diff_options(
    app: &Application,
    argocd_cm: Option<&std::path::Path>,
) -> anyhow::Result<DiffOptions> {
    let mut opts = DiffOptions::default();
    for r in &app.spec.ignore_differences {
        let rule = IgnoreRule::from(r);
        rule.validate()?;
        opts.ignore.push(rule);
    }
    if let Some(path) = argocd_cm {
        opts.ignore
            .extend(crate::diff::global::load_argocd_cm(path)?);
    }
    Ok(opts)
}

/// The sync options and retry policy of an Application.
pub fn sync_settings(app: &Application) -> anyhow::Result<(SyncOptions, Option<Retry>)> {
    let policy = app.spec.sync_policy.as_ref();
    let entries = policy.map(|p| p.sync_options.clone()).unwrap_or_default();
    let (options, unknown) = SyncOptions::default().with(entries.iter().map(String::as_str));
    for u in unknown {
        tracing::warn!("unknown sync option {u:?}");
    }
    let retry = match policy.and_then(|p| p.retry.as_ref()) {
        None => None,
        Some(r) => {
            let mut out = Retry::default();
            if let Some(l) = r.limit {
                out.limit = l;
            }
            if let Some(b) = &r.backoff {
                if let Some(d) = &b.duration {
                    out.duration = parse_duration("retry.backoff.duration", d)?;
                }
                if let Some(f) = b.factor {
                    out.factor = f as f64;
                }
                if let Some(m) = &b.max_duration {
                    out.max_duration = parse_duration("retry.backoff.maxDuration", m)?;
                }
            }
            Some(out)
        }
    };
    Ok((options, retry))
}

fn namespace(app: &Application) -> String {
    app.spec.destination.namespace.clone().unwrap_or_default()
}

/// Run `flotilla diff`; returns whether the app is in sync.
pub async fn run_diff(args: &DiffArgs, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    let l = load(&args.target).await?;
    let opts = diff_options(&l.app, args.target.argocd_cm.as_deref())?;
    let cmp = compare_app(
        &l.cluster,
        &l.app.metadata.name,
        &l.desired,
        &namespace(&l.app),
        l.tracking,
        &opts,
        None,
    )
    .await?;
    for d in &cmp.diffs {
        let what = match d.drift {
            Drift::None => continue,
            Drift::Missing => "missing from the cluster",
            Drift::Extra => "no longer desired (prune)",
            Drift::Changed => "changed",
        };
        writeln!(out, "===== {} ({what})", d.key)?;
        out.write_all(d.unified.as_bytes())?;
    }
    Ok(cmp.in_sync())
}

/// Run `flotilla sync`; returns whether the operation succeeded.
pub async fn run_sync(args: &SyncArgs, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    let l = load(&args.target).await?;
    let diff = diff_options(&l.app, args.target.argocd_cm.as_deref())?;
    let (options, retry) = sync_settings(&l.app)?;
    let ns = namespace(&l.app);
    let custom = super::health::load_customizations(
        args.customizations.as_ref(),
        args.target.argocd_cm.as_ref(),
    )?;
    let ctx = SyncContext {
        cluster: &l.cluster,
        app: &l.app.metadata.name,
        namespace: &ns,
        tracking: l.tracking,
        customizations: &custom,
        dry_run: args.dry_run,
        create_namespace: options.create_namespace,
        namespace_metadata: l
            .app
            .spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.managed_namespace_metadata.as_ref()),
        revision: &l.revision,
        step_timeout: Duration::from_secs(args.timeout),
        poll_interval: Duration::from_millis(500),
        retry,
        ignore: &diff.ignore,
        cancel: None,
        gate: None,
    };
    let request = SyncRequest {
        prune: args.prune,
        selection: None,
        options,
    };
    let (op, _) = sync_app(&ctx, &l.desired, &request, &diff).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&op)?)?;
    } else {
        let rows: Vec<[String; 6]> = op
            .resources
            .iter()
            .map(|r| {
                [
                    r.sync_phase.clone(),
                    r.kind.clone(),
                    r.namespace.clone(),
                    r.name.clone(),
                    format!("{:?}", r.status),
                    r.message.clone(),
                ]
            })
            .collect();
        super::health::write_table(
            out,
            ["PHASE", "KIND", "NAMESPACE", "NAME", "STATUS", "MESSAGE"],
            &rows,
        )?;
        writeln!(out, "{:?}: {}", op.phase, op.message)?;
    }
    Ok(op.succeeded())
}
