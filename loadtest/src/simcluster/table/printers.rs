//! Table columns of the common built-in kinds, following what kube-apiserver's printers
//! show (`kubectl get pods` READY/STATUS/RESTARTS, deployments READY/UP-TO-DATE/AVAILABLE,
//! …); priority-1 columns appear with `-o wide`.

use super::{Column, Source};
use crate::simcluster::kinds::ResourceType;
use serde_json::Value;

/// The wide columns of workloads with a pod template (Deployment, ReplicaSet).
fn pod_template_columns() -> [Column; 3] {
    [
        col(
            "Containers",
            "string",
            "Names of the containers in the pod template.",
            containers,
        )
        .wide(),
        col(
            "Images",
            "string",
            "Images of the containers in the pod template.",
            images,
        )
        .wide(),
        col(
            "Selector",
            "string",
            "The label selector of the pods.",
            selector,
        )
        .wide(),
    ]
}

fn col(name: &str, kind: &str, description: &str, f: fn(&Value) -> Value) -> Column {
    Column::new(name, kind, description, Source::Printer(f))
}

/// The columns of `rt`, when it is one of the kinds with a dedicated printer.
pub(super) fn columns(rt: &ResourceType) -> Option<Vec<Column>> {
    let name = Column::name_column;
    let age = || Column::age_column("string");
    let cols = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => vec![
            name(),
            col(
                "Status",
                "string",
                "The phase of the namespace.",
                namespace_status,
            ),
            age(),
        ],
        ("", "configmaps") => vec![
            name(),
            col(
                "Data",
                "integer",
                "Number of entries in data and binaryData.",
                configmap_data,
            ),
            age(),
        ],
        ("", "secrets") => vec![
            name(),
            col("Type", "string", "The type of the secret.", |o| {
                Value::String(o["type"].as_str().unwrap_or("Opaque").into())
            }),
            col("Data", "integer", "Number of entries in data.", secret_data),
            age(),
        ],
        ("", "serviceaccounts") => vec![
            name(),
            col(
                "Secrets",
                "integer",
                "Number of secrets the service account references.",
                |o| len(&o["secrets"]),
            ),
            age(),
        ],
        ("", "pods") => vec![
            name(),
            col(
                "Ready",
                "string",
                "Ready containers out of all containers.",
                pod_ready,
            ),
            col(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
                pod_status,
            ),
            col(
                "Restarts",
                "string",
                "Container restarts in this pod.",
                pod_restarts,
            ),
            age(),
            col("IP", "string", "The pod's IP address.", |o| {
                or_none(o["status"]["podIP"].as_str())
            })
            .wide(),
            col("Node", "string", "The node the pod runs on.", |o| {
                or_none(o["spec"]["nodeName"].as_str())
            })
            .wide(),
            col(
                "Nominated Node",
                "string",
                "The node the scheduler nominated.",
                |o| or_none(o["status"]["nominatedNodeName"].as_str()),
            )
            .wide(),
            col(
                "Readiness Gates",
                "string",
                "Readiness gates met out of all gates.",
                readiness_gates,
            )
            .wide(),
        ],
        ("apps", "deployments") => vec![
            name(),
            col(
                "Ready",
                "string",
                "Ready replicas out of desired replicas.",
                deployment_ready,
            ),
            col(
                "Up-to-date",
                "integer",
                "Replicas running the current pod template.",
                |o| int(&o["status"]["updatedReplicas"]),
            ),
            col(
                "Available",
                "integer",
                "Replicas available to users.",
                |o| int(&o["status"]["availableReplicas"]),
            ),
            age(),
        ]
        .into_iter()
        .chain(pod_template_columns())
        .collect(),
        ("apps", "replicasets") => vec![
            name(),
            col("Desired", "integer", "Desired replicas.", |o| {
                Value::from(o["spec"]["replicas"].as_i64().unwrap_or(1))
            }),
            col("Current", "integer", "Current replicas.", |o| {
                int(&o["status"]["replicas"])
            }),
            col("Ready", "integer", "Ready replicas.", |o| {
                int(&o["status"]["readyReplicas"])
            }),
            age(),
        ]
        .into_iter()
        .chain(pod_template_columns())
        .collect(),
        ("", "services") => vec![
            name(),
            col("Type", "string", "The type of the service.", |o| {
                Value::String(o["spec"]["type"].as_str().unwrap_or("ClusterIP").into())
            }),
            col("Cluster-IP", "string", "The service's cluster IP.", |o| {
                or_none(o["spec"]["clusterIP"].as_str().filter(|s| !s.is_empty()))
            }),
            col(
                "External-IP",
                "string",
                "External addresses of the service.",
                external_ip,
            ),
            col(
                "Port(s)",
                "string",
                "The ports the service exposes.",
                service_ports,
            ),
            age(),
            col(
                "Selector",
                "string",
                "The label selector of the service's pods.",
                |o| labels_text(&o["spec"]["selector"]),
            )
            .wide(),
        ],
        _ => return None,
    };
    Some(cols)
}

