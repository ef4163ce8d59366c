//! The API verbs on one cluster's store: get, list, create, update, patch, delete.
//! Pure functions over `Store`; the HTTP shell in `server` calls them under the lock.

use super::apply;
use super::gc;
use super::kinds::{crd_status, ResourceType};
use super::meta::{
    meta_str, metadata_mut, name_suffix, new_uid, now_rfc3339, spec_part, valid_name,
};
use super::patch;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{EventType, Key, Store};
use serde_json::{json, Value};
use std::sync::Arc;

/// How many more names a create with `generateName` draws when one is taken.
const GENERATE_NAME_RETRIES: usize = 7;

/// What a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource type.
    pub rt: Arc<ResourceType>,
    /// Namespace from the path, if any.
    pub ns: Option<String>,
    /// Object name from the path, if any.
    pub name: Option<String>,
    /// Subresource (`status`), if any.
    pub sub: Option<String>,
}

impl Target {
    fn key(&self, name: &str) -> Key {
        (
            self.rt.group_resource(),
            self.ns.clone().unwrap_or_default(),
            name.to_string(),
        )
    }

    fn name(&self) -> Result<&str, ApiError> {
        self.name
            .as_deref()
            .ok_or_else(|| ApiError::method_not_allowed("a name is required"))
    }
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    /// `dryRun=All`: compute, answer, store nothing.
    pub dry_run: bool,
    /// Field manager (query `fieldManager`, else the user agent's program name).
    pub manager: String,
    /// `force=true` for server-side apply.
    pub force: bool,
}

/// Query of a list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Page size (0 = all).
    pub limit: usize,
    /// Continue token from a previous page.
    pub cont: Option<String>,
}

/// The `openAPIV3Schema` of a custom type's version (Null for built-ins or when absent).
fn crd_schema(store: &Store, rt: &ResourceType) -> Value {
    if !rt.custom {
        return Value::Null;
    }
    store
        .get(
            "apiextensions.k8s.io/customresourcedefinitions",
            "",
            &format!("{}.{}", rt.plural, rt.group),
        )
        .and_then(|crd| {
            crd["spec"]["versions"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == rt.version.as_str())
                .map(|v| v["schema"]["openAPIV3Schema"].clone())
        })
        .unwrap_or(Value::Null)
}

fn lists_for<'a>(rt: &ResourceType, schema: &'a Value) -> apply::fieldset::Lists<'a> {
    if rt.custom {
        apply::fieldset::Lists::Schema(schema)
    } else {
        apply::fieldset::Lists::Builtin
    }
}

/// Sets `apiVersion` and `kind` as the requested version spells them.
pub fn typed(mut obj: Value, rt: &ResourceType) -> Value {
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), Value::String(rt.api_version()));
        m.insert("kind".into(), Value::String(rt.kind.clone()));
        // Keep apiVersion and kind first, as real servers print them.
        let rest: Vec<(String, Value)> = m
            .iter()
            .filter(|(k, _)| *k != "apiVersion" && *k != "kind")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = serde_json::Map::new();
        out.insert("apiVersion".into(), Value::String(rt.api_version()));
        out.insert("kind".into(), Value::String(rt.kind.clone()));
        out.extend(rest);
        *m = out;
    }
    obj
}

/// GET of one object.
pub fn get(store: &Store, t: &Target) -> Result<Value, ApiError> {
    let name = t.name()?;
    let (gr, ns, _) = t.key(name);
    store
        .get(&gr, &ns, name)
        .map(|o| typed(o.clone(), &t.rt))
        .ok_or_else(|| ApiError::not_found(&t.rt.qualified(), name))
}

/// Objects of a list or watch, after selectors.
pub fn matching<'a>(
    store: &'a Store,
    t: &'a Target,
    q: &'a ListQuery,
) -> impl Iterator<Item = &'a Value> + 'a {
    let gr = t.rt.group_resource();
    let ns = if t.rt.namespaced { t.ns.clone() } else { None };
    let items: Vec<&Value> = store.list(gr, ns).collect();
    items
        .into_iter()
        .filter(move |o| q.labels.matches(o) && q.fields.matches(o))
}

