//! Argo CD resources: parsing, unknown fields, located validation errors, Secrets.
use flotilla_node::model::{AppProject, Application, Credentials, SourceKind};

const FULL: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: guestbook
  namespace: argocd
  uid: 1234
  finalizers: [resources-finalizer.argocd.argoproj.io]
spec:
  project: default
  source:
    repoURL: https://github.com/argoproj/argocd-example-apps.git
    targetRevision: HEAD
    path: guestbook
    helmm: typo
    helm:
      releaseName: gb
      valueFiles: [values-prod.yaml]
      values: |
        a: 1
      valuesObject: {b: 2}
      parameters: [{name: image.tag, value: v1, forceString: true}]
      fileParameters: [{name: config, path: files/config.json}]
      skipCrds: true
      ignoreMissingValueFiles: true
      passCredentials: false
      version: v3
      namespace: other
      brandNew: x
  destination:
    server: https://kubernetes.default.svc
    namespace: guestbook
  syncPolicy:
    automated: {prune: true, selfHeal: true, allowEmpty: false}
    syncOptions: [CreateNamespace=true]
    retry:
      limit: 5
      backoff: {duration: 5s, factor: 2, maxDuration: 3m}
    managedNamespaceMetadata: {labels: {a: b}}
  ignoreDifferences:
  - group: apps
    kind: Deployment
    jsonPointers: [/spec/replicas]
    jqPathExpressions: [.spec.template]
    managedFieldsManagers: [kube-controller-manager]
  revisionHistoryLimit: 10
  info: [{name: url, value: https://example.com}]
status:
  sync: {status: Synced}
"#;

#[test]
fn parses_a_full_application_and_reports_unknown_fields() {
    let app = Application::from_yaml("guestbook.yaml", FULL).expect("parses");
    app.validate().expect("valid");
    let s = app.spec.source.as_ref().expect("source");
    let h = s.helm.as_ref().expect("helm");
    assert_eq!(h.release_name.as_deref(), Some("gb"));
    assert!(h.parameters[0].force_string && h.skip_crds && h.ignore_missing_value_files);
    assert_eq!(h.file_parameters[0].path, "files/config.json");
    assert_eq!(s.explicit_kind(), Ok(Some(SourceKind::Helm)));
    let sp = app.spec.sync_policy.as_ref().expect("syncPolicy");
    assert!(sp.automated.as_ref().expect("automated").self_heal);
    assert_eq!(
        sp.retry
            .as_ref()
            .and_then(|r| r.backoff.as_ref())
            .and_then(|b| b.factor),
        Some(2)
    );
    assert_eq!(
        app.spec.ignore_differences[0].json_pointers,
        ["/spec/replicas"]
    );
    assert_eq!(app.spec.revision_history_limit, Some(10));
    assert!(app.status.is_some());
    let warnings: Vec<String> = app.unknown_fields().iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [
            "spec.source.helmm: unknown field",
            "spec.source.helm.brandNew: unknown field"
        ]
    );
    // Unknown fields are kept, not dropped.
    let back = serde_json::to_value(&app).expect("serializes");
    assert_eq!(back["spec"]["source"]["helmm"], "typo");
}

fn spec_error(spec: &str) -> String {
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: a}}\nspec:\n{spec}"
    );
    Application::from_yaml("a.yaml", &yaml)
        .expect("parses")
        .validate()
        .expect_err("invalid")
        .to_string()
}

#[test]
fn validation_errors_are_located() {
    assert_eq!(
        spec_error("  source: {repoURL: r}\n  destination: {namespace: x}\n"),
        "spec.destination: one of server or name is required"
    );
    assert_eq!(
        spec_error("  source: {repoURL: r}\n  destination: {server: s, name: n}\n"),
        "spec.destination: server and name are mutually exclusive; set only one"
    );
    assert_eq!(
        spec_error("  destination: {server: s}\n"),
        "spec: one of source or sources is required"
    );
    assert_eq!(
        spec_error("  destination: {name: in-cluster}\n  sources:\n  - {repoURL: r, path: a}\n  - {repoURL: r, ref: 'bad ref'}\n"),
        "spec.sources[1].ref: \"bad ref\" must be letters, digits, '-' or '_'"
    );
    assert_eq!(
        spec_error("  destination: {name: c}\n  source: {repoURL: r, helm: {}, kustomize: {}}\n"),
        "spec.source: multiple application sources defined: Helm, Kustomize; set only one of helm, kustomize, directory, plugin"
    );
    assert_eq!(
        spec_error("  destination: {name: c}\n  source: {repoURL: ''}\n"),
        "spec.source.repoURL: is required"
    );
    assert_eq!(
        spec_error("  destination: {name: c}\n  source: {repoURL: r, kustomize: {replicas: [{name: w, count: x}]}}\n"),
        "spec.source.kustomize.replicas[0]: needs a name and a non-negative integer count"
    );
    let err = Application::from_yaml("x.yaml", "apiVersion: v1\nkind: ConfigMap\nspec: {}\n")
        .unwrap_err();
    assert!(err
        .to_string()
        .contains("expected apiVersion argoproj.io/v1alpha1 and kind Application"));
    let err = Application::from_yaml("x.yaml", "apiVersion: argoproj.io/v1alpha1\nkind: Application\nspec:\n  revisionHistoryLimit: many\n").unwrap_err();
    assert!(
        err.to_string().starts_with("x.yaml: cannot parse:"),
        "{err}"
    );
}

