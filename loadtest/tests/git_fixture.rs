//! Generated fixture repositories: layout, Application manifests, and that a commit
//! touching k apps changes exactly those apps' trees.

use flotilla_loadtest::git::{Fixture, FixtureError, FixtureSpec};

fn tree_of(repo: &git2::Repository, commit: &str, path: &str) -> git2::Oid {
    let commit = repo
        .find_commit(git2::Oid::from_str(commit).expect("oid"))
        .expect("commit");
    commit
        .tree()
        .expect("tree")
        .get_path(std::path::Path::new(path))
        .expect("path")
        .id()
}

#[test]
fn thousand_apps_and_a_commit_touching_three_changes_exactly_those_trees() {
    let root = tempfile::tempdir().expect("tempdir");
    let spec = FixtureSpec {
        apps: 1000,
        clusters: 3,
        resources_per_app: 2,
        repo_url: "http://127.0.0.1:9/apps.git".to_string(),
        ..FixtureSpec::default()
    };
    let mut fixture = Fixture::create(root.path(), "apps.git", spec).expect("fixture");
    let before = fixture.head().expect("head");
    let repo = git2::Repository::open_bare(fixture.path()).expect("open");

    let app_tree = repo
        .find_commit(git2::Oid::from_str(&before).expect("oid"))
        .expect("commit")
        .tree()
        .expect("tree")
        .get_path(std::path::Path::new("apps"))
        .expect("apps")
        .to_object(&repo)
        .expect("object")
        .peel_to_tree()
        .expect("tree");
    assert_eq!(app_tree.len(), 1000);
    let blob = |commit: &str, path: &str| {
        let id = tree_of(&repo, commit, path);
        String::from_utf8(repo.find_blob(id).expect("blob").content().to_vec()).expect("utf8")
    };
    let app = blob(&before, "applications/app-5.yaml");
    assert!(
        app.contains("kind: Application") && app.contains("apiVersion: argoproj.io/v1alpha1"),
        "{app}"
    );
    assert!(
        app.contains("name: sim-2")
            && app.contains("path: apps/app-5")
            && app.contains("namespace: app-5"),
        "{app}"
    );
    assert!(
        app.contains("repoURL: http://127.0.0.1:9/apps.git") && app.contains("selfHeal: true"),
        "{app}"
    );
    assert!(blob(&before, "apps/app-999/cm-1.yaml").contains("name: app-999-cm-1"));

    let touched = [1usize, 500, 999];
    let change = fixture
        .commit_change(&touched, "touch three apps")
        .expect("commit");
    assert_eq!(change.parent, before);
    assert_eq!(fixture.head().expect("head"), change.id);
    assert_eq!(
        change.modified,
        vec![
            "apps/app-1/cm-0.yaml",
            "apps/app-500/cm-0.yaml",
            "apps/app-999/cm-0.yaml"
        ]
    );
    for i in 0..1000 {
        let path = Fixture::app_path(i);
        let differs = tree_of(&repo, &before, &path) != tree_of(&repo, &change.id, &path);
        assert_eq!(differs, touched.contains(&i), "app {i}");
    }
    assert_eq!(
        tree_of(&repo, &before, "applications"),
        tree_of(&repo, &change.id, "applications")
    );
    assert!(blob(&change.id, "apps/app-500/cm-0.yaml").contains("generation: \"1\""));
    let again = fixture.commit_change(&[500], "again").expect("commit");
    assert!(blob(&again.id, "apps/app-500/cm-0.yaml").contains("generation: \"2\""));

    let err = fixture
        .commit_change(&[1000], "out of range")
        .expect_err("out of range");
    assert!(
        matches!(
            err,
            FixtureError::NoSuchApp {
                index: 1000,
                apps: 1000,
                ..
            }
        ),
        "{err}"
    );

    let fsck = std::process::Command::new("git")
        .args(["fsck", "--strict", "--no-progress"])
        .current_dir(fixture.path())
        .output()
        .expect("git fsck ran");
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[test]
fn bad_specs_and_existing_repositories_are_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let zero = FixtureSpec {
        clusters: 0,
        ..FixtureSpec::default()
    };
    assert!(matches!(
        Fixture::create(root.path(), "a.git", zero),
        Err(FixtureError::Spec(_))
    ));
    assert!(matches!(
        Fixture::create(root.path(), "../a.git", FixtureSpec::default()),
        Err(FixtureError::Spec(_))
    ));
    Fixture::create(root.path(), "a.git", FixtureSpec::default()).expect("first");
    assert!(
        Fixture::create(root.path(), "a.git", FixtureSpec::default()).is_err(),
        "no re-init over an existing repository"
    );
}

