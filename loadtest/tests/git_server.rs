//! The smart-HTTP git server, driven by the system git CLI and by libgit2 over real
//! loopback HTTP: clone, fetch, push, basic auth and gzip request bodies.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use flotilla_loadtest::git::{BasicAuth, Fixture, FixtureSpec, GitServer, GitServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);

/// Run the git CLI (no shell, no prompts, no user config); returns (success, stdout+stderr).
async fn git(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args([
        "-c",
        "user.name=loadtest",
        "-c",
        "user.email=loadtest@flotilla.invalid",
        "-c",
        "credential.helper=",
    ])
    .args(args)
    .current_dir(dir)
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_CONFIG_NOSYSTEM", "1")
    .env("GIT_CONFIG_GLOBAL", "/dev/null")
    .env("GIT_ASKPASS", "/bin/false")
    .kill_on_drop(true);
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("git finished in time")
        .expect("git ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn spec(url: String) -> FixtureSpec {
    FixtureSpec {
        apps: 5,
        clusters: 2,
        resources_per_app: 2,
        repo_url: url,
        ..FixtureSpec::default()
    }
}

/// Raw HTTP/1.1 request on loopback; returns (status, body).
async fn raw_http(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    let text_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let status = std::str::from_utf8(&out[9..12])
        .expect("status")
        .parse()
        .expect("status code");
    (status, out[text_end + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_clone_fetch_and_push_over_smart_http() {
    let root = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let server = GitServer::start(root.path(), GitServerConfig::default())
        .await
        .expect("server");
    let url = server.url_for("apps.git");
    let mut fixture = Fixture::create(root.path(), "apps.git", spec(url.clone())).expect("fixture");

    let (ok, out) = git(work.path(), &["clone", &url, "clone"]).await;
    assert!(ok, "clone failed: {out}");
    let clone = work.path().join("clone");
    let cm = std::fs::read_to_string(clone.join("apps/app-3/cm-1.yaml")).expect("cloned manifest");
    assert!(cm.contains("name: app-3-cm-1"), "{cm}");
    let app =
        std::fs::read_to_string(clone.join("applications/app-3.yaml")).expect("cloned application");
    assert!(
        app.contains(&format!("repoURL: {url}")) && app.contains("name: sim-1"),
        "{app}"
    );

    let change = fixture.commit_change(&[2], "bump app-2").expect("commit");
    let (ok, out) = git(&clone, &["pull", "--ff-only", "origin", "main"]).await;
    assert!(ok, "pull failed: {out}");
    let (_, head) = git(&clone, &["rev-parse", "HEAD"]).await;
    assert_eq!(head.trim(), change.id);
    let cm = std::fs::read_to_string(clone.join("apps/app-2/cm-0.yaml")).expect("fetched manifest");
    assert!(cm.contains("generation: \"1\""), "{cm}");

    std::fs::write(clone.join("pushed.txt"), "pushed over http\n").expect("write");
    assert!(git(&clone, &["add", "pushed.txt"]).await.0);
    assert!(git(&clone, &["commit", "-m", "push test"]).await.0);
    let (ok, out) = git(&clone, &["push", "origin", "HEAD:main"]).await;
    assert!(ok, "push failed: {out}");
    let (_, pushed) = git(&clone, &["rev-parse", "HEAD"]).await;
    assert_eq!(fixture.head().expect("head"), pushed.trim());

    let (ok, _) = git(work.path(), &["ls-remote", &server.url_for("missing.git")]).await;
    assert!(!ok, "a missing repository must not be served");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_and_credentials_work_for_cli_and_libgit2() {
    let root = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let config = GitServerConfig {
        auth: Some(BasicAuth::user("alice", "s3cret")),
        ..GitServerConfig::default()
    };
    let server = GitServer::start(root.path(), config).await.expect("server");
    let url = server.url_for("apps.git");
    let fixture = Fixture::create(root.path(), "apps.git", spec(url.clone())).expect("fixture");
    let head = fixture.head().expect("head");

    let (status, _) = raw_http(
        server.addr(),
        "GET /apps.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 401);

    let (ok, _) = git(work.path(), &["ls-remote", &url]).await;
    assert!(!ok, "ls-remote without credentials must fail");
    let wrong = server.url_with_credentials("apps.git", "alice", "wrong");
    assert!(
        !git(work.path(), &["ls-remote", &wrong]).await.0,
        "wrong password must fail"
    );
    let good = server.url_with_credentials("apps.git", "alice", "s3cret");
    let (ok, out) = git(work.path(), &["clone", &good, "cli"]).await;
    assert!(ok, "authenticated clone failed: {out}");
    let (_, cloned) = git(&work.path().join("cli"), &["rev-parse", "HEAD"]).await;
    assert_eq!(cloned.trim(), head);

    // libgit2 (blocking) with and without a credentials callback.
    let dest = work.path().to_path_buf();
    let url2 = url.clone();
    let (denied, cloned) = tokio::time::timeout(
        LIMIT,
        tokio::task::spawn_blocking(move || {
            let denied = git2::Repository::clone(&url2, dest.join("anon")).is_err();
            let mut cb = git2::RemoteCallbacks::new();
            let mut tries = 0;
            cb.credentials(move |_, _, _| {
                tries += 1;
                if tries > 3 {
                    return Err(git2::Error::from_str("credentials rejected"));
                }
                git2::Cred::userpass_plaintext("alice", "s3cret")
            });
            let mut fo = git2::FetchOptions::new();
            fo.remote_callbacks(cb);
            let repo = git2::build::RepoBuilder::new()
                .fetch_options(fo)
                .clone(&url2, &dest.join("lib"))
                .expect("libgit2 clone");
            let id = repo
                .head()
                .expect("head")
                .peel_to_commit()
                .expect("commit")
                .id()
                .to_string();
            (denied, id)
        }),
    )
    .await
    .expect("libgit2 in time")
    .expect("libgit2 task");
    assert!(denied, "libgit2 clone without credentials must fail");
    assert_eq!(cloned, head);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_and_gzip_request_bodies() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = GitServerConfig {
        auth: Some(BasicAuth::token("tok-123")),
        ..GitServerConfig::default()
    };
    let server = GitServer::start(root.path(), config).await.expect("server");
    let fixture = Fixture::create(root.path(), "apps.git", spec(server.url_for("apps.git")))
        .expect("fixture");
    let head = fixture.head().expect("head");

    // A protocol-v0 upload-pack negotiation, gzip-encoded as git sends large ones.
    let mut plain = format!("0032want {head}\n0000").into_bytes();
    plain.extend_from_slice(b"0009done\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).expect("gzip");
    let gz = gz.finish().expect("gzip");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("any-user:tok-123");
    let head_lines = format!(
        "POST /apps.git/git-upload-pack HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/x-git-upload-pack-request\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    );
    let (status, body) = raw_http(server.addr(), &head_lines, &gz).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        body.starts_with(b"0008NAK\n"),
        "{:?}",
        String::from_utf8_lossy(&body[..body.len().min(64)])
    );
    assert!(
        body.windows(4).any(|w| w == b"PACK"),
        "response carries a pack"
    );

    // Corrupt gzip is refused with a clear client error.
    let bad = head_lines.replace(
        &format!("Content-Length: {}", gz.len()),
        "Content-Length: 4",
    );
    let (status, body) = raw_http(server.addr(), &bad, b"oops").await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let msg = String::from_utf8_lossy(&body);
    assert!(msg.contains("gzip"), "{msg}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clones_queue_behind_the_backend_limit() {
    let root = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let config = GitServerConfig {
        max_concurrent_backends: 1,
        ..GitServerConfig::default()
    };
    let server = GitServer::start(root.path(), config).await.expect("server");
    let url = server.url_for("apps.git");
    let fixture = Fixture::create(root.path(), "apps.git", spec(url.clone())).expect("fixture");
    let head = fixture.head().expect("head");
    let clones = (0..6).map(|i| {
        let url = url.clone();
        let dir = work.path().to_path_buf();
        async move { git(&dir, &["clone", "--quiet", &url, &format!("c{i}")]).await }
    });
    for (ok, out) in futures::future::join_all(clones).await {
        assert!(ok, "clone failed: {out}");
    }
    for i in 0..6 {
        let (_, id) = git(&work.path().join(format!("c{i}")), &["rev-parse", "HEAD"]).await;
        assert_eq!(id.trim(), head);
    }
    server.shutdown().await;
}
