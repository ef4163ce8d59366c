//! Checks that a rendered StatefulSet and its companions match what `flotilla node`
//! accepts: flags, environment names, ports, probes, the data directory, peer names, RBAC.
use std::collections::{BTreeSet, HashMap};

use clap::Parser;
use flotilla_node::config::{
    self, Args, NodeConfig, Role, Sources, DEFAULT_API_LISTEN, DEFAULT_DATA_DIR,
    DEFAULT_HTTP_LISTEN, DEFAULT_PEER_LISTEN,
};
use serde_json::Value;

/// `flotilla node`'s flags, parsed the way the binary parses them.
#[derive(Debug, Parser)]
struct NodeCli {
    #[command(flatten)]
    node: Args,
}

/// What a rendering is expected to configure.
pub struct Expect {
    /// Where the rendering came from, for messages.
    pub what: &'static str,
    pub replicas: u64,
    pub voters: u8,
    pub tls: bool,
}

/// FLOTILLA_* names `flotilla node` reads besides the `FLOTILLA_<FLAG>` form of its flags.
const EXTRA_ENV: [&str; 3] = [
    "FLOTILLA_API_TOKEN",
    "FLOTILLA_WEBHOOK_SECRET",
    "FLOTILLA_LOG_FORMAT",
];

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn items<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The one object of `kind` (and `name`, when given).
pub fn find<'a>(objs: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    let found: Vec<&Value> = objs
        .iter()
        .filter(|o| s(o, "/kind") == kind && name.is_none_or(|n| s(o, "/metadata/name") == n))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name:?}, got {found:?}"
    );
    found[0]
}

/// Port number of a container port named `name`.
fn container_port(c: &Value, name: &str) -> u16 {
    items(c, "/ports")
        .iter()
        .find(|p| s(p, "/name") == name)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no container port named {name}: {c}"))
}

fn default_port(addr: &str) -> u16 {
    addr.parse::<std::net::SocketAddr>()
        .expect("default listen address")
        .port()
}

/// Expand Kubernetes `$(VAR)` references in an argument from the container's environment.
fn expand(arg: &str, env: &HashMap<String, String>) -> String {
    let mut out = arg.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    assert!(!out.contains("$("), "unresolved reference in {arg:?}");
    out
}

/// The container environment as the pod would see it: literal values, the namespace from
/// the downward API, a placeholder for Secret references.
fn container_env(c: &Value, namespace: &str) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for e in items(c, "/env") {
        let name = s(e, "/name").to_owned();
        let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
            v.to_owned()
        } else if s(e, "/valueFrom/fieldRef/fieldPath") == "metadata.namespace" {
            namespace.to_owned()
        } else if e.pointer("/valueFrom/secretKeyRef").is_some() {
            "secret-value".to_owned()
        } else {
            panic!("unexpected env entry {e}");
        };
        env.insert(name, value);
    }
    env
}

