//! Kustomize, Helm (Git path and chart repository), plugins and multiple sources.
use std::path::Path;

use flotilla_node::model::Credentials;
use flotilla_node::render::PluginConfig;
use flotilla_node::source::Freshness;

use crate::support::{self, app, app_yaml, cm, git, names, renderer, settings, Repo};

fn data<'a>(m: &'a [flotilla_node::render::Manifest], name: &str, key: &str) -> &'a str {
    m.iter()
        .find(|m| m.name() == name)
        .and_then(|m| m.object["data"][key].as_str())
        .unwrap_or_else(|| panic!("{name}.data.{key} missing"))
}

#[tokio::test]
async fn kustomize_with_overrides_and_bases_outside_the_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write(
        "base/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.0\n",
    )
    .write("base/kustomization.yaml", "resources:\n- deploy.yaml\n")
    .write("components/extra/cm.yaml", &cm("extra"))
    .write(
        "components/extra/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- cm.yaml\n",
    )
    .write("overlays/prod/kustomization.yaml", "resources:\n- ../../base\ncommonLabels:\n  team: a\n");
    repo.commit("c");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let a = app(&app_yaml(
        "k",
        &format!(
            "repoURL: {}\npath: overlays/prod\nkustomize:\n  namePrefix: p-\n  nameSuffix: -s\n  namespace: prod\n  images: ['nginx=registry.local/nginx:2.0']\n  replicas: [{{name: web, count: 3}}]\n  commonLabels: {{env: prod}}\n  commonAnnotations: {{owner: ops}}\n  components: ['../../components/extra']\n  patches:\n  - target: {{kind: Deployment}}\n    patch: |-\n      - op: add\n        path: /spec/template/spec/containers/0/env\n        value: [{{name: MODE, value: prod}}]",
            repo.url()
        ),
    ));
    let out = r
        .render(&a, Freshness::Fetch)
        .await
        .expect("kustomize renders");
    let dep = out
        .manifests
        .iter()
        .find(|m| m.kind() == "Deployment")
        .expect("deployment");
    assert_eq!(dep.name(), "p-web-s");
    assert_eq!(dep.namespace(), "prod");
    let o = &dep.object;
    assert_eq!(o["spec"]["replicas"], 3);
    assert_eq!(
        o["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/nginx:2.0"
    );
    assert_eq!(
        o["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "prod"
    );
    assert_eq!(o["metadata"]["labels"]["env"], "prod");
    assert_eq!(o["metadata"]["labels"]["team"], "a");
    assert_eq!(o["metadata"]["annotations"]["owner"], "ops");
    assert!(
        names(&out.manifests).contains(&"ConfigMap/p-extra-s".to_string()),
        "component added"
    );

    // Overriding a label the kustomization already sets needs forceCommonLabels.
    let conflict = app(&app_yaml(
        "k2",
        &format!(
            "repoURL: {}\npath: overlays/prod\nkustomize:\n  commonLabels: {{team: b}}",
            repo.url()
        ),
    ));
    let err = r.render(&conflict, Freshness::Cached).await.unwrap_err();
    assert!(err.to_string().contains("forceCommonLabels"), "{err}");
}

fn write_chart(repo: &Repo, dir: &str) {
    repo.write(&format!("{dir}/Chart.yaml"), "apiVersion: v2\nname: web\nversion: 0.1.0\n")
        .write(
            &format!("{dir}/values.yaml"),
            "color: red\nsize: small\ntag: '1'\nextra: none\nfileval: none\nshared: none\n",
        )
        .write(
            &format!("{dir}/templates/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n  namespace: {{ .Release.Namespace }}\ndata:\n  color: {{ .Values.color | quote }}\n  size: {{ .Values.size | quote }}\n  tag: {{ .Values.tag | quote }}\n  tagKind: {{ kindOf .Values.tag | quote }}\n  extra: {{ .Values.extra | quote }}\n  file: {{ .Values.fileval | quote }}\n  shared: {{ .Values.shared | quote }}\n",
        )
        .write(
            &format!("{dir}/crds/widget.yaml"),
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  names: {kind: Widget, plural: widgets}\n  scope: Namespaced\n  versions: []\n",
        )
        .write(&format!("{dir}/values-prod.yaml"), "size: large\n")
        .write(&format!("{dir}/file.txt"), "from-file");
}

#[tokio::test]
async fn helm_from_git_with_values_parameters_and_crds() {
    if support::helm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    write_chart(&repo, "charts/web");
    repo.write("shared/values.yaml", "shared: outside-chart\n");
    repo.commit("c");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let a = app(&app_yaml(
        "web",
        &format!(
            "repoURL: {}\npath: charts/web\nhelm:\n  releaseName: rel\n  valueFiles: [values-prod.yaml, ../../shared/values.yaml, missing.yaml]\n  ignoreMissingValueFiles: true\n  values: |\n    color: blue\n  parameters:\n  - {{name: extra, value: 'a,b'}}\n  - {{name: tag, value: '42', forceString: true}}\n  fileParameters:\n  - {{name: fileval, path: file.txt}}",
            repo.url()
        ),
    ));
    let out = r.render(&a, Freshness::Fetch).await.expect("helm renders");
    assert_eq!(
        names(&out.manifests),
        [
            "CustomResourceDefinition/widgets.example.com",
            "ConfigMap/rel-cm"
        ]
    );
    let m = &out.manifests;
    assert_eq!(
        m[1].namespace(),
        "dest",
        "destination namespace passed to helm"
    );
    assert_eq!(data(m, "rel-cm", "color"), "blue");
    assert_eq!(data(m, "rel-cm", "size"), "large");
    assert_eq!(data(m, "rel-cm", "shared"), "outside-chart");
    assert_eq!(data(m, "rel-cm", "extra"), "a,b");
    assert_eq!(data(m, "rel-cm", "tagKind"), "string");
    assert_eq!(data(m, "rel-cm", "file"), "from-file");

    // valuesObject wins over values; skipCrds drops CRDs; release name defaults to the app.
    let b = app(&app_yaml(
        "web2",
        &format!(
            "repoURL: {}\npath: charts/web\nhelm:\n  skipCrds: true\n  values: 'color: blue'\n  valuesObject:\n    color: green",
            repo.url()
        ),
    ));
    let out = r.render(&b, Freshness::Cached).await.expect("helm renders");
    assert_eq!(names(&out.manifests), ["ConfigMap/web2-cm"]);
    assert_eq!(data(&out.manifests, "web2-cm", "color"), "green");

    // A missing value file is an error naming it unless ignoreMissingValueFiles.
    let c = app(&app_yaml(
        "web3",
        &format!(
            "repoURL: {}\npath: charts/web\nhelm:\n  valueFiles: [nope.yaml]",
            repo.url()
        ),
    ));
    let err = r.render(&c, Freshness::Cached).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.source.helm.valueFiles[0]: value file \"nope.yaml\" not found"
    );
    let d = app(&app_yaml(
        "web4",
        &format!(
            "repoURL: {}\npath: charts/web\nhelm:\n  valueFiles: [../../../x.yaml]",
            repo.url()
        ),
    ));
    let err = r.render(&d, Freshness::Cached).await.unwrap_err();
    assert!(err.to_string().contains("outside the repository"), "{err}");
}

#[tokio::test]
async fn multiple_sources_with_ref_value_files() {
    if support::helm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let charts = Repo::init(&tmp.path().join("charts"));
    write_chart(&charts, "web");
    charts.commit("chart");
    let config = Repo::init(&tmp.path().join("config"));
    config.write("envs/prod.yaml", "color: from-ref\n").write(
        "manifests/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    config.commit("config");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: multi\nspec:\n  project: default\n  destination: {{server: 'https://kubernetes.default.svc', namespace: dest}}\n  sources:\n  - repoURL: {}\n    path: web\n    helm:\n      valueFiles: [$values/envs/prod.yaml]\n  - repoURL: {}\n    ref: values\n  - repoURL: {}\n    path: manifests\n",
        charts.url(),
        config.url(),
        config.url()
    );
    let out = r
        .render(&app(&yaml), Freshness::Fetch)
        .await
        .expect("multi-source renders");
    assert_eq!(
        names(&out.manifests),
        [
            "CustomResourceDefinition/widgets.example.com",
            "ConfigMap/multi-cm",
            "Namespace/team"
        ]
    );
    assert_eq!(data(&out.manifests, "multi-cm", "color"), "from-ref");
    assert_eq!(out.revisions.len(), 3);

    // Changing the referenced value file changes the key and the output.
    config.write("envs/prod.yaml", "color: changed\n");
    config.commit("change");
    let out = r
        .render(&app(&yaml), Freshness::Fetch)
        .await
        .expect("re-renders");
    assert!(!out.cached);
    assert_eq!(data(&out.manifests, "multi-cm", "color"), "changed");
    let undefined = yaml.replace("$values/", "$nothere/");
    let err = r
        .render(&app(&undefined), Freshness::Cached)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no source has ref \"nothere\""),
        "{err}"
    );
}

