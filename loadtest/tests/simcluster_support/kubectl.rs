//! Running the real `kubectl` against a simcluster, driven only by a kubeconfig.

use flotilla_loadtest::simcluster::SimCluster;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// A kubectl bound to one cluster, with its own discovery cache directory.
pub struct Kubectl {
    /// Scratch directory (kubeconfig, discovery cache, files for `--from-file`).
    pub dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

/// How one kubectl run ended.
pub struct Out {
    /// Exit status 0.
    pub ok: bool,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

/// `false` when kubectl is missing and the test should be skipped.
pub fn kubectl_available() -> bool {
    let found = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok();
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "kubectl is not on the PATH; the simcluster kubectl tests need it under CI=true"
            );
        }
        println!("skipping: kubectl is not on the PATH");
    }
    found
}

impl Kubectl {
    /// A kubectl with a kubeconfig for `sim` in a fresh scratch directory.
    pub fn new(sim: &SimCluster) -> Kubectl {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, sim.kubeconfig().expect("kubeconfig"))
            .expect("write kubeconfig");
        Kubectl { dir, kubeconfig }
    }

    /// The kubectl command with this kubeconfig and cache, killed when dropped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args);
        c.kill_on_drop(true);
        c
    }

    /// Runs kubectl with `stdin` as its input; at most 60 s.
    pub async fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut c = self.command(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("kubectl starts");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).await.expect("write stdin");
        }
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finishes in time")
            .expect("kubectl output");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// Runs kubectl, fails the test unless it succeeds, and returns its stdout.
    pub async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run_with(args, stdin).await;
        assert!(o.ok, "kubectl {args:?} failed:\n{}\n{}", o.stdout, o.stderr);
        o.stdout
    }
}