/// Check the StatefulSet named `flotilla`-something in `objs` and everything it relies on;
/// returns the configuration node 0 resolves.
pub fn check(objs: &[Value], want: &Expect) -> NodeConfig {
    let what = want.what;
    let sts = find(objs, "StatefulSet", None);
    let name = s(sts, "/metadata/name");
    let ns = s(sts, "/metadata/namespace");
    assert!(!ns.is_empty(), "{what}: StatefulSet without namespace");
    assert_eq!(s(sts, "/spec/podManagementPolicy"), "Parallel", "{what}");
    assert_eq!(
        sts["spec"]["replicas"].as_u64(),
        Some(want.replicas),
        "{what}"
    );
    let pod = &sts["spec"]["template"]["spec"];
    let containers = items(pod, "/containers");
    assert_eq!(containers.len(), 1, "{what}: one container");
    let c = &containers[0];

    // Flags and environment names exist in the binary.
    let flags: BTreeSet<String> = config::flag_names().into_iter().collect();
    let env = container_env(c, ns);
    let args: Vec<String> = items(c, "/args")
        .iter()
        .map(|a| expand(a.as_str().expect("string arg"), &env))
        .collect();
    for a in &args {
        let flag = a
            .strip_prefix("--")
            .unwrap_or_else(|| panic!("{what}: argument {a:?} is not a --flag"));
        let flag = flag.split('=').next().unwrap_or_default();
        assert!(
            flags.contains(flag),
            "{what}: --{flag} is not a flag of flotilla node"
        );
    }
    let env_names: BTreeSet<String> = flags
        .iter()
        .map(|f| format!("FLOTILLA_{}", f.replace('-', "_").to_ascii_uppercase()))
        .chain(EXTRA_ENV.iter().map(|e| (*e).to_owned()))
        .collect();
    for k in env.keys().filter(|k| k.starts_with("FLOTILLA_")) {
        assert!(env_names.contains(k), "{what}: {k} is read by no flag");
    }

    // The flags parse as the binary parses them, and the configuration resolves.
    let mut argv = vec!["node".to_owned()];
    argv.extend(args.iter().cloned());
    let parsed = NodeCli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{what}: flags rejected: {e}"))
        .node;
    let flotilla_env: HashMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("FLOTILLA_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let load = |ordinal: u64| {
        let hostname = format!("{name}-{ordinal}");
        config::load(Sources {
            args: &parsed,
            env: &flotilla_env,
            file: None,
            hostname: Some(&hostname),
        })
        .unwrap_or_else(|e| panic!("{what}: configuration of {hostname}: {e}"))
    };
    let cfg = load(0);

    // The real binary accepts the same flags and environment (`--help` stops it after
    // parsing, before it starts a node).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("node")
        .args(&args)
        .arg("--help")
        .env_clear()
        .envs(&flotilla_env)
        .output()
        .expect("flotilla runs");
    assert!(
        out.status.success(),
        "{what}: flotilla node rejects the manifest's flags: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cfg.node_id, 1, "{what}");
    assert_eq!(cfg.voters, want.voters, "{what}");
    assert!(cfg.api_token.is_some(), "{what}: API token configured");

    // Ports: the container exposes the node's listeners, which are the defaults.
    assert_eq!(container_port(c, "peer"), cfg.peer_listen.port(), "{what}");
    assert_eq!(container_port(c, "api"), cfg.api_listen.port(), "{what}");
    assert_eq!(container_port(c, "http"), cfg.http_listen.port(), "{what}");
    assert_eq!(cfg.peer_listen.port(), default_port(DEFAULT_PEER_LISTEN));
    assert_eq!(cfg.api_listen.port(), default_port(DEFAULT_API_LISTEN));
    assert_eq!(cfg.http_listen.port(), default_port(DEFAULT_HTTP_LISTEN));

    // Probes on the HTTP listener.
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(s(get, "/path"), path, "{what}: {probe}");
        let port = match &get["port"] {
            Value::String(n) => container_port(c, n),
            other => other
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .expect("probe port"),
        };
        assert_eq!(port, cfg.http_listen.port(), "{what}: {probe} port");
    }

    // The data directory is the claimed volume; /tmp is writable; the root is read-only.
    let mount = |vol: &str| -> String {
        items(c, "/volumeMounts")
            .iter()
            .find(|m| s(m, "/name") == vol)
            .map(|m| s(m, "/mountPath").to_owned())
            .unwrap_or_else(|| panic!("{what}: no mount of volume {vol}"))
    };
    let claims: Vec<&str> = items(sts, "/spec/volumeClaimTemplates")
        .iter()
        .map(|t| s(t, "/metadata/name"))
        .collect();
    assert_eq!(claims, ["data"], "{what}");
    assert_eq!(mount("data"), cfg.data_dir.to_string_lossy(), "{what}");
    assert_eq!(cfg.data_dir.to_string_lossy(), DEFAULT_DATA_DIR, "{what}");
    assert_eq!(mount("tmp"), "/tmp", "{what}");
    assert!(items(pod, "/volumes")
        .iter()
        .any(|v| s(v, "/name") == "tmp" && v.get("emptyDir").is_some()));
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"], true,
        "{what}"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");

    // A node gets the whole grace period before the kubelet kills it.
    let termination = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(
        termination > cfg.grace_period.as_secs(),
        "{what}: terminationGracePeriodSeconds {termination} ≤ --grace-period-seconds {}",
        cfg.grace_period.as_secs()
    );

    // Peers: the DNS pattern names this StatefulSet's pods behind its headless Service.
    let svc_name = s(sts, "/spec/serviceName");
    let prefix = format!("{name}-0.{svc_name}.{ns}.svc.");
    assert!(
        cfg.advertise.starts_with(&prefix),
        "{what}: advertise {}",
        cfg.advertise
    );
    assert!(cfg
        .advertise
        .ends_with(&format!(":{}", cfg.peer_listen.port())));
    assert_eq!(cfg.role(), Role::Bootstrap, "{what}: ordinal 0 bootstraps");
    if want.replicas > 1 {
        assert!(
            matches!(load(1).role(), Role::Join(_)),
            "{what}: ordinal 1 joins"
        );
    }
    let peers_svc = find(objs, "Service", Some(svc_name));
    assert_eq!(s(peers_svc, "/spec/clusterIP"), "None", "{what}: headless");
    assert_eq!(
        peers_svc["spec"]["publishNotReadyAddresses"], true,
        "{what}"
    );
    assert!(items(peers_svc, "/spec/ports").iter().any(|p| {
        p["port"].as_u64() == Some(u64::from(cfg.peer_listen.port())) && p["targetPort"] == "peer"
    }));

    // The API Service reaches named container ports.
    let api_svc = objs
        .iter()
        .find(|o| s(o, "/kind") == "Service" && s(o, "/metadata/name") != svc_name)
        .expect("API Service");
    for p in items(api_svc, "/spec/ports") {
        let target = s(p, "/targetPort");
        container_port(c, target);
    }
    let port_names: Vec<&str> = items(api_svc, "/spec/ports")
        .iter()
        .map(|p| s(p, "/name"))
        .collect();
    assert_eq!(port_names, ["api", "http-metrics", "webhook"], "{what}");

    check_tls(want, &cfg, c, pod);
    check_rbac(objs, &cfg, pod, ns, what);
    cfg
}

