//! Live state: the objects an application manages in its destination cluster, and the
//! comparison of those with the desired ones.
//!
//! [`Tracking`] says how an object is marked as managed by an app (Argo CD's
//! `app.kubernetes.io/instance` label by default, or the `argocd.argoproj.io/tracking-id`
//! annotation). [`list_managed`] lists an app's live objects over every kind the cluster
//! serves; [`compare_app`] diffs desired against live with [`crate::diff::diff_resource`].
//! [`cache::LiveCache`] keeps the same objects up to date with one watch per (cluster, kind).

pub mod cache;

use crate::clusters::{Cluster, ClusterError, ConnectionStatus};
use crate::diff::{diff_resource, DiffError, DiffOptions, Drift, ResourceDiff, ResourceKey};
use kube::api::ListParams;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Kinds by `(group, kind)`.
pub type GroupKinds = BTreeSet<(String, String)>;

/// Argo CD's default tracking label.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Argo CD's tracking annotation: `<app>:<group>/<kind>:<namespace>/<name>`.
pub const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

/// Errors reading live state.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The cluster is not usable.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A request failed.
    #[error("cluster {cluster}: {what}: {source}")]
    Api {
        /// Cluster name.
        cluster: String,
        /// What was being done.
        what: String,
        /// Cause.
        source: kube::Error,
    },
    /// A desired object lacks `apiVersion`, `kind` or a name.
    #[error("desired object {0} lacks apiVersion, kind or metadata.name")]
    Incomplete(String),
    /// The diff configuration is invalid.
    #[error(transparent)]
    Diff(#[from] DiffError),
}

/// How managed objects are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tracking {
    /// The `app.kubernetes.io/instance` label holds the app name.
    #[default]
    Label,
    /// The `argocd.argoproj.io/tracking-id` annotation identifies app and resource.
    Annotation,
}

fn meta_str<'a>(obj: &'a Value, path: &str) -> Option<&'a str> {
    obj.pointer(path).and_then(Value::as_str)
}

impl Tracking {
    /// Mark `obj` as managed by `app`.
    pub fn mark(self, obj: &mut Value, app: &str) {
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        match self {
            Tracking::Label => {
                let labels = meta
                    .entry("labels")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(l) = labels.as_object_mut() {
                    l.insert(INSTANCE_LABEL.into(), Value::String(app.into()));
                }
            }
            Tracking::Annotation => {
                let key = ResourceKey::of(obj);
                let id = format!(
                    "{app}:{}/{}:{}/{}",
                    key.group, key.kind, key.namespace, key.name
                );
                if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    let ann = meta
                        .entry("annotations")
                        .or_insert_with(|| Value::Object(Default::default()));
                    if let Some(a) = ann.as_object_mut() {
                        a.insert(TRACKING_ANNOTATION.into(), Value::String(id));
                    }
                }
            }
        }
    }

    /// The app that manages `obj`, if any.
    pub fn owner(self, obj: &Value) -> Option<String> {
        match self {
            Tracking::Label => meta_str(
                obj,
                &format!("/metadata/labels/{}", INSTANCE_LABEL.replace('/', "~1")),
            )
            .map(str::to_string),
            Tracking::Annotation => {
                let id = meta_str(
                    obj,
                    &format!(
                        "/metadata/annotations/{}",
                        TRACKING_ANNOTATION.replace('/', "~1")
                    ),
                )?;
                let (app, rest) = id.split_once(':')?;
                // The id must name this very object, or it was copied from another one.
                let key = ResourceKey::of(obj);
                let expected = format!("{}/{}:{}/{}", key.group, key.kind, key.namespace, key.name);
                (rest == expected).then(|| app.to_string())
            }
        }
    }

    /// The label selector that finds the objects of `app` (None: annotation tracking lists all).
    pub fn selector(self, app: &str) -> Option<String> {
        match self {
            Tracking::Label => Some(format!("{INSTANCE_LABEL}={app}")),
            Tracking::Annotation => None,
        }
    }
}

fn api_error(cluster: &Cluster, what: impl Into<String>, source: kube::Error) -> LiveError {
    LiveError::Api {
        cluster: cluster.name().to_string(),
        what: what.into(),
        source,
    }
}

/// Record the connection outcome of a request on the cluster.
pub(crate) fn note<T>(cluster: &Cluster, r: &Result<T, kube::Error>) {
    match r {
        Ok(_) | Err(kube::Error::Api(_)) => cluster.set_status(ConnectionStatus::Connected),
        Err(e) => cluster.set_status(ConnectionStatus::Failed(e.to_string())),
    }
}