/// Packages the test chart with `helm` (home `tmp`) into a chart repository under `tmp`
/// and serves it over HTTP on loopback, behind basic `auth` when given. Returns the
/// repository's URL and its server.
fn serve_chart_repository(
    helm: &Path,
    tmp: &Path,
    auth: Option<(&str, &str)>,
) -> (String, support::http::HttpServer) {
    let src = Repo::init(&tmp.join("src"));
    write_chart(&src, "web");
    let srv = tmp.join("srv");
    std::fs::create_dir_all(&srv).expect("mkdir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(helm)
            .args(args)
            .env("HOME", tmp)
            .output()
            .expect("helm runs");
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "package",
        &src.dir.join("web").to_string_lossy(),
        "-d",
        &srv.to_string_lossy(),
    ]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    run(&["repo", "index", &srv.to_string_lossy(), "--url", &url]);
    let server = support::http::serve_on(listener, support::http::Route::Static(srv), auth);
    (url, server)
}

#[tokio::test]
async fn helm_chart_from_a_chart_repository() {
    let Some(helm) = support::helm() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, _server) = serve_chart_repository(&helm, tmp.path(), None);
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let a = app(&app_yaml(
        "fromrepo",
        &format!("repoURL: {url}\nchart: web\ntargetRevision: 0.1.0\nhelm:\n  parameters: [{{name: color, value: pulled}}]"),
    ));
    let out = r
        .render(&a, Freshness::Fetch)
        .await
        .expect("chart repository renders");
    assert_eq!(data(&out.manifests, "fromrepo-cm", "color"), "pulled");
    assert_eq!(out.revisions, [None]);
    let missing = app(&app_yaml(
        "x",
        &format!("repoURL: {url}\nchart: web\ntargetRevision: 9.9.9"),
    ));
    assert!(r.render(&missing, Freshness::Fetch).await.is_err());
}

