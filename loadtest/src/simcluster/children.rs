//! Workload children: a Deployment gets a ReplicaSet per pod template (older ones scaled to
//! zero), a ReplicaSet gets its Pods, all with controller owner references, so resource
//! trees look as on a real cluster and garbage collection removes them with their owner.

use super::ops::{create, delete, update_existing, Target, WriteOpts};
use super::store::{Key, Store};
use serde_json::{json, Value};

fn opts() -> WriteOpts {
    WriteOpts {
        manager: "kube-controller-manager".into(),
        ..Default::default()
    }
}

fn target(
    store: &Store,
    group: &str,
    plural: &str,
    ns: &str,
    name: Option<String>,
) -> Option<Target> {
    let rt = store
        .all_types()
        .find(|t| t.group == group && t.plural == plural)
        .cloned()?;
    Some(Target {
        rt,
        ns: Some(ns.to_string()),
        name,
        sub: None,
    })
}

fn owner_ref(owner: &Value, kind: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true})
}

fn owned_by<'a>(store: &'a Store, gr: &str, ns: &str, uid: &'a Value) -> Vec<&'a Value> {
    store
        .list(gr.to_string(), Some(ns.to_string()))
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["uid"] == *uid))
        })
        .collect()
}

/// A short stable hash of a pod template (the `pod-template-hash` label).
fn template_hash(template: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// Makes a Deployment's ReplicaSets match its template and replicas.
pub fn deployment(store: &mut Store, key: &Key, d: &Value) {
    let ns = key.1.as_str();
    let template = d["spec"]["template"].clone();
    // Only well-formed specs get children (indexing below assumes objects).
    let map_or_null = |v: &Value| v.is_object() || v.is_null();
    if !template.is_object()
        || !map_or_null(&template["metadata"])
        || !map_or_null(&template["metadata"]["labels"])
        || !map_or_null(&d["spec"]["selector"])
        || !map_or_null(&d["spec"]["selector"]["matchLabels"])
    {
        return;
    }
    let hash = template_hash(&template);
    let name = format!("{}-{hash}", key.2);
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let uid = d["metadata"]["uid"].clone();
    let others: Vec<(String, Value)> = owned_by(store, "apps/replicasets", ns, &uid)
        .into_iter()
        .filter(|rs| rs["metadata"]["name"] != name.as_str() && rs["spec"]["replicas"] != 0)
        .map(|rs| {
            (
                rs["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                rs.clone(),
            )
        })
        .collect();
    for (other, rs) in others {
        let Some(t) = target(store, "apps", "replicasets", ns, Some(other)) else {
            return;
        };
        if !rs["spec"].is_object() {
            continue;
        }
        let mut new = rs.clone();
        new["spec"]["replicas"] = json!(0);
        let _ = update_existing(store, &t, &rs, new, &opts(), false);
    }
    let Some(t) = target(store, "apps", "replicasets", ns, Some(name.clone())) else {
        return;
    };
    match store.get("apps/replicasets", ns, &name).cloned() {
        Some(rs) if rs["spec"].is_object() && rs["spec"]["replicas"] != replicas => {
            let mut new = rs.clone();
            new["spec"]["replicas"] = json!(replicas);
            let _ = update_existing(store, &t, &rs, new, &opts(), false);
        }
        Some(_) => {}
        None => {
            let mut template = template;
            template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = d["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": ns, "labels": template["metadata"]["labels"],
                             "ownerReferences": [owner_ref(d, "Deployment")]},
                "spec": {"replicas": replicas, "selector": selector, "template": template}});
            let _ = create(store, &Target { name: None, ..t }, rs, &opts());
        }
    }
}

/// Makes a ReplicaSet's Pods match its replicas.
pub fn replicaset(store: &mut Store, key: &Key, rs: &Value) {
    let ns = key.1.as_str();
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let uid = rs["metadata"]["uid"].clone();
    let pods: Vec<String> = owned_by(store, "/pods", ns, &uid)
        .into_iter()
        .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    for extra in pods.iter().skip(want) {
        if let Some(t) = target(store, "", "pods", ns, Some(extra.clone())) {
            let _ = delete(store, &t, &json!({}), &opts());
        }
    }
    for _ in pods.len()..want {
        let Some(t) = target(store, "", "pods", ns, None) else {
            return;
        };
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": format!("{}-", key.2), "namespace": ns,
                         "labels": rs["spec"]["template"]["metadata"]["labels"],
                         "annotations": rs["metadata"]["annotations"].as_object().and_then(|a| a.get(super::controllers::FAIL_ANNOTATION)).map(|v| json!({super::controllers::FAIL_ANNOTATION: v})),
                         "ownerReferences": [owner_ref(rs, "ReplicaSet")]},
            "spec": rs["spec"]["template"]["spec"]});
        let mut pod = pod;
        if pod["metadata"]["annotations"].is_null() {
            if let Some(m) = pod["metadata"].as_object_mut() {
                m.remove("annotations");
            }
        }
        let _ = create(store, &t, pod, &opts());
    }
}
