//! Simulated controllers: after a configurable delay, workloads report their replicas
//! ready, pods run, jobs complete (or fail when annotated), load balancers, PVCs and
//! ingresses get their status. Runs as short tasks scheduled by writes; idle clusters run
//! nothing.

use super::ops::{update_existing, Target, WriteOpts};
use super::store::{Key, Store};
use super::Cluster;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Annotation that makes the simulated controllers report a failure for the object.
pub const FAIL_ANNOTATION: &str = "simcluster.flotilla.dev/fail";

/// Per-cluster configuration of the simulated controllers.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Whether the controllers run at all.
    pub enabled: bool,
    /// Delay between a write and the status the controller reports for it.
    pub delay: Duration,
    /// Deployments create ReplicaSets and ReplicaSets create Pods (off: status only).
    pub children: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            enabled: true,
            delay: Duration::from_millis(300),
            children: true,
        }
    }
}

/// Most Pods the simulated controllers give one workload. Pods are created under the store
/// lock, so `replicas: 1000000000` would otherwise stall the whole cluster; status is computed
/// from the spec, so a larger `replicas` still reports as ready.
pub const MAX_PODS_PER_OWNER: i64 = 1000;

const CONTROLLED: &[&str] = &[
    "apps/deployments",
    "apps/replicasets",
    "apps/statefulsets",
    "apps/daemonsets",
    "/pods",
    "batch/jobs",
    "/services",
    "/persistentvolumeclaims",
    "networking.k8s.io/ingresses",
];

/// Schedules reconciliation of the keys a write touched.
pub(crate) fn schedule(cluster: &Arc<Cluster>, touched: Vec<Key>) {
    if !cluster.controllers.enabled {
        return;
    }
    let mut keys: Vec<Key> = touched
        .into_iter()
        .filter(|k| CONTROLLED.contains(&k.0.as_str()))
        .collect();
    keys.dedup();
    if keys.is_empty() {
        return;
    }
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let mut shutdown = cluster.shutdown.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(cluster.controllers.delay) => {}
            _ = shutdown.changed() => return,
        }
        let more = {
            let mut store = cluster.lock();
            for k in &keys {
                if cluster.controllers.children {
                    reconcile_children(&mut store, k);
                }
                reconcile(&mut store, k);
            }
            store.drain_touched()
        };
        // Status writes touch the same keys; they converge because a write that changes
        // nothing is not stored and so touches nothing.
        schedule(&cluster, more);
    });
}

fn failing(o: &Value) -> bool {
    o["metadata"]["annotations"][FAIL_ANNOTATION].as_str() == Some("true")
}

