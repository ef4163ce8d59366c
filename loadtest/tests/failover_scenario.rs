//! Runs `flotilla-loadtest failover` and `scale-out` end to end with real `flotilla node`
//! processes (20 apps over two simulated clusters, 3 nodes) and checks their JSON results:
//! one kill -9 of the leader during churn, and a fourth node joining under churn.
//!
//! The `flotilla` binary is looked up next to this crate's binary (`target/<profile>/flotilla`,
//! built by `cargo build -p flotilla-node`); without it the tests are skipped with a message,
//! except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn flotilla_binary() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_flotilla-loadtest")).with_file_name("flotilla");
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "the flotilla binary is missing next to flotilla-loadtest; build flotilla-node first"
        );
    }
    eprintln!(
        "skipped: no flotilla binary next to flotilla-loadtest (cargo build -p flotilla-node)"
    );
    None
}

/// Run a scenario with `args`; returns its JSON and its stdout, or panics with node logs.
fn run(scenario: &str, args: &[&str], flotilla: &Path, dir: &Path) -> (Value, String) {
    let json_path = dir.join(format!("{scenario}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla-loadtest"))
        .arg(scenario)
        .args([
            "--nodes",
            "3",
            "--apps",
            "20",
            "--clusters",
            "2",
            "--timeout",
            "60",
        ])
        .args(args)
        .arg("--out")
        .arg(dir.join("run"))
        .arg("--json")
        .arg(&json_path)
        .arg("--flotilla")
        .arg(flotilla)
        .output()
        .expect("run flotilla-loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        for id in 1..=4 {
            let log = dir.join(format!("run/nodes/node-{id}.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            eprintln!(
                "--- node {id} (last lines, newest first)\n{}",
                tail.join("\n")
            );
        }
        panic!(
            "{scenario} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let doc = serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json written"))
        .expect("valid JSON");
    (doc, stdout)
}

fn common_fields(doc: &Value, scenario: &str) {
    assert_eq!(doc["scenario"], scenario);
    assert_eq!(doc["complete"], true);
    assert_eq!(doc["apps"], 20);
    assert_eq!(doc["clusters"], 2);
    assert_eq!(doc["nodes"], 3);
    assert_eq!(doc["resources_per_app"], 1);
    assert!(doc["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    assert!(doc["command"]
        .as_str()
        .is_some_and(|c| c.contains(scenario)));
    // Overlapping syncs are counted from the nodes' logs; every counted one is listed (up to
    // 20) with both nodes and times. A shard that moves stops its old owner's syncs before
    // the new owner starts any: no app is ever synced by two nodes at once.
    let concurrent = doc["concurrent_operations"]
        .as_u64()
        .expect("concurrent_operations");
    let examples = doc["concurrent_examples"].as_array().expect("examples");
    assert_eq!(examples.len() as u64, concurrent.min(20), "{examples:?}");
    assert_eq!(
        concurrent, 0,
        "apps synced by two nodes at once: {examples:?}"
    );
}

#[test]
fn failover_of_the_leader_under_churn_is_timed_and_loses_nothing() {
    let Some(flotilla) = flotilla_binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (doc, stdout) = run(
        "failover",
        &["--kills", "1", "--target", "leader", "--rate", "2"],
        &flotilla,
        dir.path(),
    );
    assert!(
        stdout.contains("failover max s"),
        "summary printed: {stdout}"
    );
    common_fields(&doc, "failover");
    assert_eq!(doc["kills"], 1);
    assert_eq!(
        doc["lost_acknowledged_writes"], 0,
        "{:?}",
        doc["lost_examples"]
    );
    let max = doc["failover_max_s"].as_f64().expect("failover_max_s");
    let p50 = doc["failover_p50_s"].as_f64().expect("failover_p50_s");
    assert!(max > 0.0 && p50 <= max, "p50 {p50}, max {max}");
    let samples = doc["samples_s"].as_array().expect("samples_s");
    assert_eq!(samples.len(), 1);
    let kill = &doc["per_kill"][0];
    assert_eq!(kill["leader"], true);
    assert!(kill["probe_apps"].as_u64().is_some_and(|n| n > 0), "{kill}");
    assert!(kill["seconds_to_rejoin"].as_f64().is_some(), "{kill}");
    assert!(doc["churn_commits"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(doc["samples_ms"].as_array().map(Vec::len), Some(1));
}

#[test]
fn scale_out_moves_shards_to_the_new_node_under_churn() {
    let Some(flotilla) = flotilla_binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (doc, stdout) = run(
        "scale-out",
        &["--rate", "2", "--quiet-seconds", "3"],
        &flotilla,
        dir.path(),
    );
    assert!(stdout.contains("shards moved"), "summary printed: {stdout}");
    common_fields(&doc, "scale-out");
    assert_eq!(doc["nodes_before"], 3);
    assert_eq!(doc["nodes_after"], 4);
    let shards = doc["shards"].as_u64().expect("shards");
    let moved = doc["shards_moved"].as_u64().expect("shards_moved");
    let ideal = doc["ideal_moved"].as_f64().expect("ideal_moved");
    assert!(
        shards > 0 && moved > 0 && moved <= shards,
        "{moved} of {shards}"
    );
    assert!((ideal - shards as f64 / 4.0).abs() < 0.1, "ideal {ideal}");
    // The new node got what moved: every moved shard went to it or between the others.
    let new = doc["shards_owned_by_new_node"]
        .as_u64()
        .expect("new node's shards");
    assert!(
        new > 0 && new <= moved,
        "new node owns {new}, {moved} moved"
    );
    let per_node = doc["per_node"].as_array().expect("per_node");
    assert_eq!(per_node.len(), 4);
    let after: u64 = per_node
        .iter()
        .filter_map(|n| n["shards_after"].as_u64())
        .sum();
    assert_eq!(after, shards, "{per_node:?}");
    assert!(doc["max_reconcile_gap_s"].as_f64().is_some_and(|g| g > 0.0));
    assert!(doc["seconds_to_settle"].as_f64().is_some());
    assert_eq!(doc["unapplied_changes"], 0);
    let samples = doc["samples_ms"].as_array().expect("samples_ms");
    assert_eq!(
        samples.len() as u64,
        doc["gap_changes"].as_u64().expect("gap_changes")
    );
}
