//! Leader: Application manifests from an apps directory and/or a Git path (app of apps),
//! stored as apps of origin `directory` and read again every `poll`.
//!
//! Every `*.yaml`, `*.yml` and `*.json` file of the directory (not its subdirectories) is
//! read, each YAML document of it on its own; documents of other kinds are ignored. A bad
//! document is logged with its file and position and the others are still ingested; while
//! any source or document is unreadable, apps are added and updated but none is deleted, so
//! a typo cannot make the controller prune a whole app.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use flotilla_raft::{Command, Json};

use super::{
    canonical, now_ms, origin, origin_of, propose_all, stored_value, with_origin, AppsRepo, Ctx,
    IngestError,
};
use crate::model::Application;
use crate::source::{redact_url, tree, Freshness, SourceError};
use crate::status::{app_key, stored_app};

/// Ingest the apps directory and repository every `poll` until `cancel` fires.
pub(crate) async fn run(ctx: Ctx, cancel: CancellationToken) {
    loop {
        if let Err(e) = ingest_once(&ctx).await {
            tracing::warn!(error = %e, "ingesting the apps directory");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(ctx.settings.poll) => {}
        }
    }
}

/// Files read from one source: `(label for errors, text)`.
type Files = Vec<(String, String)>;

/// The apps of a set of manifest files, by store key; `complete` is false when some
/// document could not be read.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    /// Stored documents (with the `directory` origin) by `namespace/name`.
    pub apps: BTreeMap<String, Value>,
    /// Whether every file and document was read.
    pub complete: bool,
}

fn is_manifest(name: &str) -> bool {
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

fn read_dir(path: &std::path::Path) -> Result<Files, IngestError> {
    let io = |source| IngestError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut names: Vec<std::path::PathBuf> = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let p = entry.map_err(io)?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.is_file() && is_manifest(name) {
            names.push(p);
        }
    }
    names.sort();
    let mut files = Vec::new();
    for p in names {
        let text = std::fs::read_to_string(&p).map_err(|source| IngestError::Io {
            path: p.display().to_string(),
            source,
        })?;
        files.push((p.display().to_string(), text));
    }
    Ok(files)
}