fn cond(t: &str, status: bool, reason: &str, message: &str, now: &str, old: &Value) -> Value {
    let s = if status { "True" } else { "False" };
    let since = old["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == t && c["status"] == s)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now)
        .to_string();
    json!({"type": t, "status": s, "reason": reason, "message": message, "lastTransitionTime": since, "lastUpdateTime": since})
}

/// The status the simulated controller wants for an object, if it manages the kind.
fn desired_status(gr: &str, o: &Value, now: &str) -> Option<Value> {
    let generation = o["metadata"]["generation"].clone();
    let replicas = o["spec"]["replicas"].as_i64().unwrap_or(1);
    let fail = failing(o);
    let ready = if fail { 0 } else { replicas };
    Some(match gr {
        "apps/deployments" => {
            let mut s = json!({"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": ready, "availableReplicas": ready});
            if fail {
                s["unavailableReplicas"] = json!(replicas);
                s["conditions"] = json!([
                    cond(
                        "Available",
                        false,
                        "MinimumReplicasUnavailable",
                        "Deployment does not have minimum availability.",
                        now,
                        o
                    ),
                    cond(
                        "Progressing",
                        false,
                        "ProgressDeadlineExceeded",
                        "simulated failure (annotation simcluster.flotilla.dev/fail)",
                        now,
                        o
                    ),
                ]);
            } else {
                s["conditions"] = json!([
                    cond(
                        "Available",
                        true,
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                        now,
                        o
                    ),
                    cond(
                        "Progressing",
                        true,
                        "NewReplicaSetAvailable",
                        "ReplicaSet has successfully progressed.",
                        now,
                        o
                    ),
                ]);
            }
            s
        }
        "apps/replicasets" => {
            json!({"observedGeneration": generation, "replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready})
        }
        "apps/statefulsets" => {
            json!({"observedGeneration": generation, "replicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
            "currentReplicas": replicas, "updatedReplicas": replicas, "currentRevision": "rev-1", "updateRevision": "rev-1"})
        }
        "apps/daemonsets" => {
            json!({"observedGeneration": generation, "desiredNumberScheduled": 1, "currentNumberScheduled": 1,
            "numberReady": if fail { 0 } else { 1 }, "numberAvailable": if fail { 0 } else { 1 }, "updatedNumberScheduled": 1, "numberMisscheduled": 0})
        }
        "/pods" => {
            let job_pod = o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["kind"] == "Job"));
            let started = o["metadata"]["creationTimestamp"].clone();
            let containers = |state: Value, ready: bool| -> Value {
                o["spec"]["containers"].as_array().into_iter().flatten().map(|c| json!({
                    "name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
                    "started": state.get("running").is_some(), "restartCount": 0, "state": state.clone()})).collect()
            };
            if job_pod && !fail {
                json!({"phase": "Succeeded", "podIP": "10.244.0.11", "hostIP": "172.18.0.2", "startTime": o["metadata"]["creationTimestamp"],
                    "containerStatuses": containers(json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now}}), false),
                    "conditions": [cond("Initialized", true, "", "", now, o), cond("Ready", false, "PodCompleted", "", now, o),
                                   cond("ContainersReady", false, "PodCompleted", "", now, o), cond("PodScheduled", true, "", "", now, o)]})
            } else if fail {
                json!({"phase": "Failed", "reason": "Simulated", "conditions": [cond("Ready", false, "PodFailed", "", now, o)],
                    "containerStatuses": containers(json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started, "finishedAt": now}}), false)})
            } else {
                json!({"phase": "Running", "podIP": "10.244.0.10", "hostIP": "172.18.0.2", "startTime": o["metadata"]["creationTimestamp"],
                    "containerStatuses": containers(json!({"running": {"startedAt": started}}), true),
                    "conditions": [cond("Initialized", true, "", "", now, o), cond("Ready", true, "", "", now, o),
                                   cond("ContainersReady", true, "", "", now, o), cond("PodScheduled", true, "", "", now, o)]})
            }
        }
        "batch/jobs" => {
            let start = o["status"]["startTime"].as_str().unwrap_or(now).to_string();
            if fail {
                json!({"startTime": start, "failed": 1, "active": 0,
                    "conditions": [cond("FailureTarget", true, "BackoffLimitExceeded", "Job has reached the specified backoff limit", now, o),
                                   cond("Failed", true, "BackoffLimitExceeded", "Job has reached the specified backoff limit", now, o)]})
            } else {
                let completions = o["spec"]["completions"].as_i64().unwrap_or(1);
                let done = o["status"]["completionTime"]
                    .as_str()
                    .unwrap_or(now)
                    .to_string();
                json!({"startTime": start, "completionTime": done, "succeeded": completions, "active": 0, "ready": 0,
                    "conditions": [cond("SuccessCriteriaMet", true, "CompletionsReached", "Reached expected number of succeeded pods", now, o),
                                   cond("Complete", true, "CompletionsReached", "Reached expected number of succeeded pods", now, o)]})
            }
        }
        "/services" if o["spec"]["type"] == "LoadBalancer" && !fail => {
            json!({"loadBalancer": {"ingress": [{"ip": "172.18.255.200", "ipMode": "VIP"}]}})
        }
        "/persistentvolumeclaims" if !fail => {
            let size = o["spec"]["resources"]["requests"]["storage"].clone();
            json!({"phase": "Bound", "accessModes": o["spec"]["accessModes"], "capacity": {"storage": size}})
        }
        "networking.k8s.io/ingresses" if !fail => {
            json!({"loadBalancer": {"ingress": [{"ip": "172.18.255.201"}]}})
        }
        _ => return None,
    })
}