/// LIST with selectors and paging.
pub fn list(store: &Store, t: &Target, q: &ListQuery) -> Result<Value, ApiError> {
    let after = match &q.cont {
        Some(c) => {
            let mut parts = c.splitn(3, ':');
            let rv: u64 = parts
                .next()
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| ApiError::bad_request(format!("invalid continue token {c:?}")))?;
            if rv < store.compacted() {
                return Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
            }
            Some((
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            ))
        }
        None => None,
    };
    let mut items = vec![];
    let mut cont = None;
    for o in matching(store, t, q) {
        let key = (
            meta_str(o, "namespace").unwrap_or_default().to_string(),
            meta_str(o, "name").unwrap_or_default().to_string(),
        );
        if after.as_ref().is_some_and(|a| key <= *a) {
            continue;
        }
        if q.limit > 0 && items.len() == q.limit {
            if let Some(Value::Object(last)) = items.last() {
                let m = &last["metadata"];
                cont = Some(format!(
                    "{}:{}:{}",
                    store.rv(),
                    m["namespace"].as_str().unwrap_or_default(),
                    m["name"].as_str().unwrap_or_default()
                ));
            }
            break;
        }
        items.push(typed(o.clone(), &t.rt));
    }
    let mut meta = json!({"resourceVersion": store.rv().to_string()});
    if let Some(c) = cont {
        meta["continue"] = Value::String(c);
    }
    Ok(json!({
        "apiVersion": t.rt.api_version(),
        "kind": format!("{}List", t.rt.kind),
        "metadata": meta,
        "items": items,
    }))
}

fn check_namespace(store: &Store, t: &Target) -> Result<(), ApiError> {
    if let (true, Some(ns)) = (t.rt.namespaced, &t.ns) {
        if store.get("/namespaces", "", ns).is_none() {
            return Err(ApiError::not_found("namespaces", ns));
        }
    }
    if t.rt.namespaced && t.ns.is_none() {
        return Err(ApiError::bad_request(
            "the namespace of the object must be given in the path",
        ));
    }
    Ok(())
}

/// Fills in defaults a real API server would (a small, commonly relied-on subset).
fn apply_defaults(obj: &mut Value, rt: &ResourceType) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments" | "replicasets" | "statefulsets")
            if obj["spec"].is_object() && obj["spec"].get("replicas").is_none() =>
        {
            obj["spec"]["replicas"] = json!(1);
        }
        ("", "services") if obj["spec"].is_object() => {
            if obj["spec"].get("type").is_none() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
            if obj["spec"].get("clusterIP").is_none() && obj["spec"]["type"] != "ExternalName" {
                let h = new_uid();
                let n = u16::from_str_radix(&h[..4], 16).unwrap_or(1);
                obj["spec"]["clusterIP"] = json!(format!("10.96.{}.{}", n >> 8, (n & 0xff).max(1)));
            }
        }
        // Like the API server: a Secret's type defaults to Opaque, and `stringData` is
        // write-only, folded into `data`.
        ("", "secrets") if obj.is_object() => {
            if obj["type"].as_str().is_none_or(str::is_empty) {
                obj["type"] = json!("Opaque");
            }
            if let Some(Value::Object(plain)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                if !obj["data"].is_object() {
                    obj["data"] = json!({});
                }
                for (k, v) in plain {
                    let v = super::tls::base64(v.as_str().unwrap_or_default().as_bytes());
                    obj["data"][k] = json!(v);
                }
            }
        }
        _ => {}
    }
}

