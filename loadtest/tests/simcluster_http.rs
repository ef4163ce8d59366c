//! simcluster's HTTP surface seen raw through the kube client: discovery content types,
//! OpenAPI v3, watch edge cases, the status subresource, fault injection and the admin endpoint.
#![cfg(feature = "simcluster")]

mod simcluster_support;

use flotilla_loadtest::simcluster::FaultConfig;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::client::Body;
use kube::runtime::watcher;
use serde_json::{json, Value};
use simcluster_support::{api_err, client, eventually, start};
use std::time::Duration;

struct Raw {
    code: u16,
    content_type: String,
    headers: http::HeaderMap,
    body: String,
}

async fn raw(
    c: &kube::Client,
    method: &str,
    path: &str,
    accept: Option<&str>,
    body: Option<Value>,
) -> Raw {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(a) = accept {
        b = b.header("Accept", a);
    }
    if body.is_some() {
        b = b.header("Content-Type", "application/json");
    }
    let req = b
        .body(Body::from(
            body.map(|v| v.to_string().into_bytes()).unwrap_or_default(),
        ))
        .unwrap();
    let resp = c.send(req).await.expect("response");
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|h| h.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = String::from_utf8(resp.into_body().collect_bytes().await.unwrap().to_vec()).unwrap();
    Raw {
        code,
        content_type,
        headers,
        body,
    }
}

const AGG: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

#[tokio::test]
async fn discovery_answers_aggregated_only_when_asked_and_openapi_lists_crds() {
    let sim = start().await;
    let c = client(&sim).await;
    let legacy = raw(&c, "GET", "/apis", None, None).await;
    assert_eq!(legacy.content_type, "application/json");
    assert!(legacy.body.contains("\"APIGroupList\""));
    let agg = raw(&c, "GET", "/apis", Some(AGG), None).await;
    assert_eq!(
        agg.content_type,
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert!(agg.body.contains("\"APIGroupDiscoveryList\""));

    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true}]}});
    assert_eq!(
        raw(
            &c,
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            None,
            Some(crd)
        )
        .await
        .code,
        201
    );
    let index: Value =
        serde_json::from_str(&raw(&c, "GET", "/openapi/v3", None, None).await.body).unwrap();
    let url = index["paths"]["apis/example.com/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .expect("CRD group-version in the index")
        .to_string();
    let doc: Value = serde_json::from_str(&raw(&c, "GET", &url, None, None).await.body).unwrap();
    let patch = &doc["paths"]["/apis/example.com/v1alpha1/gadgets/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Gadget");
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    let made = raw(&c, "POST", "/apis/example.com/v1alpha1/gadgets", None, Some(json!({"apiVersion": "example.com/v1alpha1", "kind": "Gadget", "metadata": {"generateName": "g-"}}))).await;
    assert_eq!(made.code, 201, "{}", made.body);
    let made: Value = serde_json::from_str(&made.body).unwrap();
    assert!(made["metadata"]["name"].as_str().unwrap().starts_with("g-"));
    assert_eq!(
        raw(&c, "GET", "/apis/example.com/v1alpha1/gadgets", None, None)
            .await
            .code,
        200
    );
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:flotilla:reader"}, "rules": []});
    assert_eq!(
        raw(
            &c,
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            None,
            Some(role)
        )
        .await
        .code,
        201
    );
    let bad = raw(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        None,
        Some(json!({"metadata": {"name": "Not_Valid"}})),
    )
    .await;
    assert_eq!(bad.code, 422, "{}", bad.body);
    sim.shutdown().await;
}

