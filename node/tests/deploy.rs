//! The deployment manifests in deploy/: the Kustomize base and overlays and the Helm chart
//! render, match what `flotilla node` accepts (flags, environment, ports, probes, data
//! directory, peer names, RBAC), and apply with the real `kubectl apply --server-side` to a
//! simulated cluster, where `kubectl scale` then changes only the replica count.
mod support;

#[path = "deploy/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};
use std::process::Command;

use checks::{check, check_policies, find, Expect};
use flotilla_loadtest::simcluster::{SimCluster, SimConfig};
use serde::Deserialize;
use serde_json::Value;

/// kubectl on PATH; missing kubectl fails under CI=true and skips otherwise.
fn kubectl() -> Option<PathBuf> {
    let found = flotilla_node::render::find_on_path("kubectl");
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl not found on PATH"
        );
        eprintln!("skipping: kubectl not found");
    }
    found
}

fn deploy_dir() -> PathBuf {
    support::workspace().join("deploy")
}

/// Run a tool, returning stdout; panics with stderr when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every non-empty document of a YAML stream, as JSON values.
fn parse_docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| {
            let v = serde_yaml::Value::deserialize(d).expect("valid YAML document");
            serde_json::to_value(v).expect("YAML as JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn to_yaml(objs: &[&Value]) -> String {
    objs.iter()
        .map(|o| serde_yaml::to_string(o).expect("YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn kustomize(kubectl: &Path, dir: &str) -> Vec<Value> {
    parse_docs(&run(Command::new(kubectl)
        .arg("kustomize")
        .arg(deploy_dir().join(dir))))
}

/// `helm template` of the chart with its own throwaway helm home directories.
fn helm_template(helm: &Path, home: &Path, release: &str, ns: &str, extra: &[&str]) -> Vec<Value> {
    let mut cmd = helm_cmd(helm, home);
    cmd.args(["template", release])
        .arg(deploy_dir().join("helm/flotilla"))
        .args(["--namespace", ns, "--include-crds"])
        .args(extra);
    parse_docs(&run(&mut cmd))
}

fn helm_cmd(helm: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(helm);
    for (var, sub) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        cmd.env(var, home.join(sub));
    }
    cmd
}

fn kind_count(objs: &[Value], kind: &str) -> usize {
    objs.iter().filter(|o| o["kind"] == kind).count()
}

#[test]
fn kustomize_base_and_overlays_match_the_binary() {
    let Some(kubectl) = kubectl() else { return };
    let cases = [
        ("base", 3, 3, false),
        ("overlays/dev", 1, 3, false),
        ("overlays/ha", 5, 5, true),
    ];
    for (dir, replicas, voters, tls) in cases {
        let objs = kustomize(&kubectl, dir);
        let what: &'static str = Box::leak(format!("kustomize {dir}").into_boxed_str());
        let cfg = check(
            &objs,
            &Expect {
                what,
                replicas,
                voters,
                tls,
            },
        );
        check_policies(&objs, what, true);
        // One namespace for everything, matching --namespaces and --secrets-namespace.
        let ns = find(&objs, "Namespace", None)["metadata"]["name"].clone();
        assert_eq!(
            cfg.controller.namespaces,
            [ns.as_str().unwrap_or_default()],
            "{what}"
        );
        assert_eq!(cfg.controller.secrets_namespace, ns, "{what}");
        assert_eq!(kind_count(&objs, "CustomResourceDefinition"), 2, "{what}");
        let monitors = usize::from(dir != "overlays/dev");
        assert_eq!(kind_count(&objs, "ServiceMonitor"), monitors, "{what}");
        let ha_affinity = find(&objs, "StatefulSet", None)
            .pointer("/spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
            .is_some();
        assert_eq!(
            ha_affinity,
            dir == "overlays/ha",
            "{what}: required anti-affinity"
        );
    }
}

#[test]
fn helm_chart_matches_the_binary_and_the_base() {
    let Some(helm) = support::helm() else { return };
    let home = tempfile::tempdir().expect("tmp");
    let chart = deploy_dir().join("helm/flotilla");
    let ha = chart.join("values-ha.yaml").to_string_lossy().into_owned();

    let objs = helm_template(&helm, home.path(), "flotilla", "argocd", &[]);
    let what = "helm default values";
    let cfg = check(
        &objs,
        &Expect {
            what,
            replicas: 3,
            voters: 3,
            tls: false,
        },
    );
    check_policies(&objs, what, true);
    assert_eq!(cfg.controller.namespaces, ["argocd"]);
    assert_eq!(kind_count(&objs, "ServiceMonitor"), 0, "off by default");
    assert_eq!(kind_count(&objs, "CustomResourceDefinition"), 2);
    let token = find(&objs, "Secret", Some("flotilla-api-token"));
    assert!(token["data"]["token"]
        .as_str()
        .is_some_and(|t| t.len() >= 48));

    let objs = helm_template(&helm, home.path(), "prod", "platform", &["-f", &ha]);
    let what = "helm values-ha.yaml";
    let cfg = check(
        &objs,
        &Expect {
            what,
            replicas: 5,
            voters: 5,
            tls: true,
        },
    );
    check_policies(&objs, what, true);
    assert_eq!(cfg.controller.namespaces, ["platform"]);
    assert!(cfg
        .advertise
        .starts_with("prod-flotilla-0.prod-flotilla-peers.platform.svc."));
    assert_eq!(kind_count(&objs, "ServiceMonitor"), 1);

    // Other namespaces: RBAC follows them; no network policy, no PDB when disabled.
    let objs = helm_template(
        &helm,
        home.path(),
        "flotilla",
        "flotilla",
        &[
            "--set",
            "namespaces={team-a,team-b}",
            "--set",
            "secretsNamespace=flotilla",
            "--set",
            "networkPolicy.enabled=false",
            "--set",
            "apiToken.existingSecret=my-token",
            "--set",
            "webhookSecret.existingSecret=my-webhook",
            "--set",
            "workers=8",
            "--set",
            "shardCount=128",
        ],
    );
    let what = "helm custom namespaces";
    let cfg = check(
        &objs,
        &Expect {
            what,
            replicas: 3,
            voters: 3,
            tls: false,
        },
    );
    check_policies(&objs, what, false);
    assert_eq!(cfg.controller.namespaces, ["team-a", "team-b"]);
    assert_eq!(cfg.controller.secrets_namespace, "flotilla");
    assert_eq!((cfg.controller.workers, cfg.shard_count), (8, 128));
    assert!(cfg.webhook_secret.is_some());
    assert_eq!(
        kind_count(&objs, "Secret"),
        0,
        "existing Secrets are used, none generated"
    );

    // Invalid values fail rendering with a clear message.
    for (set, message) in [
        ("voters=4", "voters must be 3 or 5"),
        (
            "terminationGracePeriodSeconds=10",
            "terminationGracePeriodSeconds must be greater",
        ),
    ] {
        let out = helm_cmd(&helm, home.path())
            .args(["template", "x"])
            .arg(&chart)
            .args(["--set", set])
            .output()
            .expect("helm runs");
        assert!(!out.status.success(), "{set} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{set}: {err}");
    }

    // helm lint is clean with both value sets.
    for extra in [&[][..], &["-f", ha.as_str()][..]] {
        run(helm_cmd(&helm, home.path())
            .args(["lint", "--strict"])
            .arg(&chart)
            .args(extra));
    }

    // The chart ships the same CRDs as the Kustomize base.
    for crd in ["application.yaml", "appproject.yaml"] {
        let base = std::fs::read(deploy_dir().join("base/crds").join(crd)).expect("base CRD");
        let ours = std::fs::read(chart.join("crds").join(crd)).expect("chart CRD");
        assert!(
            base == ours,
            "deploy/helm/flotilla/crds/{crd} differs from deploy/base/crds/{crd}"
        );
    }
}

/// A minimal ServiceMonitor CRD (the Prometheus Operator's own is large), so the rendered
/// ServiceMonitor can be applied too.
const SERVICE_MONITOR_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

/// kubectl against one simulated cluster, with its own discovery cache.
struct Kube {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: PathBuf,
}

/// A simulated cluster, a temporary directory, and kubectl pointed at the cluster (the first
/// two live as long as the test keeps them).
async fn kube_on_sim(kubectl: PathBuf) -> (SimCluster, tempfile::TempDir, Kube) {
    let sim = SimCluster::start(SimConfig::default())
        .await
        .expect("simcluster starts");
    let tmp = tempfile::tempdir().expect("tmp");
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig().expect("kubeconfig")).expect("write");
    let kube = Kube {
        kubectl,
        kubeconfig,
        cache: tmp.path().join("cache"),
        dir: tmp.path().to_path_buf(),
    };
    (sim, tmp, kube)
}

impl Kube {
    fn run(&self, args: &[&str]) -> String {
        run(Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args))
    }

    /// `kubectl apply --server-side` of objects: CRDs first, then namespaces, then the rest.
    fn apply(&self, name: &str, objs: &[Value]) {
        if let Err(e) = self.try_apply(name, objs, &[]) {
            panic!("applying {name}: {e}");
        }
    }

    /// Apply in stages; the first stage kubectl refuses ends it with kubectl's message.
    fn try_apply(&self, name: &str, objs: &[Value], extra: &[&str]) -> Result<(), String> {
        let stage = |pick: &dyn Fn(&Value) -> bool| -> Vec<&Value> {
            objs.iter().filter(|o| pick(o)).collect()
        };
        let is = |kind: &'static str| move |o: &Value| o["kind"] == kind;
        let stages = [
            stage(&is("CustomResourceDefinition")),
            stage(&is("Namespace")),
            stage(&|o: &Value| o["kind"] != "CustomResourceDefinition" && o["kind"] != "Namespace"),
        ];
        for (i, objs) in stages.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            let file = self.dir.join(format!("{name}-{i}.yaml"));
            std::fs::write(&file, to_yaml(objs)).expect("write");
            let out = Command::new(&self.kubectl)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--cache-dir")
                .arg(&self.cache)
                .args([
                    "apply",
                    "--server-side",
                    "--field-manager=flotilla-deploy-test",
                    "-f",
                ])
                .arg(&file)
                .args(extra)
                .output()
                .expect("kubectl runs");
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
        Ok(())
    }

    fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.run(&all)).expect("kubectl get prints JSON")
    }
}

