//! Writes to a destination cluster: server-side apply, replace, client-side apply, create,
//! delete — each honouring dry run. Used by the [`super::executor`].

use crate::clusters::{Cluster, ClusterError};
use crate::diff::{normalize, DiffError, IgnoreRule, ResourceKey};
use crate::live::note;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, PropagationPolicy,
    ValidationDirective,
};
use serde_json::{Map, Value};

/// The field manager flotilla writes with.
pub const FIELD_MANAGER: &str = "flotilla";
/// The annotation client-side apply keeps the last applied configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Errors writing to a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The cluster or kind could not be resolved.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The API server refused or failed the request.
    #[error("{what} {key}: {source}")]
    Api {
        /// The verb.
        what: &'static str,
        /// Which resource.
        key: String,
        /// Cause.
        source: kube::Error,
    },
    /// The object could not be converted.
    #[error("{key}: {reason}")]
    Invalid {
        /// Which resource.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

impl ApplyError {
    /// Whether the API server answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApplyError::Api { source: kube::Error::Api(s), .. } if s.code == 404)
    }
}

/// How a resource is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Server-side apply with force (Argo CD's `--force-conflicts`).
    ServerSide,
    /// `Replace=true`: create, or PUT over the live object.
    Replace,
    /// `ServerSideApply=false`: client-side apply with the last-applied annotation.
    ClientSide,
}

fn to_dynamic(obj: &Value, key: &ResourceKey) -> Result<DynamicObject, ApplyError> {
    serde_json::from_value(obj.clone()).map_err(|e| ApplyError::Invalid {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn to_value(obj: DynamicObject, api_version: &str, kind: &str) -> Value {
    let mut v = serde_json::to_value(&obj).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(api_version.into()));
        m.insert("kind".into(), Value::String(kind.into()));
    }
    v
}

/// A JSON merge patch turning `last` into `desired`: keys `last` had and `desired` drops are
/// set to null, so client-side apply removes what it applied before and nothing else.
pub fn merge_patch(last: &Value, desired: &Value) -> Value {
    match (last, desired) {
        (Value::Object(l), Value::Object(d)) => {
            let mut out = Map::new();
            for (k, dv) in d {
                let patched = match l.get(k) {
                    Some(lv) if lv.is_object() && dv.is_object() => merge_patch(lv, dv),
                    _ => dv.clone(),
                };
                out.insert(k.clone(), patched);
            }
            for k in l.keys() {
                if !d.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        _ => desired.clone(),
    }
}

fn set_annotation(obj: &mut Value, key: &str, value: String) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = ann.as_object_mut() {
            a.insert(key.into(), Value::String(value));
        }
    }
}

/// The `fieldValidation` a write sends: `Strict`, as `kubectl --validate=true` (the default),
/// or `Ignore` under `Validate=false`.
pub fn field_validation(validate: bool) -> ValidationDirective {
    if validate {
        ValidationDirective::Strict
    } else {
        ValidationDirective::Ignore
    }
}

/// `uri` with the `fieldValidation` query parameter added.
pub fn with_field_validation(uri: &str, validate: bool) -> String {
    let sep = if uri.ends_with('?') || uri.ends_with('&') {
        ""
    } else if uri.contains('?') {
        "&"
    } else {
        "?"
    };
    format!(
        "{uri}{sep}fieldValidation={}",
        field_validation(validate).as_str()
    )
}

/// POST (no `name`) or PUT an object with `fieldValidation`, which kube's `PostParams` lack.
async fn post_or_put(
    cluster: &Cluster,
    api: &Api<DynamicObject>,
    name: Option<&str>,
    pp: &PostParams,
    validate: bool,
    obj: &DynamicObject,
) -> Result<DynamicObject, kube::Error> {
    let body = serde_json::to_vec(obj).map_err(kube::Error::SerdeError)?;
    let request = kube::core::Request::new(api.resource_url());
    let mut req = match name {
        Some(n) => request.replace(n, pp, body),
        None => request.create(pp, body),
    }
    .map_err(kube::Error::BuildRequest)?;
    let uri = with_field_validation(&req.uri().to_string(), validate);
    *req.uri_mut() = uri
        .parse::<http::Uri>()
        .map_err(|e| kube::Error::HttpError(e.into()))?;
    req.extensions_mut()
        .insert(if name.is_some() { "replace" } else { "create" });
    cluster.client().request::<DynamicObject>(req).await
}

/// The identity, apiVersion and API handle of an object about to be written or deleted.
async fn target<'a>(
    cluster: &Cluster,
    obj: &'a Value,
) -> Result<(ResourceKey, &'a str, Api<DynamicObject>), ApplyError> {
    let key = ResourceKey::of(obj);
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = cluster.kind(api_version, &key.kind).await?;
    let api = cluster.api(&kind, &key.namespace);
    Ok((key, api_version, api))
}

