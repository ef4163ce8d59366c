//! Directory and Jsonnet sources, and path/symlink sandboxing.
use flotilla_node::model::Credentials;
use flotilla_node::render::RenderError;
use flotilla_node::source::Freshness;

use crate::support::{app, app_yaml, cm, names, renderer, settings, Repo};

#[tokio::test]
async fn directory_recurse_include_exclude_json_lists() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write("app/a.yaml", &format!("{}---\n{}", cm("a1"), cm("a2")))
        .write("app/b.json", r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}"#)
        .write(
            "app/list.yml",
            "apiVersion: v1\nkind: ConfigMapList\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: l1}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: l2}}\n",
        )
        .write("app/README.md", "not a manifest: [")
        .write("app/sub/c.yaml", &cm("c"))
        .write("app/sub/skip.yaml", &cm("skipped"))
        .write("app/sub/deeper/d.yaml", &cm("d"))
        .write("other/x.yaml", &cm("x"));
    repo.commit("c");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let url = repo.url();

    let flat = app(&app_yaml("flat", &format!("repoURL: {url}\npath: app")));
    let out = r.render(&flat, Freshness::Fetch).await.expect("renders");
    assert_eq!(
        names(&out.manifests),
        [
            "ConfigMap/a1",
            "ConfigMap/a2",
            "ConfigMap/b",
            "ConfigMap/l1",
            "ConfigMap/l2"
        ]
    );

    let deep = app(&app_yaml(
        "deep",
        &format!("repoURL: {url}\npath: app\ndirectory:\n  recurse: true\n  exclude: '*skip*'"),
    ));
    let out = r.render(&deep, Freshness::Cached).await.expect("renders");
    assert_eq!(
        names(&out.manifests),
        [
            "ConfigMap/a1",
            "ConfigMap/a2",
            "ConfigMap/b",
            "ConfigMap/l1",
            "ConfigMap/l2",
            "ConfigMap/c",
            "ConfigMap/d"
        ]
    );

    let inc = app(&app_yaml(
        "inc",
        &format!("repoURL: {url}\npath: app\ndirectory:\n  recurse: true\n  include: '{{sub/c.yaml,*.json}}'"),
    ));
    let out = r.render(&inc, Freshness::Cached).await.expect("renders");
    assert_eq!(names(&out.manifests), ["ConfigMap/b", "ConfigMap/c"]);
}

#[tokio::test]
async fn invalid_manifests_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write("app/ok.yaml", &cm("ok"))
        .write("app/values.yaml", "replicas: 3\n")
        .write("bad/broken.yaml", "kind: [unclosed\n");
    repo.commit("c");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let url = repo.url();
    let err = r
        .render(
            &app(&app_yaml("a", &format!("repoURL: {url}\npath: app"))),
            Freshness::Fetch,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "app/values.yaml (document 1): Object 'Kind' is missing"
    );
    let err = r
        .render(
            &app(&app_yaml("b", &format!("repoURL: {url}\npath: bad"))),
            Freshness::Cached,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("bad/broken.yaml"), "{err}");
    let err = r
        .render(
            &app(&app_yaml("c", &format!("repoURL: {url}\npath: missing"))),
            Freshness::Cached,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("path \"missing\" does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn paths_and_symlinks_leaving_the_repository_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("secret.yaml"), cm("host-file")).expect("write");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write("shared/cm.yaml", &cm("shared"))
        .write("inside/real.yaml", &cm("real"))
        .symlink("inside/link.yaml", "../shared/cm.yaml")
        .write("escape/ok.yaml", &cm("ok"))
        .symlink("escape/evil.yaml", "../../secret.yaml")
        .write("abs/ok.yaml", &cm("ok"))
        .symlink("abs/etc.yaml", "/etc/hostname")
        .write("kust/kustomization.yaml", "resources:\n- ../../outside\n");
    repo.commit("c");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let url = repo.url();

    let out = r
        .render(
            &app(&app_yaml("in", &format!("repoURL: {url}\npath: inside"))),
            Freshness::Fetch,
        )
        .await
        .expect("in-repository symlink is followed");
    assert_eq!(
        names(&out.manifests),
        ["ConfigMap/shared", "ConfigMap/real"]
    );

    for (name, path, shown) in [
        ("e", "escape", "escape/evil.yaml"),
        ("a", "abs", "abs/etc.yaml"),
    ] {
        let err = r
            .render(
                &app(&app_yaml(name, &format!("repoURL: {url}\npath: {path}"))),
                Freshness::Cached,
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{shown:?} points outside the repository")),
            "{err}"
        );
    }
    let err = r
        .render(
            &app(&app_yaml("k", &format!("repoURL: {url}\npath: kust"))),
            Freshness::Cached,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("points outside the repository"),
        "{err}"
    );

    // A source path that climbs out is refused before anything is read.
    let err = flotilla_node::model::Application::from_yaml(
        "x",
        &app_yaml("p", &format!("repoURL: {url}\npath: ../etc")),
    )
    .expect("parses")
    .validate()
    .unwrap_err();
    assert!(err.to_string().starts_with("spec.source.path:"), "{err}");
    let _: Option<RenderError> = None;
}

#[tokio::test]
async fn jsonnet_with_ext_vars_tlas_and_libs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write(
        "lib/k.libsonnet",
        "{ cm(name, env):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name }, data: { env: env } } }",
    )
    .write(
        "app/main.jsonnet",
        "local k = import 'k.libsonnet';\nlocal helper = import 'helper.libsonnet';\nfunction(count=1) [k.cm('cm-' + i, std.extVar('env')) for i in std.range(1, count)] + [helper]",
    )
    .write("app/helper.libsonnet", "{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: std.extVar('ns') } }")
    .write("app/plain.yaml", &cm("plain"));
    repo.commit("c");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let a = app(&app_yaml(
        "j",
        &format!(
            "repoURL: {}\npath: app\ndirectory:\n  jsonnet:\n    libs: [lib]\n    extVars:\n    - {{name: env, value: prod}}\n    - {{name: ns, value: \"'team' + '-a'\", code: true}}\n    tlas:\n    - {{name: count, value: '2', code: true}}",
            repo.url()
        ),
    ));
    let out = r
        .render(&a, Freshness::Fetch)
        .await
        .expect("renders jsonnet");
    assert_eq!(
        names(&out.manifests),
        [
            "ConfigMap/cm-1",
            "ConfigMap/cm-2",
            "Namespace/team-a",
            "ConfigMap/plain"
        ]
    );
    assert_eq!(out.manifests[0].object["data"]["env"], "prod");
}