#[tokio::test]
async fn too_old_watch_gets_an_error_event_and_the_watcher_recovers() {
    let sim = start().await;
    let c = client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let first = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap(),
        )
        .await
        .unwrap();
    let rv = first.metadata.resource_version.unwrap();
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "b"}})).unwrap(),
    )
    .await
    .unwrap();
    sim.expire_watch_history();
    let w = raw(&c, "GET", &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=5"), None, None).await;
    assert_eq!(w.code, 200);
    let ev: Value = serde_json::from_str(w.body.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["code"].as_u64(),
            ev["object"]["reason"].as_str()
        ),
        (Some("ERROR"), Some(410), Some("Expired"))
    );

    // kube's watch API sees the same as an error event.
    let mut s = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match s.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 error event, got {other:?}"),
    }

    // The watcher re-watches after dropped connections (relisting after a 410) and keeps
    // delivering: each object seen triggers the next, then the history is cut and the
    // watch dropped.
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let mk = |n: usize| {
        serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": format!("n{n}")}})).unwrap()
    };
    let (mut next, mut started) = (1, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, stream.try_next())
            .await
            .expect("event in time");
        match ev {
            Ok(Some(watcher::Event::InitDone)) if !started => {
                started = true;
                api.create(&PostParams::default(), &mk(1)).await.unwrap();
            }
            Ok(Some(watcher::Event::Apply(o) | watcher::Event::InitApply(o)))
                if o.metadata.name == Some(format!("n{next}")) =>
            {
                if next == 3 {
                    break;
                }
                next += 1;
                api.create(&PostParams::default(), &mk(next)).await.unwrap();
                sim.expire_watch_history();
                sim.drop_watches();
            }
            Ok(_) | Err(_) => {}
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn status_subresource_splits_spec_and_status() {
    let sim = start().await;
    let c = client(&sim).await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 99}});
    let made = api
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    assert!(
        made.status.is_none_or(|s| s.replicas != Some(99)),
        "status is dropped on create"
    );
    let via_main = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 42}})),
        )
        .await
        .unwrap();
    assert_ne!(via_main.status.and_then(|s| s.replicas), Some(42));
    let pp = PatchParams::default();
    let st = api
        .patch_status(
            "s",
            &pp,
            &Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"replicas": 42}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().replicas, Some(42));
    assert_eq!(
        st.spec.unwrap().replicas,
        Some(1),
        "spec is ignored on the status subresource"
    );
    assert_eq!(st.metadata.generation, Some(1));
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_inject_errors_throttling_latency_and_offline() {
    let sim = start().await;
    // kube retries 429s itself (honouring Retry-After); see the raw answers without that.
    let retrying = client(&sim).await;
    let mut cfg = c_config(&sim).await;
    cfg.default_retry = false;
    let c = kube::Client::try_from(cfg).unwrap();
    sim.set_faults(FaultConfig {
        error_rate: 1.0,
        ..Default::default()
    });
    assert_eq!(
        raw(&c, "GET", "/api/v1/namespaces", None, None).await.code,
        500
    );
    sim.set_faults(FaultConfig {
        throttle_rate: 1.0,
        retry_after_seconds: 7,
        ..Default::default()
    });
    let t = raw(&c, "GET", "/api/v1/namespaces", None, None).await;
    assert_eq!(t.code, 429);
    assert_eq!(t.headers.get("retry-after").unwrap(), "7");
    let st: Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(st["reason"], "TooManyRequests");

    let api: Api<ConfigMap> = Api::namespaced(retrying, "default");
    sim.set_faults(FaultConfig {
        throttle_rate: 1.0,
        retry_after_seconds: 1,
        ..Default::default()
    });
    let pending =
        tokio::spawn(async move { api.list(&Default::default()).await.map(|l| l.items.len()) });
    let before = sim.fault_counts().throttled;
    let s = &sim;
    eventually(10, "the request throttled once", || async move {
        (s.fault_counts().throttled > before).then_some(())
    })
    .await;
    sim.set_faults(FaultConfig {
        throttle_rate: 1.0,
        ..Default::default()
    });
    let cur: Value =
        serde_json::from_str(&raw(&c, "GET", "/simcluster/faults", None, None).await.body).unwrap();
    assert_eq!(cur["throttleRate"], 1.0);
    sim.set_faults(FaultConfig::default());
    assert_eq!(
        pending
            .await
            .unwrap()
            .expect("the retried request gets through"),
        0
    );
    sim.set_faults(FaultConfig {
        throttle_rate: 1.0,
        ..Default::default()
    });

    // The admin endpoint reads and changes the same switches.
    let cur: Value =
        serde_json::from_str(&raw(&c, "GET", "/simcluster/faults", None, None).await.body).unwrap();
    assert_eq!(cur["throttleRate"], 1.0);
    let set = raw(
        &c,
        "PATCH",
        "/simcluster/faults",
        None,
        Some(json!({"throttleRate": 0.0, "latencyMs": 300})),
    )
    .await;
    assert_eq!(set.code, 200, "{}", set.body);
    assert_eq!(sim.faults().latency_ms, 300);
    let started = std::time::Instant::now();
    assert_eq!(raw(&c, "GET", "/version", None, None).await.code, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    println!("phase: offline");
    sim.set_faults(FaultConfig {
        offline: true,
        ..Default::default()
    });
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    match api.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => panic!("offline must not answer, got {s:?}"),
        Err(_) => {}
        Ok(_) => panic!("offline cluster answered"),
    }
    println!("phase: back online");
    let back = raw(
        &c,
        "PUT",
        "/simcluster/faults",
        None,
        Some(json!({"offline": false})),
    )
    .await;
    assert_eq!(back.code, 200);
    eventually(10, "cluster back online", || {
        let api = api.clone();
        async move { api.list(&Default::default()).await.ok() }
    })
    .await;

    println!("phase: forced 410");
    sim.set_faults(FaultConfig {
        force_watch_410: true,
        ..Default::default()
    });
    let rv = sim.resource_version();
    let w = raw(
        &c,
        "GET",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"),
        None,
        None,
    )
    .await;
    assert!(w.body.contains("\"code\":410"), "{}", w.body);
    let mut cfg = c_config(&sim).await;
    cfg.auth_info = Default::default();
    let unauth = kube::Client::try_from(cfg).unwrap();
    assert_eq!(
        api_err(
            Api::<ConfigMap>::namespaced(unauth, "default")
                .list(&Default::default())
                .await
        )
        .code,
        401
    );
    sim.shutdown().await;
}

