//! Runs `flotilla-loadtest churn` and `flotilla-loadtest drift` end to end with real
//! `flotilla node` processes (3 nodes, 6 apps over two simulated clusters) and checks their
//! JSON results: every change pushed by webhook reached its cluster, every live change was
//! healed, and the latency figures are consistent.
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

/// Run a scenario with 3 nodes, 6 apps and 2 clusters plus `extra` flags; returns its JSON.
fn run_scenario(flotilla: &Path, scenario: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json_path = dir.path().join(format!("{scenario}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla-loadtest"))
        .args([scenario, "--nodes", "3", "--apps", "6", "--clusters", "2"])
        .args(["--timeout", "60"])
        .args(extra)
        .arg("--out")
        .arg(dir.path().join("run"))
        .arg("--json")
        .arg(&json_path)
        .arg("--flotilla")
        .arg(flotilla)
        .output()
        .expect("run flotilla-loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        for id in 1..=3 {
            let log = dir.path().join(format!("run/nodes/node-{id}.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!(
                "--- node {id} (last lines, newest first)\n{}",
                tail.join("\n")
            );
        }
        panic!(
            "{scenario} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    }
    assert!(stdout.contains("TARGET"), "summary table printed: {stdout}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json written"))
            .expect("valid JSON");
    assert_eq!(doc["scenario"], scenario);
    assert_eq!(doc["complete"], true, "{doc}");
    assert_eq!(doc["apps"], 6);
    assert_eq!(doc["clusters"], 2);
    assert_eq!(doc["nodes"], 3);
    assert_eq!(doc["resources_per_app"], 1);
    assert!(doc["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    assert!(doc["command"]
        .as_str()
        .is_some_and(|c| c.contains(scenario)));
    doc
}

fn f(doc: &Value, key: &str) -> f64 {
    doc[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing: {doc}"))
}

/// The samples: `n` of them, ascending, positive; p50 ≤ p99 ≤ max = the largest sample.
fn check_latencies(doc: &Value, n: u64, p50: &str, p99: &str, max: &str) {
    let samples: Vec<f64> = doc["samples_ms"]
        .as_array()
        .expect("samples_ms")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    assert_eq!(samples.len() as u64, n, "{doc}");
    assert!(samples.windows(2).all(|w| w[0] <= w[1]), "{samples:?}");
    assert!(samples.iter().all(|&s| s > 0.0), "{samples:?}");
    let (p50, p99, max) = (f(doc, p50), f(doc, p99), f(doc, max));
    assert!(p50 <= p99 && p99 <= max, "{p50} {p99} {max}");
    assert_eq!(Some(&max), samples.last());
    assert!(samples.contains(&p50) && samples.contains(&p99));
}

#[test]
fn churn_scenario_sees_every_pushed_change_in_its_cluster() {
    let Some(flotilla) = flotilla_binary() else {
        return;
    };
    let doc = run_scenario(
        &flotilla,
        "churn",
        &["--commits", "3", "--apps-per-commit", "2", "--rate", "4"],
    );
    assert_eq!(doc["commits"], 3);
    assert_eq!(doc["changes_pushed"], 6);
    assert_eq!(doc["changes"], 6, "{doc}");
    assert_eq!(doc["missed"], 0);
    assert_eq!(doc["webhook_failures"], 0);
    check_latencies(&doc, 6, "p50_ms", "p99_ms", "max_ms");
    assert!(f(&doc, "commit_ms_p50") >= 0.0);
    // Every change came through the watch of its cluster.
    assert!(doc["observer_events"].as_u64().is_some_and(|e| e >= 6 + 6));
    assert_eq!(doc["per_node"].as_array().map(Vec::len), Some(3));
}

#[test]
fn drift_scenario_sees_every_live_change_healed() {
    let Some(flotilla) = flotilla_binary() else {
        return;
    };
    let doc = run_scenario(&flotilla, "drift", &["--mutations", "3", "--rate", "4"]);
    assert_eq!(doc["mutations"], 3);
    assert_eq!(doc["healed"], 3, "{doc}");
    assert_eq!(doc["missed"], 0);
    check_latencies(&doc, 3, "heal_p50_ms", "heal_p99_ms", "heal_max_ms");
    // Healed well before the periodic resync could have done it.
    assert!(f(&doc, "heal_max_ms") < f(&doc, "resync_seconds") * 1000.0);
    // Each mutation shows up in the watch twice: changed, then healed.
    assert!(doc["observer_events"]
        .as_u64()
        .is_some_and(|e| e >= 6 + 3 * 2));
}
