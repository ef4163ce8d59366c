//! Built-in health assessments for the kinds Argo CD knows, with the same statuses and
//! messages in the same spirit.

use super::{Health, HealthStatus};
use serde_json::Value;

use HealthStatus::{Degraded, Healthy, Progressing, Suspended, Unknown};

/// The built-in health of an object of `group`/`kind`, or `None` for kinds without one.
pub fn assess(group: &str, kind: &str, obj: &Value) -> Option<Health> {
    let h = match (group, kind) {
        ("apps" | "extensions", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps" | "extensions", "DaemonSet") => daemon_set(obj),
        ("apps" | "extensions", "ReplicaSet") => replica_set(obj),
        ("", "Pod") => pod(obj),
        ("batch", "Job") => job(obj),
        ("", "PersistentVolumeClaim") => pvc(obj),
        ("", "Service") => service(obj),
        ("networking.k8s.io" | "extensions", "Ingress") => ingress(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(obj),
        ("apiregistration.k8s.io", "APIService") => api_service(obj),
        ("argoproj.io", "Application") => application(obj),
        _ => return None,
    };
    Some(h)
}

fn ptr<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    obj.pointer(path)
}

fn int(obj: &Value, path: &str) -> Option<i64> {
    ptr(obj, path).and_then(Value::as_i64)
}

fn int0(obj: &Value, path: &str) -> i64 {
    int(obj, path).unwrap_or(0)
}

fn text<'a>(obj: &'a Value, path: &str) -> &'a str {
    ptr(obj, path).and_then(Value::as_str).unwrap_or_default()
}

fn name(obj: &Value) -> &str {
    text(obj, "/metadata/name")
}

/// The status conditions of an object, as (type, status, reason, message).
fn conditions(obj: &Value) -> impl Iterator<Item = (&str, &str, &str, &str)> {
    ptr(obj, "/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            (
                text(c, "/type"),
                text(c, "/status"),
                text(c, "/reason"),
                text(c, "/message"),
            )
        })
}

fn condition<'a>(obj: &'a Value, ty: &str) -> Option<(&'a str, &'a str, &'a str)> {
    conditions(obj)
        .find(|c| c.0 == ty)
        .map(|(_, s, r, m)| (s, r, m))
}

/// Whether the controller has seen the newest spec.
fn observed(obj: &Value) -> bool {
    int0(obj, "/metadata/generation") <= int0(obj, "/status/observedGeneration")
}