/// POST: create an object (honours `generateName`).
pub fn create(
    store: &mut Store,
    t: &Target,
    mut obj: Value,
    opts: &WriteOpts,
) -> Result<(u16, Value), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    check_namespace(store, t)?;
    let meta = metadata_mut(&mut obj);
    let generate = match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => None,
        _ => meta
            .get("generateName")
            .and_then(Value::as_str)
            .map(String::from),
    };
    let mut name = match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => match &generate {
            Some(g) => format!("{g}{}", name_suffix()),
            None => {
                return Err(ApiError::invalid(
                    &t.rt.kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ))
            }
        },
    };
    // RBAC names only need to be valid path segments (`system:controller:x`).
    let rbac = t.rt.group == "rbac.authorization.k8s.io";
    let path_segment_ok =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%']);
    if !(valid_name(&name) || (rbac && path_segment_ok)) {
        return Err(ApiError::invalid(&t.rt.kind, &name, "metadata.name", format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'")));
    }
    if let (Some(body_ns), Some(ns)) = (meta.get("namespace").and_then(Value::as_str), &t.ns) {
        if body_ns != ns {
            return Err(ApiError::bad_request(format!("the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})")));
        }
    }
    meta.insert("name".into(), json!(name));
    if let (true, Some(ns)) = (t.rt.namespaced, &t.ns) {
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    if t.rt.has_status || t.rt.custom {
        meta.insert("generation".into(), json!(1));
    }
    if t.rt.has_status {
        if let Value::Object(m) = &mut obj {
            m.remove("status");
        }
    }
    let mut key = t.key(&name);
    // Like the API server since 1.32 (KEP-4420), a generated name that is taken is drawn
    // again a few times before the create fails.
    if let Some(g) = &generate {
        for _ in 0..GENERATE_NAME_RETRIES {
            if store.get(&key.0, &key.1, &key.2).is_none() {
                break;
            }
            name = format!("{g}{}", name_suffix());
            key = t.key(&name);
        }
        metadata_mut(&mut obj).insert("name".into(), json!(name));
    }
    if store.get(&key.0, &key.1, &key.2).is_some() {
        return Err(ApiError::already_exists(&t.rt.qualified(), &name));
    }
    obj = typed(obj, &t.rt);
    apply_defaults(&mut obj, &t.rt);
    initial_status(&mut obj, &t.rt);
    if !obj["metadata"]["managedFields"].is_array() {
        let schema = crd_schema(store, &t.rt);
        apply::record_update(None, &mut obj, &opts.manager, lists_for(&t.rt, &schema), "");
    }
    if opts.dry_run {
        return Ok((201, obj));
    }
    Ok((201, typed(store.put(key, obj, EventType::Added), &t.rt)))
}

fn initial_status(obj: &mut Value, rt: &ResourceType) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => obj["status"] = json!({"phase": "Active"}),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            obj["status"] = crd_status(obj, &now_rfc3339());
        }
        _ => {}
    }
}

/// Stores a changed version of an existing object: keeps what clients may not change,
/// enforces optimistic concurrency, bumps `generation` on spec changes, records managers.
/// `managed_done` means `new` already carries its `managedFields` (server-side apply).
pub fn update_existing(
    store: &mut Store,
    t: &Target,
    old: &Value,
    mut new: Value,
    opts: &WriteOpts,
    managed_done: bool,
) -> Result<(u16, Value), ApiError> {
    let name = t.name()?.to_string();
    if !new.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if let Some(body_name) = meta_str(&new, "name") {
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
    }
    if let Some(rv) = meta_str(&new, "resourceVersion") {
        if Some(rv) != meta_str(old, "resourceVersion") {
            return Err(ApiError::conflict(&t.rt.qualified(), &name, "the object has been modified; please apply your changes to the latest version and try again"));
        }
    }
    let status_write = t.sub.as_deref() == Some("status");
    if status_write {
        let status = new.get("status").cloned();
        new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Value::Object(m) = &mut new {
                    m.remove("status");
                }
            }
        }
    } else if t.rt.has_status {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Value::Object(m) = &mut new {
                    m.remove("status");
                }
            }
        }
    }
    {
        let om = &old["metadata"];
        let meta = metadata_mut(&mut new);
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
        ] {
            match om.get(f) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        match om.get("generation") {
            Some(g) => meta.insert("generation".into(), g.clone()),
            None => meta.remove("generation"),
        };
        if om.get("deletionTimestamp").is_some() {
            // No new finalizers once deletion started.
            let old_f = om["finalizers"].as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(f)) = meta.get_mut("finalizers") {
                f.retain(|x| old_f.contains(x));
            }
        }
    }
    new = typed(new, &t.rt);
    apply_defaults(&mut new, &t.rt);
    if t.rt.plural == "customresourcedefinitions" && !status_write {
        new["status"] = crd_status(&new, &now_rfc3339());
        if let Some(c) = old["status"]["conditions"].as_array() {
            new["status"]["conditions"] = Value::Array(c.clone());
        }
    }
    // A client that sends managedFields different from the live ones sets them (as the
    // API server allows); otherwise the write is recorded for its manager.
    if !managed_done
        && new["metadata"]
            .get("managedFields")
            .is_none_or(|m| *m == old["metadata"]["managedFields"])
    {
        let sub = if status_write { "status" } else { "" };
        let schema = crd_schema(store, &t.rt);
        apply::record_update(
            Some(old),
            &mut new,
            &opts.manager,
            lists_for(&t.rt, &schema),
            sub,
        );
    }
    if (t.rt.has_status || t.rt.custom) && spec_part(&new) != spec_part(old) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        metadata_mut(&mut new).insert("generation".into(), json!(g));
    }
    let finalizing = new["metadata"].get("deletionTimestamp").is_some()
        && new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
    if new == typed(old.clone(), &t.rt) && !finalizing {
        return Ok((200, new));
    }
    if opts.dry_run {
        return Ok((200, new));
    }
    let key = t.key(&name);
    if finalizing {
        store.put(key.clone(), new, EventType::Modified);
        let gone = store
            .remove(&key)
            .map(|o| typed(o, &t.rt))
            .unwrap_or(Value::Null);
        gc::sweep(store);
        return Ok((200, gone));
    }
    Ok((200, typed(store.put(key, new, EventType::Modified), &t.rt)))
}