async fn c_config(sim: &flotilla_loadtest::simcluster::SimCluster) -> kube::Config {
    let kc = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig().unwrap()).unwrap();
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn apply_creates_with_201_and_removes_fields_the_manager_dropped() {
    let sim = start().await;
    let mut cfg = c_config(&sim).await;
    cfg.default_retry = false;
    let c = kube::Client::try_from(cfg).unwrap();
    let path = "/api/v1/namespaces/default/configmaps/applied?fieldManager=me";
    let send = |body: Value| {
        let c = c.clone();
        async move {
            let req = http::Request::builder()
                .method("PATCH")
                .uri(path)
                .header("Content-Type", "application/apply-patch+yaml")
                .body(Body::from(body.to_string().into_bytes()))
                .unwrap();
            let resp = c.send(req).await.unwrap();
            let code = resp.status().as_u16();
            let v: Value =
                serde_json::from_slice(&resp.into_body().collect_bytes().await.unwrap()).unwrap();
            (code, v)
        }
    };
    let full = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}});
    let (code, first) = send(full.clone()).await;
    assert_eq!(code, 201, "{first}");
    let (code, again) = send(full).await;
    assert_eq!(code, 200);
    assert_eq!(
        again["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"],
        "no-op apply"
    );
    let (_, less) = send(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "labels": {"a": "1"}}, "data": {"x": "1"}})).await;
    assert_eq!(less["metadata"]["labels"], json!({"a": "1"}));
    assert_eq!(less["data"], json!({"x": "1"}));
    let fields = &less["metadata"]["managedFields"][0];
    assert_eq!(
        (fields["manager"].as_str(), fields["operation"].as_str()),
        (Some("me"), Some("Apply"))
    );
    assert_eq!(
        fields["fieldsV1"],
        json!({"f:data": {"f:x": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_watch_connections_abort_and_the_watcher_recovers() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    sim.set_faults(FaultConfig {
        watch_drop_after_ms: 200,
        ..Default::default()
    });
    let rv = sim.resource_version().to_string();
    let mut s = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the watch was cut long before its 30 s timeout"
    );

    // Once the first watch has been dropped and a second one started, create an object:
    // only the re-established watch can deliver it. The stream is polled throughout (the
    // watcher is lazy), checking the server's watch count between events.
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let start = sim.watches_started();
    let mut created = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher did not deliver after a drop"
        );
        if !created && sim.watches_started() >= start + 2 {
            created = true;
            api.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap(),
            )
            .await
            .unwrap();
        }
        if let Ok(Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)))) =
            tokio::time::timeout(Duration::from_millis(50), stream.next()).await
        {
            if created && o.metadata.name.as_deref() == Some("late") {
                break;
            }
        }
    }
    sim.shutdown().await;
}