fn or_none(s: Option<&str>) -> Value {
    Value::String(s.unwrap_or("<none>").into())
}

fn int(v: &Value) -> Value {
    Value::from(v.as_i64().unwrap_or(0))
}

fn len(v: &Value) -> Value {
    let n = match v {
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => 0,
    };
    Value::from(n)
}

fn namespace_status(o: &Value) -> Value {
    Value::String(o["status"]["phase"].as_str().unwrap_or("Active").into())
}

fn configmap_data(o: &Value) -> Value {
    let n = |v: &Value| v.as_object().map_or(0, |m| m.len());
    Value::from(n(&o["data"]) + n(&o["binaryData"]))
}

fn secret_data(o: &Value) -> Value {
    let mut keys: Vec<&String> = ["data", "stringData"]
        .iter()
        .filter_map(|f| o[*f].as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.sort();
    keys.dedup();
    Value::from(keys.len())
}

fn pod_ready(o: &Value) -> Value {
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = o["status"]["containerStatuses"]
        .as_array()
        .map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
    Value::String(format!("{ready}/{total}"))
}

fn pod_status(o: &Value) -> Value {
    let status = &o["status"];
    let mut reason = status["reason"]
        .as_str()
        .or_else(|| status["phase"].as_str())
        // The API server creates pods in phase Pending; here the phase comes later.
        .unwrap_or("Pending")
        .to_string();
    for c in status["containerStatuses"].as_array().into_iter().flatten() {
        let state = &c["state"];
        if let Some(r) = state["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.into();
        } else if let Some(r) = state["terminated"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.into();
        }
    }
    if o["metadata"]["deletionTimestamp"].is_string() {
        reason = if reason == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    Value::String(reason)
}

fn pod_restarts(o: &Value) -> Value {
    let n: i64 = o["status"]["containerStatuses"].as_array().map_or(0, |s| {
        s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
    });
    Value::String(n.to_string())
}

fn readiness_gates(o: &Value) -> Value {
    let Some(gates) = o["spec"]["readinessGates"]
        .as_array()
        .filter(|g| !g.is_empty())
    else {
        return Value::String("<none>".into());
    };
    let conditions = o["status"]["conditions"].as_array();
    let met = gates
        .iter()
        .filter(|g| {
            conditions.is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
            })
        })
        .count();
    Value::String(format!("{met}/{}", gates.len()))
}

fn deployment_ready(o: &Value) -> Value {
    let ready = o["status"]["readyReplicas"].as_i64().unwrap_or(0);
    let desired = o["spec"]["replicas"].as_i64().unwrap_or(1);
    Value::String(format!("{ready}/{desired}"))
}

fn container_field(o: &Value, field: &str) -> Value {
    let names: Vec<&str> = o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c[field].as_str())
        .collect();
    Value::String(names.join(","))
}

fn containers(o: &Value) -> Value {
    container_field(o, "name")
}

fn images(o: &Value) -> Value {
    container_field(o, "image")
}

/// `a=b,c=d` of a label map, `<none>` when empty.
fn labels_text(m: &Value) -> Value {
    let mut parts: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if parts.is_empty() {
        return Value::String("<none>".into());
    }
    parts.sort();
    Value::String(parts.join(","))
}

/// A `LabelSelector` as text: `matchLabels` as `k=v`, then `matchExpressions`.
fn selector(o: &Value) -> Value {
    let sel = &o["spec"]["selector"];
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    parts.sort();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key.to_string(),
        });
    }
    if parts.is_empty() {
        return Value::String("<none>".into());
    }
    Value::String(parts.join(","))
}

fn external_ip(o: &Value) -> Value {
    let spec = &o["spec"];
    let mut ips: Vec<String> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    match spec["type"].as_str().unwrap_or("ClusterIP") {
        "ExternalName" => return or_none(spec["externalName"].as_str()),
        "LoadBalancer" => {
            let lb: Vec<String> = o["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().or_else(|| i["hostname"].as_str()))
                .map(String::from)
                .collect();
            let mut all = lb;
            all.append(&mut ips);
            if all.is_empty() {
                return Value::String("<pending>".into());
            }
            return Value::String(all.join(","));
        }
        _ => {}
    }
    if ips.is_empty() {
        return Value::String("<none>".into());
    }
    Value::String(ips.join(","))
}

fn service_ports(o: &Value) -> Value {
    let ports: Vec<String> = o["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p["port"].as_i64().unwrap_or(0);
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n > 0) {
                Some(n) => format!("{port}:{n}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    if ports.is_empty() {
        return Value::String("<none>".into());
    }
    Value::String(ports.join(","))
}
