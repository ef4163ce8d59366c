use super::lua::{Customizations, LuaHealthError, Script};
use super::*;
use serde_json::json;
use std::time::Duration;

fn y(s: &str) -> Value {
    serde_yaml::from_str(s).expect("test YAML parses")
}

fn status_of(obj: &Value) -> Option<HealthStatus> {
    assess(obj, &Customizations::none()).map(|h| h.status)
}

/// (description, object, expected status or None for kinds without health).
fn builtin_cases() -> Vec<(&'static str, Value, Option<HealthStatus>)> {
    use HealthStatus::*;
    vec![
        ("configmap has no health", y("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}"), None),
        (
            "deployment rolled out",
            y("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, generation: 2}\nspec: {replicas: 2}\nstatus: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2}"),
            Some(Healthy),
        ),
        (
            "deployment not observed yet",
            y("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, generation: 3}\nspec: {replicas: 2}\nstatus: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2}"),
            Some(Progressing),
        ),
        (
            "deployment waiting for availability",
            y("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, generation: 1}\nspec: {replicas: 3}\nstatus: {observedGeneration: 1, replicas: 3, updatedReplicas: 3, availableReplicas: 1}"),
            Some(Progressing),
        ),
        (
            "deployment past its deadline",
            y("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, generation: 1}\nspec: {replicas: 1}\nstatus: {observedGeneration: 1, conditions: [{type: Progressing, status: 'False', reason: ProgressDeadlineExceeded}]}"),
            Some(Degraded),
        ),
        (
            "deployment paused",
            y("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {paused: true}"),
            Some(Suspended),
        ),
        (
            "statefulset ready",
            y("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s, generation: 1}\nspec: {replicas: 2}\nstatus: {observedGeneration: 1, readyReplicas: 2, currentReplicas: 2, updatedReplicas: 2, currentRevision: r1, updateRevision: r1}"),
            Some(Healthy),
        ),
        (
            "statefulset rolling",
            y("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s, generation: 1}\nspec: {replicas: 2}\nstatus: {observedGeneration: 1, readyReplicas: 2, updatedReplicas: 1, currentRevision: r1, updateRevision: r2}"),
            Some(Progressing),
        ),
        (
            "statefulset never observed",
            y("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s, generation: 1}\nspec: {replicas: 2}"),
            Some(Progressing),
        ),
        (
            "daemonset scheduling",
            y("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ds, generation: 1}\nstatus: {observedGeneration: 1, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 2}"),
            Some(Progressing),
        ),
        (
            "daemonset available",
            y("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ds, generation: 1}\nstatus: {observedGeneration: 1, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 3}"),
            Some(Healthy),
        ),
        (
            "replicaset failure",
            y("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: rs}\nstatus: {conditions: [{type: ReplicaFailure, status: 'True', message: quota exceeded}]}"),
            Some(Degraded),
        ),
        (
            "pod running and ready",
            y("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {phase: Running, conditions: [{type: Ready, status: 'True'}]}"),
            Some(Healthy),
        ),
        (
            "pod crash looping",
            y("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {phase: Running, containerStatuses: [{name: c, state: {waiting: {reason: CrashLoopBackOff, message: back-off restarting}}}]}"),
            Some(Degraded),
        ),
        (
            "pod image pull error",
            y("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {phase: Pending, containerStatuses: [{name: c, state: {waiting: {reason: ErrImagePull}}}]}"),
            Some(Degraded),
        ),
        ("pod pending", y("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {phase: Pending}"), Some(Progressing)),
        ("pod failed", y("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {restartPolicy: Never}\nstatus: {phase: Failed}"), Some(Degraded)),
        ("pod succeeded", y("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {restartPolicy: Never}\nstatus: {phase: Succeeded}"), Some(Healthy)),
        (
            "job complete",
            y("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nstatus: {conditions: [{type: Complete, status: 'True'}]}"),
            Some(Healthy),
        ),
        (
            "job failed",
            y("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nstatus: {conditions: [{type: Failed, status: 'True', message: BackoffLimitExceeded}]}"),
            Some(Degraded),
        ),
        ("job running", y("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nstatus: {active: 1}"), Some(Progressing)),
        ("job suspended", y("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {suspend: true}"), Some(Suspended)),
        ("pvc bound", y("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: v}\nstatus: {phase: Bound}"), Some(Healthy)),
        ("pvc pending", y("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: v}\nstatus: {phase: Pending}"), Some(Progressing)),
        ("pvc lost", y("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: v}\nstatus: {phase: Lost}"), Some(Degraded)),
        ("clusterip service", y("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: ClusterIP}"), Some(Healthy)),
        ("lb service waiting", y("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: LoadBalancer}"), Some(Progressing)),
        (
            "lb service with address",
            y("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{ip: 10.0.0.1}]}}"),
            Some(Healthy),
        ),
        ("ingress waiting", y("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}"), Some(Progressing)),
        (
            "ingress with address",
            y("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nstatus: {loadBalancer: {ingress: [{hostname: lb.example}]}}"),
            Some(Healthy),
        ),
        (
            "hpa failing to get metrics",
            y("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\nstatus: {conditions: [{type: ScalingActive, status: 'False', reason: FailedGetResourceMetric, message: no metrics}]}"),
            Some(Degraded),
        ),
        (
            "hpa active",
            y("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\nstatus: {conditions: [{type: AbleToScale, status: 'True'}, {type: ScalingActive, status: 'True'}]}"),
            Some(Healthy),
        ),
        ("hpa new", y("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}"), Some(Progressing)),
        (
            "apiservice available",
            y("apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: a}\nstatus: {conditions: [{type: Available, status: 'True'}]}"),
            Some(Healthy),
        ),
        (
            "apiservice unavailable",
            y("apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: a}\nstatus: {conditions: [{type: Available, status: 'False', reason: FailedDiscoveryCheck}]}"),
            Some(Progressing),
        ),
        (
            "child application degraded",
            y("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nstatus: {health: {status: Degraded, message: boom}}"),
            Some(Degraded),
        ),
    ]
}