/// Write one prepared desired object; returns the object the server answered with.
/// `validate` is the `Validate` sync option (`fieldValidation=Strict`, or `Ignore`).
pub async fn write(
    cluster: &Cluster,
    obj: &Value,
    mode: Mode,
    dry_run: bool,
    validate: bool,
) -> Result<Value, ApplyError> {
    let (key, api_version, api) = target(cluster, obj).await?;
    let api_err = |what: &'static str| {
        let key = key.to_string();
        move |source| ApplyError::Api { what, key, source }
    };
    let pp = PostParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    let result = match mode {
        Mode::ServerSide => {
            let mut params = PatchParams::apply(FIELD_MANAGER).force();
            params.dry_run = dry_run;
            params.field_validation = Some(field_validation(validate));
            let _permit = cluster.permit().await;
            let r = api.patch(&key.name, &params, &Patch::Apply(obj)).await;
            note(cluster, &r);
            r.map_err(api_err("server-side apply"))?
        }
        Mode::Replace => {
            let live = {
                let _permit = cluster.permit().await;
                let r = api.get_opt(&key.name).await;
                note(cluster, &r);
                r.map_err(api_err("read"))?
            };
            let mut dynamic = to_dynamic(obj, &key)?;
            let _permit = cluster.permit().await;
            let r = match live {
                Some(l) => {
                    dynamic.metadata.resource_version = l.metadata.resource_version;
                    post_or_put(cluster, &api, Some(&key.name), &pp, validate, &dynamic).await
                }
                None => post_or_put(cluster, &api, None, &pp, validate, &dynamic).await,
            };
            note(cluster, &r);
            r.map_err(api_err("replace"))?
        }
        Mode::ClientSide => {
            let live = {
                let _permit = cluster.permit().await;
                let r = api.get_opt(&key.name).await;
                note(cluster, &r);
                r.map_err(api_err("read"))?
            };
            let mut desired = obj.clone();
            let text = serde_json::to_string(obj).map_err(|e| ApplyError::Invalid {
                key: key.to_string(),
                reason: e.to_string(),
            })?;
            set_annotation(&mut desired, LAST_APPLIED, text);
            let _permit = cluster.permit().await;
            let r = match live {
                None => {
                    let dynamic = to_dynamic(&desired, &key)?;
                    post_or_put(cluster, &api, None, &pp, validate, &dynamic).await
                }
                Some(l) => {
                    let last = l
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(LAST_APPLIED))
                        .and_then(|t| serde_json::from_str::<Value>(t).ok())
                        .unwrap_or(Value::Object(Map::new()));
                    let patch = merge_patch(&last, &desired);
                    let params = PatchParams {
                        dry_run,
                        field_manager: Some(FIELD_MANAGER.into()),
                        field_validation: Some(field_validation(validate)),
                        ..Default::default()
                    };
                    api.patch(&key.name, &params, &Patch::Merge(&patch)).await
                }
            };
            note(cluster, &r);
            r.map_err(api_err("client-side apply"))?
        }
    };
    Ok(to_value(result, api_version, &key.kind))
}

