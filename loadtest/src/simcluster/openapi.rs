//! A small OpenAPI v3 surface: the `/openapi/v3` index and one document per group-version,
//! enough for `kubectl apply` to see that the server validates fields (`fieldValidation`).

use super::discovery::group_versions;
use super::kinds::ResourceType;
use super::store::Store;
use serde_json::{json, Map, Value};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// `/openapi/v3`.
pub fn index(store: &Store) -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions(store) {
        let p = gv_path(&g, &v);
        let hash = fnv(&document(store, &g, &v)
            .map(|d| d.to_string())
            .unwrap_or_default());
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

fn param(name: &str, location: &str, required: bool) -> Value {
    json!({"name": name, "in": location, "required": required, "schema": {"type": "string", "uniqueItems": true}})
}

fn schema_name(t: &ResourceType) -> String {
    let g = if t.group.is_empty() {
        "core".to_string()
    } else {
        t.group.clone()
    };
    format!("{g}.{}.{}", t.version, t.kind)
}

fn path_item(t: &ResourceType, gvk: &Value) -> Value {
    let mut params = vec![param("name", "path", true)];
    if t.namespaced {
        params.push(param("namespace", "path", true));
    }
    let op = |action: &str| {
        json!({
            "operationId": format!("{action}{}", t.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [param("dryRun", "query", false), param("fieldManager", "query", false),
                           param("fieldValidation", "query", false), param("force", "query", false)],
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(t))}}}}},
        })
    };
    json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "parameters": params})
}

/// The document of one group-version, if served.
pub fn document(store: &Store, group: &str, version: &str) -> Option<Value> {
    let types: Vec<_> = store
        .all_types()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let base = format!("/{}", gv_path(group, version));
    for t in types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let p = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{base}/{}/{{name}}", t.plural)
        };
        paths.insert(p, path_item(t, &gvk));
        schemas.insert(
            schema_name(t),
            json!({
                "type": "object",
                "description": format!("{} (simcluster: schema not enforced)", t.kind),
                "x-kubernetes-group-version-kind": [gvk],
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                               "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
