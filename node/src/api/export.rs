//! The export document: the whole replicated state as JSON, and its import as commands.
//!
//! Statuses are exported for inspection but never imported: the owners recompute them.
//! Nothing secret is in the store, so nothing secret is in the document.

use flotilla_proto::v1 as pb;
use flotilla_raft::{ClusterRef, Command, Json, RepoRef, RevisionRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tonic::Status;

use super::now_millis;
use super::server::{read_status, store_status, stored_json, Service};

/// The version of the document format.
pub const EXPORT_VERSION: u32 = 1;

/// Commands per proposal when importing.
const IMPORT_BATCH: usize = 200;

/// The exported state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportDocument {
    /// [`EXPORT_VERSION`].
    pub version: u32,
    /// Applications.
    #[serde(default)]
    pub apps: Vec<ExportedApp>,
    /// Projects.
    #[serde(default)]
    pub projects: Vec<ExportedProject>,
    /// Destination clusters.
    #[serde(default)]
    pub clusters: Vec<ClusterRef>,
    /// Repositories.
    #[serde(default)]
    pub repos: Vec<RepoRef>,
    /// Resolved revisions.
    #[serde(default)]
    pub revisions: Vec<RevisionRecord>,
    /// Application statuses (not imported).
    #[serde(default)]
    pub statuses: Vec<ExportedStatus>,
}

/// One application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedApp {
    /// `namespace/name`.
    pub key: String,
    /// The generation at export (informative: the importing store counts its own).
    #[serde(default)]
    pub generation: u64,
    /// The stored Application.
    pub spec: Value,
}

/// One project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedProject {
    /// The project's name.
    pub name: String,
    /// The generation at export.
    #[serde(default)]
    pub generation: u64,
    /// The stored AppProject.
    pub spec: Value,
}

/// One application's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedStatus {
    /// `namespace/name`.
    pub app: String,
    /// The status document.
    pub status: Value,
}

impl ExportDocument {
    /// The commands that recreate the document's state (statuses excluded).
    pub fn commands(&self) -> Result<Vec<Command>, String> {
        if self.version != EXPORT_VERSION {
            return Err(format!(
                "unsupported export version {} (this node reads version {EXPORT_VERSION})",
                self.version
            ));
        }
        let at = now_millis();
        let mut out = Vec::new();
        for (i, a) in self.apps.iter().enumerate() {
            if super::app_key_of(&a.key).ok().as_deref() != Some(a.key.as_str())
                || !a.key.contains('/')
            {
                return Err(format!(
                    "apps[{i}]: invalid key {:?}: expected `namespace/name`",
                    a.key
                ));
            }
            if !a.spec.is_object() {
                return Err(format!("apps[{i}] ({}): spec is not an object", a.key));
            }
            out.push(Command::PutApp {
                app: a.key.clone(),
                spec: Json::from(a.spec.clone()),
                at,
            });
        }
        for (i, p) in self.projects.iter().enumerate() {
            if p.name.is_empty() {
                return Err(format!("projects[{i}]: empty name"));
            }
            out.push(Command::PutProject {
                name: p.name.clone(),
                spec: Json::from(p.spec.clone()),
            });
        }
        out.extend(self.clusters.iter().cloned().map(Command::PutCluster));
        out.extend(self.repos.iter().cloned().map(Command::PutRepo));
        out.extend(self.revisions.iter().map(|r| Command::RecordRevision {
            repo: r.repo.clone(),
            git_ref: r.git_ref.clone(),
            sha: r.sha.clone(),
            at: r.at,
        }));
        Ok(out)
    }
}

impl Service {
    pub(super) async fn do_export(
        &self,
        req: pb::ExportRequest,
    ) -> Result<pb::ExportResponse, Status> {
        let r = self.reader(req.consistent).await?;
        let mut doc = ExportDocument {
            version: EXPORT_VERSION,
            apps: Vec::new(),
            projects: Vec::new(),
            clusters: r.clusters().map_err(read_status)?,
            repos: r.repos().map_err(read_status)?,
            revisions: r.revisions().map_err(read_status)?,
            statuses: Vec::new(),
        };
        for a in r.apps().map_err(read_status)? {
            doc.apps.push(ExportedApp {
                spec: stored_json(&a.app, &a.spec)?,
                key: a.app,
                generation: a.generation,
            });
        }
        for p in r.projects().map_err(read_status)? {
            doc.projects.push(ExportedProject {
                spec: stored_json(&p.name, &p.spec)?,
                name: p.name,
                generation: p.generation,
            });
        }
        for s in r.statuses().map_err(read_status)? {
            doc.statuses.push(ExportedStatus {
                status: stored_json(&s.app, &s.status)?,
                app: s.app,
            });
        }
        let document_json = serde_json::to_string_pretty(&doc)
            .map_err(|e| Status::internal(format!("encoding the export: {e}")))?;
        Ok(pb::ExportResponse { document_json })
    }

    pub(super) async fn do_import(
        &self,
        req: pb::ImportRequest,
    ) -> Result<pb::ImportResponse, Status> {
        let doc: ExportDocument = serde_json::from_str(&req.document_json)
            .map_err(|e| Status::invalid_argument(format!("the import document: {e}")))?;
        let commands = doc.commands().map_err(Status::invalid_argument)?;
        let mut rejected = Vec::new();
        for chunk in commands.chunks(IMPORT_BATCH) {
            let p = self
                .deps
                .store
                .propose_many(chunk.to_vec())
                .await
                .map_err(store_status)?;
            for (cmd, res) in chunk.iter().zip(p.results) {
                if let Err(e) = res {
                    rejected.push(format!("{}: {e}", cmd.kind()));
                }
            }
        }
        if !rejected.is_empty() {
            return Err(Status::failed_precondition(format!(
                "{} of {} imported records were rejected, first: {}",
                rejected.len(),
                commands.len(),
                rejected
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        tracing::info!(
            apps = doc.apps.len(),
            projects = doc.projects.len(),
            clusters = doc.clusters.len(),
            repos = doc.repos.len(),
            revisions = doc.revisions.len(),
            "state imported through the API"
        );
        Ok(pb::ImportResponse {
            apps: doc.apps.len() as u64,
            projects: doc.projects.len() as u64,
            clusters: doc.clusters.len() as u64,
            repos: doc.repos.len() as u64,
            revisions: doc.revisions.len() as u64,
        })
    }
}