const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

fn json_of(r: &Raw) -> Value {
    assert_eq!(r.code, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("JSON body")
}

#[tokio::test]
async fn table_output_only_when_accept_asks_for_it() {
    let sim = start().await;
    let c = client(&sim).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for (name, data) in [("a", json!({"x": "1", "y": "2"})), ("b", json!({}))] {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap(),
        )
        .await
        .unwrap();
    }
    let path = "/api/v1/namespaces/default/configmaps";
    let r = raw(&c, "GET", path, Some(TABLE_ACCEPT), None).await;
    assert_eq!(
        r.content_type,
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    );
    let t = json_of(&r);
    assert_eq!(
        (t["kind"].as_str(), t["apiVersion"].as_str()),
        (Some("Table"), Some("meta.k8s.io/v1"))
    );
    let cols: Vec<(&str, &str)> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        cols,
        [("Name", "string"), ("Data", "integer"), ("Age", "string")]
    );
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert!(t["metadata"]["resourceVersion"].is_string());
    let row = &t["rows"][0];
    assert_eq!(
        &row["cells"].as_array().unwrap()[..2],
        &[json!("a"), json!(2)]
    );
    assert!(row["cells"][2].as_str().unwrap().ends_with('s'), "{row}");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(row["object"]["metadata"]["name"], "a");
    assert!(row["object"].get("data").is_none());
    assert_eq!(t["rows"][1]["cells"][1], 0);

    // Full objects on request, paging carries `continue`, a GET by name is a one-row table.
    let t = json_of(
        &raw(
            &c,
            "GET",
            &format!("{path}?includeObject=Object&limit=1"),
            Some(TABLE_ACCEPT),
            None,
        )
        .await,
    );
    assert_eq!(t["rows"].as_array().unwrap().len(), 1);
    assert_eq!(t["rows"][0]["object"]["kind"], "ConfigMap");
    assert_eq!(t["rows"][0]["object"]["data"]["x"], "1");
    assert!(t["metadata"]["continue"].is_string());
    let one = json_of(&raw(&c, "GET", &format!("{path}/b"), Some(TABLE_ACCEPT), None).await);
    assert_eq!(one["kind"], "Table");
    assert_eq!(one["rows"][0]["cells"][0], "b");
    let bad = raw(
        &c,
        "GET",
        &format!("{path}?includeObject=Everything"),
        Some(TABLE_ACCEPT),
        None,
    )
    .await;
    assert_eq!(bad.code, 400, "{}", bad.body);

    // Other clients are unaffected: plain JSON, other `as=` kinds, plain JSON preferred.
    for accept in [
        None,
        Some("application/json"),
        Some("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"),
        Some("application/json,application/json;as=Table;v=v1;g=meta.k8s.io"),
    ] {
        let r = raw(&c, "GET", path, accept, None).await;
        assert_eq!(r.content_type, "application/json");
        assert_eq!(json_of(&r)["kind"], "ConfigMapList", "{accept:?}");
    }

    // A watch as Table: one-row tables, column definitions in the first event only.
    let w = raw(
        &c,
        "GET",
        &format!("{path}?watch=true&timeoutSeconds=1"),
        Some(TABLE_ACCEPT),
        None,
    )
    .await;
    let events: Vec<Value> = w
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{}", w.body);
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["kind"], "Table");
    assert_eq!(
        events[0]["object"]["columnDefinitions"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert!(events[1]["object"]["columnDefinitions"].is_null());
    assert_eq!(events[1]["object"]["rows"][0]["cells"][0], "b");
    sim.shutdown().await;
}

/// A protobuf field: `number` with a varint (`Ok`) or length-delimited (`Err`) value.
fn pb(number: u64, value: Result<u64, &[u8]>) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = vec![];
    match value {
        Ok(v) => {
            varint(number << 3, &mut out);
            varint(v, &mut out);
        }
        Err(bytes) => {
            varint(number << 3 | 2, &mut out);
            varint(bytes.len() as u64, &mut out);
            out.extend_from_slice(bytes);
        }
    }
    out
}