/// Every rendered object is in the cluster with the rendered content.
fn assert_applied(kube: &Kube, objs: &[Value]) {
    for o in objs {
        let kind = o["kind"].as_str().expect("kind");
        let name = o["metadata"]["name"].as_str().expect("name");
        let api = o["apiVersion"].as_str().expect("apiVersion");
        let group = api.split_once('/').map_or("", |(g, _)| g);
        let resource = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let mut args = vec![resource.as_str(), name];
        if let Some(ns) = o["metadata"]["namespace"].as_str() {
            args.extend_from_slice(&["-n", ns]);
        }
        let live = kube.get(&args);
        assert_eq!(live["metadata"]["name"], name, "{kind}/{name}");
        for field in ["spec", "rules", "roleRef", "subjects", "data"] {
            if let Some(want) = o.get(field).filter(|_| kind != "CustomResourceDefinition") {
                assert!(
                    contains(&live[field], want),
                    "{kind}/{name}: {field}\nwant {want}\nlive {}",
                    live[field]
                );
            }
        }
    }
}

/// Whether `live` holds everything in `want` (the server may add defaults).
fn contains(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| contains(lv, v))),
        // Lists keyed by name (containers, env, ports, volumes) merge in server-side apply
        // and may change order; other lists compare item by item.
        (Value::Array(l), Value::Array(w)) if w.iter().all(|x| x.get("name").is_some()) => {
            l.len() == w.len()
                && w.iter().all(|b| {
                    l.iter()
                        .any(|a| a.get("name") == b.get("name") && contains(a, b))
                })
        }
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(a, b)| contains(a, b))
        }
        (Value::Number(l), Value::Number(w)) => l.as_f64() == w.as_f64(),
        _ => live == want,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_objects_apply_to_a_cluster_and_scale() {
    let Some(kubectl) = kubectl() else { return };
    let (sim, _tmp, k) = kube_on_sim(kubectl).await;
    let helm = support::helm();
    tokio::task::spawn_blocking(move || {
        k.apply("servicemonitor-crd", &parse_docs(SERVICE_MONITOR_CRD));

        // The base, then the dev overlay over it: the same objects, changed in place.
        let base = kustomize(&k.kubectl, "base");
        k.apply("base", &base);
        assert_applied(&k, &base);
        let sts = k.get(&["statefulset", "flotilla", "-n", "argocd"]);
        assert_eq!(sts["spec"]["replicas"], 3);
        let dev = kustomize(&k.kubectl, "overlays/dev");
        k.apply("dev", &dev);
        assert_applied(&k, &dev);
        let sts = k.get(&["statefulset", "flotilla", "-n", "argocd"]);
        assert_eq!(sts["spec"]["replicas"], 1);

        // Scaling is one command and changes nothing else of the pod template.
        k.run(&[
            "scale",
            "statefulset",
            "flotilla",
            "-n",
            "argocd",
            "--replicas=3",
        ]);
        let scaled = k.get(&["statefulset", "flotilla", "-n", "argocd"]);
        assert_eq!(scaled["spec"]["replicas"], 3);
        assert_eq!(scaled["spec"]["template"], sts["spec"]["template"]);

        // The day-two commands of docs/operations.md: checking, restarting, upgrading and
        // scaling both ways.
        let ns = ["-n", "argocd"];
        let status = k.run(
            &[
                &ns[..],
                &[
                    "rollout",
                    "status",
                    "statefulset",
                    "flotilla",
                    "--timeout=60s",
                ],
            ]
            .concat(),
        );
        assert!(status.contains("rolling update complete"), "{status}");
        let pods = || {
            k.get(&[
                "pods",
                "-n",
                "argocd",
                "-l",
                "app.kubernetes.io/name=flotilla",
            ])["items"]
                .as_array()
                .map(Vec::len)
        };
        assert_eq!(pods(), Some(3));
        k.run(&[&ns[..], &["rollout", "restart", "statefulset", "flotilla"]].concat());
        let restarted = k.get(&["statefulset", "flotilla", "-n", "argocd"]);
        assert!(
            restarted["spec"]["template"]["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/restartedAt")
                .is_some(),
            "{restarted}"
        );
        let image = "registry.example.com/flotilla:0.2.0";
        k.run(
            &[
                &ns[..],
                &[
                    "set",
                    "image",
                    "statefulset/flotilla",
                    &format!("flotilla={image}"),
                ],
            ]
            .concat(),
        );
        let upgraded = k.get(&["statefulset", "flotilla", "-n", "argocd"]);
        assert_eq!(
            upgraded["spec"]["template"]["spec"]["containers"][0]["image"],
            image
        );
        let status = k.run(
            &[
                &ns[..],
                &[
                    "rollout",
                    "status",
                    "statefulset",
                    "flotilla",
                    "--timeout=60s",
                ],
            ]
            .concat(),
        );
        assert!(status.contains("rolling update complete"), "{status}");
        for (replicas, want) in [("--replicas=5", 5), ("--replicas=3", 3)] {
            k.run(&[&ns[..], &["scale", "statefulset", "flotilla", replicas]].concat());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while pods() != Some(want) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            assert_eq!(pods(), Some(want), "pods after scale {replicas}");
        }

        // The HA overlay over the same objects. `kubectl scale` took ownership of
        // spec.replicas, so a plain apply reports the conflict (as docs/operations.md says)
        // and --force-conflicts takes it back.
        let ha = kustomize(&k.kubectl, "overlays/ha");
        let err = k
            .try_apply("ha", &ha, &[])
            .expect_err("replicas conflict after kubectl scale");
        assert!(err.contains(".spec.replicas"), "{err}");
        k.try_apply("ha", &ha, &["--force-conflicts"])
            .expect("forced apply");
        assert_applied(&k, &ha);
        let sts = k.get(&["statefulset", "flotilla", "-n", "argocd"]);
        assert_eq!(sts["spec"]["replicas"], 5);

        // The Helm chart with HA values, in another namespace.
        if let Some(helm) = helm {
            let home = k.dir.join("helm");
            let values = deploy_dir().join("helm/flotilla/values-ha.yaml");
            let objs = helm_template(
                &helm,
                &home,
                "prod",
                "platform",
                &["-f", &values.to_string_lossy()],
            );
            // Helm does not create the release namespace (`helm install --create-namespace`
            // does); `kubectl create namespace` sends protobuf, which simcluster refuses.
            let ns = parse_docs("apiVersion: v1\nkind: Namespace\nmetadata: {name: platform}\n");
            k.apply("platform-namespace", &ns);
            k.apply("helm-ha", &objs);
            assert_applied(&k, &objs);
            let sts = k.get(&["statefulset", "prod-flotilla", "-n", "platform"]);
            assert_eq!(sts["spec"]["replicas"], 5);
            let sm = k.get(&["servicemonitors", "-n", "platform"]);
            assert_eq!(sm["items"].as_array().map(Vec::len), Some(1));
        }

        // Uninstalling as docs/operations.md shows keeps the namespace and the CRDs.
        k.run(&[
            "-n",
            "argocd",
            "delete",
            "statefulset,service,poddisruptionbudget,networkpolicy,serviceaccount,role,rolebinding",
            "-l",
            "app.kubernetes.io/name=flotilla",
        ]);
        k.run(&["delete", "clusterrole", "flotilla-applications"]);
        let left = k.get(&["statefulsets,services,roles,rolebindings", "-n", "argocd"]);
        assert_eq!(left["items"].as_array().map(Vec::len), Some(0), "{left}");
        k.get(&["namespace", "argocd"]);
        k.get(&["crd", "applications.argoproj.io"]);
    })
    .await
    .expect("kubectl steps");
    sim.shutdown().await;
}

