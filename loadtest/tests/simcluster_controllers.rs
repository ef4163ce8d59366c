//! The simulated controllers: workloads become available, pods run, jobs complete or fail
//! by annotation, load balancers, PVCs and ingresses get their status.
#![cfg(feature = "simcluster")]

mod simcluster_support;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
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

    // The Deployment got a ReplicaSet and two running Pods, owned by it; a new template
    // gives a new ReplicaSet and the old one goes to zero; deleting the Deployment
    // collects them all.
    let rs_api: Api<ReplicaSet> = Api::namespaced(c.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let running = |n: usize| {
        let pod_api = pod_api.clone();
        async move {
            let pods = pod_api
                .list(&ListParams::default().labels("app=x"))
                .await
                .ok()?;
            let owned: Vec<_> = pods
                .items
                .iter()
                .filter(|p| {
                    p.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("ok-"))
                })
                .collect();
            (owned.len() == n
                && owned
                    .iter()
                    .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
            .then_some(())
        }
    };
    eventually(10, "two running pods", || running(2)).await;
    let ok_rs = |all: Vec<ReplicaSet>| -> Vec<ReplicaSet> {
        all.into_iter()
            .filter(|r| {
                r.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("ok-"))
            })
            .collect()
    };
    let first_rs = ok_rs(rs_api.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(first_rs.len(), 1);
    assert_eq!(
        first_rs[0].metadata.owner_references.as_ref().unwrap()[0].name,
        "ok"
    );
    d.patch(
        "ok",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i2"}]}}}}),
        ),
    )
    .await
    .unwrap();
    eventually(10, "rollout to a new replica set", || {
        let rs_api = rs_api.clone();
        async move {
            let all = ok_rs(rs_api.list(&ListParams::default()).await.ok()?.items);
            let sizes: Vec<i32> = all
                .iter()
                .filter_map(|r| r.spec.as_ref()?.replicas)
                .collect();
            (all.len() == 2 && sizes.contains(&0) && sizes.contains(&2)).then_some(())
        }
    })
    .await;
    eventually(10, "old pods replaced", || running(2)).await;
    d.delete("ok", &Default::default()).await.unwrap();
    eventually(10, "children collected", || {
        let (rs_api, pod_api) = (rs_api.clone(), pod_api.clone());
        async move {
            let rs = rs_api.list(&ListParams::default()).await.ok()?.items;
            let pods = pod_api
                .list(&ListParams::default().labels("app=x"))
                .await
                .ok()?
                .items;
            (rs.iter().all(|r| {
                r.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("bad-"))
            }) && pods.iter().all(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("bad-"))
            }))
            .then_some(())
        }
    })
    .await;

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

    // StatefulSets, DaemonSets and Jobs own their Pods too; Job Pods end Succeeded.
    for (name, phase) in [
        ("db-0", "Running"),
        ("db-1", "Running"),
        ("db-2", "Running"),
    ] {
        status_of(&pods, name, "statefulset pod", |s| s["phase"] == phase).await;
    }
    let owned_by = |kind: &'static str, owner: &'static str| {
        let pods = pods.clone();
        async move {
            let all = pods.list(&ListParams::default()).await.ok()?.items;
            let mine: Vec<Pod> = all
                .into_iter()
                .filter(|p| {
                    p.metadata
                        .owner_references
                        .as_ref()
                        .is_some_and(|r| r.iter().any(|r| r.kind == kind && r.name == owner))
                })
                .collect();
            (!mine.is_empty()).then_some(mine)
        }
    };
    let agent = eventually(10, "daemonset pod", || owned_by("DaemonSet", "agent")).await;
    assert_eq!(agent.len(), 1);
    let job_pods = eventually(10, "job pod succeeded", || async {
        let mine = owned_by("Job", "done").await?;
        mine.iter()
            .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
            .then_some(mine)
    })
    .await;
    assert_eq!(job_pods.len(), 1);

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