/// The scale the `sync` scenario uses; ignored by default (about a second of work, but
/// it writes 10,000 app trees). Run with `cargo nextest run -p flotilla-loadtest
/// --run-ignored only -E 'test(ten_thousand)' --no-capture` to see the timings.
#[test]
#[ignore = "scale check; run explicitly"]
fn ten_thousand_apps_then_small_commits() {
    let root = tempfile::tempdir().expect("tempdir");
    let spec = FixtureSpec {
        apps: 10_000,
        clusters: 100,
        resources_per_app: 1,
        ..FixtureSpec::default()
    };
    let started = std::time::Instant::now();
    let mut fixture = Fixture::create(root.path(), "apps.git", spec).expect("fixture");
    println!("created 10,000 apps in {:?}", started.elapsed());
    let mut last = fixture.head().expect("head");
    for round in 0..20usize {
        let apps: Vec<usize> = (0..5).map(|k| (round * 997 + k * 2003) % 10_000).collect();
        let change = fixture.commit_change(&apps, "churn").expect("commit");
        assert_eq!(change.parent, last);
        assert_eq!(change.modified.len(), 5);
        println!("commit {round} touching 5 apps took {:?}", change.elapsed);
        last = change.id;
    }
}

#[test]
fn commit_files_writes_and_removes_arbitrary_paths() {
    let root = tempfile::tempdir().expect("tempdir");
    let spec = FixtureSpec {
        apps: 4,
        resources_per_app: 2,
        ..FixtureSpec::default()
    };
    let mut fixture = Fixture::create(root.path(), "apps.git", spec).expect("fixture");
    let before = fixture.head().expect("head");
    let change = fixture
        .commit_files(
            &[
                (
                    "apps/app-2/bad.yaml",
                    Some(b"kind: [unterminated".as_slice()),
                ),
                ("apps/app-3/cm-1.yaml", None),
            ],
            "break app-2, drop a ConfigMap of app-3",
        )
        .expect("commit");
    assert_eq!(change.parent, before);
    assert_eq!(
        change.modified,
        vec!["apps/app-2/bad.yaml", "apps/app-3/cm-1.yaml"]
    );
    let repo = git2::Repository::open_bare(fixture.path()).expect("open");
    let tree = repo
        .find_commit(git2::Oid::from_str(&change.id).expect("oid"))
        .expect("commit")
        .tree()
        .expect("tree");
    let bad = tree
        .get_path(std::path::Path::new("apps/app-2/bad.yaml"))
        .expect("written");
    assert_eq!(
        repo.find_blob(bad.id()).expect("blob").content(),
        b"kind: [unterminated"
    );
    assert!(
        tree.get_path(std::path::Path::new("apps/app-3/cm-1.yaml"))
            .is_err(),
        "removed"
    );
    assert!(
        tree.get_path(std::path::Path::new("apps/app-3/cm-0.yaml"))
            .is_ok(),
        "sibling kept"
    );
    for i in [0usize, 1] {
        let path = Fixture::app_path(i);
        assert_eq!(
            tree_of(&repo, &before, &path),
            tree_of(&repo, &change.id, &path),
            "app {i} untouched"
        );
    }
    for bad_path in ["../x", "apps//x", ".git/config", ""] {
        let err = fixture
            .commit_files(&[(bad_path, Some(b"x".as_slice()))], "bad")
            .expect_err(bad_path);
        assert!(matches!(err, FixtureError::Spec(_)), "{err}");
    }
    assert_eq!(
        fixture.head().expect("head"),
        change.id,
        "refused commits leave main alone"
    );
}