#[test]
fn builtin_assessments() {
    let mut failures = Vec::new();
    for (what, obj, want) in builtin_cases() {
        let got = status_of(&obj);
        if got != want {
            failures.push(format!("{what}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn messages_say_why() {
    let obj = y("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, generation: 1}\nspec: {replicas: 3}\nstatus: {observedGeneration: 1, replicas: 3, updatedReplicas: 3, availableReplicas: 1}");
    let h = assess(&obj, &Customizations::none()).expect("deployment has health");
    assert_eq!(
        h.message,
        "Waiting for rollout to finish: 1 of 3 updated replicas are available..."
    );
}

#[test]
fn application_health_is_the_worst() {
    use HealthStatus::*;
    let hs = |s: &[HealthStatus]| s.iter().map(|&s| Health::new(s, "")).collect::<Vec<_>>();
    assert_eq!(aggregate(&hs(&[])), Healthy);
    assert_eq!(
        aggregate(&hs(&[Healthy, Progressing, Suspended])),
        Progressing
    );
    assert_eq!(aggregate(&hs(&[Healthy, Missing, Progressing])), Missing);
    assert_eq!(aggregate(&hs(&[Degraded, Missing])), Degraded);
    assert_eq!(aggregate(&hs(&[Unknown, Degraded])), Unknown);
}

const CERT_CHECK: &str = r#"
hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for i, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" and c.status == "False" then
      hs.status = "Degraded"
      hs.message = c.message
      return hs
    end
    if c.type == "Ready" and c.status == "True" then
      hs.status = "Healthy"
      hs.message = c.message
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for certificate"
return hs
"#;

fn certificate(ready: &str) -> Value {
    json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c"},
           "status": {"conditions": [{"type": "Ready", "status": ready, "message": "msg"}]}})
}

#[test]
fn lua_script_decides_health() {
    let mut c = Customizations::none();
    c.insert("cert-manager.io", "Certificate", CERT_CHECK);
    assert_eq!(
        assess(&certificate("True"), &c),
        Some(Health::new(HealthStatus::Healthy, "msg"))
    );
    assert_eq!(
        assess(&certificate("False"), &c).map(|h| h.status),
        Some(HealthStatus::Degraded)
    );
    // A custom check overrides a built-in one.
    c.insert(
        "",
        "Service",
        "return {status = 'Suspended', message = 'custom'}",
    );
    let svc = y("apiVersion: v1\nkind: Service\nmetadata: {name: s}");
    assert_eq!(
        assess(&svc, &c).map(|h| h.status),
        Some(HealthStatus::Suspended)
    );
}

#[test]
fn failing_script_is_unknown_with_a_clear_message() {
    let mut c = Customizations::none();
    c.insert("example.com", "Widget", "error('widget exploded')");
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    let h = assess(&w, &c).expect("custom kinds with a script have health");
    assert_eq!(h.status, HealthStatus::Unknown);
    assert!(h.message.contains("widget exploded"), "{}", h.message);
    assert!(h.message.contains("example.com/Widget"), "{}", h.message);
}

#[test]
fn looping_script_is_stopped() {
    let script = Script::new("example.com/Spin", "while true do end")
        .with_time_limit(Duration::from_millis(100));
    let err = script
        .run(&json!({}))
        .expect_err("an endless loop must be stopped");
    assert!(matches!(err, LuaHealthError::Timeout { .. }), "{err}");
}

#[test]
fn sandbox_has_no_files_or_processes() {
    for src in [
        "return io.open('/etc/passwd')",
        "return os.execute('true')",
        "return require('x')",
        "return loadstring('return 1')()",
    ] {
        let err = Script::new("t", src).run(&json!({})).expect_err(src);
        assert!(matches!(err, LuaHealthError::Script { .. }), "{src}: {err}");
    }
}

#[test]
fn bad_results_are_reported() {
    for (src, needle) in [
        ("return 42", "expected a table"),
        ("return {message = 'x'}", "no status"),
        ("return {status = 'Fine'}", "unknown status"),
    ] {
        let err = Script::new("t", src).run(&json!({})).expect_err(src);
        assert!(err.to_string().contains(needle), "{src}: {err}");
    }
}

#[test]
fn argocd_cm_keys_and_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cm = dir.path().join("argocd-cm.yaml");
    let block = "example.com/Widget:\n  health.lua: |\n    return {status = 'Suspended'}\n";
    let doc = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"},
        "data": {"resource.customizations.health.cert-manager.io_Certificate": CERT_CHECK,
                 "resource.customizations": block,
                 "url": "https://argocd.example"}});
    std::fs::write(&cm, serde_yaml::to_string(&doc).expect("yaml")).expect("write");
    let mut c = Customizations::none();
    assert_eq!(c.load_argocd_cm(&cm).expect("loads"), 2);
    assert_eq!(
        assess(&certificate("True"), &c).map(|h| h.status),
        Some(HealthStatus::Healthy)
    );
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget"});
    assert_eq!(
        assess(&w, &c).map(|h| h.status),
        Some(HealthStatus::Suspended)
    );
}

