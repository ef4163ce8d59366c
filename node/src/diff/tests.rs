use super::*;
use serde_json::json;

fn y(s: &str) -> Value {
    serde_yaml::from_str(s).expect("test YAML parses")
}

fn diff(desired: &Value, live: &Value) -> ResourceDiff {
    diff_resource(Some(desired), Some(live), &DiffOptions::default()).expect("diff runs")
}

const DESIRED_DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
        resources: {limits: {cpu: 1000m, memory: 1Gi}}
"#;

/// The same Deployment as the API server returns it: defaults, status and server metadata.
const LIVE_DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
  uid: 0b6f
  resourceVersion: "812"
  generation: 3
  creationTimestamp: "2026-01-01T00:00:00Z"
  annotations: {deployment.kubernetes.io/revision: "3"}
  managedFields:
  - manager: flotilla
    operation: Apply
    apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata: {f:labels: {f:app: {}}}
      f:spec:
        f:replicas: {}
        f:selector: {}
        f:template:
          f:metadata: {f:labels: {f:app: {}}}
          f:spec:
            f:containers:
              'k:{"name":"web"}':
                .: {}
                f:image: {}
                f:name: {}
                f:ports: {'k:{"containerPort":80,"protocol":"TCP"}': {.: {}, f:containerPort: {}}}
                f:resources: {f:limits: {f:cpu: {}, f:memory: {}}}
spec:
  replicas: 2
  progressDeadlineSeconds: 600
  revisionHistoryLimit: 10
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}}
  template:
    metadata: {labels: {app: web}}
    spec:
      restartPolicy: Always
      dnsPolicy: ClusterFirst
      containers:
      - name: web
        image: nginx:1.27
        imagePullPolicy: IfNotPresent
        terminationMessagePath: /dev/termination-log
        ports: [{containerPort: 80, protocol: TCP}]
        resources: {limits: {cpu: "1", memory: 1024Mi}}
status: {replicas: 2, readyReplicas: 2}
"#;

#[test]
fn server_defaults_are_not_drift() {
    let d = diff(&y(DESIRED_DEPLOY), &y(LIVE_DEPLOY));
    assert!(d.in_sync(), "unexpected drift:\n{}", d.unified);
}

#[test]
fn a_changed_field_is_drift_with_a_readable_diff() {
    let mut live = y(LIVE_DEPLOY);
    live["spec"]["replicas"] = json!(5);
    let d = diff(&y(DESIRED_DEPLOY), &live);
    assert_eq!(d.drift, Drift::Changed);
    assert!(d.unified.contains("-  replicas: 5"), "{}", d.unified);
    assert!(d.unified.contains("+  replicas: 2"), "{}", d.unified);
    assert!(
        d.unified.contains("live: apps/Deployment shop/web"),
        "{}",
        d.unified
    );
}