/// Create an object (hooks); `generateName` objects get their name from the server.
pub async fn create(cluster: &Cluster, obj: &Value, dry_run: bool) -> Result<Value, ApplyError> {
    let (key, api_version, api) = target(cluster, obj).await?;
    let pp = PostParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    let _permit = cluster.permit().await;
    let r = api.create(&pp, &to_dynamic(obj, &key)?).await;
    note(cluster, &r);
    let created = r.map_err(|source| ApplyError::Api {
        what: "create",
        key: key.to_string(),
        source,
    })?;
    Ok(to_value(created, api_version, &key.kind))
}

/// Delete an object; a missing object is not an error. Returns whether it existed.
pub async fn delete(
    cluster: &Cluster,
    obj: &Value,
    propagation: &str,
    dry_run: bool,
) -> Result<bool, ApplyError> {
    let (key, _, api) = target(cluster, obj).await?;
    let dp = DeleteParams {
        dry_run,
        propagation_policy: Some(match propagation {
            "Orphan" => PropagationPolicy::Orphan,
            "Background" => PropagationPolicy::Background,
            _ => PropagationPolicy::Foreground,
        }),
        ..Default::default()
    };
    let _permit = cluster.permit().await;
    let r = api.delete(&key.name, &dp).await;
    note(cluster, &r);
    match r {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(ApplyError::Api {
            what: "delete",
            key: key.to_string(),
            source,
        }),
    }
}

fn set_pointer(obj: &mut Value, pointer: &str, value: Value) {
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        let next = match cur {
            Value::Object(m) => m
                .entry(p.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(a) => match p.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
        cur = next;
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
    }
}

/// The namespace `CreateNamespace=true` applies, with the `labels` and `annotations` of
/// `syncPolicy.managedNamespaceMetadata`, if any.
pub fn namespace_object(name: &str, metadata: Option<&Value>) -> Result<Value, String> {
    let mut meta = Map::new();
    meta.insert("name".into(), Value::String(name.into()));
    let given = match metadata {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err("syncPolicy.managedNamespaceMetadata is not an object".into()),
    };
    for (field, value) in given.into_iter().flatten() {
        if field != "labels" && field != "annotations" {
            return Err(format!(
                "syncPolicy.managedNamespaceMetadata.{field}: only labels and annotations are allowed"
            ));
        }
        let entries = match value {
            Value::Null => continue,
            Value::Object(m) => m,
            _ => {
                return Err(format!(
                    "syncPolicy.managedNamespaceMetadata.{field} is not a map"
                ))
            }
        };
        if let Some((k, _)) = entries.iter().find(|(_, v)| !v.is_string()) {
            return Err(format!(
                "syncPolicy.managedNamespaceMetadata.{field}.{k} is not a string"
            ));
        }
        meta.insert(field.clone(), Value::Object(entries.clone()));
    }
    Ok(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}))
}