fn deployment(obj: &Value) -> Health {
    if ptr(obj, "/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Health::new(Suspended, "Deployment is paused");
    }
    if !observed(obj) {
        return Health::new(
            Progressing,
            "Waiting for rollout to finish: observed deployment generation less than desired generation",
        );
    }
    if let Some((_, "ProgressDeadlineExceeded", _)) = condition(obj, "Progressing") {
        return Health::new(
            Degraded,
            format!("Deployment {:?} exceeded its progress deadline", name(obj)),
        );
    }
    let updated = int0(obj, "/status/updatedReplicas");
    let current = int0(obj, "/status/replicas");
    let available = int0(obj, "/status/availableReplicas");
    if let Some(desired) = int(obj, "/spec/replicas") {
        if updated < desired {
            return Health::new(
                Progressing,
                format!(
                    "Waiting for rollout to finish: {updated} out of {desired} new replicas have been updated..."
                ),
            );
        }
    }
    if current > updated {
        return Health::new(
            Progressing,
            format!(
                "Waiting for rollout to finish: {} old replicas are pending termination...",
                current - updated
            ),
        );
    }
    if available < updated {
        return Health::new(
            Progressing,
            format!(
                "Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        );
    }
    Health::healthy()
}

fn stateful_set(obj: &Value) -> Health {
    let observed_gen = int0(obj, "/status/observedGeneration");
    if observed_gen == 0 || int0(obj, "/metadata/generation") > observed_gen {
        return Health::new(
            Progressing,
            "Waiting for statefulset spec update to be observed...",
        );
    }
    let ready = int0(obj, "/status/readyReplicas");
    let desired = int(obj, "/spec/replicas");
    if let Some(desired) = desired {
        if ready < desired {
            return Health::new(
                Progressing,
                format!("Waiting for {} pods to be ready...", desired - ready),
            );
        }
    }
    let strategy = text(obj, "/spec/updateStrategy/type");
    if strategy == "OnDelete" {
        return Health::new(Healthy, format!("statefulset has {ready} ready pods"));
    }
    let updated = int0(obj, "/status/updatedReplicas");
    if let (Some(partition), Some(desired)) = (
        int(obj, "/spec/updateStrategy/rollingUpdate/partition"),
        desired,
    ) {
        let want = desired - partition;
        if updated < want {
            return Health::new(
                Progressing,
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {want} new pods have been updated..."
                ),
            );
        }
        return Health::new(
            Healthy,
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
        );
    }
    let update_rev = text(obj, "/status/updateRevision");
    let current_rev = text(obj, "/status/currentRevision");
    if update_rev != current_rev {
        return Health::new(
            Progressing,
            format!(
                "waiting for statefulset rolling update to complete {updated} pods at revision {update_rev}..."
            ),
        );
    }
    Health::new(
        Healthy,
        format!(
            "statefulset rolling update complete {} pods at revision {current_rev}...",
            int0(obj, "/status/currentReplicas")
        ),
    )
}

fn daemon_set(obj: &Value) -> Health {
    if !observed(obj) {
        return Health::new(
            Progressing,
            "Waiting for rollout to finish: observed daemon set generation less than desired generation",
        );
    }
    let desired = int0(obj, "/status/desiredNumberScheduled");
    let updated = int0(obj, "/status/updatedNumberScheduled");
    if text(obj, "/spec/updateStrategy/type") == "OnDelete" {
        return Health::new(
            Healthy,
            format!("daemon set {updated} out of {desired} new pods have been updated"),
        );
    }
    if updated < desired {
        return Health::new(
            Progressing,
            format!(
                "Waiting for daemon set {:?} rollout to finish: {updated} out of {desired} new pods have been updated...",
                name(obj)
            ),
        );
    }
    let available = int0(obj, "/status/numberAvailable");
    if available < desired {
        return Health::new(
            Progressing,
            format!(
                "Waiting for daemon set {:?} rollout to finish: {available} of {desired} updated pods are available...",
                name(obj)
            ),
        );
    }
    Health::healthy()
}

fn replica_set(obj: &Value) -> Health {
    if !observed(obj) {
        return Health::new(
            Progressing,
            "Waiting for rollout to finish: observed replica set generation less than desired generation",
        );
    }
    if let Some(("True", _, msg)) = condition(obj, "ReplicaFailure") {
        return Health::new(Degraded, msg);
    }
    if let Some(desired) = int(obj, "/spec/replicas") {
        let available = int0(obj, "/status/availableReplicas");
        if available < desired {
            return Health::new(
                Progressing,
                format!(
                    "Waiting for rollout to finish: {available} out of {desired} new replicas are available..."
                ),
            );
        }
    }
    Health::healthy()
}

/// A container waiting for a reason that will not fix itself (image pull errors, crash loops).
fn failing_container(obj: &Value) -> Option<String> {
    for list in ["/status/initContainerStatuses", "/status/containerStatuses"] {
        for cs in ptr(obj, list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let reason = text(cs, "/state/waiting/reason");
            if reason.starts_with("Err") || reason.ends_with("Error") || reason.ends_with("BackOff")
            {
                let msg = text(cs, "/state/waiting/message");
                return Some(if msg.is_empty() {
                    reason.to_string()
                } else {
                    msg.to_string()
                });
            }
        }
    }
    None
}

fn pod(obj: &Value) -> Health {
    if ptr(obj, "/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Health::new(Progressing, "Pending deletion");
    }
    let restart = text(obj, "/spec/restartPolicy");
    let always = restart.is_empty() || restart == "Always";
    if always {
        if let Some(msg) = failing_container(obj) {
            return Health::new(Degraded, msg);
        }
    }
    let message = text(obj, "/status/message").to_string();
    match text(obj, "/status/phase") {
        "Pending" => Health::new(Progressing, message),
        "Succeeded" => Health::new(Healthy, message),
        "Failed" => {
            if !message.is_empty() {
                return Health::new(Degraded, message);
            }
            let terminated = ptr(obj, "/status/containerStatuses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|cs| text(cs, "/state/terminated/message"))
                .find(|m| !m.is_empty())
                .unwrap_or_default();
            Health::new(Degraded, terminated)
        }
        "Running" => {
            if always {
                if let Some(("True", _, _)) = condition(obj, "Ready") {
                    return Health::new(Healthy, message);
                }
                return Health::new(Progressing, message);
            }
            Health::new(Progressing, message)
        }
        _ => Health::new(Unknown, message),
    }
}

fn job(obj: &Value) -> Health {
    let mut failed = None;
    let mut complete = None;
    let mut suspended = false;
    for (ty, status, _reason, msg) in conditions(obj) {
        if status != "True" {
            continue;
        }
        match ty {
            "Failed" => failed = Some(msg.to_string()),
            "Complete" => complete = Some(msg.to_string()),
            "Suspended" => suspended = true,
            _ => {}
        }
    }
    if let Some(msg) = failed {
        return Health::new(Degraded, msg);
    }
    if suspended || ptr(obj, "/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return Health::new(Suspended, "Job is suspended");
    }
    if let Some(msg) = complete {
        return Health::new(Healthy, msg);
    }
    Health::new(Progressing, "Job is running")
}

fn pvc(obj: &Value) -> Health {
    match text(obj, "/status/phase") {
        "Bound" => Health::healthy(),
        "Pending" => Health::new(Progressing, "Waiting for the claim to be bound"),
        "Lost" => Health::new(Degraded, "The claim lost its volume"),
        other => Health::new(Unknown, format!("Unknown phase {other:?}")),
    }
}

fn has_lb_ingress(obj: &Value) -> bool {
    ptr(obj, "/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|i| i.get("ip").is_some() || i.get("hostname").is_some())
        })
}

fn service(obj: &Value) -> Health {
    if text(obj, "/spec/type") == "LoadBalancer" && !has_lb_ingress(obj) {
        return Health::new(
            Progressing,
            "Waiting for the load balancer to get an address",
        );
    }
    Health::healthy()
}

fn ingress(obj: &Value) -> Health {
    if has_lb_ingress(obj) {
        Health::healthy()
    } else {
        Health::new(Progressing, "Waiting for the ingress to get an address")
    }
}

fn hpa(obj: &Value) -> Health {
    const FAILED: [&str; 5] = [
        "FailedGetScale",
        "FailedUpdateScale",
        "FailedGetResourceMetric",
        "InvalidSelector",
        "FailedGetExternalMetric",
    ];
    let mut any = false;
    for (ty, status, reason, msg) in conditions(obj) {
        any = true;
        let bad = (ty == "AbleToScale" || ty == "ScalingActive")
            && status == "False"
            && (FAILED.contains(&reason) || reason.starts_with("Failed"));
        if bad {
            return Health::new(Degraded, msg);
        }
    }
    if !any {
        return Health::new(Progressing, "Waiting to Autoscale");
    }
    match condition(obj, "ScalingActive") {
        Some(("True", _, msg)) | Some(("False", "ScalingDisabled", msg)) => {
            Health::new(Healthy, msg)
        }
        _ => Health::new(Progressing, "Waiting to Autoscale"),
    }
}

fn api_service(obj: &Value) -> Health {
    match condition(obj, "Available") {
        Some(("True", _, msg)) => Health::new(Healthy, msg),
        Some((_, reason, msg)) => Health::new(Progressing, format!("{reason}: {msg}")),
        None => Health::new(Progressing, "Waiting to be processed"),
    }
}

fn application(obj: &Value) -> Health {
    let status = text(obj, "/status/health/status");
    match HealthStatus::parse(status) {
        Some(s) => Health::new(s, text(obj, "/status/health/message")),
        None => Health::new(
            Progressing,
            "Waiting for the application to report its health",
        ),
    }
}