#[test]
fn a_field_we_stopped_applying_is_drift() {
    // The desired state no longer sets the cpu limit, which flotilla applied before.
    let mut desired = y(DESIRED_DEPLOY);
    desired["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        .as_object_mut()
        .expect("limits")
        .remove("cpu");
    let d = diff(&desired, &y(LIVE_DEPLOY));
    assert_eq!(d.drift, Drift::Changed);
    assert!(
        d.unified.contains("-            cpu: '1'") || d.unified.contains("cpu"),
        "{}",
        d.unified
    );
}

#[test]
fn a_container_we_stopped_applying_is_drift_but_others_are_not() {
    let mut live = y(LIVE_DEPLOY);
    // A sidecar injected by another manager: not ours, so not drift.
    live["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "sidecar", "image": "proxy:1"}));
    assert!(diff(&y(DESIRED_DEPLOY), &live).in_sync());
    // Our own container, dropped from the desired state: drift.
    let mut desired = y(DESIRED_DEPLOY);
    desired["spec"]["template"]["spec"]["containers"] = json!([{"name": "other", "image": "x"}]);
    assert_eq!(diff(&desired, &y(LIVE_DEPLOY)).drift, Drift::Changed);
}

#[test]
fn missing_and_extra() {
    let opts = DiffOptions::default();
    let d = diff_resource(Some(&y(DESIRED_DEPLOY)), None, &opts).expect("diff");
    assert_eq!(d.drift, Drift::Missing);
    assert!(d.unified.contains("+kind: Deployment"), "{}", d.unified);
    let d = diff_resource(None, Some(&y(LIVE_DEPLOY)), &opts).expect("diff");
    assert_eq!(d.drift, Drift::Extra);
}

#[test]
fn ignore_differences_by_pointer_jq_and_manager() {
    let mut live = y(LIVE_DEPLOY);
    live["spec"]["replicas"] = json!(7);
    let hpa_rule = IgnoreRule {
        group: "apps".into(),
        kind: "Deployment".into(),
        json_pointers: vec!["/spec/replicas".into()],
        ..Default::default()
    };
    let opts = DiffOptions {
        ignore: vec![hpa_rule],
        ..Default::default()
    };
    assert!(diff_resource(Some(&y(DESIRED_DEPLOY)), Some(&live), &opts)
        .expect("diff")
        .in_sync());

    let mut live = y(LIVE_DEPLOY);
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:patched");
    let jq_rule = IgnoreRule {
        group: "apps".into(),
        kind: "Deployment".into(),
        jq_path_expressions: vec![
            ".spec.template.spec.containers[] | select(.name == \"web\") | .image".into(),
        ],
        ..Default::default()
    };
    let opts = DiffOptions {
        ignore: vec![jq_rule],
        ..Default::default()
    };
    assert!(diff_resource(Some(&y(DESIRED_DEPLOY)), Some(&live), &opts)
        .expect("diff")
        .in_sync());

    // Fields owned by another manager (an autoscaler writing replicas) are ignored by name.
    let mut live = y(LIVE_DEPLOY);
    live["spec"]["replicas"] = json!(9);
    live["metadata"]["managedFields"]
        .as_array_mut()
        .expect("mf")
        .push(json!({
            "manager": "hpa-controller", "operation": "Update", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}}
        }));
    let rule = IgnoreRule {
        group: "apps".into(),
        kind: "*".into(),
        managed_fields_managers: vec!["hpa-controller".into()],
        ..Default::default()
    };
    let opts = DiffOptions {
        ignore: vec![rule.clone()],
        ..Default::default()
    };
    assert!(diff_resource(Some(&y(DESIRED_DEPLOY)), Some(&live), &opts)
        .expect("diff")
        .in_sync());
    // A rule for another kind does not apply.
    let other = IgnoreRule {
        kind: "StatefulSet".into(),
        ..rule
    };
    let opts = DiffOptions {
        ignore: vec![other],
        ..Default::default()
    };
    assert!(!diff_resource(Some(&y(DESIRED_DEPLOY)), Some(&live), &opts)
        .expect("diff")
        .in_sync());
}

#[test]
fn bad_ignore_rules_are_errors() {
    let rule = IgnoreRule {
        group: "*".into(),
        kind: "*".into(),
        json_pointers: vec!["spec".into()],
        ..Default::default()
    };
    assert!(matches!(rule.validate(), Err(DiffError::BadPointer { .. })));
    let jq = IgnoreRule {
        kind: "*".into(),
        jq_path_expressions: vec![".spec[".into()],
        ..Default::default()
    };
    assert!(matches!(jq.validate(), Err(DiffError::BadJq { .. })));
    let fine = IgnoreRule {
        kind: "*".into(),
        json_pointers: vec!["/spec/x~1y".into()],
        jq_path_expressions: vec![".a.b".into()],
        ..Default::default()
    };
    assert_eq!(fine.validate(), Ok(()));
    let opts = DiffOptions {
        ignore: vec![rule],
        ..Default::default()
    };
    let err = diff_resource(Some(&y(DESIRED_DEPLOY)), Some(&y(LIVE_DEPLOY)), &opts)
        .expect_err("bad pointer");
    assert!(matches!(err, DiffError::BadPointer { .. }));
}

#[test]
fn secrets_compare_string_data_and_never_show_values() {
    let desired = y("apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a}\nstringData: {password: hunter2, user: admin}");
    // "hunter2" and "admin" in base64.
    let live = y("apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a}\ntype: Opaque\ndata: {password: aHVudGVyMg==, user: YWRtaW4=}");
    assert!(diff(&desired, &live).in_sync());
    let changed = y("apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a}\nstringData: {password: swordfish, user: admin}");
    let d = diff(&changed, &live);
    assert_eq!(d.drift, Drift::Changed);
    for secret in [
        "hunter2",
        "aHVudGVyMg",
        "swordfish",
        "c3dvcmRmaXNo",
        "YWRtaW4",
    ] {
        assert!(
            !d.unified.contains(secret),
            "secret leaked into the diff:\n{}",
            d.unified
        );
    }
    assert!(
        d.unified.contains("password: '+++++++++'") || d.unified.contains("password: +++++++++"),
        "{}",
        d.unified
    );
}
