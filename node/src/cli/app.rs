//! `flotilla app …`: applications on a running flotilla cluster, through a node's API.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Args, Subcommand};
use flotilla_proto::v1 as pb;
use serde_json::{json, Value};

use super::remote::{or_none, parse_json, print_doc, rpc, str_at, table, Output, RemoteArgs};
use crate::api::app_key_of;
use crate::api::client::ApiClient;

/// `flotilla app`.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// Node and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: AppCommand,
}

/// Subcommands of `flotilla app`. Applications are named `namespace/name`, or `name` in
/// the `argocd` namespace.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// List applications.
    List {
        /// Only applications of this project.
        #[arg(short = 'p', long)]
        project: Option<String>,
        /// Only applications in this namespace.
        #[arg(short = 'N', long = "app-namespace")]
        namespace: Option<String>,
        /// Only applications matching this label selector (`k=v,k!=v,k,!k`).
        #[arg(short = 'l', long)]
        selector: Option<String>,
    },
    /// Show an application, its status and its resources.
    Get {
        /// The application.
        name: String,
    },
    /// Ask for a sync operation; prints its id.
    Sync {
        /// The application.
        name: String,
        /// Delete tracked objects that are no longer desired.
        #[arg(long)]
        prune: bool,
        /// Send every write with `dryRun=All`.
        #[arg(long)]
        dry_run: bool,
        /// Sync this revision instead of the target.
        #[arg(long)]
        revision: Option<String>,
        /// Sync only this resource, `GROUP:KIND:NAME` or `GROUP:KIND:NAMESPACE/NAME`
        /// (repeatable; empty group for the core group).
        #[arg(long = "resource")]
        resources: Vec<String>,
    },
    /// Ask the owner to reconcile the application now.
    Refresh {
        /// The application.
        name: String,
        /// Re-render even when the inputs look unchanged.
        #[arg(long)]
        hard: bool,
    },
    /// Compare the rendered application with its cluster (exit 1 when out of sync).
    Diff {
        /// The application.
        name: String,
    },
    /// Print the rendered objects.
    Manifests {
        /// The application.
        name: String,
    },
    /// List the deployed revisions.
    History {
        /// The application.
        name: String,
    },
    /// Sync the application to a history entry.
    Rollback {
        /// The application.
        name: String,
        /// The history entry's id.
        id: u64,
        /// Delete tracked objects that are no longer desired.
        #[arg(long)]
        prune: bool,
        /// Send every write with `dryRun=All`.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete an application.
    Delete {
        /// The application.
        name: String,
        /// Delete its resources too (`--cascade=false` keeps them).
        #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
              default_missing_value = "true", require_equals = true)]
        cascade: bool,
    },
    /// Wait until the application is Synced, Healthy and has no requested or running
    /// operation (or only what the flags name); exit 1 with the last status on timeout.
    Wait {
        /// The application.
        name: String,
        /// How long to wait (`300`, `300s`, `5m`).
        #[arg(long, default_value = "300s")]
        timeout: String,
        /// Wait for Synced.
        #[arg(long)]
        sync: bool,
        /// Wait for Healthy.
        #[arg(long)]
        health: bool,
        /// Wait until no operation is requested or running.
        #[arg(long)]
        operation: bool,
    },
}

