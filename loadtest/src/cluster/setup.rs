//! Preparing a management cluster: flotilla's CRDs, the namespace, cluster Secrets and
//! `Application` resources, applied with server-side apply. Used by `flotilla dev` and the
//! end-to-end tests.

use std::time::Duration;

use base64::Engine as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

/// The Application CRD (`argoproj.io/v1alpha1`), as deployed by `deploy/`.
pub const APPLICATION_CRD: &str = include_str!("../../../deploy/base/crds/application.yaml");
/// The AppProject CRD (`argoproj.io/v1alpha1`), as deployed by `deploy/`.
pub const APPPROJECT_CRD: &str = include_str!("../../../deploy/base/crds/appproject.yaml");

/// Field manager of the objects written here.
const MANAGER: &str = "flotilla-dev";

/// Errors preparing a management cluster.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The Kubernetes API refused or failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being written.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// A document is not a Kubernetes object.
    #[error("{0}")]
    Invalid(String),
}

fn resource_of(obj: &Value) -> Result<(ApiResource, Option<String>, String), SetupError> {
    let av = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if av.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(SetupError::Invalid(format!(
            "object without apiVersion, kind or name: {obj}"
        )));
    }
    let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
    let mut ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    if kind == "CustomResourceDefinition" {
        ar.plural = "customresourcedefinitions".into();
    }
    let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
    Ok((ar, ns, name.to_owned()))
}

/// Server-side apply one object.
pub async fn apply(client: &kube::Client, obj: &Value) -> Result<(), SetupError> {
    let (ar, ns, name) = resource_of(obj)?;
    let api: Api<DynamicObject> = match &ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| SetupError::Kube {
        what: format!("apply {} {name}", ar.kind),
        source,
    })?;
    Ok(())
}

/// Install the Application and AppProject CRDs and wait until Applications can be listed.
pub async fn install_crds(client: &kube::Client) -> Result<(), SetupError> {
    for text in [APPLICATION_CRD, APPPROJECT_CRD] {
        let v: Value = serde_yaml::from_str(text)
            .map_err(|e| SetupError::Invalid(format!("CRD manifest: {e}")))?;
        apply(client, &v).await?;
    }
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "argoproj.io",
        "v1alpha1",
        "Application",
    ));
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match api.list(&Default::default()).await {
            Ok(_) => return Ok(()),
            Err(source) if tokio::time::Instant::now() >= deadline => {
                return Err(SetupError::Kube {
                    what: "list Applications after installing the CRD".into(),
                    source,
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A namespace object.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// An Argo CD cluster Secret for a cluster reached with a bearer token and a CA.
pub fn cluster_secret(
    namespace: &str,
    name: &str,
    server: &str,
    token: Option<&str>,
    ca_pem: Option<&str>,
) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut config = json!({"tlsClientConfig": {"insecure": false}});
    if let Some(t) = token {
        config["bearerToken"] = json!(t);
    }
    if let Some(ca) = ca_pem {
        config["tlsClientConfig"]["caData"] = json!(b64(ca));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("cluster-{name}"),
            "namespace": namespace,
            "labels": {"argocd.argoproj.io/secret-type": "cluster"}
        },
        "type": "Opaque",
        "data": {
            "name": b64(name),
            "server": b64(server),
            "config": b64(&config.to_string())
        }
    })
}

/// The Applications in `namespace`, as JSON objects.
pub async fn list_applications(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<Value>, SetupError> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "argoproj.io",
        "v1alpha1",
        "Application",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    let list = api
        .list(&Default::default())
        .await
        .map_err(|source| SetupError::Kube {
            what: format!("list Applications in {namespace}"),
            source,
        })?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// `(sync, health)` of an Application object's status, `Unknown` when absent.
pub fn sync_and_health(app: &Value) -> (String, String) {
    let s = app["status"]["sync"]["status"]
        .as_str()
        .unwrap_or("Unknown");
    let h = app["status"]["health"]["status"]
        .as_str()
        .unwrap_or("Unknown");
    (s.to_owned(), h.to_owned())
}
