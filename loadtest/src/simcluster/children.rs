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
    json!({"apiVersion": owner["apiVersion"], "kind": kind, "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
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

/// Makes the Pods a workload owns match `want`: ReplicaSets, DaemonSets and Jobs name them
/// `<owner>-<random>`, StatefulSets `<owner>-<ordinal>`. Pods carry the template's labels
/// and the owner's failure annotation.
pub fn pods(store: &mut Store, key: &Key, owner: &Value, want: usize, ordinal: bool) {
    let ns = key.1.as_str();
    let template = &owner["spec"]["template"];
    if !template.is_object() {
        return;
    }
    let uid = owner["metadata"]["uid"].clone();
    let have: Vec<String> = owned_by(store, "/pods", ns, &uid)
        .into_iter()
        .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    let wanted: Vec<String> = if ordinal {
        (0..want).map(|i| format!("{}-{i}", key.2)).collect()
    } else {
        vec![]
    };
    let extra: Vec<&String> = if ordinal {
        have.iter().filter(|n| !wanted.contains(n)).collect()
    } else {
        have.iter().skip(want).collect()
    };
    for name in extra {
        if let Some(t) = target(store, "", "pods", ns, Some(name.clone())) {
            let _ = delete(store, &t, &json!({}), &opts());
        }
    }
    let missing: Vec<Option<String>> = if ordinal {
        wanted
            .into_iter()
            .filter(|n| !have.contains(n))
            .map(Some)
            .collect()
    } else {
        (have.len()..want).map(|_| None).collect()
    };
    let kind = owner["kind"].as_str().unwrap_or_default();
    for name in missing {
        let Some(t) = target(store, "", "pods", ns, None) else {
            return;
        };
        let mut meta = json!({"namespace": ns, "ownerReferences": [owner_ref(owner, kind)]});
        match name {
            Some(n) => meta["name"] = json!(n),
            None => meta["generateName"] = json!(format!("{}-", key.2)),
        }
        if template["metadata"]["labels"].is_object() {
            meta["labels"] = template["metadata"]["labels"].clone();
        }
        if let Some(fail) =
            owner["metadata"]["annotations"].get(super::controllers::FAIL_ANNOTATION)
        {
            meta["annotations"] = json!({super::controllers::FAIL_ANNOTATION: fail});
        }
        let pod =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]});
        let _ = create(store, &t, pod, &opts());
    }
}
