//! Shared test helpers: Git repositories made with the git CLI, tool discovery, renderers.
#![allow(dead_code)]

pub mod http;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use flotilla_node::model::{Application, Credentials};
use flotilla_node::render::{RenderSettings, Renderer};
use flotilla_node::source::{SourceCache, SourceConfig};

/// A working Git repository on disk.
pub struct Repo {
    pub dir: PathBuf,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repo {
    /// `git init` with branch `main`.
    pub fn init(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        git(dir, &["init", "-q", "-b", "main"]);
        Self {
            dir: dir.to_path_buf(),
        }
    }
    pub fn write(&self, path: &str, content: &str) -> &Self {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
        self
    }
    pub fn remove(&self, path: &str) -> &Self {
        let p = self.dir.join(path);
        if p.is_dir() {
            std::fs::remove_dir_all(p).expect("rm");
        } else {
            std::fs::remove_file(p).expect("rm");
        }
        self
    }
    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, p).expect("symlink");
        self
    }
    /// Commit everything; returns the commit id.
    pub fn commit(&self, msg: &str) -> String {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "--allow-empty", "-m", msg]);
        git(&self.dir, &["rev-parse", "HEAD"])
    }
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.dir, args)
    }
    pub fn url(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }
}

/// A ConfigMap manifest.
pub fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

/// The workspace root (parent of node/).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The helm binary: `FLOTILLA_HELM`, `helm` on PATH, or the workspace's `.tools/bin/helm`.
/// Missing helm fails under CI=true and skips (None) otherwise.
pub fn helm() -> Option<PathBuf> {
    let found = std::env::var_os("FLOTILLA_HELM")
        .map(PathBuf::from)
        .or_else(|| flotilla_node::render::find_on_path("helm"))
        .or_else(|| Some(workspace().join(".tools/bin/helm")).filter(|p| p.is_file()));
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("helm not found: run scripts/install-tools.sh or set FLOTILLA_HELM");
        }
        eprintln!("skipping: helm not found (run scripts/install-tools.sh)");
    }
    found
}

/// Render settings with discovered tools and the test's helm.
pub fn settings() -> RenderSettings {
    let mut s = RenderSettings::discover();
    s.helm = helm();
    if let Ok(p) = std::env::var("PATH") {
        s.tool_path = p;
    }
    s
}

/// A renderer with a fresh mirror cache under `dir`.
pub fn renderer(dir: &Path, creds: Credentials, settings: RenderSettings) -> Renderer {
    let mut config = SourceConfig::new(dir.join("mirrors"));
    config.credentials = creds;
    config.allow_local = true;
    let sources = Arc::new(SourceCache::new(config).expect("source cache"));
    Renderer::new(sources, settings).expect("renderer")
}

/// Parse an Application.
pub fn app(yaml: &str) -> Application {
    Application::from_yaml("test app", yaml).expect("valid Application")
}

/// A single-source Application YAML with the given source body (indented under `source:`).
pub fn app_yaml(name: &str, source: &str) -> String {
    let source: String = source.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\nspec:\n  project: default\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: dest\n  source:\n{source}"
    )
}

/// Names of rendered objects, as `Kind/name`.
pub fn names(m: &[flotilla_node::render::Manifest]) -> Vec<String> {
    m.iter()
        .map(|m| format!("{}/{}", m.kind(), m.name()))
        .collect()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Wait (bounded) until something accepts connections on the port.
pub fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} never opened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