/// A Kubernetes protobuf body: magic, then `runtime.Unknown{typeMeta, raw}`.
fn pb_envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let tm = [
        pb(1, Err(api_version.as_bytes())),
        pb(2, Err(kind.as_bytes())),
    ]
    .concat();
    [b"k8s\0".to_vec(), pb(1, Err(&tm)), pb(2, Err(raw))].concat()
}

/// A ConfigMap message: metadata{name, resourceVersion, labels{app}}, data{mode}.
fn pb_configmap(name: &str, rv: &str, mode: &str) -> Vec<u8> {
    let label = [pb(1, Err(b"app")), pb(2, Err(b"web"))].concat();
    let meta = [
        pb(1, Err(name.as_bytes())),
        pb(6, Err(rv.as_bytes())),
        pb(7, Ok(0)),
        pb(11, Err(&label)),
    ]
    .concat();
    let data = [pb(1, Err(b"mode")), pb(2, Err(mode.as_bytes()))].concat();
    [pb(1, Err(&meta)), pb(2, Err(&data))].concat()
}

async fn send_protobuf(c: &kube::Client, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .header(
            "Accept",
            "application/vnd.kubernetes.protobuf,application/json",
        )
        .body(Body::from(body))
        .unwrap();
    let resp = c.send(req).await.expect("response");
    let code = resp.status().as_u16();
    let ct = resp.headers().get("content-type").cloned();
    assert_eq!(
        ct.as_ref().map(|h| h.to_str().unwrap()),
        Some("application/json")
    );
    let body = resp.into_body().collect_bytes().await.unwrap();
    (code, serde_json::from_slice(&body).expect("JSON answer"))
}

#[tokio::test]
async fn protobuf_bodies_create_and_update_and_bad_ones_are_refused() {
    let sim = start().await;
    let c = client(&sim).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let body = pb_envelope("v1", "ConfigMap", &pb_configmap("cm", "", "a"));
    let (code, created) = send_protobuf(&c, "POST", cms, body).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(created["data"], json!({"mode": "a"}));

    let rv = created["metadata"]["resourceVersion"].as_str().unwrap();
    let body = pb_envelope("v1", "ConfigMap", &pb_configmap("cm", rv, "b"));
    let (code, updated) = send_protobuf(&c, "PUT", &format!("{cms}/cm"), body.clone()).await;
    assert_eq!(code, 200, "{updated}");
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let live = api.get("cm").await.expect("get");
    assert_eq!(live.data.unwrap_or_default()["mode"], "b");
    // The same update again carries a stale resourceVersion.
    let (code, stale) = send_protobuf(&c, "PUT", &format!("{cms}/cm"), body).await;
    assert_eq!(
        (code, stale["reason"].as_str()),
        (409, Some("Conflict")),
        "{stale}"
    );

    let good = pb_envelope("v1", "ConfigMap", &pb_configmap("cut", "", "a"));
    let (code, cut) = send_protobuf(&c, "POST", cms, good[..good.len() - 3].to_vec()).await;
    assert_eq!(code, 400, "{cut}");
    assert!(
        cut["message"]
            .as_str()
            .unwrap()
            .contains("malformed protobuf body at byte"),
        "{cut}"
    );

    let secret = pb_envelope("v1", "Secret", &pb_configmap("s", "", "a"));
    let (code, wrong) = send_protobuf(&c, "POST", cms, secret).await;
    assert_eq!(code, 400, "{wrong}");
    assert!(
        wrong["message"]
            .as_str()
            .unwrap()
            .contains("is a v1 Secret but the request is for v1 ConfigMap"),
        "{wrong}"
    );

    let deploy = pb_envelope("apps/v1", "Deployment", &pb(1, Err(&pb(1, Err(b"web")))));
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let (code, refused) = send_protobuf(&c, "POST", path, deploy).await;
    assert_eq!(
        (code, refused["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("\"Deployment\""),
        "{refused}"
    );
    assert!(api.get_opt("cut").await.expect("get").is_none());
    sim.shutdown().await;
}
