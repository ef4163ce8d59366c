//! The simulated controllers: workloads become available, pods run, jobs complete or fail
//! by annotation, load balancers, PVCs and ingresses get their status.

mod simcluster_support;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use simcluster_support::{client, eventually, start};
use std::fmt::Debug;

const TEMPLATE: &str = r#"{"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}"#;

async fn create<K>(c: &kube::Client, v: Value) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + Debug,
{
    let api: Api<K> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
        .await
        .unwrap();
    api
}

async fn status_of<K>(api: &Api<K>, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + Debug,
{
    eventually(10, what, || async {
        let o = serde_json::to_value(api.get(name).await.ok()?).ok()?;
        check(&o["status"]).then(|| o["status"].clone())
    })
    .await
}

#[tokio::test]
async fn controllers_report_progress_and_requested_failures() {
    let sim = start().await;
    let c = client(&sim).await;
    let tpl: Value = serde_json::from_str(TEMPLATE).unwrap();
    let sel = json!({"matchLabels": {"app": "x"}});

    let d = create::<Deployment>(&c, json!({"metadata": {"name": "ok"}, "spec": {"replicas": 2, "selector": sel, "template": tpl}})).await;
    status_of(&d, "ok", "deployment available", |s| {
        s["availableReplicas"] == 2 && s["conditions"][0]["status"] == "True"
    })
    .await;
    create::<Deployment>(
        &c,
        json!({"metadata": {"name": "bad", "annotations": {"simcluster.flotilla.dev/fail": "true"}},
        "spec": {"replicas": 1, "selector": sel, "template": tpl}}),
    )
    .await;
    let s = status_of(&d, "bad", "deployment failing", |s| {
        s["observedGeneration"] == 1
    })
    .await;
    assert!(s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded"));

    let ss = create::<StatefulSet>(&c, json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "serviceName": "db", "selector": sel, "template": tpl}})).await;
    status_of(&ss, "db", "statefulset ready", |s| s["readyReplicas"] == 3).await;
    let ds = create::<DaemonSet>(
        &c,
        json!({"metadata": {"name": "agent"}, "spec": {"selector": sel, "template": tpl}}),
    )
    .await;
    status_of(&ds, "agent", "daemonset ready", |s| s["numberReady"] == 1).await;
    let pods = create::<Pod>(&c, json!({"metadata": {"name": "p"}, "spec": tpl["spec"]})).await;
    status_of(&pods, "p", "pod running", |s| s["phase"] == "Running").await;

    let jobs = create::<Job>(
        &c,
        json!({"metadata": {"name": "done"}, "spec": {"template": tpl}}),
    )
    .await;
    status_of(&jobs, "done", "job complete", |s| {
        s["succeeded"] == 1
            && s["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Complete"))
    })
    .await;
    create::<Job>(&c, json!({"metadata": {"name": "boom", "annotations": {"simcluster.flotilla.dev/fail": "true"}}, "spec": {"template": tpl}})).await;
    status_of(&jobs, "boom", "job failed", |s| {
        s["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Failed"))
    })
    .await;

    let svc = create::<Service>(&c, json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})).await;
    status_of(&svc, "lb", "load balancer address", |s| {
        s["loadBalancer"]["ingress"][0]["ip"].is_string()
    })
    .await;
    let pvc = create::<PersistentVolumeClaim>(
        &c,
        json!({"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    status_of(&pvc, "data", "pvc bound", |s| {
        s["phase"] == "Bound" && s["capacity"]["storage"] == "1Gi"
    })
    .await;
    let ing = create::<Ingress>(&c, json!({"metadata": {"name": "web"}, "spec": {"defaultBackend": {"service": {"name": "lb", "port": {"number": 80}}}}})).await;
    status_of(&ing, "web", "ingress address", |s| {
        s["loadBalancer"]["ingress"][0]["ip"].is_string()
    })
    .await;
    sim.shutdown().await;
}
