//! The real `kubectl` against a simcluster over HTTPS, driven only by a kubeconfig.
//! When `kubectl` is not installed these tests are skipped, or fail under `CI=true`.
#![cfg(feature = "simcluster")]

mod simcluster_support;

use simcluster_support::kubectl::{kubectl_available, Kubectl};
use simcluster_support::start;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env: [{name: MODE, value: "a"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_diffs_patches_waits_and_deletes() {
    if !kubectl_available() {
        return;
    }
    let sim = start().await;
    let k = Kubectl::new(&sim);
    assert!(k
        .ok(&["get", "namespaces"], None)
        .await
        .contains("kube-system"));

    tracing_phase("client-side apply, diff, wait");
    assert!(k
        .ok(&["apply", "-f", "-"], Some(DEPLOY))
        .await
        .contains("deployment.apps/web created"));
    let changed = DEPLOY.replace("nginx:1.25", "nginx:1.26");
    let diff = k.run_with(&["diff", "-f", "-"], Some(&changed)).await;
    assert!(
        !diff.ok && diff.stdout.contains("+        image: nginx:1.26"),
        "diff: {}\n{}",
        diff.stdout,
        diff.stderr
    );
    let unchanged = k.run_with(&["diff", "-f", "-"], Some(DEPLOY)).await;
    assert!(
        unchanged.ok && unchanged.stdout.is_empty(),
        "no diff expected: {}",
        unchanged.stdout
    );
    assert!(k
        .ok(&["apply", "-f", "-"], Some(&changed))
        .await
        .contains("configured"));
    k.ok(
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=30s",
        ],
        None,
    )
    .await;
    let rollout = k
        .ok(
            &["rollout", "status", "deployment/web", "--timeout=30s"],
            None,
        )
        .await;
    assert!(rollout.contains("successfully rolled out"), "{rollout}");

    tracing_phase("server-side apply and conflicts");
    k.ok(
        &["apply", "--server-side", "--field-manager=ops", "-f", "-"],
        Some(&changed),
    )
    .await;
    let other = changed.replace("replicas: 2", "replicas: 7");
    let conflict = k
        .run_with(
            &[
                "apply",
                "--server-side",
                "--field-manager=intruder",
                "-f",
                "-",
            ],
            Some(&other),
        )
        .await;
    assert!(
        !conflict.ok && conflict.stderr.contains("conflict"),
        "expected a conflict: {}",
        conflict.stderr
    );
    k.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=intruder",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&other),
    )
    .await;
    assert_eq!(
        k.ok(
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
            None
        )
        .await,
        "7"
    );
    let ssa_diff = k
        .run_with(
            &[
                "diff",
                "--server-side",
                "--field-manager=intruder",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&other.replace("replicas: 7", "replicas: 8")),
        )
        .await;
    assert!(
        !ssa_diff.ok && ssa_diff.stdout.contains("+  replicas: 8"),
        "{}\n{}",
        ssa_diff.stdout,
        ssa_diff.stderr
    );
    assert_eq!(
        k.ok(
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
            None
        )
        .await,
        "7",
        "diff stores nothing"
    );

    tracing_phase("label and the three patch types");
    k.ok(&["label", "deployment", "web", "tier=frontend"], None)
        .await;
    k.ok(
        &[
            "patch",
            "deployment",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
        None,
    )
    .await;
    k.ok(&["patch", "deployment", "web", "--type", "json", "-p", r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.27"}]"#], None).await;
    k.ok(&["patch", "deployment", "web", "--type", "strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#], None).await;
    let got = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels.tier} {.spec.replicas} {.spec.template.spec.containers[*].image}"], None).await;
    assert_eq!(got, "frontend 3 nginx:1.27 busybox");
    assert!(k
        .ok(&["get", "deploy", "-l", "tier=frontend"], None)
        .await
        .contains("web"));

    tracing_phase("client-side apply removes what the last applied configuration dropped");
    let two = DEPLOY.replace("name: web", "name: two").replace(
        "      - name: two\n",
        "      - name: side\n        image: busybox\n      - name: two\n",
    );
    assert!(two.contains("name: side"), "{two}");
    k.ok(&["apply", "-f", "-"], Some(&two)).await;
    assert_eq!(
        k.ok(
            &[
                "get",
                "deploy",
                "two",
                "-o",
                "jsonpath={.spec.template.spec.containers[*].name}"
            ],
            None
        )
        .await,
        "side two"
    );
    let one = DEPLOY.replace("name: web", "name: two").replace(
        "env: [{name: MODE, value: \"a\"}]",
        "env: [{name: OTHER, value: \"b\"}]",
    );
    k.ok(&["apply", "-f", "-"], Some(&one)).await;
    assert_eq!(
        k.ok(&["get", "deploy", "two", "-o", "jsonpath={.spec.template.spec.containers[*].name} {.spec.template.spec.containers[0].env[*].name}"], None).await,
        "two OTHER"
    );

    k.ok(&["delete", "deployment", "web", "--timeout=30s"], None)
        .await;
    let gone = k.run_with(&["get", "deployment", "web"], None).await;
    assert!(
        !gone.ok && gone.stderr.contains("NotFound"),
        "{}",
        gone.stderr
    );
    sim.shutdown().await;
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("watch line in time")
        .expect("read")
        .expect("stream open")
}

fn tracing_phase(p: &str) {
    println!("phase: {p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_streams_events() {
    if !kubectl_available() {
        return;
    }
    let sim = start().await;
    let k = Kubectl::new(&sim);
    // `kubectl create configmap` sends protobuf, which simcluster does not speak; `-f` sends JSON.
    k.ok(
        &["create", "-f", "-"],
        Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"first\"}}"),
    )
    .await;
    let mut watch = k.command(&[
        "get",
        "configmaps",
        "-w",
        "-o",
        "name",
        "--request-timeout=30s",
    ]);
    watch.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = watch.spawn().expect("kubectl get -w starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(next_line(&mut lines).await, "configmap/first");
    k.ok(
        &["create", "-f", "-"],
        Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"second\"}}"),
    )
    .await;
    assert_eq!(next_line(&mut lines).await, "configmap/second");
    child.kill().await.expect("stop the watch");
    sim.shutdown().await;
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3, tags: [a, b]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_uses_a_crd_created_at_run_time() {
    if !kubectl_available() {
        return;
    }
    let sim = start().await;
    let k = Kubectl::new(&sim);
    k.ok(&["apply", "-f", "-"], Some(CRD)).await;
    k.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=30s",
        ],
        None,
    )
    .await;
    k.ok(&["apply", "-f", "-"], Some(WIDGET)).await;
    assert!(k.ok(&["get", "wd"], None).await.contains("w1"));
    k.ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&WIDGET.replace("size: 3", "size: 4")),
    )
    .await;
    k.ok(
        &[
            "patch",
            "widget",
            "w1",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"tags":["c"]}}"#,
        ],
        None,
    )
    .await;
    let smp = k
        .run_with(
            &[
                "patch",
                "widget",
                "w1",
                "--type",
                "strategic",
                "-p",
                r#"{"spec":{"size":9}}"#,
            ],
            None,
        )
        .await;
    assert!(
        !smp.ok && smp.stderr.contains("not supported"),
        "{}",
        smp.stderr
    );
    assert_eq!(
        k.ok(
            &[
                "get",
                "widget",
                "w1",
                "-o",
                "jsonpath={.spec.size} {.spec.tags}"
            ],
            None
        )
        .await,
        r#"4 ["c"]"#
    );
    k.ok(&["delete", "widget", "w1"], None).await;
    k.ok(&["delete", "crd", "widgets.example.com"], None).await;
    let gone = k.run_with(&["get", "widgets.example.com"], None).await;
    assert!(!gone.ok, "the type is gone with its CRD");
    // A re-created definition starts empty: instances went with the old one.
    k.ok(&["apply", "-f", "-"], Some(CRD)).await;
    k.ok(&["apply", "-f", "-"], Some(WIDGET)).await;
    k.ok(&["delete", "crd", "widgets.example.com"], None).await;
    k.ok(&["apply", "-f", "-"], Some(CRD)).await;
    let empty = k
        .run_with(&["get", "widgets.example.com", "-o", "name"], None)
        .await;
    assert!(
        empty.ok && empty.stdout.trim().is_empty(),
        "{} {}",
        empty.stdout,
        empty.stderr
    );
    sim.shutdown().await;
}