#[test]
fn app_project_fields() {
    let p = AppProject::from_yaml(
        "p.yaml",
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: team}\nspec:\n  sourceRepos: ['*']\n  destinations: [{server: '*', namespace: 'team-*'}]\n  clusterResourceWhitelist: [{group: '', kind: Namespace}]\n  namespaceResourceBlacklist: [{group: '', kind: ResourceQuota}]\n  sourceNamespaces: [argocd]\n  roles: [{name: ci}]\n  orphanedResources: {warn: true}\n",
    )
    .expect("parses");
    assert_eq!(p.spec.destinations[0].namespace.as_deref(), Some("team-*"));
    assert_eq!(p.spec.cluster_resource_whitelist[0].kind, "Namespace");
    assert_eq!(
        p.unknown_fields()
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>(),
        ["spec.orphanedResources: unknown field"]
    );
}

const SECRETS: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: prod-cluster
  labels: {argocd.argoproj.io/secret-type: cluster}
stringData:
  name: prod
  server: https://prod.example.com:6443
  namespaces: a, b
  config: |
    {"bearerToken": "tok-SECRET", "tlsClientConfig": {"insecure": false, "caData": "Q0E=", "keyData": "KEY-SECRET"}}
---
apiVersion: v1
kind: Secret
metadata:
  name: org-creds
  labels: {argocd.argoproj.io/secret-type: repo-creds}
stringData:
  url: https://git.example.com/org
  username: bot
  password: PW-SECRET
---
apiVersion: v1
kind: Secret
metadata:
  name: team-creds
  labels: {argocd.argoproj.io/secret-type: repo-creds}
stringData:
  url: https://git.example.com/org/team
  sshPrivateKey: KEY-SECRET
---
apiVersion: v1
kind: Secret
metadata:
  name: special
  labels: {argocd.argoproj.io/secret-type: repository}
data:
  url: aHR0cHM6Ly9naXQuZXhhbXBsZS5jb20vb3JnL3NwZWNpYWwuZ2l0
  password: UFctU0VDUkVU
  insecure: dHJ1ZQ==
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
"#;

#[test]
fn secrets_parse_match_by_prefix_and_never_print_values() {
    let mut c = Credentials::default();
    c.add_yaml(SECRETS).expect("parses");
    assert_eq!(c.clusters.len(), 1);
    let cl = c.cluster(None, Some("prod")).expect("by name");
    assert_eq!(cl.namespaces, ["a", "b"]);
    assert_eq!(
        cl.config.bearer_token.as_ref().map(|t| t.expose()),
        Some("tok-SECRET")
    );
    assert!(c
        .cluster(Some("https://prod.example.com:6443/"), None)
        .is_some());
    // Longest matching repo-creds prefix wins.
    let team = c
        .for_repo("https://git.example.com/org/team/app.git")
        .expect("template");
    assert_eq!(team.secret_name, "team-creds");
    let org = c
        .for_repo("https://git.example.com/org/other")
        .expect("template");
    assert_eq!(org.secret_name, "org-creds");
    // A repository Secret matches by normalized URL (case, .git suffix).
    let special = c
        .for_repo("https://GIT.example.com/org/special")
        .expect("repository");
    assert_eq!(special.secret_name, "special");
    assert!(special.insecure);
    assert!(c.for_repo("https://elsewhere.example.com/x").is_none());
    let printed = format!("{c:?}");
    assert!(
        !printed.contains("SECRET"),
        "secrets leaked in Debug: {printed}"
    );
    assert!(printed.contains("<redacted>"));
    let mut bad = Credentials::default();
    let err = bad
        .add_yaml("apiVersion: v1\nkind: Secret\nmetadata:\n  name: broken\n  labels: {argocd.argoproj.io/secret-type: repository}\ndata:\n  url: '%%%'\n")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret broken: data.url is not valid base64"
    );
}

#[test]
fn cluster_extra_settings_and_secret_parse_errors_hide_values() {
    let mut c = Credentials::default();
    c.add_yaml(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: eks
  labels:
    argocd.argoproj.io/secret-type: cluster
stringData:
  server: https://eks.example.com
  config: '{"execProviderConfig": {"command": "x", "env": {"TOKEN": "exec-SECRET"}}}'
"#,
    )
    .expect("parses");
    let shown = format!("{:?}", c.clusters);
    assert!(!shown.contains("exec-SECRET"), "{shown}");
    assert!(shown.contains("execProviderConfig"), "{shown}");

    let numeric = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: repo\n  labels:\n    \
                   argocd.argoproj.io/secret-type: repository\nstringData:\n  \
                   url: https://h/r\n  password: 123456\n";
    let err = Credentials::default()
        .add_yaml(numeric)
        .expect_err("numeric password")
        .to_string();
    assert!(!err.contains("123456"), "{err}");
    assert!(
        err.contains("stringData.password") && err.contains("repo"),
        "{err}"
    );

    let bad_config = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: c\n  labels:\n    \
                      argocd.argoproj.io/secret-type: cluster\nstringData:\n  \
                      server: https://h\n  config: '{\"password\": 987654}'\n";
    let err = Credentials::default()
        .add_yaml(bad_config)
        .expect_err("numeric password in config")
        .to_string();
    assert!(!err.contains("987654"), "{err}");
    assert!(err.contains("line 1 column"), "{err}");

    let bad_shape =
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  labels: [\"lbl-SECRET\"]\n";
    let err = Credentials::default()
        .add_yaml(bad_shape)
        .expect_err("labels must be a map")
        .to_string();
    assert!(!err.contains("lbl-SECRET"), "{err}");
}