#[tokio::test]
async fn helm_chart_from_a_chart_repository_with_basic_auth() {
    let Some(helm) = support::helm() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, _server) =
        serve_chart_repository(&helm, tmp.path(), Some(("chartuser", "s3cret-pw")));
    let secret = |pw: &str| {
        let mut creds = Credentials::default();
        creds
            .add_yaml(&format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: charts\n  labels:\n    \
                 argocd.argoproj.io/secret-type: repository\nstringData:\n  type: helm\n  \
                 url: {url}\n  username: chartuser\n  password: {pw}\n"
            ))
            .expect("secret");
        creds
    };
    let a = app(&app_yaml(
        "authrepo",
        &format!("repoURL: {url}\nchart: web\ntargetRevision: 0.1.0\nhelm:\n  parameters: [{{name: color, value: authed}}]"),
    ));
    let r = renderer(&tmp.path().join("good"), secret("s3cret-pw"), settings());
    let out = r
        .render(&a, Freshness::Fetch)
        .await
        .expect("chart repository with basic auth renders");
    assert_eq!(data(&out.manifests, "authrepo-cm", "color"), "authed");
    let bad = renderer(&tmp.path().join("bad"), secret("wrong-pw"), settings());
    let err = bad
        .render(&a, Freshness::Fetch)
        .await
        .expect_err("wrong password");
    assert!(!err.to_string().contains("wrong-pw"), "{err}");
}

