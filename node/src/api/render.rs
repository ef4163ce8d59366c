//! Render calls: the manifests of an application and its diff against the live cluster,
//! computed by the node answering (with its renderer and cluster clients).

use flotilla_proto::v1 as pb;
use tonic::Status;

use super::server::{key_of, stored_json, Service};
use crate::diff::Drift;
use crate::live::{compare_app, Tracking};
use crate::model::Application;
use crate::render::Rendered;
use crate::source::Freshness;

impl Service {
    async fn render_app(&self, app: &str) -> Result<(Application, Rendered), Status> {
        let key = key_of(app)?;
        let rec = Self::app_record(self.deps.store.local(), &key)?;
        let doc = stored_json(&key, &rec.spec)?;
        let app = crate::status::parse_stored_app(&key, &doc)
            .map_err(|e| Status::failed_precondition(format!("application {key}: {e}")))?;
        let rendered = self
            .deps
            .renderer
            .render(&app, Freshness::Fetch)
            .await
            .map_err(|e| Status::failed_precondition(format!("rendering {key}: {e}")))?;
        Ok((app, rendered))
    }

    pub(super) async fn do_get_manifests(
        &self,
        req: pb::GetManifestsRequest,
    ) -> Result<pb::GetManifestsResponse, Status> {
        let (_, rendered) = self.render_app(&req.app).await?;
        Ok(pb::GetManifestsResponse {
            revision: rendered.revision(),
            manifests_json: rendered
                .manifests
                .iter()
                .map(|m| m.object.to_string())
                .collect(),
        })
    }

    pub(super) async fn do_diff_app(
        &self,
        req: pb::DiffAppRequest,
    ) -> Result<pb::DiffAppResponse, Status> {
        let (app, rendered) = self.render_app(&req.app).await?;
        let key = key_of(&req.app)?;
        let cluster = self
            .deps
            .clusters
            .resolve(&app.spec.destination)
            .map_err(|e| Status::failed_precondition(format!("application {key}: {e}")))?;
        let opts = crate::cli::engine::diff_options(&app, None)
            .map_err(|e| Status::failed_precondition(format!("application {key}: {e:#}")))?;
        let desired: Vec<_> = rendered
            .manifests
            .iter()
            .map(|m| m.object.clone())
            .collect();
        let ns = app.spec.destination.namespace.clone().unwrap_or_default();
        let cmp = compare_app(
            &cluster,
            &app.metadata.name,
            &desired,
            &ns,
            Tracking::Label,
            &opts,
            None,
        )
        .await
        .map_err(|e| {
            Status::unavailable(format!("comparing {key} with {}: {e}", cluster.name()))
        })?;
        Ok(pb::DiffAppResponse {
            in_sync: cmp.in_sync(),
            revision: rendered.revision(),
            diffs: cmp
                .diffs
                .iter()
                .map(|d| pb::ResourceDiff {
                    key: d.key.to_string(),
                    drift: drift_name(d.drift).into(),
                    unified: d.unified.clone(),
                })
                .collect(),
        })
    }
}

fn drift_name(d: Drift) -> &'static str {
    match d {
        Drift::None => "None",
        Drift::Missing => "Missing",
        Drift::Extra => "Extra",
        Drift::Changed => "Changed",
    }
}