async fn read_repo(ctx: &Ctx, repo: &AppsRepo) -> Result<Files, IngestError> {
    let resolved = ctx
        .sources
        .resolve(&repo.url, &repo.revision, Freshness::Fetch)
        .await?;
    let commit = resolved.commit.clone();
    let label = format!(
        "{}@{}",
        redact_url(&repo.url),
        &commit[..commit.len().min(12)]
    );
    let dir = repo.path.trim_matches('/').to_string();
    let dir = if dir.is_empty() { ".".to_string() } else { dir };
    let files = ctx
        .sources
        .with_repo(&repo.url, move |r| -> Result<Files, SourceError> {
            let root = tree::commit_tree(r, &commit)?;
            let mut out = Vec::new();
            for f in tree::list_files(r, &root, &dir, false)? {
                if !is_manifest(&f.rel_path) {
                    continue;
                }
                let path = format!("{dir}/{}", f.rel_path);
                let bytes = tree::read_blob(r, f.blob, &path)?;
                out.push((
                    format!("{label}:{path}"),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
            Ok(out)
        })
        .await?;
    Ok(files)
}

/// Read the Applications of manifest files; bad documents are logged and skipped.
pub(crate) fn collect(files: &[(String, String)], default_namespace: &str) -> Collected {
    let mut out = Collected {
        apps: BTreeMap::new(),
        complete: true,
    };
    for (file, text) in files {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let what = format!("{file} (document {})", i + 1);
            let value = match serde_yaml::Value::deserialize(doc) {
                Ok(v) => v,
                Err(e) => {
                    // A syntax error ends the stream: the parser would repeat it forever.
                    metrics::counter!("flotilla_ingest_invalid_total", "kind" => "manifest")
                        .increment(1);
                    tracing::error!(file = %what, error = %e,
                        "bad Application manifest: cannot parse; the rest of the file is skipped");
                    out.complete = false;
                    break;
                }
            };
            match read_document(&what, value, default_namespace) {
                Ok(Some((key, v))) => {
                    if out.apps.insert(key.clone(), v).is_some() {
                        tracing::warn!(app = %key, file = %what, "Application defined twice; the last one wins");
                    }
                }
                Ok(None) => {}
                Err(message) => {
                    metrics::counter!("flotilla_ingest_invalid_total", "kind" => "manifest")
                        .increment(1);
                    tracing::error!(file = %what, error = %message, "bad Application manifest; skipped");
                    out.complete = false;
                }
            }
        }
    }
    out
}

/// One document: `Ok(None)` for empty documents and other kinds.
fn read_document(
    what: &str,
    value: serde_yaml::Value,
    default_namespace: &str,
) -> Result<Option<(String, Value)>, String> {
    if value.is_null() {
        return Ok(None);
    }
    let mut v: Value = serde_json::to_value(&value).map_err(|e| format!("not JSON-shaped: {e}"))?;
    if v.get("kind").and_then(Value::as_str) != Some("Application") {
        tracing::debug!(file = %what, "not an Application; ignored");
        return Ok(None);
    }
    let meta = v
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("metadata is missing")?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is missing")?
        .to_string();
    let ns = meta
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(default_namespace)
        .to_string();
    meta.insert("namespace".into(), Value::String(ns.clone()));
    let doc = canonical(with_origin(stored_app(&v), origin::DIRECTORY));
    let app = Application::from_yaml(what, &doc.to_string()).map_err(|e| e.to_string())?;
    if let Err(e) = app.validate() {
        // Stored anyway: the owner reports it as a condition on the app.
        tracing::warn!(file = %what, error = %e, "invalid Application spec");
    }
    Ok(Some((app_key(&ns, &name), doc)))
}

/// The commands that make the store's `directory` apps equal to `found`.
pub(crate) fn directory_commands(
    found: &Collected,
    stored: &[flotilla_raft::AppRecord],
) -> Vec<Command> {
    let by_key: BTreeMap<&str, &flotilla_raft::AppRecord> =
        stored.iter().map(|r| (r.app.as_str(), r)).collect();
    let mut commands = Vec::new();
    for (key, doc) in &found.apps {
        if let Some(r) = by_key.get(key.as_str()) {
            let value = stored_value(&r.spec);
            let theirs = origin_of(&value);
            if theirs != Some(origin::DIRECTORY) {
                tracing::warn!(app = %key, origin = ?theirs,
                    "a manifest has the key of an app of another origin; ignored");
                continue;
            }
            if value == *doc {
                continue;
            }
        }
        commands.push(Command::PutApp {
            app: key.clone(),
            spec: Json::from(doc.clone()),
            at: now_ms(),
        });
    }
    if found.complete {
        for r in stored {
            let ours = origin_of(&stored_value(&r.spec)) == Some(origin::DIRECTORY);
            if ours && !found.apps.contains_key(&r.app) {
                commands.push(Command::DeleteApp { app: r.app.clone() });
            }
        }
    }
    commands
}

async fn ingest_once(ctx: &Ctx) -> Result<(), IngestError> {
    let mut files = Vec::new();
    let mut complete = true;
    if let Some(dir) = &ctx.settings.apps_dir {
        let dir = dir.clone();
        match tokio::task::spawn_blocking(move || read_dir(&dir)).await {
            Ok(Ok(f)) => files.extend(f),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the apps directory");
                complete = false;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the apps directory");
                complete = false;
            }
        }
    }
    if let Some(repo) = &ctx.settings.apps_repo {
        match read_repo(ctx, repo).await {
            Ok(f) => files.extend(f),
            Err(e) => {
                tracing::error!(url = %redact_url(&repo.url), path = %repo.path, error = %e,
                    "cannot read the apps repository");
                complete = false;
            }
        }
    }
    let mut found = collect(&files, ctx.settings.default_namespace());
    found.complete &= complete;
    let commands = directory_commands(&found, &ctx.store.local().apps()?);
    if !commands.is_empty() {
        tracing::info!(
            apps = found.apps.len(),
            changes = commands.len(),
            "ingested the apps directory"
        );
    }
    propose_all(&ctx.store, commands).await
}
