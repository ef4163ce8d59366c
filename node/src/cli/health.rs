//! `flotilla health FILE...`: the health of every object in YAML files.
//!
//! `List` kinds are flattened. The table has KIND, NAMESPACE, NAME, STATUS and MESSAGE
//! columns; an object without a health of its own (a ConfigMap) shows `-` as its status.
//! `-o json` prints a JSON array of `{kind, namespace, name, status, message}`, with
//! `status: null` for objects without a health. Custom Lua checks come from
//! `--customizations DIR` (`<group>/<kind>/health.lua`) and `--argocd-cm FILE`.

use crate::health::{assess, lua::Customizations};
use crate::render::parse_manifests;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;

/// Output formats of `flotilla health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HealthOutput {
    /// An aligned table.
    Table,
    /// A JSON array.
    Json,
}

/// Arguments of `flotilla health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// YAML or JSON files with Kubernetes objects.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// A directory of custom health checks laid out as `<group>/<kind>/health.lua`.
    #[arg(long)]
    pub customizations: Option<PathBuf>,
    /// An `argocd-cm` ConfigMap with `resource.customizations.health.*` keys.
    #[arg(long = "argocd-cm")]
    pub argocd_cm: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = HealthOutput::Table)]
    pub output: HealthOutput,
}

/// One row of the output.
#[derive(Debug, Clone, Serialize)]
pub struct HealthRow {
    /// Kind.
    pub kind: String,
    /// Namespace (empty for none).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Health status, or null for objects without a health.
    pub status: Option<String>,
    /// Message.
    pub message: String,
}

/// Load the custom checks the arguments name.
pub fn load_customizations(
    dir: Option<&PathBuf>,
    cm: Option<&PathBuf>,
) -> anyhow::Result<Customizations> {
    let mut c = Customizations::none();
    if let Some(d) = dir {
        c.load_dir(d)
            .with_context(|| format!("loading health checks from {}", d.display()))?;
    }
    if let Some(f) = cm {
        c.load_argocd_cm(f)
            .with_context(|| format!("loading health checks from {}", f.display()))?;
    }
    Ok(c)
}

/// Assess every object of the files.
pub fn rows(args: &HealthArgs) -> anyhow::Result<Vec<HealthRow>> {
    let custom = load_customizations(args.customizations.as_ref(), args.argocd_cm.as_ref())?;
    let mut out = Vec::new();
    for f in &args.files {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        for m in parse_manifests(&f.display().to_string(), &text)? {
            let h = assess(&m.object, &custom);
            out.push(HealthRow {
                kind: m.kind().to_string(),
                namespace: m.namespace().to_string(),
                name: m.name().to_string(),
                status: h.as_ref().map(|h| h.status.to_string()),
                message: h.map(|h| h.message).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Run `flotilla health`, writing to `out`.
pub fn run(args: &HealthArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let rows = rows(args)?;
    match args.output {
        HealthOutput::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
        HealthOutput::Table => {
            let cells: Vec<[String; 5]> = rows
                .iter()
                .map(|r| {
                    [
                        r.kind.clone(),
                        r.namespace.clone(),
                        r.name.clone(),
                        r.status.clone().unwrap_or_else(|| "-".into()),
                        r.message.clone(),
                    ]
                })
                .collect();
            write_table(
                out,
                ["KIND", "NAMESPACE", "NAME", "STATUS", "MESSAGE"],
                &cells,
            )?;
        }
    }
    Ok(())
}

/// Write an aligned table with a header.
pub fn write_table<const N: usize>(
    out: &mut impl std::io::Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut width = header.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