/// Peer and API TLS files, when configured, come from mounted Secrets; both are on in
/// the HA configurations and off in the others.
fn check_tls(want: &Expect, cfg: &NodeConfig, c: &Value, pod: &Value) {
    let what = want.what;
    assert_eq!(cfg.api_tls.is_some(), want.tls, "{what}: API TLS");
    let Some(tls) = &cfg.tls else {
        assert!(!want.tls, "{what}: peer TLS expected");
        return;
    };
    assert!(want.tls, "{what}: peer TLS not expected");
    let mut files = vec![&tls.ca, &tls.cert, &tls.key];
    if let Some(api) = &cfg.api_tls {
        files.extend([&api.cert, &api.key]);
        files.extend(api.ca.as_ref());
    }
    for file in files {
        let file = file.to_string_lossy();
        let m = items(c, "/volumeMounts")
            .iter()
            .find(|m| file.starts_with(&format!("{}/", s(m, "/mountPath"))))
            .unwrap_or_else(|| panic!("{what}: {file} is on no mounted volume"));
        let vol = items(pod, "/volumes")
            .iter()
            .find(|v| s(v, "/name") == s(m, "/name"))
            .expect("volume of mount");
        assert!(
            vol.pointer("/secret/secretName").is_some(),
            "{what}: {file} from a Secret"
        );
    }
}