/// `helm install`, `helm upgrade` (image and replicas) and `helm uninstall` as
/// docs/operations.md shows them, against a simulated cluster: Helm keeps its releases in
/// Secrets it writes in protobuf, which simcluster decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_uninstalls_the_chart() {
    let Some(helm) = support::helm() else { return };
    let Some(kubectl) = kubectl() else { return };
    let (sim, _tmp, k) = kube_on_sim(kubectl).await;
    tokio::task::spawn_blocking(move || {
        let home = k.dir.join("helm");
        let chart = deploy_dir().join("helm/flotilla");
        let helm_run = |args: &[&str]| {
            let mut cmd = helm_cmd(&helm, &home);
            cmd.args(args).arg("--kubeconfig").arg(&k.kubeconfig);
            run(&mut cmd)
        };
        let chart_arg = chart.to_string_lossy().into_owned();
        let out = helm_run(&[
            "install",
            "flotilla",
            &chart_arg,
            "-n",
            "argocd",
            "--create-namespace",
            "--set",
            "image.repository=registry.example.com/flotilla",
        ]);
        assert!(out.contains("STATUS: deployed"), "{out}");
        let sts = k.get(&["statefulset", "flotilla", "-n", "argocd"]);
        assert_eq!(sts["spec"]["replicas"], 3);
        let image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            image.starts_with("registry.example.com/flotilla:"),
            "{image}"
        );

        let out = helm_run(&[
            "upgrade",
            "flotilla",
            &chart_arg,
            "-n",
            "argocd",
            "--reuse-values",
            "--set",
            "image.tag=0.2.0",
        ]);
        assert!(out.contains("REVISION: 2"), "{out}");
        let sts = k.get(&["statefulset", "flotilla", "-n", "argocd"]);
        assert_eq!(
            sts["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example.com/flotilla:0.2.0"
        );
        helm_run(&[
            "upgrade",
            "flotilla",
            &chart_arg,
            "-n",
            "argocd",
            "--reuse-values",
            "--set",
            "replicas=5",
        ]);
        let sts = k.get(&["statefulset", "flotilla", "-n", "argocd"]);
        assert_eq!(sts["spec"]["replicas"], 5);

        let out = helm_run(&["uninstall", "flotilla", "-n", "argocd"]);
        assert!(out.contains("uninstalled"), "{out}");
        let left = k.get(&["statefulsets,services", "-n", "argocd"]);
        assert_eq!(left["items"].as_array().map(Vec::len), Some(0), "{left}");
        // The CRDs stay, as Helm always leaves them, and so does the API token Secret.
        k.get(&["crd", "applications.argoproj.io"]);
        k.get(&["secret", "flotilla-api-token", "-n", "argocd"]);
    })
    .await
    .expect("helm steps");
    sim.shutdown().await;
}
