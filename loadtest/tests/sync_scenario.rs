//! Runs `flotilla-loadtest sync` end to end with real `flotilla node` processes: 20 apps over
//! two simulated clusters with 3 nodes, and checks the JSON result.
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
fn sync_scenario_reports_every_app_synced_and_healthy() {
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
    let json_path = dir.path().join("sync.json");
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla-loadtest"))
        .args(["sync", "--nodes", "3", "--apps", "20", "--clusters", "2"])
        .args(["--resources-per-app", "2", "--timeout", "90"])
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
            "sync failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    }
    assert!(
        stdout.contains("seconds to synced"),
        "summary table printed: {stdout}"
    );

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json written"))
            .expect("valid JSON");
    assert_eq!(doc["scenario"], "sync");
    assert_eq!(doc["complete"], true);
    assert_eq!(doc["apps"], 20);
    assert_eq!(doc["clusters"], 2);
    assert_eq!(doc["nodes"], 3);
    let synced = doc["seconds_to_synced"]
        .as_f64()
        .expect("seconds_to_synced");
    let healthy = doc["seconds_to_healthy"]
        .as_f64()
        .expect("seconds_to_healthy");
    assert!(synced > 0.0 && synced <= healthy, "{synced} then {healthy}");
    assert!(doc["apps_per_sec"].as_f64().expect("apps_per_sec") > 0.0);
    let mom = doc["max_over_mean_apps_per_node"]
        .as_f64()
        .expect("max/mean");
    assert!((1.0..=3.0).contains(&mom), "max/mean {mom}");
    // The shard map accounts for every app, over all three nodes.
    let per_node = doc["per_node"].as_array().expect("per_node");
    assert_eq!(per_node.len(), 3);
    let apps: u64 = per_node
        .iter()
        .map(|n| n["apps"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(apps, 20, "{per_node:?}");
    for key in ["peak_rss_mb", "cpu_seconds"] {
        let v = doc[key].as_array().expect(key);
        assert_eq!(v.len(), 3, "{key}: {v:?}");
        assert!(
            v.iter().all(|x| x.as_f64().is_some_and(|f| f > 0.0)),
            "{key}: {v:?}"
        );
    }
    let last = doc["timeline"]
        .as_array()
        .and_then(|t| t.last())
        .expect("timeline");
    assert_eq!(last[1], 20);
    assert_eq!(last[2], 20);
    assert!(doc["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    // The data of a run given --out stays for inspection.
    assert!(dir.path().join("run/nodes/node-1.log").is_file());
}