/// Run `flotilla app …`; `Ok(false)` means out of sync (diff) or timed out (wait).
pub async fn run(args: &AppArgs, out: &mut dyn Write) -> anyhow::Result<bool> {
    let r = &args.remote;
    let client = r.client()?;
    let mut grpc = client.grpc();
    let err = rpc(&client);
    let key = |name: &str| app_key_of(name).map_err(anyhow::Error::msg);
    match &args.command {
        AppCommand::List {
            project,
            namespace,
            selector,
        } => {
            let resp = grpc
                .list_apps(pb::ListAppsRequest {
                    project: project.clone().unwrap_or_default(),
                    namespace: namespace.clone().unwrap_or_default(),
                    selector: selector.clone().unwrap_or_default(),
                    consistent: r.consistent,
                })
                .await
                .map_err(&err)?
                .into_inner();
            let apps = resp
                .apps
                .iter()
                .map(|a| application(a, None))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if r.output == Output::Table {
                let rows: Vec<[String; 11]> = apps.iter().map(list_row).collect();
                table(
                    out,
                    [
                        "NAME",
                        "CLUSTER",
                        "NAMESPACE",
                        "PROJECT",
                        "STATUS",
                        "HEALTH",
                        "SYNCPOLICY",
                        "CONDITIONS",
                        "REPO",
                        "PATH",
                        "TARGET",
                    ],
                    &rows,
                )?;
            } else {
                print_doc(out, r.output, &Value::Array(apps))?;
            }
        }
        AppCommand::Get { name } => {
            let resp = grpc
                .get_app(pb::GetAppRequest {
                    app: key(name)?,
                    consistent: r.consistent,
                })
                .await
                .map_err(&err)?
                .into_inner();
            let entry = resp.app.context("the node sent no application")?;
            let pending = parse_json("pending operation", &resp.pending_json)?;
            let doc = application(&entry, Some(&pending))?;
            if r.output == Output::Table {
                print_app(out, &doc, &entry.key)?;
            } else {
                print_doc(out, r.output, &doc)?;
            }
        }
        AppCommand::Sync {
            name,
            prune,
            dry_run,
            revision,
            resources,
        } => {
            let app = key(name)?;
            let resp = grpc
                .sync_app(pb::SyncAppRequest {
                    app: app.clone(),
                    prune: *prune,
                    dry_run: *dry_run,
                    revision: revision.clone().unwrap_or_default(),
                    resources: resources.clone(),
                })
                .await
                .map_err(&err)?
                .into_inner();
            done(
                out,
                r.output,
                json!({"app": app, "opId": resp.op_id}),
                || format!("sync of {app} requested: operation {}", resp.op_id),
            )?;
        }
        AppCommand::Refresh { name, hard } => {
            let app = key(name)?;
            grpc.refresh_app(pb::RefreshAppRequest {
                app: app.clone(),
                hard: *hard,
            })
            .await
            .map_err(&err)?;
            done(out, r.output, json!({"app": app, "hard": hard}), || {
                format!("refresh of {app} requested")
            })?;
        }
        AppCommand::Diff { name } => {
            let resp = grpc
                .diff_app(pb::DiffAppRequest { app: key(name)? })
                .await
                .map_err(&err)?
                .into_inner();
            if r.output == Output::Table {
                for d in resp.diffs.iter().filter(|d| d.drift != "None") {
                    let what = match d.drift.as_str() {
                        "Missing" => "missing from the cluster",
                        "Extra" => "no longer desired (prune)",
                        _ => "changed",
                    };
                    writeln!(out, "===== {} ({what})", d.key)?;
                    out.write_all(d.unified.as_bytes())?;
                }
            } else {
                let diffs: Vec<Value> = resp
                    .diffs
                    .iter()
                    .map(|d| json!({"key": d.key, "drift": d.drift, "diff": d.unified}))
                    .collect();
                let doc =
                    json!({"inSync": resp.in_sync, "revision": resp.revision, "diffs": diffs});
                print_doc(out, r.output, &doc)?;
            }
            return Ok(resp.in_sync);
        }
        AppCommand::Manifests { name } => {
            let resp = grpc
                .get_manifests(pb::GetManifestsRequest { app: key(name)? })
                .await
                .map_err(&err)?
                .into_inner();
            let objects = resp
                .manifests_json
                .iter()
                .map(|m| parse_json("manifest", m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if r.output == Output::Json {
                print_doc(out, r.output, &Value::Array(objects))?;
            } else {
                for o in &objects {
                    write!(out, "---\n{}", serde_yaml::to_string(o)?)?;
                }
            }
        }
        AppCommand::History { name } => {
            let resp = grpc
                .history(pb::HistoryRequest {
                    app: key(name)?,
                    consistent: r.consistent,
                })
                .await
                .map_err(&err)?
                .into_inner();
            let history = parse_json("history", &resp.history_json)?;
            if r.output == Output::Table {
                let rows: Vec<[String; 3]> = history
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|h| {
                        [
                            h.get("id").map(Value::to_string).unwrap_or_default(),
                            str_at(h, "/deployedAt").to_string(),
                            str_at(h, "/revision").to_string(),
                        ]
                    })
                    .collect();
                table(out, ["ID", "DATE", "REVISION"], &rows)?;
            } else {
                print_doc(out, r.output, &history)?;
            }
        }
        AppCommand::Rollback {
            name,
            id,
            prune,
            dry_run,
        } => {
            let app = key(name)?;
            let resp = grpc
                .rollback(pb::RollbackRequest {
                    app: app.clone(),
                    id: *id,
                    prune: *prune,
                    dry_run: *dry_run,
                })
                .await
                .map_err(&err)?
                .into_inner();
            done(
                out,
                r.output,
                json!({"app": app, "opId": resp.op_id}),
                || {
                    format!(
                        "rollback of {app} to history entry {id} requested: operation {}",
                        resp.op_id
                    )
                },
            )?;
        }
        AppCommand::Delete { name, cascade } => {
            let app = key(name)?;
            let resp = grpc
                .delete_app(pb::DeleteAppRequest {
                    app: app.clone(),
                    cascade: *cascade,
                })
                .await
                .map_err(&err)?
                .into_inner();
            done(
                out,
                r.output,
                json!({"app": app, "message": resp.message}),
                || resp.message.clone(),
            )?;
        }
        AppCommand::Wait {
            name,
            timeout,
            sync,
            health,
            operation,
        } => {
            let timeout = crate::sync::options::parse_duration("--timeout", timeout)?;
            let all = !(*sync || *health || *operation);
            let want = Want {
                sync: *sync || all,
                health: *health || all,
                operation: *operation || all,
            };
            return wait(&client, &key(name)?, want, timeout, r.consistent, out).await;
        }
    }
    Ok(true)
}

/// Print a one-line outcome, or its document in JSON/YAML.
fn done(
    out: &mut dyn Write,
    output: Output,
    doc: Value,
    line: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if output == Output::Table {
        writeln!(out, "{}", line())?;
        Ok(())
    } else {
        print_doc(out, output, &doc)
    }
}

/// The Application document with its status and (as Argo CD's `operation`) the requested
/// operation not yet started.
fn application(entry: &pb::AppEntry, pending: Option<&Value>) -> anyhow::Result<Value> {
    let mut doc = parse_json(&format!("application {}", entry.key), &entry.app_json)?;
    let status = parse_json(&format!("status of {}", entry.key), &entry.status_json)?;
    if let Some(m) = doc.as_object_mut() {
        if !status.is_null() {
            m.insert("status".into(), status);
        }
        if let Some(p) = pending.filter(|p| !p.is_null()) {
            let req = p.get("request").cloned().unwrap_or(Value::Null);
            let sync = json!({
                "revision": req.get("revision"),
                "prune": req.get("prune").and_then(Value::as_bool).unwrap_or(false),
                "dryRun": req.get("dryRun").and_then(Value::as_bool).unwrap_or(false),
                "resources": req.get("resources").cloned().unwrap_or(json!([])),
                "source": req.get("source"),
            });
            m.insert(
                "operation".into(),
                json!({
                    "opId": p.get("opId"),
                    "requestedAt": p.get("requestedAt"),
                    "initiatedBy": {"username": req.get("initiatedBy")},
                    "sync": sync,
                }),
            );
        }
    }
    Ok(doc)
}

/// The source shown in tables: `spec.source`, or the first of `spec.sources`.
fn source(app: &Value) -> Value {
    app.pointer("/spec/source")
        .or_else(|| app.pointer("/spec/sources/0"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn sync_policy(app: &Value) -> String {
    match app.pointer("/spec/syncPolicy/automated") {
        Some(a) if !a.is_null() => {
            if a.get("prune").and_then(Value::as_bool) == Some(true) {
                "Auto-Prune".into()
            } else {
                "Auto".into()
            }
        }
        _ => "<none>".into(),
    }
}

fn conditions(app: &Value) -> String {
    app.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|c| c.get("type").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn sync_code(app: &Value) -> String {
    let s = str_at(app, "/status/sync/status");
    if s.is_empty() { "Unknown" } else { s }.to_string()
}

fn health_code(app: &Value) -> String {
    let s = str_at(app, "/status/health/status");
    if s.is_empty() { "Unknown" } else { s }.to_string()
}

fn list_row(app: &Value) -> [String; 11] {
    let src = source(app);
    let ns = str_at(app, "/metadata/namespace");
    let name = str_at(app, "/metadata/name");
    let cluster = match str_at(app, "/spec/destination/server") {
        "" => str_at(app, "/spec/destination/name"),
        s => s,
    };
    [
        format!("{ns}/{name}"),
        cluster.to_string(),
        str_at(app, "/spec/destination/namespace").to_string(),
        str_at(app, "/spec/project").to_string(),
        sync_code(app),
        health_code(app),
        sync_policy(app),
        or_none(conditions(app)),
        str_at(&src, "/repoURL").to_string(),
        str_at(&src, "/path").to_string(),
        str_at(&src, "/targetRevision").to_string(),
    ]
}

fn print_app(out: &mut dyn Write, app: &Value, key: &str) -> anyhow::Result<()> {
    let row = list_row(app);
    let op = app.pointer("/status/operationState");
    let pending = app.get("operation");
    let fields = [
        ("Name:", key.to_string()),
        ("Project:", row[3].clone()),
        ("Server:", row[1].clone()),
        ("Namespace:", row[2].clone()),
        ("Repo:", row[8].clone()),
        ("Target:", row[10].clone()),
        ("Path:", row[9].clone()),
        ("SyncPolicy:", row[6].clone()),
        (
            "Sync Status:",
            format!(
                "{} ({})",
                row[4],
                or_none(str_at(app, "/status/sync/revision"))
            ),
        ),
        ("Health Status:", row[5].clone()),
        ("Conditions:", row[7].clone()),
        (
            "Operation:",
            op.map(|o| {
                format!(
                    "{} {} {}",
                    str_at(o, "/opId"),
                    str_at(o, "/phase"),
                    str_at(o, "/message")
                )
            })
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "<none>".into()),
        ),
        (
            "Requested:",
            pending
                .map(|p| {
                    let s = p.get("sync").cloned().unwrap_or(Value::Null);
                    format!(
                        "{} prune={} dryRun={} revision={}",
                        str_at(p, "/opId"),
                        s.get("prune").and_then(Value::as_bool).unwrap_or(false),
                        s.get("dryRun").and_then(Value::as_bool).unwrap_or(false),
                        or_none(str_at(&s, "/revision")),
                    )
                })
                .unwrap_or_else(|| "<none>".into()),
        ),
    ];
    for (k, v) in fields {
        writeln!(out, "{k:<15}{v}")?;
    }
    let resources = app
        .pointer("/status/resources")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !resources.is_empty() {
        writeln!(out)?;
        let rows: Vec<[String; 6]> = resources
            .iter()
            .map(|r| {
                [
                    str_at(r, "/group").to_string(),
                    str_at(r, "/kind").to_string(),
                    str_at(r, "/namespace").to_string(),
                    str_at(r, "/name").to_string(),
                    str_at(r, "/status").to_string(),
                    str_at(r, "/health/status").to_string(),
                ]
            })
            .collect();
        table(
            out,
            ["GROUP", "KIND", "NAMESPACE", "NAME", "STATUS", "HEALTH"],
            &rows,
        )?;
    }
    Ok(())
}

/// What `app wait` waits for.
#[derive(Debug, Clone, Copy)]
struct Want {
    sync: bool,
    health: bool,
    operation: bool,
}

impl Want {
    fn describe(self) -> String {
        let mut parts = Vec::new();
        if self.sync {
            parts.push("Synced");
        }
        if self.health {
            parts.push("Healthy");
        }
        if self.operation {
            parts.push("without a requested or running operation");
        }
        parts.join(", ")
    }
}

/// The operation still to come or running, if any: `requested <id>` or `running <id>`.
fn busy(resp: &pb::GetAppResponse) -> anyhow::Result<Option<String>> {
    let pending = parse_json("pending operation", &resp.pending_json)?;
    if !pending.is_null() {
        return Ok(Some(format!(
            "operation {} requested",
            str_at(&pending, "/opId")
        )));
    }
    let op = parse_json("operation", &resp.operation_json)?;
    if !op.is_null() && op.get("finishedAt").is_none_or(Value::is_null) {
        return Ok(Some(format!("operation {} running", str_at(&op, "/opId"))));
    }
    Ok(None)
}

async fn wait(
    client: &ApiClient,
    key: &str,
    want: Want,
    timeout: Duration,
    consistent: bool,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last;
    loop {
        let resp = client
            .grpc()
            .get_app(pb::GetAppRequest {
                app: key.to_string(),
                consistent,
            })
            .await;
        match resp {
            Ok(r) => {
                let r = r.into_inner();
                let busy = busy(&r)?;
                let entry = r.app.context("the node sent no application")?;
                let app = application(&entry, None)?;
                let (sync, health) = (sync_code(&app), health_code(&app));
                last = format!("sync status {sync}, health {health}");
                let msg = str_at(&app, "/status/health/message");
                if !msg.is_empty() {
                    last.push_str(&format!(" ({msg})"));
                }
                let conds = conditions(&app);
                if !conds.is_empty() {
                    last.push_str(&format!(", conditions {conds}"));
                }
                if let Some(b) = &busy {
                    last.push_str(&format!(", {b}"));
                }
                if (!want.sync || sync == "Synced")
                    && (!want.health || health == "Healthy")
                    && (!want.operation || busy.is_none())
                {
                    writeln!(out, "{key}: {last}")?;
                    return Ok(true);
                }
            }
            // The app must exist, and a refused token will not get better.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::NotFound
                        | tonic::Code::Unauthenticated
                        | tonic::Code::InvalidArgument
                ) =>
            {
                return Err(client.error(s).into());
            }
            Err(s) => last = format!("last error: {}", client.error(s)),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            eprintln!(
                "timed out after {}s waiting for {key} to be {}: {last}",
                timeout.as_secs(),
                want.describe()
            );
            return Ok(false);
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(500))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(app: Value, status: Value) -> pb::AppEntry {
        pb::AppEntry {
            key: "argocd/web".into(),
            app_json: app.to_string(),
            generation: 1,
            status_json: if status.is_null() {
                String::new()
            } else {
                status.to_string()
            },
        }
    }

    #[test]
    fn list_rows_read_like_argocd() {
        let app = json!({"metadata": {"name": "web", "namespace": "argocd"},
            "spec": {"project": "default",
                "sources": [{"repoURL": "https://r", "path": "p", "targetRevision": "v1"}],
                "destination": {"name": "prod", "namespace": "web"},
                "syncPolicy": {"automated": {"prune": true}}}});
        let status = json!({"sync": {"status": "OutOfSync"}, "health": {"status": "Degraded"},
            "conditions": [{"type": "SyncError", "message": "m"}, {"type": "ComparisonError", "message": "m"}]});
        let doc = application(&entry(app.clone(), status), None).expect("doc");
        assert_eq!(
            list_row(&doc),
            [
                "argocd/web",
                "prod",
                "web",
                "default",
                "OutOfSync",
                "Degraded",
                "Auto-Prune",
                "SyncError,ComparisonError",
                "https://r",
                "p",
                "v1"
            ]
            .map(String::from)
        );
        let bare = application(&entry(app, Value::Null), None).expect("doc");
        let row = list_row(&bare);
        assert_eq!(
            (row[4].as_str(), row[5].as_str(), row[7].as_str()),
            ("Unknown", "Unknown", "<none>")
        );
    }

    #[test]
    fn a_pending_request_shows_as_the_operation() {
        let pending = json!({"opId": "o1", "requestedAt": 5,
            "request": {"initiatedBy": "api", "prune": true, "revision": "abc"}});
        let doc =
            application(&entry(json!({"spec": {}}), Value::Null), Some(&pending)).expect("doc");
        assert_eq!(doc["operation"]["opId"], "o1");
        assert_eq!(doc["operation"]["sync"]["prune"], true);
        assert_eq!(doc["operation"]["sync"]["dryRun"], false);
        assert_eq!(doc["operation"]["sync"]["revision"], "abc");
        assert_eq!(doc["operation"]["initiatedBy"]["username"], "api");
        assert!(doc.get("status").is_none());
    }
}