/// Rules of the role a binding refers to.
fn role_rules<'a>(objs: &'a [Value], binding: &Value) -> &'a [Value] {
    let kind = s(binding, "/roleRef/kind");
    let name = s(binding, "/roleRef/name");
    let role = objs
        .iter()
        .find(|o| {
            s(o, "/kind") == kind
                && s(o, "/metadata/name") == name
                && (kind == "ClusterRole"
                    || s(o, "/metadata/namespace") == s(binding, "/metadata/namespace"))
        })
        .unwrap_or_else(|| panic!("binding {binding} refers to a missing role"));
    items(role, "/rules")
}

fn allows(rules: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    let has = |r: &Value, field: &str, want: &str| {
        items(r, &format!("/{field}"))
            .iter()
            .any(|v| v == want || v == "*")
    };
    rules.iter().any(|r| {
        has(r, "apiGroups", group) && has(r, "resources", resource) && has(r, "verbs", verb)
    })
}

/// The pods' ServiceAccount may watch and patch Applications in every application
/// namespace, read AppProjects and Secrets in the secrets namespace — and Secrets nowhere else.
fn check_rbac(objs: &[Value], cfg: &NodeConfig, pod: &Value, ns: &str, what: &str) {
    let sa = s(pod, "/serviceAccountName");
    find(objs, "ServiceAccount", Some(sa));
    let bound_in = |namespace: &str| -> Vec<&[Value]> {
        objs.iter()
            .filter(|o| s(o, "/kind") == "RoleBinding" && s(o, "/metadata/namespace") == namespace)
            .filter(|b| {
                items(b, "/subjects").iter().any(|sub| {
                    s(sub, "/kind") == "ServiceAccount"
                        && s(sub, "/name") == sa
                        && s(sub, "/namespace") == ns
                })
            })
            .map(|b| role_rules(objs, b))
            .collect()
    };
    let can = |namespace: &str, group: &str, resource: &str, verb: &str| {
        bound_in(namespace)
            .iter()
            .any(|rules| allows(rules, group, resource, verb))
    };
    for app_ns in &cfg.controller.namespaces {
        for verb in ["get", "list", "watch", "patch"] {
            assert!(
                can(app_ns, "argoproj.io", "applications", verb),
                "{what}: {verb} applications in {app_ns}"
            );
        }
        assert!(
            can(app_ns, "", "events", "create"),
            "{what}: events in {app_ns}"
        );
    }
    let secrets_ns = &cfg.controller.secrets_namespace;
    for verb in ["get", "list", "watch"] {
        assert!(
            can(secrets_ns, "argoproj.io", "appprojects", verb),
            "{what}: appprojects"
        );
        assert!(
            can(secrets_ns, "", "secrets", verb),
            "{what}: {verb} secrets"
        );
    }
    for o in objs
        .iter()
        .filter(|o| s(o, "/kind") == "ClusterRoleBinding")
    {
        assert!(
            !allows(role_rules(objs, o), "", "secrets", "get"),
            "{what}: Secrets readable cluster-wide"
        );
    }
}

/// Companions: PodDisruptionBudget and NetworkPolicy select the pods; peers only from pods.
pub fn check_policies(objs: &[Value], what: &str, with_network_policy: bool) {
    let sts = find(objs, "StatefulSet", None);
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    let selects = |sel: &Value| {
        sel.as_object()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v))
    };
    let pdb = find(objs, "PodDisruptionBudget", None);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{what}");
    assert!(
        selects(&pdb["spec"]["selector"]["matchLabels"]),
        "{what}: PDB selector"
    );
    if !with_network_policy {
        return;
    }
    let np = find(objs, "NetworkPolicy", None);
    assert!(selects(&np["spec"]["podSelector"]["matchLabels"]), "{what}");
    let peer_rules: Vec<&Value> = items(np, "/spec/ingress")
        .iter()
        .filter(|r| items(r, "/ports").iter().any(|p| p["port"] == 7000))
        .collect();
    assert_eq!(peer_rules.len(), 1, "{what}: one rule for the peer port");
    let from = items(peer_rules[0], "/from");
    assert!(!from.is_empty(), "{what}: peer port restricted");
    assert!(from
        .iter()
        .all(|f| selects(&f["podSelector"]["matchLabels"])));
}