/// `RespectIgnoreDifferences=true`: keep the live values of ignored fields in the object to
/// apply, so a sync does not undo differences the app ignores. Fields named by JSON pointers
/// take the live value (or are left out when live has none); fields named by jq paths, and
/// fields the rule's `managedFieldsManagers` own in the live object, are left out of the
/// apply, so flotilla does not take them over.
pub fn respect_ignored(
    obj: &mut Value,
    live: &Value,
    rules: &[IgnoreRule],
) -> Result<(), DiffError> {
    let key = ResourceKey::of(obj);
    for rule in rules.iter().filter(|r| r.matches(&key)) {
        for p in &rule.json_pointers {
            match live.pointer(p) {
                Some(v) => set_pointer(obj, p, v.clone()),
                None => normalize::remove_pointer(obj, p)?,
            }
        }
        for e in &rule.jq_path_expressions {
            *obj = normalize::remove_jq_paths(obj, e)?;
        }
        rule.remove_managed(obj, live);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn respect_ignored_keeps_live_values() {
        let rules = [IgnoreRule {
            group: "apps".into(),
            kind: "Deployment".into(),
            json_pointers: vec!["/spec/replicas".into(), "/spec/paused".into()],
            jq_path_expressions: vec![".metadata.labels.skip".into()],
            ..Default::default()
        }];
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"skip": "x", "keep": "y"}},
            "spec": {"replicas": 1, "paused": true}});
        let live = json!({"spec": {"replicas": 7}});
        respect_ignored(&mut obj, &live, &rules).expect("rules");
        assert_eq!(obj["spec"], json!({"replicas": 7}));
        assert_eq!(obj["metadata"]["labels"], json!({"keep": "y"}));
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "spec": {"replicas": 1}});
        respect_ignored(&mut cm, &live, &rules).expect("rules");
        assert_eq!(
            cm["spec"]["replicas"], 1,
            "rules of other kinds do not apply"
        );
    }

    #[test]
    fn respect_ignored_leaves_out_fields_of_named_managers() {
        let rules = [IgnoreRule {
            group: "apps".into(),
            kind: "Deployment".into(),
            managed_fields_managers: vec!["kube-controller-manager".into(), "hpa".into()],
            ..Default::default()
        }];
        let live = json!({"metadata": {"managedFields": [
            {"manager": "hpa", "operation": "Update",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "flotilla", "operation": "Apply",
             "fieldsV1": {"f:spec": {"f:replicas": {}, "f:paused": {}}}},
            {"manager": "kubectl-edit", "operation": "Update",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}}]},
            "spec": {"replicas": 9, "paused": false}});
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"team": "a"}},
            "spec": {"replicas": 1, "paused": true}});
        respect_ignored(&mut obj, &live, &rules).expect("rules");
        assert_eq!(
            obj["spec"],
            json!({"paused": true}),
            "hpa's replicas left out"
        );
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"team": "a"}),
            "fields of managers not named stay"
        );
    }

    #[test]
    fn namespace_object_carries_managed_metadata() {
        let meta = json!({"labels": {"team": "a"}, "annotations": {"note": "x"}});
        let ns = namespace_object("n", Some(&meta)).expect("valid");
        assert_eq!(
            ns["metadata"],
            json!({"name": "n", "labels": {"team": "a"}, "annotations": {"note": "x"}})
        );
        assert_eq!(
            namespace_object("n", None).expect("plain")["metadata"],
            json!({"name": "n"})
        );
        let e = namespace_object("n", Some(&json!({"labels": {"n": 1}}))).expect_err("number");
        assert!(e.contains("labels.n is not a string"), "{e}");
        let e = namespace_object("n", Some(&json!({"finalizers": []}))).expect_err("field");
        assert!(e.contains("finalizers"), "{e}");
    }

    #[test]
    fn field_validation_is_strict_unless_validate_is_off() {
        assert_eq!(
            with_field_validation("/api/v1/namespaces/n/configmaps?", true),
            "/api/v1/namespaces/n/configmaps?fieldValidation=Strict"
        );
        assert_eq!(
            with_field_validation(
                "/api/v1/configmaps/c?dryRun=All&fieldManager=flotilla",
                false
            ),
            "/api/v1/configmaps/c?dryRun=All&fieldManager=flotilla&fieldValidation=Ignore"
        );
        assert_eq!(
            with_field_validation("/api/v1/namespaces", true),
            "/api/v1/namespaces?fieldValidation=Strict"
        );
    }

    #[test]
    fn merge_patch_removes_only_what_was_applied_before() {
        let last =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}});
        let desired = json!({"metadata": {"labels": {"a": "1"}}, "data": {"x": "3"}});
        assert_eq!(
            merge_patch(&last, &desired),
            json!({"metadata": {"labels": {"a": "1", "b": null}}, "data": {"x": "3", "y": null}})
        );
        assert_eq!(merge_patch(&json!({}), &desired), desired);
    }
}