fn reconcile_children(store: &mut Store, key: &Key) {
    let Some(obj) = store.get(&key.0, &key.1, &key.2).cloned() else {
        return;
    };
    if obj["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    match key.0.as_str() {
        "apps/deployments" => super::children::deployment(store, key, &obj),
        "apps/replicasets" | "apps/statefulsets" => {
            let want = obj["spec"]["replicas"]
                .as_i64()
                .unwrap_or(1)
                .clamp(0, MAX_PODS_PER_OWNER) as usize;
            super::children::pods(store, key, &obj, want, key.0 == "apps/statefulsets")
        }
        "apps/daemonsets" => super::children::pods(store, key, &obj, 1, false),
        "batch/jobs" => {
            let want = obj["spec"]["completions"]
                .as_i64()
                .unwrap_or(1)
                .clamp(0, 100) as usize;
            super::children::pods(store, key, &obj, want, false)
        }
        _ => {}
    }
}

fn reconcile(store: &mut Store, key: &Key) {
    let Some(obj) = store.get(&key.0, &key.1, &key.2).cloned() else {
        return;
    };
    if obj["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    let now = super::meta::now_rfc3339();
    let Some(status) = desired_status(&key.0, &obj, &now) else {
        return;
    };
    let (group, plural) = key.0.split_once('/').unwrap_or(("", &key.0));
    let Some(rt) = store
        .all_types()
        .find(|t| t.group == group && t.plural == plural)
        .cloned()
    else {
        return;
    };
    let mut new = obj.clone();
    new["status"] = status;
    let t = Target {
        rt,
        ns: Some(key.1.clone()).filter(|n| !n.is_empty()),
        name: Some(key.2.clone()),
        sub: Some("status".into()),
    };
    let opts = WriteOpts {
        manager: "kube-controller-manager".into(),
        ..Default::default()
    };
    if let Err(error) = update_existing(store, &t, &obj, new, &opts, false) {
        tracing::debug!(%error, ?key, "simulated controller write failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_report_available_unless_failing() {
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 3}});
        let s = desired_status("apps/deployments", &d, "t").unwrap();
        assert_eq!(s["availableReplicas"], 3);
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(s["conditions"][0]["status"], "True");
        let f = json!({"metadata": {"annotations": {FAIL_ANNOTATION: "true"}}, "spec": {"replicas": 2}});
        let s = desired_status("apps/deployments", &f, "t").unwrap();
        assert_eq!(s["conditions"][0]["status"], "False");
        assert!(desired_status("/configmaps", &d, "t").is_none());
    }

    #[test]
    fn huge_replica_counts_get_a_bounded_number_of_pods() {
        let mut store = Store::default();
        let ns = |n: &str| json!({"metadata": {"name": n}});
        store.put(
            ("/namespaces".into(), String::new(), "default".into()),
            ns("default"),
            super::super::store::EventType::Added,
        );
        let key: Key = ("apps/replicasets".into(), "default".into(), "big".into());
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "big", "namespace": "default", "uid": "u-big"},
            "spec": {"replicas": 1_000_000_000_i64, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}});
        store.put(key.clone(), rs, super::super::store::EventType::Added);
        store.drain_touched();
        reconcile_children(&mut store, &key);
        let pods = store.list("/pods".into(), Some("default".into())).count();
        assert_eq!(pods as i64, MAX_PODS_PER_OWNER);
        // Every Pod written is handed to the controllers, none dropped.
        let touched = store.drain_touched();
        assert_eq!(
            touched.iter().filter(|k| k.0 == "/pods").count() as i64,
            MAX_PODS_PER_OWNER
        );
    }
}