/// PUT: replace an object.
pub fn update(
    store: &mut Store,
    t: &Target,
    new: Value,
    opts: &WriteOpts,
) -> Result<(u16, Value), ApiError> {
    let name = t.name()?;
    let (gr, ns, _) = t.key(name);
    let old = store
        .get(&gr, &ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt.qualified(), name))?;
    update_existing(store, t, &old, new, opts, false)
}

/// PATCH in any of the four content types.
pub fn patch(
    store: &mut Store,
    t: &Target,
    content_type: &str,
    body: &[u8],
    opts: &WriteOpts,
) -> Result<(u16, Value), ApiError> {
    let name = t.name()?.to_string();
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    let parse_json = || -> Result<Value, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))
    };
    let (gr, ns, _) = t.key(&name);
    let live = store.get(&gr, &ns, &name).cloned();
    if ct == "application/apply-patch+yaml" {
        let mut applied: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => serde_yaml::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("the apply patch is neither JSON nor YAML: {e}"))
            })?,
        };
        if opts.manager.is_empty() || opts.manager == "unknown" {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set",
            ));
        }
        apply::clean_applied(&mut applied)?;
        if let Some(n) = meta_str(&applied, "name") {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        if t.rt.has_status && t.sub.is_none() {
            if let Value::Object(m) = &mut applied {
                m.remove("status");
            }
        }
        let Some(live) = live else {
            metadata_mut(&mut applied).insert("name".into(), json!(name));
            let schema = crd_schema(store, &t.rt);
            let merged = apply::apply(
                None,
                &applied,
                &opts.manager,
                opts.force,
                lists_for(&t.rt, &schema),
            )?;
            return create(store, t, merged, opts);
        };
        if let Some(rv) = meta_str(&applied, "resourceVersion") {
            if Some(rv) != meta_str(&live, "resourceVersion") {
                return Err(ApiError::conflict(&t.rt.qualified(), &name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        let schema = crd_schema(store, &t.rt);
        let mut merged = apply::apply(
            Some(&live),
            &applied,
            &opts.manager,
            opts.force,
            lists_for(&t.rt, &schema),
        )?;
        if let Some(rv) = meta_str(&live, "resourceVersion") {
            metadata_mut(&mut merged).insert("resourceVersion".into(), json!(rv));
        }
        return update_existing(store, t, &live, merged, opts, true);
    }
    let live = live.ok_or_else(|| ApiError::not_found(&t.rt.qualified(), &name))?;
    let mut new = live.clone();
    match ct {
        "application/merge-patch+json" => patch::merge_patch(&mut new, &parse_json()?),
        "application/json-patch+json" => patch::json::apply(&mut new, &parse_json()?)?,
        "application/strategic-merge-patch+json" => {
            if t.rt.custom {
                return Err(ApiError::unsupported_media_type(format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for custom resource {})", t.rt.qualified())));
            }
            patch::strategic::apply(&mut new, &parse_json()?)?
        }
        other => {
            return Err(ApiError::unsupported_media_type(format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})")))
        }
    }
    update_existing(store, t, &live, new, opts, false)
}

/// DELETE with `DeleteOptions` (propagation policy, preconditions).
pub fn delete(
    store: &mut Store,
    t: &Target,
    options: &Value,
    opts: &WriteOpts,
) -> Result<(u16, Value), ApiError> {
    let name = t.name()?.to_string();
    let key = t.key(&name);
    let live = store
        .get(&key.0, &key.1, &key.2)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt.qualified(), &name))?;
    let pre = &options["preconditions"];
    if let Some(uid) = pre["uid"].as_str() {
        if Some(uid) != meta_str(&live, "uid") {
            return Err(ApiError::conflict(
                &t.rt.qualified(),
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&live, "uid").unwrap_or_default()
                ),
            ));
        }
    }
    if let Some(rv) = pre["resourceVersion"].as_str() {
        if Some(rv) != meta_str(&live, "resourceVersion") {
            return Err(ApiError::conflict(&t.rt.qualified(), &name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", meta_str(&live, "resourceVersion").unwrap_or_default())));
        }
    }
    let policy = options["propagationPolicy"].as_str().unwrap_or(
        if options["orphanDependents"] == json!(true) {
            "Orphan"
        } else {
            "Background"
        },
    );
    if !matches!(policy, "Background" | "Foreground" | "Orphan") {
        return Err(ApiError::invalid("DeleteOptions", "", "propagationPolicy", format!("Unsupported value: {policy:?}: supported values: \"Foreground\", \"Background\", \"Orphan\"")));
    }
    if opts.dry_run {
        return Ok((200, typed(live, &t.rt)));
    }
    Ok((200, typed(gc::delete_object(store, &key, policy), &t.rt)))
}

/// Whether a type has the `scale` subresource.
pub fn has_scale(rt: &ResourceType) -> bool {
    rt.group == "apps"
        && matches!(
            rt.plural.as_str(),
            "deployments" | "replicasets" | "statefulsets"
        )
}

fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                     "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// The `scale` subresource: `None` body reads, otherwise a PUT (`content_type` None) or PATCH.
pub fn scale(
    store: &mut Store,
    t: &Target,
    content_type: Option<&str>,
    body: Option<&[u8]>,
    opts: &WriteOpts,
) -> Result<(u16, Value), ApiError> {
    let name = t.name()?.to_string();
    let (gr, ns, _) = t.key(&name);
    let live = store
        .get(&gr, &ns, &name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt.qualified(), &name))?;
    let current = scale_of(&live);
    let Some(body) = body else {
        return Ok((200, current));
    };
    let parse = || {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the scale body is not valid JSON: {e}")))
    };
    let wanted = match content_type.map(|c| c.split(';').next().unwrap_or_default().trim()) {
        None => parse()?,
        Some("application/merge-patch+json")
        | Some("application/strategic-merge-patch+json")
        | Some("application/apply-patch+yaml") => {
            let mut s = current.clone();
            patch::merge_patch(&mut s, &parse()?);
            s
        }
        Some("application/json-patch+json") => {
            let mut s = current.clone();
            patch::json::apply(&mut s, &parse()?)?;
            s
        }
        Some(other) => {
            return Err(ApiError::unsupported_media_type(format!(
                "unsupported patch type {other:?} for scale"
            )))
        }
    };
    if let Some(rv) = wanted["metadata"]["resourceVersion"].as_str() {
        if Some(rv) != meta_str(&live, "resourceVersion") {
            return Err(ApiError::conflict(&t.rt.qualified(), &name, "the object has been modified; please apply your changes to the latest version and try again"));
        }
    }
    let replicas = wanted["spec"]["replicas"]
        .as_i64()
        .ok_or_else(|| ApiError::invalid("Scale", &name, "spec.replicas", "Required value"))?;
    if !live["spec"].is_object() {
        return Err(ApiError::invalid(
            &t.rt.kind,
            &name,
            "spec",
            "must be an object to scale",
        ));
    }
    let mut new = live.clone();
    new["spec"]["replicas"] = json!(replicas);
    let main = Target {
        sub: None,
        ..t.clone()
    };
    let (code, obj) = update_existing(store, &main, &live, new, opts, false)?;
    Ok((code, scale_of(&obj)))
}