#[test]
fn argocd_cm_that_is_not_a_configmap_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cm = dir.path().join("x.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: Secret\n").expect("write");
    let err = Customizations::none()
        .load_argocd_cm(&cm)
        .expect_err("not a ConfigMap");
    assert!(err.to_string().contains("x.yaml"), "{err}");
}

#[test]
fn directory_layout_with_wildcards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |rel: &str, src: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, src).expect("write");
    };
    write("cert-manager.io/Certificate/health.lua", CERT_CHECK);
    write(
        "_.crossplane.io/_/health.lua",
        "return {status = 'Degraded', message = 'any crossplane'}",
    );
    write(
        "pkg.crossplane.io/Provider/health.lua",
        "return {status = 'Healthy', message = 'provider'}",
    );
    let mut c = Customizations::none();
    assert_eq!(c.load_dir(dir.path()).expect("loads"), 3);
    let obj = |api: &str, kind: &str| json!({"apiVersion": api, "kind": kind});
    let msg = |o: Value| assess(&o, &c).map(|h| h.message);
    assert_eq!(
        msg(obj("aws.crossplane.io/v1", "Bucket")),
        Some("any crossplane".into())
    );
    // The exact match wins over the wildcard.
    assert_eq!(
        msg(obj("pkg.crossplane.io/v1", "Provider")),
        Some("provider".into())
    );
    assert_eq!(
        msg(obj("crossplane.io/v1", "Bucket")),
        None,
        "the wildcard needs a subdomain"
    );
}