const APPS: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: guestbook, namespace: argocd}
spec:
  project: default
  source: {repoURL: "https://example.com/repo.git", path: guestbook, targetRevision: HEAD}
  destination: {server: "https://kubernetes.default.svc", namespace: guestbook}
status:
  sync: {status: Synced, revision: abc123}
  health: {status: Healthy}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: pending, namespace: argocd}
spec:
  project: team-a
  destination: {server: "https://kubernetes.default.svc", namespace: pending}
"#;

/// Header and rows of kubectl's table output, cells split on runs of two or more spaces.
fn table_of(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

/// The column of `header` in kubectl's output, found by its position in the header line
/// (empty cells have no text, so splitting alone cannot place them).
fn column(out: &str, header: &str) -> Vec<String> {
    let mut lines = out.lines();
    let head = lines.next().expect("a header line");
    let start = head
        .match_indices(header)
        .map(|(i, _)| i)
        .find(|&i| {
            let after = &head[i + header.len()..];
            (i == 0 || head[..i].ends_with(' ')) && (after.is_empty() || after.starts_with("  "))
        })
        .unwrap_or_else(|| panic!("no {header} in {head:?}"));
    lines
        .map(|l| {
            l.get(start..)
                .unwrap_or_default()
                .split("  ")
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_server_side_columns() {
    if !kubectl_available() {
        return;
    }
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let crd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/base/crds/application.yaml");
    k.ok(&["apply", "-f", crd.to_str().expect("utf-8 path")], None)
        .await;
    k.ok(
        &["create", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"argocd"}}"#),
    )
    .await;
    k.ok(&["apply", "-f", "-"], Some(APPS)).await;

    // The CRD's printer columns, and no AGE: the CRD defines columns and none is an age.
    let out = k.ok(&["get", "applications", "-n", "argocd"], None).await;
    let t = table_of(&out);
    assert_eq!(t[0], ["NAME", "SYNC STATUS", "HEALTH STATUS"], "{out}");
    assert_eq!(t[1], ["guestbook", "Synced", "Healthy"], "{out}");
    assert_eq!(column(&out, "SYNC STATUS"), ["Synced", ""], "{out}");
    assert_eq!(column(&out, "NAME"), ["guestbook", "pending"], "{out}");
    let one = k
        .ok(&["get", "app", "guestbook", "-n", "argocd"], None)
        .await;
    assert_eq!(
        table_of(&one)[1],
        ["guestbook", "Synced", "Healthy"],
        "{one}"
    );

    // `-o wide` adds the priority-10 columns.
    let wide = k
        .ok(&["get", "applications", "-n", "argocd", "-o", "wide"], None)
        .await;
    let t = table_of(&wide);
    assert_eq!(
        t[0],
        [
            "NAME",
            "SYNC STATUS",
            "HEALTH STATUS",
            "REVISION",
            "PROJECT"
        ],
        "{wide}"
    );
    assert_eq!(
        t[1],
        ["guestbook", "Synced", "Healthy", "abc123", "default"]
    );
    assert_eq!(column(&wide, "PROJECT"), ["default", "team-a"], "{wide}");

    // Sorting asks for whole objects (`includeObject=Object`); -A adds the namespace.
    let sorted = k
        .ok(
            &["get", "applications", "-A", "--sort-by=.spec.project"],
            None,
        )
        .await;
    assert_eq!(
        table_of(&sorted)[0],
        ["NAMESPACE", "NAME", "SYNC STATUS", "HEALTH STATUS"],
        "{sorted}"
    );
    assert_eq!(
        column(&sorted, "NAME"),
        ["guestbook", "pending"],
        "{sorted}"
    );

    // `-o json` is the plain objects, as before.
    let json: serde_json::Value = serde_json::from_str(
        &k.ok(&["get", "applications", "-n", "argocd", "-o", "json"], None)
            .await,
    )
    .expect("JSON");
    assert_eq!(json["items"][0]["kind"], "Application");
    assert_eq!(json["items"][0]["status"]["health"]["status"], "Healthy");
    assert!(json.get("columnDefinitions").is_none());

    // Built-in kinds: ConfigMaps show DATA, namespaces STATUS.
    k.ok(
        &["create", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":"1","b":"2"}}"#),
    )
    .await;
    let cms = k.ok(&["get", "configmaps"], None).await;
    let t = table_of(&cms);
    assert_eq!(t[0], ["NAME", "DATA", "AGE"], "{cms}");
    assert_eq!(t[1][..2], ["cfg", "2"], "{cms}");
    assert!(t[1][2].ends_with('s'), "a fresh age in seconds: {cms}");
    let ns = k.ok(&["get", "namespaces"], None).await;
    assert_eq!(table_of(&ns)[0], ["NAME", "STATUS", "AGE"], "{ns}");
    assert!(
        ns.lines()
            .any(|l| l.starts_with("argocd") && l.contains("Active")),
        "{ns}"
    );

    // Workloads and services, with their `-o wide` columns.
    k.ok(&["apply", "-f", "-"], Some(DEPLOY)).await;
    k.ok(
        &["rollout", "status", "deployment/web", "--timeout=30s"],
        None,
    )
    .await;
    let deploy = k.ok(&["get", "deployments", "-o", "wide"], None).await;
    let t = table_of(&deploy);
    assert_eq!(
        t[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{deploy}"
    );
    assert_eq!(t[1][..4], ["web", "2/2", "2", "2"], "{deploy}");
    assert_eq!(t[1][5..], ["web", "nginx:1.25", "app=web"], "{deploy}");
    k.ok(
        &[
            "wait",
            "--for=condition=Ready",
            "pod",
            "-l",
            "app=web",
            "--timeout=30s",
        ],
        None,
    )
    .await;
    let pods = k.ok(&["get", "pods", "-l", "app=web"], None).await;
    let t = table_of(&pods);
    assert_eq!(
        t[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    assert_eq!(t.len(), 3, "{pods}");
    assert_eq!(t[1][1..4], ["1/1", "Running", "0"], "{pods}");
    k.ok(
        &["create", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"selector":{"app":"web"},"ports":[{"port":80}]}}"#),
    )
    .await;
    let svc = k.ok(&["get", "services", "web", "-o", "wide"], None).await;
    let t = table_of(&svc);
    assert_eq!(
        t[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ],
        "{svc}"
    );
    assert_eq!(t[1][..2], ["web", "ClusterIP"], "{svc}");
    assert_eq!(t[1][3..5], ["<none>", "80/TCP"], "{svc}");
    assert_eq!(t[1][6], "app=web", "{svc}");

    // `get -w` prints the table, then one row per change.
    let mut watch = k.command(&[
        "get",
        "applications",
        "-n",
        "argocd",
        "-w",
        "--request-timeout=30s",
    ]);
    watch.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = watch.spawn().expect("kubectl get -w starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let head = next_line(&mut lines).await;
    assert!(head.contains("HEALTH STATUS"), "{head}");
    next_line(&mut lines).await;
    next_line(&mut lines).await;
    k.ok(
        &[
            "patch",
            "app",
            "pending",
            "-n",
            "argocd",
            "--type",
            "merge",
            "-p",
            r#"{"status":{"sync":{"status":"OutOfSync"},"health":{"status":"Missing"}}}"#,
        ],
        None,
    )
    .await;
    let changed = next_line(&mut lines).await;
    assert_eq!(
        table_of(&changed)[0],
        ["pending", "OutOfSync", "Missing"],
        "{changed}"
    );
    child.kill().await.expect("stop the watch");
    sim.shutdown().await;
}

/// `kubectl create <kind>` sends Kubernetes protobuf bodies; simcluster decodes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_that_simcluster_decodes() {
    if !kubectl_available() {
        return;
    }
    let sim = start().await;
    let k = Kubectl::new(&sim);
    let binary: Vec<u8> = (0..=255u8).collect();
    let blob = k.dir.path().join("blob.bin");
    std::fs::write(&blob, &binary).expect("write blob");
    let from_blob = format!("--from-file=blob={}", blob.display());
    let secret = [
        "create",
        "secret",
        "generic",
        "creds",
        "--save-config",
        "--from-literal=user=admin",
        "--from-literal=pw=s3 cr=t",
        &from_blob,
    ];
    let rolebinding = [
        "create",
        "rolebinding",
        "admins",
        "--clusterrole=admin",
        "--serviceaccount=team-a:deployer",
        "--user=alice",
    ];
    let configmap = [
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
        &from_blob,
    ];
    let role = [
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=pods,secrets",
    ];
    let crb = [
        "create",
        "clusterrolebinding",
        "viewers",
        "--clusterrole=view",
        "--group=devs",
    ];
    let ns = ["-n", "team-a"];
    for (create, in_ns) in [
        (&["create", "namespace", "team-a"][..], &[][..]),
        (&secret, &ns),
        (&configmap, &ns),
        (&["create", "serviceaccount", "deployer"], &ns),
        (&rolebinding, &ns),
        (&role, &ns),
        (&crb, &[]),
    ] {
        let args = [create, in_ns].concat();
        // What kubectl itself renders as JSON, against what the server decoded and stored.
        let dry = k
            .ok(
                &[&args[..], &["--dry-run=client", "-o", "json"]].concat(),
                None,
            )
            .await;
        let dry: serde_json::Value = serde_json::from_str(&dry).expect("dry run JSON");
        let out = k.ok(&args, None).await;
        assert!(out.contains("created"), "{args:?}: {out}");
        let kind = dry["kind"].as_str().expect("kind").to_lowercase();
        let name = dry["metadata"]["name"].as_str().expect("name");
        let live = k
            .ok(
                &[&["get", &kind, name, "-o", "json"][..], in_ns].concat(),
                None,
            )
            .await;
        let live: serde_json::Value = serde_json::from_str(&live).expect("get JSON");
        for (key, want) in dry.as_object().expect("object") {
            if !["apiVersion", "kind", "metadata", "status"].contains(&key.as_str()) {
                assert_eq!(&live[key], want, "{args:?}: .{key} of {live}");
            }
        }
        for key in ["labels", "annotations"] {
            assert_eq!(
                live["metadata"][key], dry["metadata"][key],
                "{args:?}: {live}"
            );
        }
    }
    // Beyond agreeing with kubectl: the values themselves, and the server's defaults.
    let out = k
        .ok(
            &["get", "secret", "creds", "-n", "team-a", "-o", "json"],
            None,
        )
        .await;
    let secret: serde_json::Value = serde_json::from_str(&out).expect("get JSON");
    let b64 = flotilla_loadtest::simcluster::tls::base64;
    assert_eq!(secret["type"], "Opaque", "{secret}");
    assert_eq!(secret["data"]["user"], b64(b"admin"), "{secret}");
    assert_eq!(secret["data"]["pw"], b64(b"s3 cr=t"), "{secret}");
    assert_eq!(secret["data"]["blob"], b64(&binary), "{secret}");
    let saved = secret["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("--save-config annotation");
    assert!(saved.contains("\"creds\""), "{saved}");
    let out = k
        .ok(
            &["get", "rolebinding", "admins", "-n", "team-a", "-o", "json"],
            None,
        )
        .await;
    let rb: serde_json::Value = serde_json::from_str(&out).expect("get JSON");
    assert_eq!(
        rb["subjects"],
        serde_json::json!([
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
            {"kind": "ServiceAccount", "name": "deployer", "namespace": "team-a"},
        ]),
        "{rb}"
    );

    // A kind without a protobuf decoder gets a 415 that names it.
    let deploy = k
        .run_with(&["create", "deployment", "web", "--image=nginx"], None)
        .await;
    assert!(
        !deploy.ok && deploy.stderr.contains("\"Deployment\""),
        "{}\n{}",
        deploy.stdout,
        deploy.stderr
    );
    sim.shutdown().await;
}