/// The live objects `app` manages on `cluster`, over the listable kinds in `only` (by group
/// and kind), or over every listable kind when `None`; objects owned by another object (a
/// Deployment's ReplicaSets) are left out, as Argo CD does.
pub async fn list_managed(
    cluster: &Cluster,
    app: &str,
    tracking: Tracking,
    only: Option<&GroupKinds>,
) -> Result<Vec<Value>, LiveError> {
    let kinds = cluster.kinds().await?;
    let mut out = Vec::new();
    let wanted = |k: &&crate::clusters::discovery::Kind| {
        only.is_none_or(|o| o.contains(&(k.resource.group.clone(), k.resource.kind.clone())))
    };
    for kind in kinds.watchable().filter(wanted) {
        let api = cluster.api(kind, "");
        let mut lp = ListParams::default();
        if let Some(sel) = tracking.selector(app) {
            lp = lp.labels(&sel);
        }
        let _permit = cluster.permit().await;
        let list = api.list(&lp).await;
        note(cluster, &list);
        let list =
            list.map_err(|e| api_error(cluster, format!("listing {}", kind.resource.plural), e))?;
        for item in list.items {
            let mut v =
                serde_json::to_value(&item).map_err(|e| LiveError::Incomplete(e.to_string()))?;
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "apiVersion".into(),
                    Value::String(kind.resource.api_version.clone()),
                );
                o.insert("kind".into(), Value::String(kind.resource.kind.clone()));
            }
            let owned = v
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !owned && tracking.owner(&v).as_deref() == Some(app) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// Prepare a desired object for comparison and apply: the namespace defaulted for namespaced
/// kinds, cleared for cluster-scoped ones, and the tracking mark set.
pub async fn prepare_desired(
    cluster: &Cluster,
    obj: &Value,
    app: &str,
    default_namespace: &str,
    tracking: Tracking,
) -> Result<Value, LiveError> {
    let api_version = meta_str(obj, "/apiVersion").unwrap_or_default();
    let kind_name = meta_str(obj, "/kind").unwrap_or_default();
    let has_name = meta_str(obj, "/metadata/name").is_some_and(|n| !n.is_empty())
        || meta_str(obj, "/metadata/generateName").is_some_and(|n| !n.is_empty());
    if api_version.is_empty() || kind_name.is_empty() || !has_name {
        return Err(LiveError::Incomplete(ResourceKey::of(obj).to_string()));
    }
    let kind = cluster.kind(api_version, kind_name).await?;
    let mut out = obj.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if kind.namespaced && ns.is_empty() && !default_namespace.is_empty() {
            meta.insert("namespace".into(), Value::String(default_namespace.into()));
        } else if !kind.namespaced {
            meta.remove("namespace");
        }
    }
    tracking.mark(&mut out, app);
    Ok(out)
}

/// The group, kind and whether namespaced of the custom resources a CustomResourceDefinition
/// defines; `None` for other objects.
pub fn crd_kind(obj: &Value) -> Option<(String, String, bool)> {
    let api = meta_str(obj, "/apiVersion")?;
    if meta_str(obj, "/kind")? != "CustomResourceDefinition"
        || !api.starts_with("apiextensions.k8s.io/")
    {
        return None;
    }
    let group = meta_str(obj, "/spec/group")?.to_string();
    let kind = meta_str(obj, "/spec/names/kind")?.to_string();
    Some((group, kind, meta_str(obj, "/spec/scope") != Some("Cluster")))
}

/// [`prepare_desired`] for an object whose kind the cluster does not serve yet (its CRD is
/// not yet applied): namespaced unless a CRD among `desired` says `scope: Cluster`.
fn prepare_unserved(
    obj: &Value,
    desired: &[Value],
    app: &str,
    default_namespace: &str,
    tracking: Tracking,
) -> Value {
    let key = ResourceKey::of(obj);
    let namespaced = desired
        .iter()
        .filter_map(crd_kind)
        .find(|(g, k, _)| *g == key.group && *k == key.kind)
        .is_none_or(|(_, _, namespaced)| namespaced);
    let mut out = obj.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        if !namespaced {
            meta.remove("namespace");
        } else if key.namespace.is_empty() && !default_namespace.is_empty() {
            meta.insert("namespace".into(), Value::String(default_namespace.into()));
        }
    }
    tracking.mark(&mut out, app);
    out
}

/// The live object with the identity of `obj` (which must be prepared), if it exists.
pub async fn get_live(cluster: &Cluster, obj: &Value) -> Result<Option<Value>, LiveError> {
    let key = ResourceKey::of(obj);
    let kind = cluster
        .kind(meta_str(obj, "/apiVersion").unwrap_or_default(), &key.kind)
        .await?;
    let api = cluster.api(&kind, &key.namespace);
    let _permit = cluster.permit().await;
    let r = api.get_opt(&key.name).await;
    note(cluster, &r);
    let found = r.map_err(|e| api_error(cluster, format!("reading {key}"), e))?;
    found
        .map(|o| {
            let mut v =
                serde_json::to_value(&o).map_err(|e| LiveError::Incomplete(e.to_string()))?;
            if let Some(m) = v.as_object_mut() {
                m.insert(
                    "apiVersion".into(),
                    Value::String(kind.resource.api_version.clone()),
                );
                m.insert("kind".into(), Value::String(kind.resource.kind.clone()));
            }
            Ok(v)
        })
        .transpose()
}

