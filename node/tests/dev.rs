//! `flotilla dev`, the README's first command: three real node processes, a simulated cluster
//! and the example apps (directory, Kustomize, Helm, Jsonnet, waves and hooks) all become
//! Synced and Healthy; a second start resumes from the same data.

use std::net::TcpListener;
use std::process::Command;

/// A base port whose node ports (base+1..3, +101..103, +201..203) are all free now.
fn free_base() -> u16 {
    for attempt in 0..200u16 {
        let base = 20_000 + (std::process::id() as u16 % 300) * 100 + attempt * 37 % 9_000;
        let ports: Vec<u16> = [1, 2, 3, 101, 102, 103, 201, 202, 203]
            .iter()
            .map(|o| base + o)
            .collect();
        if ports
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            return base;
        }
    }
    panic!("no free port range for the dev nodes");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn run_dev(dir: &std::path::Path, base: u16, kube: u16, git: u16) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["dev", "--exit-when-synced", "--timeout", "240", "--dir"])
        .arg(dir)
        .args(["--base-port", &base.to_string()])
        .args(["--kube-port", &kube.to_string()])
        .args(["--git-port", &git.to_string()])
        .env("RUST_LOG", "info,openraft=warn")
        .output()
        .expect("flotilla dev runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn dev_syncs_the_examples_and_resumes_from_its_data() {
    if flotilla_node::render::find_on_path("kubectl").is_none() && std::env::var_os("CI").is_none()
    {
        eprintln!("skipped: kubectl (for Kustomize) is not on PATH");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (base, kube, git) = (free_base(), free_port(), free_port());
    let (ok, text) = run_dev(dir.path(), base, kube, git);
    let logs = |id: u64| std::fs::read_to_string(dir.path().join(format!("node-{id}.log")));
    assert!(
        ok,
        "first start: {text}\nnode 1 log tail: {}",
        logs(1)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for app in [
        "guestbook",
        "kustomize-guestbook",
        "helm-guestbook",
        "jsonnet-guestbook",
        "sync-waves",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(app) && l.contains("Synced") && l.contains("Healthy")),
            "{app} Synced and Healthy in the table: {text}"
        );
    }
    assert!(text.contains("flotilla app list --server"), "usage printed");

    // The second start finds the group in the node data instead of forming a new one.
    let (ok, text) = run_dev(dir.path(), base, kube, git);
    assert!(ok, "second start: {text}");
    let node1 = logs(1).expect("node 1 log");
    assert_eq!(
        node1.matches("bootstrapping a new group").count(),
        1,
        "the group is formed once, then resumed"
    );
}
