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