#[tokio::test]
async fn config_management_plugin_gets_argo_cd_environment() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write("app/input.txt", "from-checkout");
    let head = repo.commit("c");
    std::env::set_var("FLOTILLA_TEST_LEAK", "leaked");
    let mut s = settings();
    s.plugins = vec![PluginConfig {
        name: "printer".into(),
        init: Some(vec!["/bin/sh".into(), "-c".into(), "cp input.txt copied.txt".into()]),
        generate: vec![
            "/bin/sh".into(),
            "-c".into(),
            "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: %s\\ndata:\\n  ns: \"%s\"\\n  rev: \"%s\"\\n  path: \"%s\"\\n  env: \"%s\"\\n  param: \"%s\"\\n  file: \"%s\"\\n  leak: \"%s\"\\n' \"$ARGOCD_APP_NAME\" \"$ARGOCD_APP_NAMESPACE\" \"$ARGOCD_APP_REVISION\" \"$ARGOCD_APP_SOURCE_PATH\" \"$ARGOCD_ENV_MODE\" \"$PARAM_SIZE\" \"$(cat copied.txt)\" \"$FLOTILLA_TEST_LEAK\"".into(),
        ],
    }];
    let r = renderer(tmp.path(), Credentials::default(), s);
    let a = app(&app_yaml(
        "plug",
        &format!(
            "repoURL: {}\npath: app\nplugin:\n  name: printer\n  env: [{{name: MODE, value: fast}}]\n  parameters: [{{name: size, string: big}}]",
            repo.url()
        ),
    ));
    let out = r
        .render(&a, Freshness::Fetch)
        .await
        .expect("plugin renders");
    let m = &out.manifests;
    assert_eq!(data(m, "plug", "ns"), "dest");
    assert_eq!(data(m, "plug", "rev"), head);
    assert_eq!(data(m, "plug", "path"), "app");
    assert_eq!(data(m, "plug", "env"), "fast");
    assert_eq!(data(m, "plug", "param"), "big");
    assert_eq!(data(m, "plug", "file"), "from-checkout");
    assert_eq!(data(m, "plug", "leak"), "", "environment is scrubbed");
    let unknown = app(&app_yaml(
        "u",
        &format!("repoURL: {}\npath: app\nplugin:\n  name: other", repo.url()),
    ));
    let err = r.render(&unknown, Freshness::Cached).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no config management plugin named \"other\""),
        "{err}"
    );
    let _ = git; // keep helper import used across cfgs
}

#[tokio::test]
async fn helm_file_dependencies_are_built_and_keyed() {
    if support::helm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write(
        "charts/common/Chart.yaml",
        "apiVersion: v2\nname: common\nversion: 0.1.0\n",
    )
    .write(
        "charts/common/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: common-v1\n",
    )
    .write(
        "charts/app/Chart.yaml",
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: common\n  version: 0.1.0\n  repository: file://../common\n",
    )
    .write(
        "charts/app/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    );
    repo.commit("c");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let a = app(&app_yaml(
        "dep",
        &format!("repoURL: {}\npath: charts/app", repo.url()),
    ));
    let out = r
        .render(&a, Freshness::Fetch)
        .await
        .expect("renders with dependency");
    let mut got = names(&out.manifests);
    got.sort();
    assert_eq!(got, ["ConfigMap/app", "ConfigMap/common-v1"]);

    // The dependency lives outside the chart path, yet changing it re-renders the app.
    repo.write(
        "charts/common/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: common-v2\n",
    );
    repo.commit("change dependency");
    let out = r.render(&a, Freshness::Fetch).await.expect("re-renders");
    assert!(!out.cached);
    assert!(names(&out.manifests).contains(&"ConfigMap/common-v2".to_string()));
}

#[tokio::test]
async fn tool_runs_are_bounded_in_time_and_output() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write("app/x.txt", "x");
    repo.commit("c");
    let mut s = settings();
    s.tool_timeout = std::time::Duration::from_millis(500);
    s.max_output_bytes = 1 << 20;
    s.plugins = vec![
        PluginConfig {
            name: "slow".into(),
            init: None,
            generate: vec!["/bin/sleep".into(), "30".into()],
        },
        PluginConfig {
            name: "chatty".into(),
            init: None,
            generate: vec!["/usr/bin/yes".into(), "kind: ConfigMap".into()],
        },
    ];
    let r = renderer(tmp.path(), Credentials::default(), s);
    for (name, expect) in [
        ("slow", "timed out after 500ms"),
        ("chatty", "wrote more than 1048576 bytes"),
    ] {
        let a = app(&app_yaml(
            name,
            &format!(
                "repoURL: {}\npath: app\nplugin:\n  name: {name}",
                repo.url()
            ),
        ));
        let err = r.render(&a, Freshness::Fetch).await.unwrap_err();
        assert!(err.to_string().contains(expect), "{name}: {err}");
    }
}
