//! Runs `flotilla-loadtest steady` end to end with real `flotilla node` processes: 6 apps
//! over two simulated clusters with 3 nodes, a 5-second window with a 2-second resync, and
//! checks the JSON result.
//!
//! The `flotilla` binary is looked up next to this crate's binary (`target/<profile>/flotilla`,
//! built by `cargo build -p flotilla-node`); without it the test is skipped with a message,
//! except under `CI=true`, where it fails.

use std::path::PathBuf;
use std::process::Command;

fn flotilla_binary() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_flotilla-loadtest")).with_file_name("flotilla");
    p.is_file().then_some(p)
}

#[test]
fn steady_scenario_reports_cpu_memory_and_reconciliations_per_node() {
    let Some(flotilla) = flotilla_binary() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the flotilla binary is missing next to flotilla-loadtest; build flotilla-node first");
        }
        eprintln!(
            "skipped: no flotilla binary next to flotilla-loadtest (cargo build -p flotilla-node)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let json_path = dir.path().join("steady.json");
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla-loadtest"))
        .args(["steady", "--nodes", "3", "--apps", "6", "--clusters", "2"])
        .args([
            "--duration",
            "5",
            "--resync-seconds",
            "2",
            "--timeout",
            "90",
        ])
        .arg("--out")
        .arg(dir.path().join("run"))
        .arg("--json")
        .arg(&json_path)
        .arg("--flotilla")
        .arg(&flotilla)
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
            "steady failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    }
    // The summary table, with the target next to the memory figure.
    assert!(stdout.contains("FIGURE"), "summary table printed: {stdout}");
    assert!(
        stdout.contains("rss_mb per node (max)") && stdout.contains("<= 150"),
        "{stdout}"
    );

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json written"))
            .expect("valid JSON");
    assert_eq!(doc["scenario"], "steady");
    assert_eq!(doc["complete"], true);
    assert_eq!(doc["apps"], 6);
    assert_eq!(doc["clusters"], 2);
    assert_eq!(doc["nodes"], 3);
    assert_eq!(doc["resources_per_app"], 1);
    assert_eq!(doc["resync_seconds"], 2);
    let seconds = doc["duration_s"].as_f64().expect("duration_s");
    assert!(seconds >= 5.0, "window of {seconds} s");
    for key in ["cpu_percent", "rss_mb", "rss_mb_mean"] {
        let v = doc[key].as_array().expect(key);
        assert_eq!(v.len(), 3, "{key}: {v:?}");
        assert!(
            v.iter().all(|x| x.as_f64().is_some_and(|f| f > 0.0)),
            "{key}: {v:?}"
        );
    }
    let cold = doc["cold_start_peak_rss_mb"]
        .as_array()
        .expect("cold_start_peak_rss_mb");
    assert!(
        cold.len() == 3 && cold.iter().all(|x| x.as_f64().is_some_and(|f| f > 0.0)),
        "{cold:?}"
    );
    let per_node = doc["per_node"].as_array().expect("per_node");
    assert_eq!(per_node.len(), 3);
    for n in per_node {
        let (max, mean) = (
            n["rss_mb"].as_f64().expect("rss_mb"),
            n["rss_mb_mean"].as_f64().expect("rss_mb_mean"),
        );
        assert!(mean <= max + 0.1, "mean {mean} over max {max}: {n}");
        assert!(n["samples"].as_u64().is_some_and(|s| s >= 2), "{n}");
    }
    let apps: u64 = per_node
        .iter()
        .map(|n| n["apps"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(apps, 6, "{per_node:?}");
    // With a 2-second resync, a 5-second window reconciles every app at least once.
    let reconciliations = doc["reconciliations"].as_u64().expect("reconciliations");
    assert!(reconciliations >= 6, "{reconciliations} reconciliations");
    assert_eq!(doc["synced_and_healthy_at_end"], 6);
    // The cold start before the window, as `[seconds, synced, synced and healthy]` rows.
    let last = doc["timeline"]
        .as_array()
        .and_then(|t| t.last())
        .expect("timeline");
    assert_eq!(last[2], 6, "{last}");
    assert!(doc["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    assert!(doc["command"]
        .as_str()
        .is_some_and(|c| c.contains("steady")));
}
