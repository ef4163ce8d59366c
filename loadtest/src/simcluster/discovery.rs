//! API discovery: the legacy documents (`/api`, `/apis`, `/api/v1`, `/apis/{g}/{v}`) and the
//! aggregated v2 form clients ask for with
//! `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`.

use super::kinds::ResourceType;
use super::store::Store;
use serde_json::{json, Value};
use std::sync::Arc;

/// Content type of aggregated discovery responses.
pub const AGGREGATED_CT: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated v2 discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|a| {
        let parts: Vec<&str> = a.split(';').map(str::trim).collect();
        parts.contains(&"g=apidiscovery.k8s.io")
            && parts.contains(&"v=v2")
            && parts.contains(&"as=APIGroupDiscoveryList")
    })
}

/// Non-core groups with their versions, in serving order.
fn groups(store: &Store) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = vec![];
    for t in store.all_types().filter(|t| !t.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) if !vs.contains(&t.version) => vs.push(t.version.clone()),
            Some(_) => {}
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    out
}

fn types_in<'a>(store: &'a Store, group: &'a str, version: &'a str) -> Vec<&'a Arc<ResourceType>> {
    store
        .all_types()
        .filter(|t| t.group == group && t.version == version)
        .collect()
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs[0]})
}

/// `/api` (legacy).
pub fn core_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

/// `/apis` (legacy).
pub fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = groups(store)
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}` (legacy), if the group exists.
pub fn group(store: &Store, name: &str) -> Option<Value> {
    let (g, vs) = groups(store).into_iter().find(|(g, _)| g == name)?;
    let mut v = group_json(&g, &vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

/// `/api/v1` or `/apis/{group}/{version}` (legacy), if the group-version exists.
pub fn resource_list(store: &Store, group: &str, version: &str) -> Option<Value> {
    let types = types_in(store, group, version);
    if types.is_empty() {
        return None;
    }
    let mut resources = vec![];
    for t in types {
        resources.push(json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": t.verbs(), "shortNames": t.short_names, "categories": t.categories,
        }));
        if t.has_status {
            resources.push(
                json!({"name": format!("{}/status", t.plural), "singularName": "",
                "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if super::ops::has_scale(t) {
            resources.push(json!({"name": format!("{}/scale", t.plural), "singularName": "", "group": "autoscaling",
                "version": "v1", "namespaced": t.namespaced, "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn resource_v2(t: &ResourceType) -> Value {
    let kind = json!({"group": t.group, "version": t.version, "kind": t.kind});
    let mut r = json!({
        "resource": t.plural, "responseKind": kind, "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular, "verbs": t.verbs(),
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    let mut subs = vec![];
    if t.has_status {
        subs.push(json!({"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}));
    }
    if super::ops::has_scale(t) {
        subs.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]}));
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

fn group_v2(store: &Store, group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| {
            let rs: Vec<Value> = types_in(store, group, v)
                .into_iter()
                .map(|t| resource_v2(t))
                .collect();
            json!({"version": v, "resources": rs, "freshness": "Current"})
        })
        .collect();
    let meta = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": meta, "versions": vs})
}

/// `/api` or `/apis` in the aggregated v2 form.
pub fn aggregated(store: &Store, core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![group_v2(store, "", &["v1".to_string()])]
    } else {
        groups(store)
            .iter()
            .map(|(g, vs)| group_v2(store, g, vs))
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// All group-versions served (`api/v1`, `apis/apps/v1`, ...), for the OpenAPI index.
pub fn group_versions(store: &Store) -> Vec<(String, String)> {
    let mut out = vec![(String::new(), "v1".to_string())];
    for (g, vs) in groups(store) {
        for v in vs {
            out.push((g.clone(), v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_accept_is_recognised_only_when_asked() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
    }

    #[test]
    fn builtin_groups_are_listed() {
        let store = Store::default();
        let gl = group_list(&store);
        assert!(gl["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "apps"));
        let rl = resource_list(&store, "apps", "v1").unwrap();
        assert!(rl["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "deployments/status"));
        assert!(resource_list(&store, "nope", "v1").is_none());
    }
}
