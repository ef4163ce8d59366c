//! `flotilla render` as a user runs it.
mod support;

use std::process::Command;

use support::{app_yaml, cm, Repo};

fn flotilla(args: &[&str], cache: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .env("RUST_LOG", "warn")
        .output()
        .expect("flotilla runs")
}

#[test]
fn render_prints_sorted_documents_and_fails_clearly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repo::init(&tmp.path().join("repo"));
    repo.write("app/z.yaml", &cm("zeta"))
        .write(
            "app/a.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: alpha}\n",
        );
    repo.commit("c");
    let app = tmp.path().join("app.yaml");
    let yaml = app_yaml(
        "demo",
        &format!("repoURL: {}\npath: app\nbogus: 1", repo.url()),
    );
    std::fs::write(&app, yaml).expect("write");
    let cache = tmp.path().join("cache");
    let app_s = app.to_string_lossy().into_owned();

    let out = flotilla(&["render", &app_s], &cache);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml doc"))
        .collect();
    let order: Vec<_> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        order,
        ["ConfigMap/alpha", "ConfigMap/zeta", "Deployment/web"]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.source.bogus: unknown field"),
        "{stderr}"
    );

    let out = flotilla(&["render", &app_s, "-o", "json"], &cache);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["kind"], "Deployment");

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        app_yaml("bad", &format!("repoURL: {}\npath: nowhere", repo.url())),
    )
    .expect("write");
    let out = flotilla(&["render", &bad.to_string_lossy()], &cache);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error:") && stderr.contains("\"nowhere\" does not exist"),
        "{stderr}"
    );

    let out = flotilla(&["render", "/nonexistent/app.yaml"], &cache);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read /nonexistent/app.yaml"));
}

#[test]
fn render_over_authenticated_http_with_a_secrets_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let work = Repo::init(&tmp.path().join("work"));
    work.write("app/cm.yaml", &cm("via-http"));
    work.commit("c");
    let root = tmp.path().join("srv");
    std::fs::create_dir_all(&root).expect("mkdir");
    support::git(&root, &["clone", "-q", "--bare", &work.url(), "repo.git"]);
    let server = support::http::serve(support::http::Route::Git(root), Some(("bob", "pw")));
    let url = format!("{}/repo.git", server.url());
    let app = tmp.path().join("app.yaml");
    std::fs::write(&app, app_yaml("h", &format!("repoURL: {url}\npath: app"))).expect("write");
    let secrets = tmp.path().join("secrets.yaml");
    std::fs::write(
        &secrets,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: r\n  labels:\n    argocd.argoproj.io/secret-type: repository\nstringData:\n  url: {url}\n  username: bob\n  password: pw\n"),
    )
    .expect("write");
    let cache = tmp.path().join("cache");
    let app_s = app.to_string_lossy().into_owned();
    let out = flotilla(&["render", &app_s], &cache);
    assert_eq!(out.status.code(), Some(1), "no credentials");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no repository credentials"));
    let out = flotilla(
        &[
            "render",
            &app_s,
            "--secrets",
            &secrets.to_string_lossy(),
            "-o",
            "json",
        ],
        &cache,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"via-http\""));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("pw"),
        "password never printed"
    );
}