/// The comparison of an application's desired objects with the live ones.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// Desired objects, prepared (namespace defaulted, tracking mark set), hooks included.
    pub desired: Vec<Value>,
    /// Live objects by key (desired ones that exist, and extras).
    pub live: BTreeMap<ResourceKey, Value>,
    /// Live objects the app tracks that are no longer desired.
    pub extra: Vec<Value>,
    /// One diff per non-hook desired resource and per extra.
    pub diffs: Vec<ResourceDiff>,
}

impl Comparison {
    /// Whether everything is in sync.
    pub fn in_sync(&self) -> bool {
        self.diffs.iter().all(ResourceDiff::in_sync)
    }

    /// The keys of resources in sync.
    pub fn in_sync_keys(&self) -> std::collections::BTreeSet<ResourceKey> {
        self.diffs
            .iter()
            .filter(|d| d.drift == Drift::None)
            .map(|d| d.key.clone())
            .collect()
    }
}

/// Compare desired with live for one app: desired objects are prepared, hooks are not
/// compared (they are run, not kept), tracked objects no longer desired are extras.
/// Managed objects are listed as [`list_managed`] does, over `only`.
pub async fn compare_app(
    cluster: &Cluster,
    app: &str,
    desired: &[Value],
    default_namespace: &str,
    tracking: Tracking,
    opts: &DiffOptions,
    only: Option<&GroupKinds>,
) -> Result<Comparison, LiveError> {
    let managed = list_managed(cluster, app, tracking, only).await?;
    compare_with(
        cluster,
        app,
        desired,
        managed,
        default_namespace,
        tracking,
        opts,
    )
    .await
}

/// [`compare_app`] with the app's managed live objects given (e.g. from
/// [`cache::LiveCache::app_objects`]) instead of listed; desired objects that are not among
/// them are still read one by one (they may exist untracked).
pub async fn compare_with(
    cluster: &Cluster,
    app: &str,
    desired: &[Value],
    managed: Vec<Value>,
    default_namespace: &str,
    tracking: Tracking,
    opts: &DiffOptions,
) -> Result<Comparison, LiveError> {
    let mut cmp = Comparison::default();
    let mut managed: BTreeMap<ResourceKey, Value> = managed
        .into_iter()
        .map(|v| (ResourceKey::of(&v), v))
        .collect();
    for obj in desired {
        let prepared = match prepare_desired(cluster, obj, app, default_namespace, tracking).await {
            Ok(p) => p,
            Err(LiveError::Cluster(ClusterError::UnknownKind { .. })) => {
                // A custom resource whose CRD is not applied yet: missing until it is.
                let prepared = prepare_unserved(obj, desired, app, default_namespace, tracking);
                let is_hook = crate::sync::plan::role_of(&prepared)
                    .map(|r| !matches!(r, crate::sync::plan::Role::Resource))
                    .unwrap_or(false);
                if !is_hook {
                    cmp.diffs.push(diff_resource(Some(&prepared), None, opts)?);
                }
                cmp.desired.push(prepared);
                continue;
            }
            Err(e) => return Err(e),
        };
        let is_hook = crate::sync::plan::role_of(&prepared)
            .map(|r| !matches!(r, crate::sync::plan::Role::Resource))
            .unwrap_or(false);
        let key = ResourceKey::of(&prepared);
        if is_hook {
            managed.remove(&key);
            cmp.desired.push(prepared);
            continue;
        }
        let live = match managed.remove(&key) {
            Some(v) => Some(v),
            None => get_live(cluster, &prepared).await?,
        };
        cmp.diffs
            .push(diff_resource(Some(&prepared), live.as_ref(), opts)?);
        if let Some(l) = live {
            cmp.live.insert(key, l);
        }
        cmp.desired.push(prepared);
    }
    for (key, live) in managed {
        // Hook runs left behind (e.g. HookFailed policy off) are not extras.
        let is_hook = crate::sync::plan::role_of(&live)
            .map(|r| !matches!(r, crate::sync::plan::Role::Resource))
            .unwrap_or(false);
        if is_hook {
            continue;
        }
        cmp.diffs.push(diff_resource(None, Some(&live), opts)?);
        cmp.extra.push(live.clone());
        cmp.live.insert(key, live);
    }
    Ok(cmp)
}
