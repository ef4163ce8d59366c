//! Scoped refresh: a thousand directory apps in one repository; a commit touching one app
//! re-renders only that app.
use flotilla_node::model::Credentials;
use flotilla_node::source::Freshness;

use crate::support::{app, app_yaml, cm, renderer, settings, Repo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commit_re_renders_only_the_touched_app() {
    const APPS: usize = 1000;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    for i in 0..APPS {
        repo.write(&format!("apps/app-{i}/cm.yaml"), &cm(&format!("cm-{i}")));
    }
    let first = repo.commit("a thousand apps");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let apps: Vec<_> = (0..APPS)
        .map(|i| {
            app(&app_yaml(
                &format!("app-{i}"),
                &format!("repoURL: {}\npath: apps/app-{i}", repo.url()),
            ))
        })
        .collect();
    r.sources().fetch(&repo.url()).await.expect("fetch");
    for a in &apps {
        let out = r.render(a, Freshness::Cached).await.expect("renders");
        assert_eq!(out.revisions, [Some(first.clone())]);
    }
    assert_eq!(r.render_count(), APPS as u64);

    repo.write("apps/app-500/cm.yaml", &cm("changed"));
    let second = repo.commit("touch one app");
    r.sources().fetch(&repo.url()).await.expect("fetch");
    let mut rerendered = Vec::new();
    for (i, a) in apps.iter().enumerate() {
        let out = r.render(a, Freshness::Cached).await.expect("renders");
        assert_eq!(
            out.revisions,
            [Some(second.clone())],
            "every app sees the new commit"
        );
        if !out.cached {
            rerendered.push(i);
            assert_eq!(out.manifests[0].name(), "changed");
        }
    }
    assert_eq!(rerendered, [500]);
    assert_eq!(r.render_count(), APPS as u64 + 1);
}

#[tokio::test]
async fn inputs_outside_the_path_are_part_of_the_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write("shared/cm.yaml", &cm("shared-v1"))
        .symlink("dir-app/link.yaml", "../shared/cm.yaml")
        .write("base/cm.yaml", &cm("base-v1"))
        .write("base/kustomization.yaml", "resources:\n- cm.yaml\n")
        .write("kust-app/kustomization.yaml", "resources:\n- ../base\n")
        .write("unrelated/cm.yaml", &cm("x"));
    repo.commit("c");
    let r = renderer(tmp.path(), Credentials::default(), settings());
    let dir_app = app(&app_yaml(
        "d",
        &format!("repoURL: {}\npath: dir-app", repo.url()),
    ));
    let kust_app = app(&app_yaml(
        "k",
        &format!("repoURL: {}\npath: kust-app", repo.url()),
    ));
    let render = |a| {
        let r = &r;
        async move { r.render(a, Freshness::Fetch).await.expect("renders") }
    };
    assert!(!render(&dir_app).await.cached);
    assert!(!render(&kust_app).await.cached);

    repo.write("unrelated/cm.yaml", &cm("y"));
    repo.commit("unrelated change");
    assert!(
        render(&dir_app).await.cached,
        "unrelated change keeps the key"
    );
    assert!(
        render(&kust_app).await.cached,
        "unrelated change keeps the key"
    );

    repo.write("shared/cm.yaml", &cm("shared-v2"));
    repo.commit("change the symlink target");
    let out = render(&dir_app).await;
    assert!(!out.cached, "symlink target changed");
    assert_eq!(out.manifests[0].name(), "shared-v2");
    assert!(render(&kust_app).await.cached);

    repo.write("base/cm.yaml", &cm("base-v2"));
    repo.commit("change the base");
    let out = render(&kust_app).await;
    assert!(!out.cached, "Kustomize base outside the path changed");
    assert_eq!(out.manifests[0].name(), "base-v2");
}
